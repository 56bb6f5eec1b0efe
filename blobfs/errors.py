"""Errors of the file system core.

The core (:mod:`blobfs.fs`) raises only these; :mod:`blobfs.fuse.operations` turns them
into errno values through its single table. Each class names a POSIX condition, not a FUSE
detail, so the core can be tested without the kernel and the errno choice lives in one
place.

Storage failures reach the core as :mod:`sdk.errors` exceptions; :func:`from_storage`
translates them here, keeping the original as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sdk import errors as sdk_errors


class FsError(Exception):
    """Base of every error the core raises on purpose."""


class NotFound(FsError):
    """No such file or directory (ENOENT)."""


class NotADirectory(FsError):
    """A directory was expected (ENOTDIR)."""


class IsADirectory(FsError):
    """A file was expected (EISDIR)."""


class NameTooLong(FsError):
    """A name component longer than 255 bytes, or a path whose key would be longer than
    the store allows (ENAMETOOLONG)."""


class InvalidName(FsError):
    """A name that can never be a key: not UTF-8, or containing NUL (EINVAL)."""


class Stale(FsError):
    """The object behind an open file changed or vanished (ESTALE)."""


class ReadOnly(FsError):
    """The mount is read-only (EROFS)."""


class NotSupported(FsError):
    """The operation is not supported by this file system (EOPNOTSUPP)."""


class AccessDenied(FsError):
    """The store refused the mount's credentials for this operation (EACCES)."""


class BadHandle(FsError):
    """An unknown file or directory handle (EBADF)."""


class StorageFailure(FsError):
    """The store failed after its retries (EIO)."""


class NoAttribute(FsError):
    """No such extended attribute (ENODATA)."""


class TooBig(FsError):
    """An extended attribute that could never fit in an object's metadata (E2BIG)."""


class NoSpace(FsError):
    """An extended attribute that does not fit beside the object's others (ENOSPC)."""


class NotEmpty(FsError):
    """A directory that still holds entries (ENOTEMPTY)."""


class Exists(FsError):
    """The name already exists (EEXIST)."""


#: sdk error -> core error.  Order matters: the first matching class wins.
_STORAGE_TABLE: tuple[tuple[type[Exception], type[FsError]], ...] = (
    (sdk_errors.PreconditionFailed, Stale),
    (sdk_errors.ResourceNotFound, NotFound),
    (sdk_errors.PermissionDenied, AccessDenied),
    (sdk_errors.BlobfsError, StorageFailure),
)


def translate_storage_error(exc: Exception) -> FsError:
    """The core error for a storage exception (``StorageFailure`` for anything unknown)."""
    for sdk_cls, fs_cls in _STORAGE_TABLE:
        if isinstance(exc, sdk_cls):
            return fs_cls(str(exc))
    return StorageFailure(f"{type(exc).__name__}: {exc}")


@contextmanager
def from_storage(*, missing: type[FsError] = NotFound) -> Iterator[None]:
    """Translate sdk errors raised inside the block into core errors.

    ``missing`` chooses what a vanished object means at this call site: ``NotFound`` for a
    lookup, ``Stale`` for a read through an open handle.
    """
    try:
        yield
    except FsError:
        raise
    except sdk_errors.ResourceNotFound as e:
        raise missing(str(e)) from e
    except sdk_errors.BlobfsError as e:
        raise translate_storage_error(e) from e
    except OSError as e:
        # Network errors the provider did not translate: treat as a storage failure.
        raise StorageFailure(f"{type(e).__name__}: {e}") from e
