"""The sdk's exceptions.

Providers translate their own errors into this small set at their boundary (each provider
module has one table for it) and keep the provider's exception as ``__cause__``.  Code above
the providers -- the Buckets facade, transfers, the file system -- only ever sees these.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn


class BlobfsError(Exception):
    """Base class of every error the sdk raises on purpose."""


class ResourceNotFound(BlobfsError, ValueError):
    """A bucket, key or credential does not exist.

    A subclass of :class:`ValueError` as in the reference implementation.
    """


class AlreadyExists(BlobfsError):
    """A bucket or credential with that name (or a provider bucket) already exists."""


class PermissionDenied(BlobfsError, PermissionError):
    """The provider refused the credentials for this operation."""


class InvalidRequest(BlobfsError, ValueError):
    """The request can never succeed as made: bad name, bad range, unsupported call."""


class NotEmpty(BlobfsError):
    """A bucket that still holds objects cannot be removed."""


class PreconditionFailed(BlobfsError):
    """The object changed since it was looked at (ETag no longer matches)."""


class TransientError(BlobfsError):
    """A failure that may go away when retried: connection reset, 5xx, throttling.

    Providers retry these themselves (see :mod:`sdk.retry`); callers see one only once the
    retries are exhausted.
    """


class ConfigError(BlobfsError):
    """The configuration is missing, unreadable or names something that does not exist."""


def raise_first(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the error that failed an asyncio task group rather than the group itself.

    The tasks the group cancelled because of it add only ``CancelledError``s, which are
    skipped; callers above the sdk then see one :class:`BlobfsError` they can handle.
    """
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = exc.exceptions
        elif not isinstance(exc, asyncio.CancelledError):
            raise exc
    raise group
