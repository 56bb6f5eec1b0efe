"""S3 and S3-compatible stores (AWS, MinIO, SeaweedFS, ...) through aioboto3.

One aiobotocore client per store, opened once and reused: its connection pool is what makes
parallel part uploads and ranged reads fast.  botocore's own retries are off; transient
failures are retried in one place, :mod:`sdk.retry`, after :func:`translate` has turned every
botocore/aiohttp exception into an :mod:`sdk.errors` one.

Differences between servers that this module smooths over (found against SeaweedFS 4.x; the
contract tests in ``tests/test_store_contract.py`` pin them down):

* SeaweedFS deletes a bucket that still holds objects; :meth:`S3Admin.delete_bucket` checks
  that it is empty first, so :class:`~sdk.errors.NotEmpty` is raised as on AWS.
* SeaweedFS returns the ETag of ``CopyObject`` without quotes and aborting an upload twice
  succeeds, where AWS quotes ETags and answers ``NoSuchUpload``; ETags are always unquoted
  here and abort tolerates ``NoSuchUpload``.
* SeaweedFS orders a delimited listing by the directory name, so ``a/`` comes before ``a-``
  (``-`` sorts before ``/``); :meth:`S3Store.list` restores S3's order with a small
  hold-back buffer.  Undelimited listings keep the server's order: SeaweedFS walks its
  directory tree, so there ``a/x`` precedes ``a-``.
* SeaweedFS answers HEAD and GET of ``dir/`` when keys exist under ``dir/`` (or existed once)
  though no object ``dir/`` was written; that is reported as
  :class:`~sdk.errors.ResourceNotFound`, as S3 does.  It also drops the user metadata of a
  ``dir/`` marker object (not smoothed over: a test records it).
* SeaweedFS supports UploadPartCopy with ``CopySourceRange`` and ``CopySourceIfMatch``
  (copies in parts, :mod:`sdk.providers.part_copy`; the contract tests replace the source
  between two parts and see the server refuse the second), and CopyObject keeps the source's
  ETag as AWS does.  It cannot CopyObject a ``dir/`` marker (``NoSuchKey``; its folders are
  not objects), and it keeps a folder listed as a common prefix after its last key is
  deleted, until its ``dir/`` key is deleted too; the file system's directory rename allows
  for both (:meth:`blobfs.fs.core.Filesystem._rename_dir`).
* SeaweedFS sniffs a content type when none is sent; an explicit
  ``application/octet-stream`` is always sent so every provider reports the same.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.credentials import ReadOnlyCredentials
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
from botocore.utils import parse_timestamp as botocore_parse_timestamp

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
from sdk.providers import check_expiry
from sdk.providers.base import (
    CopySettings,
    CredentialTimes,
    IssuedCredentials,
    ObjectInfo,
    OnLoop,
    PersistentGrant,
    PrefixInfo,
    TrioDirect,
)
from sdk.providers.part_copy import copy_in_parts
from sdk.providers.s3.direct import HASH_IN_THREAD, Response, S3Direct, sendable
from sdk.retry import ATTEMPTS, retried, retrying

if TYPE_CHECKING:
    from sdk.providers.s3.access import S3Access
    from sdk.providers.s3.direct_trio import S3DirectTrio

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: Enough connections for several transfers of 4-8 parallel parts each, plus listing.
MAX_POOL_CONNECTIONS = 64
CONNECT_TIMEOUT = 10.0
#: Longest wait for the next bytes of a response; a stalled read is retried after it.
READ_TIMEOUT = 60.0
#: Chunks a read stream asks the connection for.
READ_CHUNK = 1024 * 1024
#: S3's limit of keys per DeleteObjects request.
DELETE_BATCH = 1000
DELETE_CONCURRENCY = 4

# -- errors ------------------------------------------------------------------------------------

#: The one table from S3 error codes to sdk errors.  Codes not listed fall back on the HTTP
#: status (:data:`_BY_STATUS`): HEAD responses have no body, so only their status is known.
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
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        err = translate(exc, what)
        if err is None or err is exc:
            raise
        raise err from exc


def _code(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def _utc(value: datetime | None) -> datetime | None:
    # botocore parses listing times in the local zone and header times in UTC.
    return None if value is None else value.astimezone(UTC)


def _etag(raw: str) -> str:
    # One convention for every provider: ETags without the quotes HTTP puts around them.
    return raw.strip('"')


# -- clients -----------------------------------------------------------------------------------


def _is_aws(endpoint_url: str | None) -> bool:
    if endpoint_url is None:
        return True
    host = urlsplit(endpoint_url).hostname or ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


def _timestamp(value: str) -> datetime:
    """botocore's timestamp parsing without dateutil for the ISO 8601 form S3 listings use.

    dateutil took a third of the CPU of parsing a 1000-key ListObjectsV2 page; the C
    ``fromisoformat`` is ~50 times cheaper.  Other forms go to botocore's own parser.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        fallback: datetime = botocore_parse_timestamp(value)
        return fallback
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


