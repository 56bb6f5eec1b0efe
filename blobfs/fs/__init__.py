"""The file system core: inodes, names, attributes, listings, reads, writes and namespace
changes over a blob store, in terms of inode numbers, names and handles.  It knows nothing
of pyfuse3 or the kernel and raises only :mod:`blobfs.errors`.  The entry point is
:class:`blobfs.fs.filesystem.Filesystem`."""
