"""Copies between local files and blobs: single files and whole directory trees.

:class:`Transfers` implements ``upload_file``, ``download_file``, ``upload_dir`` and
``download_dir`` of the Buckets API on top of the :class:`~sdk.providers.base.BlobStore`
protocol, so the same code serves S3, Azure and the in-memory store.

Behaviour worth knowing (see the method docs for the rest):

* Large files move as multipart uploads and parallel ranged reads (:mod:`sdk.multipart`) with
  a bounded number of parts in memory.  Trees move many files at once, at most
  :data:`MAX_OPEN_FILES` open, and at most :data:`LARGE_FILES_AT_ONCE` of them multipart.
* Uploads store the local modification time as object metadata ``mtime`` (seconds since the
  epoch as a decimal string with nanoseconds, as s3fs and rclone do) and downloads give the
  local file that time back, so ``update`` compares like with like in both directions.  An
  object without ``mtime`` is judged by its ``modified_at``.
* Downloads go to a temporary file in the destination directory that is renamed into place,
  so an interrupted download never leaves a truncated file under the final name.  With
  ``continue_`` the file is instead written strictly in order -- in place when appending to
  an existing partial file, else in ``.NAME.blobfs-part`` -- and kept on failure, so the next
  ``continue_`` download picks up where this one stopped.
* Empty directories survive a round trip: every uploaded directory gets a marker object
  ``dir/`` (empty), and markers are not downloaded as files.
* In a tree, a file that cannot be copied is reported through the progress ``fail`` event and
  the others are still copied; the call then raises :class:`IncompleteTransfer`.

Modules: :mod:`.transfers` (:class:`Transfers`), :mod:`.upload` and :mod:`.download` (one
file, and the walk of a tree, each way), :mod:`.tree` (the bounded pool and its events),
:mod:`.local` (blocking local file work), :mod:`.common` (settings, URLs, ``mtime``).
"""

from sdk.transfer.common import (
    LARGE_FILES_AT_ONCE,
    MAX_OPEN_FILES,
    MTIME_KEY,
    PART_CONCURRENCY,
    PART_SIZE,
    TIME_THRESHOLD,
    TREE_PART_CONCURRENCY,
    Resolver,
    check_continue_supported,
)
from sdk.transfer.transfers import Transfers
from sdk.transfer.tree import IncompleteTransfer

__all__ = [
    "LARGE_FILES_AT_ONCE",
    "MAX_OPEN_FILES",
    "MTIME_KEY",
    "PART_CONCURRENCY",
    "PART_SIZE",
    "TIME_THRESHOLD",
    "TREE_PART_CONCURRENCY",
    "IncompleteTransfer",
    "Resolver",
    "Transfers",
    "check_continue_supported",
]
