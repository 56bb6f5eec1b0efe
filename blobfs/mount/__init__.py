"""The mount daemon as a process: starting it (:mod:`~blobfs.mount.launch`), its lifecycle
(:mod:`~blobfs.mount.daemon`), the mount point and FUSE checks
(:mod:`~blobfs.mount.mountpoint`), readiness (:mod:`~blobfs.mount.notify`), its memory
(:mod:`~blobfs.mount.memory`) and the ``mount.fuse.blobfs`` helper
(:mod:`~blobfs.mount.helper`).  It assembles the layers below and owns no file system
behaviour itself."""
