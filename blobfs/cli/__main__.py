"""``python -m blobfs.cli``: the ``blobfs`` command."""

from blobfs.cli.main import main

main(prog_name="blobfs")
