"""The ``blobfs`` command, run as users run it."""
