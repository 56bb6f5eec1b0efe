"""The ``blobfs`` command line: buckets, blobs, configuration, credentials and mounts.

:mod:`blobfs.cli.main` is the top-level group, :mod:`blobfs.cli.commands` its sub-commands,
:mod:`blobfs.cli.formatting` and :mod:`blobfs.cli.progress` what they print.  The command
line calls the sdk for buckets and blobs and :mod:`blobfs.mount` for mounts; nothing below
it imports it.
"""

from blobfs.cli.main import main

__all__ = ["main"]
