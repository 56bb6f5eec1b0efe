"""The FUSE adapter: the only package that imports pyfuse3 and the only one that speaks
errno.  It turns kernel requests into calls on :class:`blobfs.fs.Filesystem` and the core's
:mod:`blobfs.errors` into errno values."""
