"""Azure client failures translated into :mod:`sdk.errors`, in one place.

Error codes (``x-ms-error-code``) decide before the HTTP status; failures below HTTP
(connects, resets, bodies cut short) are :class:`~sdk.errors.TransientError`, which
:mod:`sdk.retry` retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import aiohttp
from azure.core.exceptions import (
    AzureError,
    DecodeError,
    ServiceRequestError,
    ServiceResponseError,
)

from sdk.errors import (
    AlreadyExists,
    BlobfsError,
    InvalidRequest,
    PermissionDenied,
    PreconditionFailed,
    ResourceNotFound,
    TransientError,
)

#: Azure error codes (``x-ms-error-code``) to sdk errors.  Codes decide before HTTP status
#: because the same status means different things (a 409 may be "exists" or "being deleted").
_BY_CODE: Final[dict[str, type[BlobfsError]]] = {
    "BlobNotFound": ResourceNotFound,
    "ContainerNotFound": ResourceNotFound,
    "ResourceNotFound": ResourceNotFound,
    "ContainerAlreadyExists": AlreadyExists,
    "BlobAlreadyExists": AlreadyExists,
    "ResourceAlreadyExists": AlreadyExists,
    # A deleted container's name stays taken for ~30 s on Azure; retrying rides that out.
    "ContainerBeingDeleted": TransientError,
    "AuthenticationFailed": PermissionDenied,
    "AuthorizationFailure": PermissionDenied,
    "AuthorizationPermissionMismatch": PermissionDenied,
    "AuthorizationResourceTypeMismatch": PermissionDenied,
    "AuthorizationServiceMismatch": PermissionDenied,
    "AuthorizationSourceIPMismatch": PermissionDenied,
    "AuthorizationProtocolMismatch": PermissionDenied,
    "InsufficientAccountPermissions": PermissionDenied,
    "NoAuthenticationInformation": PermissionDenied,
    "AccountIsDisabled": PermissionDenied,
    "ConditionNotMet": PreconditionFailed,
    "SourceConditionNotMet": PreconditionFailed,
    "TargetConditionNotMet": PreconditionFailed,
    "ServerBusy": TransientError,
    "InternalError": TransientError,
    "OperationTimedOut": TransientError,
    "InvalidRange": InvalidRequest,
    "InvalidBlockList": InvalidRequest,
    "InvalidBlobOrBlock": InvalidRequest,
    "InvalidBlockId": InvalidRequest,
    "InvalidMetadata": InvalidRequest,
    "InvalidResourceName": InvalidRequest,
    "OutOfRangeInput": InvalidRequest,
    "InvalidInput": InvalidRequest,
    "InvalidHeaderValue": InvalidRequest,
    "InvalidQueryParameterValue": InvalidRequest,
    "RequestBodyTooLarge": InvalidRequest,
}

#: HTTP status to sdk error, when the error code is unknown or absent.
_BY_STATUS: Final[dict[int, type[BlobfsError]]] = {
    400: InvalidRequest,
    401: PermissionDenied,
    403: PermissionDenied,
    404: ResourceNotFound,
    405: InvalidRequest,
    408: TransientError,
    411: InvalidRequest,
    412: PreconditionFailed,
    413: InvalidRequest,
    416: InvalidRequest,
    429: TransientError,
    501: InvalidRequest,
}

#: Failures below HTTP: the request may not have reached the service or the answer was cut.
_TRANSIENT_TYPES: Final = (
    ServiceRequestError,  # connect failures and connect timeouts
    ServiceResponseError,  # reset or timed-out responses
    DecodeError,  # includes IncompleteReadError: a body cut short
    aiohttp.ClientError,
    ConnectionError,
    TimeoutError,
)

#: What :func:`translated` catches: everything the Azure client and its transport raise.
WIRE_ERRORS: Final = (AzureError, aiohttp.ClientError, ConnectionError, TimeoutError)


def error_code(e: BaseException) -> str | None:
    """Azure's error code (``BlobNotFound``, ...) of ``e``, if it carries one."""
    code: Any = getattr(e, "error_code", None)
    if code is None:
        headers = getattr(getattr(e, "response", None), "headers", None)
        if headers is not None:
            code = headers.get("x-ms-error-code")
    if code is None:
        return None
    return str(getattr(code, "value", code))


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "message", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def translate_error(e: BaseException, what: str) -> BlobfsError:
    """The sdk error for an Azure client failure ``e`` while doing ``what`` (for the message).

    The caller raises it ``from e`` so the original stays available as ``__cause__``.
    """
    if isinstance(e, BlobfsError):
        return e
    code = error_code(e)
    status: int | None = getattr(e, "status_code", None)
    cls = _BY_CODE.get(code or "")
    if cls is None and status is not None:
        cls = _BY_STATUS.get(status) or (TransientError if status >= 500 else None)
    if cls is None and isinstance(e, _TRANSIENT_TYPES):
        cls = TransientError
    if cls is None and isinstance(e, AzureError):
        # The SDK's downloader wraps a body read that kept failing in a bare
        # HttpResponseError(error=...); classify by what it wraps.
        inner = e.inner_exception
        if inner is not None and inner is not e:
            return translate_error(inner, what)
    detail = code or (str(status) if status is not None else type(e).__name__)
    return (cls or BlobfsError)(f"{what}: {detail}: {_first_line(e)}")


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Translate Azure client failures raised in the block into :mod:`sdk.errors`."""
    try:
        yield
    except WIRE_ERRORS as e:
        raise translate_error(e, what) from e
