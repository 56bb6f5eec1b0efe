"""Real mounts through /dev/fuse, on SeaweedFS and Azurite, used by ordinary programs."""