_shared_loader: Any = None


def botocore_session() -> AioSession:
    """A botocore session for one client.

    All sessions share one data loader: a fresh one parses the S3 service model again,
    150-600 ms of CPU per store; with the loader shared a client opens in 15-40 ms, which
    matters because every bucket gets its own scoped store.  Timestamps are parsed by
    :func:`_timestamp`.
    """
    global _shared_loader
    session = AioSession()
    if _shared_loader is None:
        _shared_loader = session.get_component("data_loader")
    else:
        session.register_component("data_loader", _shared_loader)
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_timestamp
    )
    return session


def _session(credentials: Mapping[str, str], region: str | None) -> aioboto3.Session:
    """A session with explicit keys, or botocore's default chain when none are given."""
    kwargs: dict[str, Any] = {"region_name": region, "botocore_session": botocore_session()}
    if credentials.get("access_key_id"):
        kwargs["aws_access_key_id"] = credentials["access_key_id"]
        kwargs["aws_secret_access_key"] = credentials.get("secret_access_key", "")
        kwargs["aws_session_token"] = credentials.get("session_token") or None
    return aioboto3.Session(**kwargs)


def _config(endpoint_url: str | None) -> AioConfig:
    return AioConfig(
        signature_version="s3v4",
        # Other stores rarely have wildcard DNS for virtual-host buckets.
        s3={"addressing_style": "auto" if _is_aws(endpoint_url) else "path"},
        # One attempt: sdk.retry retries transient failures, with the error already
        # translated, so retries are not multiplied by two layers.
        retries={"max_attempts": 1, "mode": "standard"},
        max_pool_connections=MAX_POOL_CONNECTIONS,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        tcp_keepalive=True,
        # botocore >= 1.36 adds CRC32 trailers to every upload and checks them on download;
        # several S3-compatible stores reject or mangle them, and TCP plus the SigV4 payload
        # hash already guard the bytes.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


async def _open_client(
    stack: AsyncExitStack,
    credentials: Mapping[str, str],
    endpoint_url: str | None,
    region: str | None,
    session: aioboto3.Session | None = None,
) -> tuple[Any, aioboto3.Session]:
    if region is None and not _is_aws(endpoint_url):
        region = "us-east-1"  # SigV4 needs some region; S3-compatible stores accept this one
    if session is None:
        session = _session(credentials, region)
    with _translated(f"connect to {endpoint_url or 'AWS S3'}"):
        client = await stack.enter_async_context(
            session.client("s3", endpoint_url=endpoint_url, config=_config(endpoint_url))
        )
    return client, session


class _Client:
    """Calls through one aiobotocore client with translation and retries."""

    def __init__(self) -> None:
        self.client: Any = None
        #: Ranged GETs and PUTs without botocore's per-request cost (S3-compatible endpoints
        #: only; :mod:`sdk.providers.s3.direct`).
        self.direct: S3Direct | None = None
        self._stack = AsyncExitStack()

    async def open(
        self,
        credentials: Mapping[str, str],
        endpoint_url: str | None,
        region: str | None,
        *,
        session: aioboto3.Session | None = None,
    ) -> None:
        """Open the client with ``credentials``, or with ``session``'s own (renewing ones:
        :mod:`sdk.providers.s3.access`)."""
        self.client, session = await _open_client(
            self._stack, credentials, endpoint_url, region, session
        )
        endpoint = self.client.meta.endpoint_url
        if S3Direct.supports(endpoint):

            async def frozen() -> ReadOnlyCredentials:
                # The session's own credentials object: renewing ones renew here too.
                creds = await session.get_credentials()
                if creds is None:
                    raise PermissionDenied("no S3 credentials found")
                frozen: ReadOnlyCredentials = await creds.get_frozen_credentials()
                return frozen

            self.direct = S3Direct(
                endpoint,
                self.client.meta.region_name or "us-east-1",
                frozen,
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
            )

    async def close(self) -> None:
        self.client = None
        if self.direct is not None:
            self.direct.close()
            self.direct = None
        await self._stack.aclose()

    async def call(self, what: str, op: str, **params: Any) -> dict[str, Any]:
        """Run ``client.<op>(**params)``, retrying transient failures."""
        async for attempt in retrying():
            with attempt:
                return await self.call_once(what, op, **params)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def call_once(self, what: str, op: str, **params: Any) -> dict[str, Any]:
        """Run ``client.<op>(**params)`` once, errors translated (for callers that retry a
        larger step themselves)."""
        if self.client is None:
            raise RuntimeError("S3 client is closed")
        fn: Callable[..., Awaitable[dict[str, Any]]] = getattr(self.client, op)
        with _translated(what):
            return await fn(**params)


# -- admin -------------------------------------------------------------------------------------


class S3Admin:
    """Bucket administration on one S3 endpoint.

    ``credentials`` may hold ``access_key_id``, ``secret_access_key`` and ``session_token``
    (other keys are ignored); an empty mapping means botocore's default chain (environment,
    profile, instance role).
    """

    def __init__(
        self,
        endpoint_url: str | None,
        region: str | None,
        credentials: Mapping[str, str],
        *,
        sts_endpoint_url: str | None = None,
        iam_endpoint_url: str | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._credentials = dict(credentials)
        self._client: _Client | None = None
        self._lock = asyncio.Lock()
        self.credential_times = CredentialTimes()
        self._sts_endpoint_url = sts_endpoint_url
        self._iam_endpoint_url = iam_endpoint_url
        self._access_control: S3Access | None = None

    def __repr__(self) -> str:
        return f"S3Admin({self.endpoint_url or 'AWS'!r})"

    @property
    def _access(self) -> S3Access:
        # Imported here: s3_access builds on this module.
        from sdk.providers.s3.access import S3Access

        if self._access_control is None:
            self._access_control = S3Access(
                self,
                self._credentials,
                sts_endpoint_url=self._sts_endpoint_url,
                iam_endpoint_url=self._iam_endpoint_url,
            )
        return self._access_control

    async def _admin(self) -> _Client:
        async with self._lock:
            if self._client is None:
                client = _Client()
                await client.open(self._credentials, self.endpoint_url, self.region)
                self._client = client
            return self._client

    async def create_bucket(self, bucket_name: str) -> None:
        """Create ``bucket_name``; :class:`~sdk.errors.AlreadyExists` if it exists, even
        when it is our own (AWS's ``BucketAlreadyOwnedByYou``)."""
        client = await self._admin()
        params: dict[str, Any] = {"Bucket": bucket_name}
        if self.region and self.region != "us-east-1" and _is_aws(self.endpoint_url):
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        await client.call(f"create bucket {bucket_name}", "create_bucket", **params)

    async def delete_bucket(self, bucket_name: str) -> None:
        """Delete an empty bucket."""
        client = await self._admin()
        what = f"delete bucket {bucket_name}"
        # SeaweedFS would delete a bucket with objects in it: check first.
        page = await client.call(what, "list_objects_v2", Bucket=bucket_name, MaxKeys=1)
        if page.get("KeyCount", 0) or page.get("Contents"):
            raise NotEmpty(f"{what}: the bucket is not empty")
        await client.call(what, "delete_bucket", Bucket=bucket_name)

    async def open_bucket(
        self, bucket_name: str, credentials: Mapping[str, str] | None = None
    ) -> S3Store:
        """A store on ``bucket_name``, with the admin's credentials or an imported bucket's
        (``access_key_id``, ``secret_access_key``, ``endpoint_url``?, ``region_name``?,
        ``session_token``?); a missing endpoint or region falls back on the admin's."""
        if credentials is None:
            return await S3Store.open(
                bucket_name, self._credentials, endpoint_url=self.endpoint_url, region=self.region
            )
        return await S3Store.open(
            bucket_name,
            credentials,
            endpoint_url=credentials.get("endpoint_url") or self.endpoint_url,
            region=credentials.get("region_name") or self.region,
        )

    async def check_bucket(self, bucket_name: str, credentials: Mapping[str, str]) -> None:
        """Raise unless ``credentials`` can list ``bucket_name``."""
        store = await self.open_bucket(bucket_name, credentials)
        try:
            await store.client.call(
                f"list {bucket_name}", "list_objects_v2", Bucket=bucket_name, MaxKeys=1
            )
        finally:
            await store.close()

    # -- access control: sdk.providers.s3.access ----------------------------------------------

    async def open_scoped_bucket(self, bucket_name: str) -> S3Store:
        """A store on ``bucket_name`` with renewing STS credentials for it alone."""
        return await self._access.open_scoped_bucket(bucket_name)

    async def temporary_credentials(
        self, bucket_name: str, *, read_only: bool = False
    ) -> IssuedCredentials:
        """STS credentials for ``bucket_name`` alone (see :mod:`sdk.providers.s3.access`)."""
        return await self._access.temporary_credentials(bucket_name, read_only=read_only)

    async def create_persistent_credentials(
        self, credentials_id: str, bucket_names: Sequence[str], *, read_only: bool = False
    ) -> PersistentGrant:
        """An IAM user, access key and user policy for ``bucket_names``."""
        return await self._access.create_persistent_credentials(
            credentials_id, bucket_names, read_only=read_only
        )

    async def detach_persistent_credentials(
        self, state: Mapping[str, Any], bucket_name: str
    ) -> Mapping[str, Any]:
        """Drop ``bucket_name`` from the IAM user's policy."""
        return await self._access.detach_persistent_credentials(state, bucket_name)

    async def revoke_persistent_credentials(self, state: Mapping[str, Any]) -> None:
        """Delete the IAM user with its keys and policy."""
        await self._access.revoke_persistent_credentials(state)

    async def set_public_access(self, bucket_name: str, public: bool) -> None:
        """Add or remove blobfs's public-read statements in the bucket policy."""
        await self._access.set_public_access(bucket_name, public)

    async def close(self) -> None:
        """Close the admin's connections (stores it opened stay open)."""
        if self._access_control is not None:
            await self._access_control.close()
            self._access_control = None
        async with self._lock:
            if self._client is not None:
                await self._client.close()
                self._client = None


# -- store -------------------------------------------------------------------------------------


class S3Store:
    """A :class:`~sdk.providers.base.BlobStore` on one S3 bucket."""

    def __init__(self, bucket_name: str) -> None:
        self.bucket_name = bucket_name
        self.client = _Client()
        self.copy_settings = CopySettings()

    @classmethod
    async def open(
        cls,
        bucket_name: str,
        credentials: Mapping[str, str],
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> S3Store:
        """Open a store (and its connection pool) on ``bucket_name``."""
        store = cls(bucket_name)
        await store.client.open(credentials, endpoint_url, region)
        return store

    def _what(self, op: str, key: str) -> str:
        return f"{op} {self.bucket_name}/{key}"

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``."""
        what = self._what("head", key)
        r = await self.client.call(what, "head_object", Bucket=self.bucket_name, Key=key)
        if _is_implicit_directory(key, r):
            raise ResourceNotFound(f"{what}: no such key (only keys under it)")
        return ObjectInfo(
            key=key,
            size=int(r["ContentLength"]),
            etag=_etag(r["ETag"]),
            modified_at=_utc(r.get("LastModified")),
            metadata={k.lower(): v for k, v in (r.get("Metadata") or {}).items()},
            content_type=r.get("ContentType"),
        )

    # -- reading -----------------------------------------------------------------------------

    async def _get(
        self, key: str, offset: int, end: int | None, etag: str | None
    ) -> dict[str, Any] | None:
        """:meth:`_get_once`, retrying transient failures."""
        async for attempt in retrying():
            with attempt:
                return await self._get_once(key, offset, end, etag)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _get_once(
        self, key: str, offset: int, end: int | None, etag: str | None
    ) -> dict[str, Any] | None:
        """GET bytes ``offset``..``end`` (exclusive; ``None`` = to the end), or ``None`` when
        ``offset`` is at or past the end of the object."""
        params: dict[str, Any] = {"Bucket": self.bucket_name, "Key": key}
        if offset or end is not None:
            last = "" if end is None else str(end - 1)
            params["Range"] = f"bytes={offset}-{last}"
        if etag is not None:
            params["IfMatch"] = f'"{etag}"'
        what = self._what("read", key)
        try:
            resp = await self.client.call_once(what, "get_object", **params)
        except InvalidRequest as e:
            if _code(e) == "InvalidRange" or _status(e) == 416:
                return None
            raise
        if _is_implicit_directory(key, resp):
            resp["Body"].close()
            raise ResourceNotFound(f"{what}: no such key (only keys under it)")
        return resp

    def read(
        self,
        key: str,
        offset: int = 0,
        length: int | None = None,
        *,
        etag: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream part of ``key``.

        The stream is pinned to the version it opened on: if the connection breaks it is
        re-opened at the current offset with ``If-Match`` on that ETag, so a long read
        survives a dropped connection but never mixes two versions.
        """
        if offset < 0 or (length is not None and length < 0):
            raise InvalidRequest(f"invalid range offset={offset} length={length}")
        return self._read(key, offset, None if length is None else offset + length, etag)

    @asynccontextmanager
    async def _read(
        self, key: str, offset: int, end: int | None, etag: str | None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        if end == offset:
            # S3 has no empty range; still fail as a read of a missing key would.
            await self._check_etag(key, etag)
            yield _empty()
            return
        resp = await self._get(key, offset, end, etag)
        if resp is None:
            yield _empty()
            return
        stream = _BodyStream(self, key, offset, end, etag or _etag(resp["ETag"]), resp)
        try:
            yield stream.chunks()
        finally:
            stream.close()

    async def _check_etag(self, key: str, etag: str | None) -> None:
        info = await self.head(key)
        if etag is not None and info.etag != etag:
            raise PreconditionFailed(f"read {self.bucket_name}/{key}: no longer version {etag}")

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        """Up to ``length`` bytes at ``offset``, read in one request (retried whole)."""
        data = await self._read_range(key, offset, length, etag)
        return data if isinstance(data, bytes) else bytes(data)

    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview:
        """:meth:`read_range` without the copy of a directly received body into ``bytes``."""
        data = await self._read_range(key, offset, length, etag)
        return data if isinstance(data, memoryview) else memoryview(data)

    async def _read_range(
        self, key: str, offset: int, length: int, etag: str | None
    ) -> bytes | memoryview:
        if offset < 0 or length < 0:
            raise InvalidRequest(f"invalid range offset={offset} length={length}")
        if length == 0:
            await self._check_etag(key, etag)
            return b""
        what = self._what("read", key)
        getter = self.client.direct
        if getter is not None and key:  # botocore refuses an empty key
            fast = await retried(lambda: getter.get(self.bucket_name, key, offset, length, etag))
            if fast.body is not None and not _is_implicit_directory(key, _fast_head(fast)):
                return fast.body
            # Anything but a plain body (404, 412, 416, an implicit directory ...) is
            # asked again through botocore, whose translation gives the right error.
        # One retry loop around request and body: a body cut short is fetched again whole.
        async for attempt in retrying():
            with attempt:
                resp = await self._get_once(key, offset, offset + length, etag)
                if resp is None:
                    return b""
                body = resp["Body"]
                try:
                    with _translated(what):
                        data: bytes = await body.read()
                finally:
                    body.close()
                return data
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    # -- listing -----------------------------------------------------------------------------

    async def list(
        self, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | PrefixInfo]:
        """Keys under ``prefix``, paging through ``ListObjectsV2`` 1000 at a time."""
        if delimiter == "":
            raise InvalidRequest("delimiter must not be empty")
        params: dict[str, Any] = {"Bucket": self.bucket_name, "Prefix": prefix, "MaxKeys": 1000}
        if delimiter:
            params["Delimiter"] = delimiter
        order = _Reorder(delimiter) if delimiter else None
        while True:
            page = await self.client.call(self._what("list", prefix), "list_objects_v2", **params)
            entries: list[ObjectInfo | PrefixInfo] = [
                ObjectInfo(
                    key=o["Key"],
                    size=int(o["Size"]),
                    etag=_etag(o.get("ETag", "")),
                    modified_at=_utc(o.get("LastModified")),
                )
                for o in page.get("Contents") or ()
            ]
            if delimiter:
                # S3 returns keys and prefixes in two lists; merge them in key order.
                entries += [PrefixInfo(key=p["Prefix"]) for p in page.get("CommonPrefixes") or ()]
                entries.sort(key=lambda e: e.key)
            for entry in entries if order is None else order.feed(entries):
                yield entry
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
            params["ContinuationToken"] = token
        if order is not None:
            for entry in order.flush():
                yield entry

    # -- writing -----------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> str:
        """Create or replace ``key`` in one PUT."""
        headers = _put_headers(metadata, content_type)
        etag = await self._put_direct(self._what("put", key), key, data, headers)
        if etag is not None:
            return etag
        r = await self.client.call(
            self._what("put", key),
            "put_object",
            Bucket=self.bucket_name,
            Key=key,
            Body=data,
            Metadata=_metadata(metadata),
            ContentType=content_type or DEFAULT_CONTENT_TYPE,
        )
        return _etag(r["ETag"])

    async def _put_direct(
        self,
        what: str,
        key: str,
        data: bytes,
        headers: Mapping[str, str],
        query: Sequence[tuple[str, str]] = (),
    ) -> str | None:
        """PUT ``data`` through the direct client, retrying transient failures; return the
        ETag, or ``None`` when there is no direct client, ``headers`` cannot go on the wire
        as they are, or the reply was anything but a plain success: then the caller repeats
        the request through botocore (PUT and UploadPart are idempotent), whose error
        translation applies."""
        direct = self.client.direct
        if direct is None or not _goes_direct(key, headers):
            return None

        async def put() -> Response:
            try:
                return await direct.put(self.bucket_name, key, data, headers=headers, query=query)
            except TransientError as e:
                raise TransientError(f"{what}: {e}") from e

        return _direct_etag(await retried(put))

    def trio_direct(self, on_loop: OnLoop) -> TrioDirect | None:
        """Small PUTs and small ranged reads from a trio task, without crossing to this
        store's loop (:mod:`sdk.providers.s3.direct_trio`; the
        :class:`~sdk.providers.base.OffersTrioDirect` capability), or ``None`` where the
        direct client does not serve the endpoint (AWS).  ``on_loop`` reaches this store's
        loop: the credentials are fetched there, so renewing ones keep renewing in one
        place."""
        direct = self.client.direct
        if direct is None:
            return None
        # Imported here: trio is for trio programs; asyncio users of the sdk never load it.
        from sdk.providers.s3.direct_trio import SMALL_GET, S3DirectTrio

        source = direct.credentials

        async def credentials() -> ReadOnlyCredentials:
            return await on_loop(source)

        client = S3DirectTrio(
            direct.endpoint.url,
            direct.region,
            credentials,
            connect_timeout=direct.connect_timeout,
            read_timeout=direct.read_timeout,
        )
        return _TrioDirect(self, client, SMALL_GET)

    async def start_multipart(
        self,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> S3Upload:
        """Begin a multipart upload of ``key``."""
        r = await self.client.call(
            self._what("start upload of", key),
            "create_multipart_upload",
            Bucket=self.bucket_name,
            Key=key,
            Metadata=_metadata(metadata),
            ContentType=content_type or DEFAULT_CONTENT_TYPE,
        )
        return S3Upload(self, key, r["UploadId"])

    async def copy(
        self,
        src_key: str,
        dst_key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> str:
        """Server-side copy: one CopyObject up to :attr:`copy_settings` ``.threshold``
        (at most 5 GiB, CopyObject's limit), else UploadPartCopy parts in parallel."""
        if metadata is None and size is not None and size <= self.copy_settings.threshold:
            try:
                return await self._copy_object(src_key, dst_key, {})
            except InvalidRequest:
                pass  # grown past what one request may copy since it was listed
        # The HEAD gives the size that picks the method, the content type a REPLACE or a
        # multipart upload must restate, and the version every request is pinned to.
        src = await self.head(src_key)
        if src.size > self.copy_settings.threshold:
            upload = await self.start_multipart(
                dst_key,
                metadata=src.metadata if metadata is None else metadata,
                content_type=src.content_type,
            )
            return await copy_in_parts(upload, src, self.copy_settings)
        params: dict[str, Any] = {"CopySourceIfMatch": f'"{src.etag}"'}
        if metadata is not None:
            # REPLACE would also reset the content type: carry the source's over.
            params.update(
                MetadataDirective="REPLACE",
                Metadata=_metadata(metadata),
                ContentType=src.content_type or DEFAULT_CONTENT_TYPE,
            )
        return await self._copy_object(src_key, dst_key, params)

    async def _copy_object(self, src_key: str, dst_key: str, params: dict[str, Any]) -> str:
        r = await self.client.call(
            f"copy {self.bucket_name}/{src_key} to {dst_key}",
            "copy_object",
            Bucket=self.bucket_name,
            Key=dst_key,
            CopySource={"Bucket": self.bucket_name, "Key": src_key},
            **params,
        )
        return _etag(r["CopyObjectResult"]["ETag"])

    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Delete ``key``.  S3 is silent about missing keys, so unless ``missing_ok`` a HEAD
        first makes it raise :class:`~sdk.errors.ResourceNotFound`."""
        if not missing_ok:
            await self.head(key)
        await self.client.call(
            self._what("delete", key), "delete_object", Bucket=self.bucket_name, Key=key
        )

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` with DeleteObjects, 1000 per request, a few requests at once."""
        slots = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def batch(chunk: Sequence[str]) -> None:
            async with slots:
                r = await self.client.call(
                    f"delete {len(chunk)} keys from {self.bucket_name}",
                    "delete_objects",
                    Bucket=self.bucket_name,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            for err in r.get("Errors") or ():
                if err.get("Code") == "NoSuchKey":
                    continue
                exc = ClientError(
                    {"Error": err, "ResponseMetadata": r.get("ResponseMetadata", {})},
                    "DeleteObjects",
                )
                translated = translate(exc, self._what("delete", err.get("Key", "?")))
                assert translated is not None
                raise translated

        try:
            async with asyncio.TaskGroup() as tg:
                for start in range(0, len(keys), DELETE_BATCH):
                    tg.create_task(batch(keys[start : start + DELETE_BATCH]))
        except BaseExceptionGroup as group:
            first = group.exceptions[0]  # an sdk error: raise it, not the group
            raise first from first.__cause__

    async def sign_url(self, key: str, expires_in_seconds: int) -> str:
        """A presigned GET URL (SigV4, so at most 7 days)."""
        check_expiry(expires_in_seconds)
        if self.client.client is None:
            raise RuntimeError("S3 client is closed")
        with _translated(self._what("sign", key)):
            url: str = await self.client.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket_name, "Key": key},
                ExpiresIn=expires_in_seconds,
            )
        return url

    async def pending_uploads(self, prefix: str = "") -> builtins.list[str]:
        """Keys of multipart uploads in progress (not part of the protocol; for tests and
        clean-up)."""
        keys: builtins.list[str] = []
        params: dict[str, Any] = {"Bucket": self.bucket_name, "Prefix": prefix}
        while True:
            r = await self.client.call(
                f"list uploads in {self.bucket_name}", "list_multipart_uploads", **params
            )
            keys += [u["Key"] for u in r.get("Uploads") or ()]
            if not r.get("IsTruncated"):
                return sorted(keys)
            params.update(KeyMarker=r["NextKeyMarker"], UploadIdMarker=r["NextUploadIdMarker"])

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.close()


class _TrioDirect:
    """:meth:`S3Store.trio_direct`'s :class:`~sdk.providers.base.TrioDirect`: the store's
    PUT (same headers, same rules for taking the direct path) for bodies small enough to
    hash on the caller's thread, and the direct path of its :meth:`~S3Store.read_view` for
    ranges of at most ``small_get`` bytes, over
    :class:`~sdk.providers.s3.direct_trio.S3DirectTrio`."""

    def __init__(self, store: S3Store, client: S3DirectTrio, small_get: int) -> None:
        self._store = store
        #: The trio client (its counters are for tests and logs).
        self.client = client
        self._small_get = small_get

    async def put(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> str | None:
        headers = _put_headers(metadata, None)
        if len(data) >= HASH_IN_THREAD or not _goes_direct(key, headers):
            return None
        try:
            response = await self.client.put(self._store.bucket_name, key, data, headers=headers)
        except TransientError as e:
            # The caller repeats it on the store's loop, which retries with backoff.
            log.debug("%s from trio: %s", self._store._what("put", key), e)
            return None
        return _direct_etag(response)

    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview | None:
        # What S3Store._read_range takes from its direct client, and nothing more: bad and
        # empty ranges (an error, a HEAD), an empty key, anything but a 200/206 body, and an
        # implicit directory's answer go to the store, which answers them as it always does.
        if offset < 0 or length <= 0 or length > self._small_get or not key:
            return None
        try:
            response = await self.client.get(self._store.bucket_name, key, offset, length, etag)
        except TransientError as e:
            log.debug("%s from trio: %s", self._store._what("read", key), e)
            return None
        if response.body is None or _is_implicit_directory(key, _fast_head(response)):
            return None
        return response.body

    async def aclose(self) -> None:
        await self.client.aclose()


class S3Upload:
    """A multipart upload on S3; parts may be sent concurrently."""

    def __init__(self, store: S3Store, key: str, upload_id: str) -> None:
        self.key = key
        self.upload_id = upload_id
        self._store = store
        self._parts: dict[int, str] = {}
        self._what = store._what("upload", key)

    async def upload_part(self, part_number: int, data: bytes) -> None:
        """Upload one part; sending a number again replaces that part."""
        if not 1 <= part_number <= 10_000:
            raise InvalidRequest(f"part number {part_number} outside 1..10000")
        what = f"{self._what} part {part_number}"
        query = (("partNumber", str(part_number)), ("uploadId", self.upload_id))
        etag = await self._store._put_direct(what, self.key, data, {}, query)
        if etag is not None:
            self._parts[part_number] = etag
            return
        r = await self._store.client.call(
            what,
            "upload_part",
            Bucket=self._store.bucket_name,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=part_number,
            Body=data,
        )
        self._parts[part_number] = _etag(r["ETag"])

    async def copy_part(
        self, part_number: int, src_key: str, offset: int, length: int, *, etag: str
    ) -> None:
        """Make one part a server-side copy of a range of ``src_key`` (UploadPartCopy)."""
        if not 1 <= part_number <= 10_000:
            raise InvalidRequest(f"part number {part_number} outside 1..10000")
        if length < 1:
            raise InvalidRequest(f"{self._what}: empty copy range")
        r = await self._store.client.call(
            f"{self._what} part {part_number} from {src_key}",
            "upload_part_copy",
            Bucket=self._store.bucket_name,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=part_number,
            CopySource={"Bucket": self._store.bucket_name, "Key": src_key},
            CopySourceRange=f"bytes={offset}-{offset + length - 1}",
            CopySourceIfMatch=f'"{etag}"',
        )
        self._parts[part_number] = _etag(r["CopyPartResult"]["ETag"])

    async def complete(self) -> str:
        """Assemble the parts; return the object's ETag."""
        if not self._parts:
            raise InvalidRequest(f"{self._what}: no parts were uploaded")
        numbers = sorted(self._parts)
        parts = [{"PartNumber": n, "ETag": f'"{self._parts[n]}"'} for n in numbers]
        failed_once = False
        async for attempt in retrying():
            with attempt:
                try:
                    with _translated(f"{self._what}: complete"):
                        r = await self._store.client.client.complete_multipart_upload(
                            Bucket=self._store.bucket_name,
                            Key=self.key,
                            UploadId=self.upload_id,
                            MultipartUpload={"Parts": parts},
                        )
                except TransientError:
                    failed_once = True
                    raise
                except ResourceNotFound as e:
                    # A retry after a reply lost in transit: the upload may have completed.
                    if failed_once and _code(e) == "NoSuchUpload":
                        expected = _multipart_etag([self._parts[n] for n in numbers])
                        if (await self._store.head(self.key)).etag == expected:
                            return expected
                    raise
                return _etag(r["ETag"])
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def abort(self) -> None:
        """Abort the upload; an upload that is already gone counts as aborted."""
        try:
            await self._store.client.call(
                f"{self._what}: abort",
                "abort_multipart_upload",
                Bucket=self._store.bucket_name,
                Key=self.key,
                UploadId=self.upload_id,
            )
        except ResourceNotFound as e:
            if _code(e) != "NoSuchUpload":
                raise


# -- helpers -----------------------------------------------------------------------------------


class _BodyStream:
    """Chunks of one GET response, re-opened at the current offset when the connection
    breaks."""

    def __init__(
        self,
        store: S3Store,
        key: str,
        offset: int,
        end: int | None,
        etag: str,
        resp: dict[str, Any],
    ) -> None:
        self._store = store
        self._key = key
        self._offset = offset
        self._end = end
        self._etag = etag
        self._body: Any = resp["Body"]

    async def chunks(self) -> AsyncIterator[bytes]:
        what = self._store._what("read", self._key)
        failures = 0
        while True:
            try:
                with _translated(what):
                    chunk: bytes = await self._body.read(READ_CHUNK)
            except TransientError:
                failures += 1
                if failures >= ATTEMPTS:
                    raise
                log.info("%s: connection broke at offset %d; resuming", what, self._offset)
                await self._reopen()
                continue
            if not chunk:
                return
            failures = 0
            self._offset += len(chunk)
            yield chunk

    async def _reopen(self) -> None:
        self.close()
        self._body = None
        if self._end is not None and self._offset >= self._end:
            self._body = _EmptyBody()
            return
        resp = await self._store._get(self._key, self._offset, self._end, self._etag)
        self._body = _EmptyBody() if resp is None else resp["Body"]

    def close(self) -> None:
        if self._body is not None:
            self._body.close()


class _EmptyBody:
    async def read(self, amt: int) -> bytes:
        return b""

    def close(self) -> None:
        pass


async def _empty() -> AsyncIterator[bytes]:
    return
    yield


def _fast_head(response: Response) -> dict[str, Any]:
    """The fields :func:`_is_implicit_directory` reads, from a raw GET response."""
    return {
        "ETag": response.headers.get("etag", ""),
        "ContentType": response.headers.get("content-type"),
    }


def _is_implicit_directory(key: str, resp: Mapping[str, Any]) -> bool:
    """SeaweedFS answers HEAD/GET of ``dir/`` for a directory that only exists because keys
    lie under it (or once did), with an ETag ending in ``-0``; S3 answers 404 because no
    such object was ever written.  No real object has a zero-part multipart ETag."""
    return (
        key.endswith("/")
        and str(resp.get("ETag", "")).strip('"').endswith("-0")
        and resp.get("ContentType") == "application/x-directory"
    )


def _status(exc: BaseException) -> int:
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return 0


def _metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (metadata or {}).items()}


def _put_headers(metadata: Mapping[str, str] | None, content_type: str | None) -> dict[str, str]:
    """The headers of a PutObject on a direct client: the user metadata as
    ``x-amz-meta-*`` (names lower-case, as botocore's ``Metadata``) and an explicit content
    type (SeaweedFS would sniff one: see the module docstring)."""
    headers = {f"x-amz-meta-{k}": v for k, v in _metadata(metadata).items()}
    headers["Content-Type"] = content_type or DEFAULT_CONTENT_TYPE
    return headers


def _goes_direct(key: str, headers: Mapping[str, str]) -> bool:
    """Whether a PUT of ``key`` with ``headers`` may take a direct client: it needs a key
    (``/bucket/`` is the bucket; botocore refuses an empty key) and headers that go on the
    wire as they are (botocore encodes or refuses the others)."""
    return bool(key) and sendable(headers)


def _direct_etag(response: Response) -> str | None:
    """The ETag of a direct PUT that plainly succeeded (200 with an ETag), else ``None``:
    the caller repeats the request through botocore, whose translation gives the error."""
    etag = response.headers.get("etag")
    return _etag(etag) if response.status == 200 and etag else None


def _multipart_etag(part_etags: list[str]) -> str:
    """S3's ETag of a multipart object: md5 of the parts' binary md5s, dash, part count."""
    digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in part_etags), usedforsecurity=False)
    return f"{digest.hexdigest()}-{len(part_etags)}"


class _Reorder:
    """Restore S3's key order in a delimited listing from servers that order by name.

    SeaweedFS sorts the entries of one level by name and reports the directory ``a`` as the
    prefix ``a/`` at the position of ``a``, before ``a-`` and ``a.txt`` (both sort before
    ``a/``).  Every later entry sorts after the *name* of the current one (``a`` for ``a/``),
    so anything held with a key at most that name can be released.  Only prefixes are ever
    held, and only until the few names between ``a`` and ``a/`` have passed; for a server in
    S3 order nothing changes.
    """

    def __init__(self, delimiter: str) -> None:
        self._delimiter = delimiter
        self._held: list[tuple[str, ObjectInfo | PrefixInfo]] = []

    def feed(self, entries: list[ObjectInfo | PrefixInfo]) -> Iterator[ObjectInfo | PrefixInfo]:
        for entry in entries:
            bisect.insort(self._held, (entry.key, entry), key=lambda t: t[0])
            name = entry.key
            if isinstance(entry, PrefixInfo):
                name = name[: -len(self._delimiter)]
            n = bisect.bisect_right(self._held, name, key=lambda t: t[0])
            ready, self._held[:n] = self._held[:n], []
            for _, e in ready:
                yield e

    def flush(self) -> Iterator[ObjectInfo | PrefixInfo]:
        held, self._held = self._held, []
        for _, e in held:
            yield e
