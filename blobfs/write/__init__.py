"""The write path below the core: staging files on local disk, their streaming and
whole-file uploads, the sidecars that make them recoverable, and crash recovery at mount
time.  A write that returned success is on the staging disk; a close that returned success
is in the bucket.

Modules, top down: :mod:`~blobfs.write.staging` (``Staged``, one file being written) uses
:mod:`~blobfs.write.fill` (the lazy copy of the original), :mod:`~blobfs.write.stream`
(parts uploaded while writing) and :mod:`~blobfs.write.upload` (the whole file at close);
:mod:`~blobfs.write.recovery` stores what a killed daemon left.  Below them:
:mod:`~blobfs.write.writeback` (``WriteBack``, what one mount's staging files share),
:mod:`~blobfs.write.files` (the data file and sidecar pair on disk),
:mod:`~blobfs.write.sidecar` (the record recovery reads), :mod:`~blobfs.write.parts`
(the storage interface and part sizes) and :mod:`~blobfs.write.budget` (upload memory).
"""
