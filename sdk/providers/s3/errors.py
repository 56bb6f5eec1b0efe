"""botocore and aiohttp failures translated into :mod:`sdk.errors`, in one place.

S3 error codes decide before the HTTP status (HEAD replies have no body, so only their
status is known); failures below HTTP (connects, resets, timeouts, bodies cut short) are
:class:`~sdk.errors.TransientError`, which :mod:`sdk.retry` retries.  botocore's own retries
are off, so retries are not multiplied by two layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from sdk.errors import (
    AlreadyExists,
    BlobfsError,
    InvalidRequest,
    NotEmpty,
    PermissionDenied,
    PreconditionFailed,
    ResourceNotFound,
    TransientError,
)

#: The one table from S3 error codes to sdk errors.  Codes not listed fall back on the HTTP
#: status (:data:`_BY_STATUS`).
_BY_CODE: Mapping[str, type[BlobfsError]] = {
    "NoSuchKey": ResourceNotFound,
    "NoSuchBucket": ResourceNotFound,
    "NoSuchUpload": ResourceNotFound,
    "NotFound": ResourceNotFound,
    "BucketAlreadyExists": AlreadyExists,
    "BucketAlreadyOwnedByYou": AlreadyExists,
    "AccessDenied": PermissionDenied,
    "AllAccessDisabled": PermissionDenied,
    "InvalidAccessKeyId": PermissionDenied,
    "SignatureDoesNotMatch": PermissionDenied,
    "InvalidToken": PermissionDenied,
    "ExpiredToken": PermissionDenied,
    "AccountProblem": PermissionDenied,
    "BucketNotEmpty": NotEmpty,
    "PreconditionFailed": PreconditionFailed,
    "InvalidRange": InvalidRequest,
    "EntityTooSmall": InvalidRequest,
    "EntityTooLarge": InvalidRequest,
    "InvalidPart": InvalidRequest,
    "InvalidPartOrder": InvalidRequest,
    "InvalidBucketName": InvalidRequest,
    "KeyTooLongError": InvalidRequest,
    "MalformedXML": InvalidRequest,
    "InvalidArgument": InvalidRequest,
    "InvalidRequest": InvalidRequest,
    "BadDigest": InvalidRequest,
    "InvalidDigest": InvalidRequest,
    "MetadataTooLarge": InvalidRequest,
    "SlowDown": TransientError,
    "Throttling": TransientError,
    "ThrottlingException": TransientError,
    "RequestThrottled": TransientError,
    "RequestLimitExceeded": TransientError,
    "TooManyRequestsException": TransientError,
    "RequestTimeout": TransientError,
    "InternalError": TransientError,
    "ServiceUnavailable": TransientError,
    "OperationAborted": TransientError,  # a conflicting bucket operation is in progress
}
_BY_STATUS: Mapping[int, type[BlobfsError]] = {
    400: InvalidRequest,
    401: PermissionDenied,
    403: PermissionDenied,
    404: ResourceNotFound,
    409: AlreadyExists,
    412: PreconditionFailed,
    416: InvalidRequest,
    429: TransientError,
}
#: Failures below the HTTP level: the connection broke, a timeout expired.
_TRANSIENT: tuple[type[BaseException], ...] = (
    HTTPClientError,  # ConnectionClosedError, ReadTimeoutError, ResponseStreamingError
    BotoConnectionError,  # EndpointConnectionError, ConnectTimeoutError
    IncompleteReadError,
    aiohttp.ClientError,
    ConnectionError,
    TimeoutError,
)


def translate(exc: BaseException, what: str) -> BlobfsError | None:
    """The sdk error for a botocore/aiohttp exception, or ``None`` if it is not one (a bug,
    a cancellation), with ``what`` (the operation and object) in its message."""
    cls: type[BlobfsError] | None
    if isinstance(exc, BlobfsError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
        if cls is None:
            cls = TransientError if status >= 500 else InvalidRequest if status else BlobfsError
        detail = error.get("Message") or code or f"HTTP {status}"
    elif isinstance(exc, _TRANSIENT):
        cls, detail = TransientError, str(exc) or type(exc).__name__
    elif isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        cls, detail = PermissionDenied, str(exc)
    elif isinstance(exc, ParamValidationError):
        cls, detail = InvalidRequest, str(exc)
    elif isinstance(exc, BotoCoreError):
        cls, detail = BlobfsError, str(exc)
    else:
        return None
    err = cls(f"{what}: {detail}")
    err.__cause__ = exc
    return err


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Raise what :func:`translate` makes of a botocore/aiohttp exception in the block."""
    try:
        yield
    except Exception as exc:
        err = translate(exc, what)
        if err is None or err is exc:
            raise
        raise err from exc


def error_code(exc: BaseException) -> str:
    """The S3 error code behind a translated error (``""`` when it came from elsewhere)."""
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def error_status(exc: BaseException) -> int:
    """The HTTP status behind a translated error (``0`` when it came from elsewhere)."""
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return 0


__all__ = ["error_code", "error_status", "translate", "translated"]
