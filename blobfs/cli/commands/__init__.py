"""Sub-commands of the ``blobfs`` command, grouped by subject."""
