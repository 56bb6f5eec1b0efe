"""Azure Blob Storage provider: the :mod:`sdk.providers.base` protocol on azure-storage-blob aio.

A provider bucket is a container.  Semantics follow the S3 provider so that the contract tests
run unchanged on both; where Azure differs the difference is absorbed here:

* ETags are returned without the quotes Azure puts around them.
* Multipart uploads are block blobs: each part is a staged block (``stage_block``) and
  :meth:`~AzureMultipartUpload.complete` commits the block list in part-number order.  Azure
  has no "abort": uncommitted blocks are garbage-collected by the service after 7 days, so
  :meth:`~AzureMultipartUpload.abort` only makes the upload unusable.  Nothing is visible
  before the commit, so a failed upload never leaves a blob behind.
* Azurite (the emulator) returns the common prefixes of a delimited listing page before the
  blobs of that page; every page is sorted here, which restores key order because each page is
  a contiguous range of the key space.
* Azurite rejects blob batches (``InvalidInput``); :meth:`AzureStore.delete_many` falls back
  to concurrent single deletes the first time a batch is refused and stays on that path.

* A long read is a series of ranged GETs (``download_blob(offset, length, etag=...,
  match_condition=IfNotModified)``) pinned to the first response's ETag, one request ahead of
  the consumer, instead of the SDK's ``chunks()``, which fetches its chunks strictly one
  after another and whose first response is as large as the largest chunk.  A broken
  request is retried at its own offset.  S3 streams one response and keeps serving the old
  version when the object is replaced mid-read; here such a read fails with
  :class:`~sdk.errors.PreconditionFailed` once it reaches the next request.

Errors are translated in one place (:func:`translate_error`) and transient failures are retried
by :mod:`sdk.retry`; the azure-core retry policy is switched off (``retry_total=0``) so that
retries are not multiplied by two layers.  One exception: the SDK's downloader retries a
broken response body up to three times (1 s apart) on its own and that cannot be turned off.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import collections
import email.utils
import functools
import ipaddress
import logging
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, ParamSpec, TypeVar
from urllib.parse import quote, unquote, urlencode, urlsplit

import aiohttp
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    DecodeError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest
from azure.storage.blob import (
    BlobBlock,
    BlobProperties,
    BlobSasPermissions,
    ContentSettings,
    generate_blob_sas,
)
from azure.storage.blob.aio import (
    BlobClient,
    BlobServiceClient,
    ContainerClient,
    StorageStreamDownloader,
)

from ..errors import (
    AlreadyExists,
    BlobfsError,
    ConfigError,
    InvalidRequest,
    NotEmpty,
    PermissionDenied,
    PreconditionFailed,
    ResourceNotFound,
    TransientError,
)
from ..retry import retry_transient
from .base import (
    MIN_PART_SIZE,
    CredentialTimes,
    IssuedCredentials,
    ObjectInfo,
    PersistentGrant,
    PrefixInfo,
)

if TYPE_CHECKING:
    from .azure_access import AzureAccess

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

__all__ = [
    "AzureAdmin",
    "AzureMultipartUpload",
    "AzureStore",
    "translate_error",
    "validate_container_name",
]

MiB: Final = 1024 * 1024

#: Client options shared by every client this module creates.
#:
#: 8 MiB requests: large enough that per-request overhead stays small (a ranged GET from
#: Azurite on loopback costs ~7 ms at 4 KiB and ~26 ms at 8 MiB, so 8 MiB requests run at
#: ~300 MiB/s where 1 MiB ones manage ~70), small enough that a read buffers little memory
#: and a failed request re-sends little.  ``retry_total=0``: retries are decided by :mod:`sdk.retry`
#: on translated errors, not by azure-core as well.  The aiohttp transport azure-core creates
#: has a pool of 100 connections with no per-host cap, plenty for 4-16 requests in flight.
_REQUEST_SIZE: Final = 8 * MiB
_CLIENT_OPTIONS: Final[dict[str, Any]] = {
    "max_single_put_size": _REQUEST_SIZE,
    "max_block_size": _REQUEST_SIZE,
    "max_single_get_size": _REQUEST_SIZE,
    "max_chunk_get_size": _REQUEST_SIZE,
    "retry_total": 0,
    "connection_timeout": 20,
    "read_timeout": 60,
}

#: A stream's first request: small, so the first bytes come soon.  The following requests
#: double up to ``_REQUEST_SIZE``.
_FIRST_READ: Final = 1 * MiB
#: Requests a stream keeps in flight beyond the one being consumed: they hide the latency of
#: one request behind the transfer of another.
_READ_AHEAD: Final = 1
#: Requests in flight for one :meth:`AzureStore.read_range` longer than ``_REQUEST_SIZE``.
_RANGE_CONCURRENCY: Final = 4
#: Largest :meth:`AzureStore.put` sent as one request, and its block size above that.
PUT_BLOCK_SIZE: Final = _REQUEST_SIZE
#: Blocks staged concurrently by :meth:`AzureStore.put` when the data is larger than one block.
_PUT_CONCURRENCY: Final = 4
#: Blob clients kept per store for reuse.
_BLOB_CLIENTS: Final = 256
#: Single deletes in flight when blob batches are not available.
_DELETE_CONCURRENCY: Final = 16
#: Most sub-requests Azure accepts in one blob batch.
_BATCH_SIZE: Final = 256
#: Azure's largest listing page.
_LIST_PAGE_SIZE: Final = 5000
#: Same limits as S3 multipart uploads, for parity (Azure itself allows 50,000 blocks).
_MAX_PART_NUMBER: Final = 10_000
#: Signed URLs: the reference limits them to 1 s .. 7 days.
_MIN_SIGN_SECONDS: Final = 1
_MAX_SIGN_SECONDS: Final = 7 * 24 * 3600

#: Azurite's well-known development account, used for ``UseDevelopmentStorage=true``.
_DEV_ACCOUNT: Final = "devstoreaccount1"
_DEV_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

# Container names: 3-63 characters of lower-case letters, digits and single hyphens, starting
# and ending with a letter or digit.  Azurite does not enforce all of it, so it is checked here.
_CONTAINER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


def validate_container_name(name: str) -> None:
    """Raise :class:`~sdk.errors.InvalidRequest` unless ``name`` is a valid container name."""
    if not _CONTAINER_NAME.match(name):
        raise InvalidRequest(
            f"invalid Azure container name {name!r}: use 3-63 lower-case letters, digits and "
            "single hyphens, starting and ending with a letter or digit"
        )


# -- errors -------------------------------------------------------------------------------------

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

#: What :func:`_errors` catches: everything the Azure client and its transport raise.
_WIRE_ERRORS: Final = (AzureError, aiohttp.ClientError, ConnectionError, TimeoutError)


def _error_code(e: BaseException) -> str | None:
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
    code = _error_code(e)
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
def _errors(what: str) -> Iterator[None]:
    """Translate Azure client failures raised in the block into :mod:`sdk.errors`."""
    try:
        yield
    except _WIRE_ERRORS as e:
        raise translate_error(e, what) from e


#: Azure metadata names are C# identifiers (they travel as ``x-ms-meta-<name>`` headers).
_METADATA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Azure's (and S3's) longest key, in bytes.
_MAX_KEY_BYTES: Final = 1024


def _check_key(key: str) -> None:
    if not key or len(key.encode()) > _MAX_KEY_BYTES:
        raise InvalidRequest(f"invalid key {key!r}: must be 1 to {_MAX_KEY_BYTES} bytes")


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Lower-cased metadata, refused up front where Azure would refuse it with less detail.

    Names must be identifiers (letters, digits, ``_``): Azure rejects ``-`` which S3 allows,
    so portable callers should stick to identifiers.  Values must be ASCII, as on S3.
    """
    out: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if not _METADATA_NAME.match(name) or not value.isascii():
            raise InvalidRequest(
                f"metadata {name!r}={value!r}: Azure needs names made of letters, digits and "
                "'_' (not starting with a digit) and ASCII values"
            )
        out[name.lower()] = value
    return out


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise InvalidRequest(f"invalid range offset={offset} length={length}")


def _strip_etag(etag: object) -> str:
    """Azure's ETag (``"0x8DC..."``) without its quotes, as the S3 provider returns them."""
    return str(etag or "").strip('"')


def _quote_etag(etag: str) -> str:
    # Azure accepts both, but If-Match is defined on quoted entity tags.
    return etag if etag.startswith('"') else f'"{etag}"'


def _retried(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """:func:`sdk.retry.retry_transient`, typed so a decorated method stays a coroutine
    function: the protocols declare ``async def`` methods, which mypy reads as returning a
    ``Coroutine``, and ``retry_transient`` promises only an ``Awaitable``."""
    retried = retry_transient(fn)

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return await retried(*args, **kwargs)

    return wrapper


# -- credentials --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Auth:
    """Where an account is and how to authenticate to it."""

    account_url: str
    account_name: str | None
    account_key: str | None
    sas_token: str | None

    def credential(self) -> str | dict[str, str] | None:
        if self.account_key:
            if not self.account_name:
                raise ConfigError(f"cannot tell the account name of {self.account_url}")
            return {"account_name": self.account_name, "account_key": self.account_key}
        return self.sas_token

    def client(self) -> BlobServiceClient:
        return BlobServiceClient(self.account_url, credential=self.credential(), **_CLIENT_OPTIONS)


def _account_from_url(url: str) -> str | None:
    """``acct`` of ``https://acct.blob.core.windows.net`` or of ``http://127.0.0.1:10000/acct``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        path_style = True
    except ValueError:
        path_style = host == "localhost" or "." not in host
    if path_style:
        first = parts.path.strip("/").split("/", 1)[0]
        return first or None
    return host.split(".", 1)[0] or None


def _parse_connection_string(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.strip().split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError("malformed Azure connection string (expected Name=value;...)")
        fields[name.strip().lower()] = value.strip()
    return fields


def _resolve_auth(
    endpoint_url: str | None, credentials: Mapping[str, str], default_url: str | None = None
) -> _Auth:
    """Accepts the cluster form (``account_name``+``account_key``, ``sas_token`` or
    ``connection_string``) and the imported-bucket form (``storage_endpoint`` with
    ``credential`` = account key or ``sas_token``).  ``default_url`` is the account URL to
    use when the credentials name none (neither endpoint nor account)."""
    endpoint = endpoint_url or credentials.get("storage_endpoint") or None
    if credentials.get("connection_string"):
        cs = _parse_connection_string(credentials["connection_string"])
        if cs.get("usedevelopmentstorage", "").lower() == "true":
            url = endpoint or f"http://127.0.0.1:10000/{_DEV_ACCOUNT}"
            return _Auth(url.rstrip("/"), _DEV_ACCOUNT, _DEV_KEY, None)
        name = cs.get("accountname")
        blob_endpoint = endpoint or cs.get("blobendpoint")
        if blob_endpoint:
            url = blob_endpoint
        else:
            if not name:
                raise ConfigError(
                    "Azure connection string names neither BlobEndpoint nor AccountName"
                )
            protocol = cs.get("defaultendpointsprotocol", "https")
            suffix = cs.get("endpointsuffix", "core.windows.net")
            url = f"{protocol}://{name}.blob.{suffix}"
        sas = cs.get("sharedaccesssignature")
        return _Auth(
            url.rstrip("/"),
            name or _account_from_url(url),
            cs.get("accountkey") or None,
            sas.lstrip("?") if sas else None,
        )
    key = credentials.get("account_key") or credentials.get("credential")
    sas = credentials.get("sas_token")
    name = credentials.get("account_name")
    if not key and not sas:
        raise ConfigError(
            "Azure credentials need account_name + account_key, sas_token or connection_string"
        )
    if not endpoint:
        if name:
            endpoint = f"https://{name}.blob.core.windows.net"
        elif default_url:
            endpoint = default_url
        else:
            raise ConfigError("Azure credentials without an endpoint URL need account_name")
    endpoint = endpoint.rstrip("/")
    return _Auth(
        endpoint,
        name or _account_from_url(endpoint),
        key or None,
        sas.lstrip("?") if sas and not key else None,
    )


# -- the store ----------------------------------------------------------------------------------


def _parse_listing(body: bytes) -> tuple[list[ObjectInfo | PrefixInfo], str | None]:
    """Entries (sorted by key) and next marker of a List Blobs response body."""
    root = ET.fromstring(body)
    entries: list[ObjectInfo | PrefixInfo] = []
    blobs = root.find("Blobs")
    for item in blobs if blobs is not None else ():
        name_el = item.find("Name")
        if name_el is None:
            continue
        name = name_el.text or ""
        if name_el.get("Encoded") == "true":
            # Names with characters XML cannot carry come percent-encoded.
            name = unquote(name)
        if item.tag == "BlobPrefix":
            entries.append(PrefixInfo(key=name))
        elif item.tag == "Blob":
            props = item.find("Properties")
            if props is None:
                raise ValueError(f"blob {name!r} without properties")
            entries.append(
                ObjectInfo(
                    key=name,
                    size=int(props.findtext("Content-Length") or 0),
                    etag=_strip_etag(props.findtext("Etag")),
                    modified_at=_http_date(props.findtext("Last-Modified")),
                    created_at=_http_date(props.findtext("Creation-Time")),
                )
            )
    # Azurite puts a page's prefixes before its blobs; Azure already sorts.  Pages cover
    # contiguous key ranges, so sorting each page gives the global order.
    entries.sort(key=lambda entry: entry.key)
    return entries, root.findtext("NextMarker") or None


def _http_date(text: str | None) -> datetime | None:
    return email.utils.parsedate_to_datetime(text) if text else None


@dataclass(frozen=True)
class _Fetched:
    data: bytes
    etag: str
    total: int  # size of the whole blob


async def _no_chunks() -> AsyncGenerator[bytes, None]:
    return
    yield


class AzureStore:
    """:class:`~sdk.providers.base.BlobStore` on one Azure container.

    Owns one :class:`BlobServiceClient` (and so one connection pool) for its lifetime; every
    blob client is derived from it and shares the pool.
    """

    def __init__(
        self,
        service: BlobServiceClient,
        bucket_name: str,
        *,
        account_key: str | None = None,
        list_page_size: int = _LIST_PAGE_SIZE,
    ) -> None:
        self.bucket_name = bucket_name
        self._service = service
        self._container: ContainerClient = service.get_container_client(bucket_name)
        self._account_key = account_key
        self._page_size = list_page_size
        # None: not tried yet; False: the service refused a batch, use single deletes.
        self._batch_supported: bool | None = None
        self._blobs: collections.OrderedDict[str, BlobClient] = collections.OrderedDict()
        #: Parse listings here rather than with the SDK (see :meth:`_list_page_fast`).
        self._fast_listing = True

    def __repr__(self) -> str:
        return f"AzureStore({self._service.url.split('?', 1)[0]!r}, {self.bucket_name!r})"

    def _blob(self, key: str) -> BlobClient:
        # Building a BlobClient (URL parsing, a pipeline of policies) costs about 1 ms of
        # CPU, as much as a small GET from Azurite; the block cache reads one key many times.
        client = self._blobs.get(key)
        if client is None:
            client = self._blobs[key] = self._container.get_blob_client(key)
            if len(self._blobs) > _BLOB_CLIENTS:
                self._blobs.popitem(last=False)
        else:
            self._blobs.move_to_end(key)
        return client

    def _what(self, key: str = "") -> str:
        return f"azure:{self.bucket_name}/{key}"

    # -- reading --------------------------------------------------------------------------------

    @_retried
    async def head(self, key: str) -> ObjectInfo:
        """Size, ETag, times, user metadata (lower-case names) and content type of ``key``."""
        with _errors(self._what(key)):
            props = await self._blob(key).get_blob_properties()
        return ObjectInfo(
            key=key,
            size=props.size,
            etag=_strip_etag(props.etag),
            modified_at=props.last_modified,
            created_at=props.creation_time,
            metadata={k.lower(): v for k, v in (props.metadata or {}).items()},
            content_type=props.content_settings.content_type,
        )

    def read(
        self,
        key: str,
        offset: int = 0,
        length: int | None = None,
        *,
        etag: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream ``length`` bytes (to the end when ``None``) of ``key`` from ``offset``.

        The first request is made on entering the context, so a missing key or a changed
        ETag fails there.  The rest arrives as ranged GETs pinned to the first response's
        ETag (a read never mixes two versions: a blob replaced mid-read fails it with
        :class:`~sdk.errors.PreconditionFailed`), each retried on its own, so a dropped
        connection resumes at the offset it broke at.
        """
        _check_range(offset, length)
        return self._read(key, offset, length, etag)

    @asynccontextmanager
    async def _read(
        self, key: str, offset: int, length: int | None, etag: str | None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        if length == 0:
            await self._check_version(key, etag)
            chunks = _no_chunks()
        else:
            first_len = _FIRST_READ if length is None else min(_FIRST_READ, length)
            first = await self._fetch(key, offset, first_len, etag)
            stop = first.total if length is None else min(first.total, offset + length)
            chunks = self._chunks(key, first.data, offset + len(first.data), stop, first.etag)
        try:
            yield chunks
        finally:
            await chunks.aclose()

    def _copy_source_url(self, blob: BlobClient) -> str:
        """The URL Copy Blob reads the source from (a scoped store adds its current SAS:
        :mod:`sdk.providers.azure_access`)."""
        return str(blob.url)

    async def _check_version(self, key: str, etag: str | None) -> None:
        # An empty read still fails on a missing or replaced key, as a GET would.
        info = await self.head(key)
        if etag is not None and info.etag != _strip_etag(etag):
            raise PreconditionFailed(f"{self._what(key)}: ETag is {info.etag}, not {etag}")

    @_retried
    async def _fetch(self, key: str, offset: int, length: int, etag: str | None) -> _Fetched:
        """One ranged GET of ``length`` bytes at ``offset`` (fewer at the end of the blob)."""
        conditions: dict[str, Any] = {}
        if etag is not None:
            conditions = {
                "etag": _quote_etag(etag),
                "match_condition": MatchConditions.IfNotModified,
            }
        with _errors(self._what(key)):
            try:
                download: StorageStreamDownloader[bytes] = await self._blob(key).download_blob(
                    offset=offset,
                    length=length,
                    max_concurrency=_RANGE_CONCURRENCY,
                    **conditions,
                )
            except HttpResponseError as e:
                if _error_code(e) == "InvalidRange":  # offset past the end
                    return _Fetched(b"", etag or "", offset)
                raise
            # Ranges up to max_single_get_size arrived with the first response; longer
            # ones are fetched by readall, _RANGE_CONCURRENCY requests at a time.
            data = await download.readall()
        props = download.properties
        # The SDK reports the range as "bytes a-b/total"; the total bounds what follows.
        total = int(str(props.content_range).rsplit("/", 1)[-1])
        return _Fetched(data, _strip_etag(props.etag), total)

    async def _chunks(
        self, key: str, first: bytes, pos: int, stop: int, etag: str
    ) -> AsyncGenerator[bytes, None]:
        """``first``, then ``[pos, stop)`` in ranged GETs growing from ``2 * _FIRST_READ`` to
        ``_REQUEST_SIZE``, ``_READ_AHEAD`` requests ahead of the consumer."""
        if first:
            yield first
        ahead: collections.deque[asyncio.Future[_Fetched]] = collections.deque()
        size = 2 * _FIRST_READ
        try:
            while pos < stop or ahead:
                while pos < stop and len(ahead) <= _READ_AHEAD:
                    n = min(size, stop - pos)
                    ahead.append(asyncio.ensure_future(self._fetch(key, pos, n, etag)))
                    pos += n
                    size = min(2 * size, _REQUEST_SIZE)
                got = await ahead.popleft()
                if got.data:
                    yield got.data
        finally:
            for task in ahead:
                task.cancel()
            await asyncio.gather(*ahead, return_exceptions=True)

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        """Up to ``length`` bytes at ``offset`` (short only at the end), in one request up to
        8 MiB; a failure retries the whole range."""
        _check_range(offset, length)
        if length == 0:
            await self._check_version(key, etag)
            return b""
        return (await self._fetch(key, offset, length, etag)).data

    # -- listing --------------------------------------------------------------------------------

    async def list(
        self, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | PrefixInfo]:
        """Every key starting with ``prefix`` in key order, one listing page at a time.

        A transient failure retries the page it happened on, not the whole listing.
        """
        if delimiter == "":
            raise InvalidRequest("delimiter must not be empty")
        token: str | None = None
        last_prefix: str | None = None
        while True:
            entries, token = await self._list_page(prefix, delimiter, token)
            for entry in entries:
                if isinstance(entry, PrefixInfo):
                    # A prefix cut by a page boundary must not be reported twice.
                    if entry.key == last_prefix:
                        continue
                    last_prefix = entry.key
                yield entry
            if not token:
                return

    @_retried
    async def _list_page(
        self, prefix: str, delimiter: str | None, token: str | None
    ) -> tuple[builtins.list[ObjectInfo | PrefixInfo], str | None]:
        if self._fast_listing:
            try:
                pipeline = self._container._client._client
                send = pipeline.send_request
            except AttributeError:  # SDK internals moved: use the public, slower path
                self._fast_listing = False
            else:
                return await self._list_page_fast(send, prefix, delimiter, token)
        return await self._list_page_sdk(prefix, delimiter, token)

    async def _list_page_fast(
        self,
        send: Callable[..., Any],
        prefix: str,
        delimiter: str | None,
        token: str | None,
    ) -> tuple[builtins.list[ObjectInfo | PrefixInfo], str | None]:
        """One List Blobs page, parsed here.

        The SDK's generic XML deserializer costs ~0.5 ms of CPU per blob (70 s for a
        100,000-entry directory); ElementTree and a few ``findtext`` calls cost a tenth of
        that.  The request still goes through the container client's pipeline (signing,
        SAS, transport), reached through its internal ``_client`` attributes.
        """
        params = {"restype": "container", "comp": "list", "maxresults": str(self._page_size)}
        if prefix:
            params["prefix"] = prefix
        if delimiter:
            params["delimiter"] = delimiter
        if token:
            params["marker"] = token
        base, _, sas = self._container.url.partition("?")
        url = f"{base}?{urlencode(params, quote_via=quote)}" + (f"&{sas}" if sas else "")
        request = HttpRequest("GET", url, headers={"x-ms-version": self._container.api_version})
        with _errors(self._what(prefix)):
            response = await send(request)  # not streamed: the body is read here
            body: bytes = response.content
            if response.status_code != 200:
                raise HttpResponseError(response=response)
        try:
            return _parse_listing(body)
        except (ET.ParseError, ValueError) as e:
            # A cut or garbled body: the same request again will most likely be fine.
            raise TransientError(f"{self._what(prefix)}: unreadable listing: {e}") from e

    async def _list_page_sdk(
        self, prefix: str, delimiter: str | None, token: str | None
    ) -> tuple[builtins.list[ObjectInfo | PrefixInfo], str | None]:
        entries: builtins.list[ObjectInfo | PrefixInfo] = []
        with _errors(self._what(prefix)):
            if delimiter:
                pager = self._container.walk_blobs(
                    name_starts_with=prefix or None,
                    delimiter=delimiter,
                    results_per_page=self._page_size,
                ).by_page(continuation_token=token)
            else:
                pager = self._container.list_blobs(
                    name_starts_with=prefix or None, results_per_page=self._page_size
                ).by_page(continuation_token=token)
            try:
                page = await pager.__anext__()
            except StopAsyncIteration:
                return entries, None
            async for item in page:
                if not isinstance(item, BlobProperties):  # a BlobPrefix
                    entries.append(PrefixInfo(key=item.name))
                else:
                    entries.append(
                        ObjectInfo(
                            key=item.name,
                            size=item.size,
                            etag=_strip_etag(item.etag),
                            modified_at=item.last_modified,
                            created_at=item.creation_time,
                        )
                    )
            next_token: str | None = getattr(pager, "continuation_token", None)
        # Azurite puts a page's prefixes before its blobs; Azure already sorts.  Pages cover
        # contiguous key ranges, so sorting each page gives the global order.
        entries.sort(key=lambda entry: entry.key)
        return entries, next_token or None

    @_retried
    async def _probe(self) -> bool:
        """Whether the container holds any blob (one listing request of one entry)."""
        with _errors(self._what()):
            pager = self._container.list_blobs(results_per_page=1).by_page()
            async for page in pager:
                async for _ in page:
                    return True
                break
        return False

    # -- writing --------------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> str:
        """Create or replace ``key``; return the new ETag.

        Up to :data:`PUT_BLOCK_SIZE` this is one Put Blob request.  Larger data is staged
        in blocks of that size (``_PUT_CONCURRENCY`` in flight) and committed, which is just
        as atomic; the blocks are staged here rather than by the SDK's ``upload_blob`` so
        every block blobfs stages has the same id format (Azure refuses a block whose id
        length differs from the blob's other uncommitted blocks).
        """
        _check_key(key)
        meta = _check_metadata(metadata)
        if len(data) <= PUT_BLOCK_SIZE:
            return await self._put_single(key, data, meta, content_type)
        upload = AzureMultipartUpload(
            self._blob(key), key, self._what(key), metadata=meta, content_type=content_type
        )
        view = memoryview(data)
        limit = asyncio.Semaphore(_PUT_CONCURRENCY)

        async def stage(number: int, start: int) -> None:
            async with limit:
                await upload.upload_part(number, bytes(view[start : start + PUT_BLOCK_SIZE]))

        try:
            async with asyncio.TaskGroup() as tg:
                for number, start in enumerate(range(0, len(data), PUT_BLOCK_SIZE), 1):
                    tg.create_task(stage(number, start))
            return await upload.complete()
        except BaseException:
            await upload.abort()
            raise

    @_retried
    async def _put_single(
        self, key: str, data: bytes, metadata: dict[str, str], content_type: str | None
    ) -> str:
        settings = ContentSettings(content_type=content_type) if content_type else None
        with _errors(self._what(key)):
            result = await self._blob(key).upload_blob(
                data,
                length=len(data),
                overwrite=True,
                metadata=metadata or None,
                content_settings=settings,
            )
        return _strip_etag(result.get("etag"))

    async def start_multipart(
        self,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> AzureMultipartUpload:
        """An upload of ``key`` from staged blocks; no request is made until the first part."""
        _check_key(key)
        meta = _check_metadata(metadata)
        return AzureMultipartUpload(
            self._blob(key), key, self._what(key), metadata=meta, content_type=content_type
        )

    @_retried
    async def copy(
        self, src_key: str, dst_key: str, *, metadata: Mapping[str, str] | None = None
    ) -> str:
        """Server-side copy; ``metadata`` replaces the source's when given.  Returns ETag.

        Copy Blob may finish asynchronously (``pending``); this waits for the end.
        """
        _check_key(dst_key)
        meta = None if metadata is None else _check_metadata(metadata)
        src = self._blob(src_key)
        dst = self._blob(dst_key)
        what = f"{self._what(src_key)} -> {dst_key}"
        with _errors(what):
            # The URL carries the SAS token when the store holds one, which is what lets
            # the service read the source on our behalf.
            result = await dst.start_copy_from_url(
                self._copy_source_url(src), metadata=meta or None
            )
            status = result.get("copy_status")
            etag: object = result.get("etag")
            copy_id = result.get("copy_id")
            delay = 0.05
            while status == "pending":
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                props = await dst.get_blob_properties()
                if props.copy.id != copy_id:
                    break  # replaced by someone else's write; theirs wins, as on S3
                status, etag = props.copy.status, props.etag
            if status in ("failed", "aborted"):
                raise TransientError(f"{what}: copy {status}")
            if meta is not None and not meta:
                # Copy Blob keeps the source's metadata when given none; clear it explicitly.
                cleared = await dst.set_blob_metadata({})
                etag = cleared.get("etag")
        return _strip_etag(etag)

    # -- deleting -------------------------------------------------------------------------------

    @_retried
    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Delete ``key`` (and its snapshots); a missing key raises unless ``missing_ok``.

        A missing container is always an error.
        """
        try:
            with _errors(self._what(key)):
                await self._blob(key).delete_blob(delete_snapshots="include")
        except ResourceNotFound as e:
            if missing_ok and _error_code(e.__cause__ or e) == "BlobNotFound":
                return
            raise

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete keys in batches of 256; missing keys are ignored."""
        for start in range(0, len(keys), _BATCH_SIZE):
            batch = keys[start : start + _BATCH_SIZE]
            left = batch
            if self._batch_supported is not False:
                left = await self._delete_batch(batch)
            if left:
                await self._delete_each(left)

    @_retried
    async def _delete_batch(self, keys: Sequence[str]) -> Sequence[str]:
        """One blob batch; returns the keys still to delete one by one."""
        try:
            parts = [
                part
                async for part in await self._container.delete_blobs(
                    *keys, delete_snapshots="include", raise_on_any_failure=False
                )
            ]
        except _WIRE_ERRORS as e:
            err = translate_error(e, f"{self._what()} batch delete")
            if isinstance(err, TransientError):
                raise err from e
            # Not supported here, or refused for these credentials: single deletes will
            # either work or report the real reason per key.
            self._refuse_batches(err)
            return keys
        failed = [p.status_code for p in parts if p.status_code not in (200, 202, 404)]
        if len(parts) != len(keys) or (failed and len(failed) == len(parts)):
            # Azurite answers every batch with one InvalidInput part per batch.
            self._refuse_batches(failed[0] if failed else "part count mismatch")
            return keys
        self._batch_supported = True
        # Keys whose sub-request failed are deleted singly: that retries transient
        # failures and reports any other with the error table.
        return [
            key
            for key, part in zip(keys, parts, strict=True)
            if part.status_code not in (200, 202, 404)
        ]

    def _refuse_batches(self, why: object) -> None:
        if self._batch_supported is None:
            log.info("%s: blob batch refused (%s); deleting one by one", self._what(), why)
        self._batch_supported = False

    async def _delete_each(self, keys: Sequence[str]) -> None:
        limit = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def one(key: str) -> None:
            async with limit:
                await self.delete(key, missing_ok=True)

        async with asyncio.TaskGroup() as tg:
            for key in keys:
                tg.create_task(one(key))

    # -- signing --------------------------------------------------------------------------------

    async def sign_url(self, key: str, expires_in_seconds: int) -> str:
        """A blob SAS URL allowing an anonymous GET of ``key`` for ``expires_in_seconds``.

        Signing needs the account key: a store opened with only a SAS token cannot sign.
        """
        if not _MIN_SIGN_SECONDS <= expires_in_seconds <= _MAX_SIGN_SECONDS:
            raise InvalidRequest(
                f"signed URL expiry must be between {_MIN_SIGN_SECONDS} s and 7 days, "
                f"got {expires_in_seconds} s"
            )
        account = self._container.account_name
        if not self._account_key or not account:
            raise InvalidRequest(
                f"{self._what(key)}: signing a URL needs the storage account key; this bucket "
                "was opened with a SAS token only"
            )
        # The SAS carries expiry in whole seconds; rounding up keeps a 1 s URL usable.
        expiry = datetime.now(UTC).replace(microsecond=0) + timedelta(
            seconds=expires_in_seconds + 1
        )
        sas = generate_blob_sas(
            account_name=account,
            container_name=self.bucket_name,
            blob_name=key,
            account_key=self._account_key,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
        )
        return f"{self._blob(key).url.split('?', 1)[0]}?{sas}"

    async def close(self) -> None:
        """Close the connection pool.  The store must not be used afterwards."""
        await self._service.close()


class AzureMultipartUpload:
    """A block blob assembled from staged blocks (see the module docstring)."""

    def __init__(
        self,
        blob: BlobClient,
        key: str,
        what: str,
        *,
        metadata: Mapping[str, str] | None,
        content_type: str | None,
    ) -> None:
        self.key = key
        self._blob = blob
        self._what = what
        self._metadata = dict(metadata) if metadata else None
        self._content_type = content_type
        # Block ids name this upload too: uncommitted blocks belong to the blob, so two
        # uploads of one key must not overwrite each other's parts.  Fixed width because
        # Azure requires the uncommitted block ids of a blob to have one length.
        self._upload_id = uuid.uuid4().hex
        self._parts: dict[int, int] = {}  # part number -> size
        self._state: Literal["open", "completed", "aborted"] = "open"

    def _block_id(self, part_number: int) -> str:
        # 48 characters before encoding, like the ids of the SDK's own upload_blob, so a
        # blob left with uncommitted blocks by either can still be written by the other.
        return base64.b64encode(f"{self._upload_id}-{part_number:015d}".encode()).decode()

    def _check_open(self) -> None:
        if self._state != "open":
            # As S3's NoSuchUpload.
            raise ResourceNotFound(f"{self._what}: multipart upload was {self._state}")

    @_retried
    async def upload_part(self, part_number: int, data: bytes) -> None:
        """Stage part ``part_number`` (1..10000); re-uploading a number replaces that part."""
        self._check_open()
        if not 1 <= part_number <= _MAX_PART_NUMBER:
            raise InvalidRequest(f"{self._what}: part number {part_number} not in 1..10000")
        with _errors(f"{self._what} part {part_number}"):
            await self._blob.stage_block(self._block_id(part_number), data, length=len(data))
        self._parts[part_number] = len(data)

    async def complete(self) -> str:
        """Commit the staged parts in part-number order; return the new ETag."""
        self._check_open()
        numbers = sorted(self._parts)
        if not numbers:
            raise InvalidRequest(f"{self._what}: multipart upload has no parts")
        small = [n for n in numbers[:-1] if self._parts[n] < MIN_PART_SIZE]
        if small:
            # S3 refuses this (EntityTooSmall); refuse it here too so both behave alike.
            raise InvalidRequest(
                f"{self._what}: part {small[0]} is {self._parts[small[0]]} bytes; every part but "
                f"the last must be at least {MIN_PART_SIZE} bytes"
            )
        etag = await self._commit([BlobBlock(block_id=self._block_id(n)) for n in numbers])
        self._state = "completed"
        return etag

    @_retried
    async def _commit(self, blocks: list[BlobBlock]) -> str:
        settings = ContentSettings(content_type=self._content_type) if self._content_type else None
        with _errors(self._what):
            result = await self._blob.commit_block_list(
                blocks, metadata=self._metadata, content_settings=settings
            )
        return _strip_etag(result.get("etag"))

    async def abort(self) -> None:
        """Give up the upload.  Best effort: Azure cannot drop staged blocks on request; it
        discards uncommitted blocks after 7 days (or at the blob's next commit or Put Blob).

        Nothing was committed, so no blob appears; further parts and :meth:`complete` fail.
        Safe to call more than once and after :meth:`complete` (then it does nothing).
        """
        if self._state == "open":
            self._state = "aborted"
            self._parts.clear()


# -- administration -----------------------------------------------------------------------------


class AzureAdmin:
    """:class:`~sdk.providers.base.ProviderAdmin` for one storage account.

    ``endpoint_url`` is the account URL (``https://acct.blob.core.windows.net``, or
    ``http://127.0.0.1:10000/devstoreaccount1`` for Azurite); ``credentials`` holds
    ``account_name`` + ``account_key``, or ``sas_token``, or ``connection_string``.
    """

    def __init__(self, endpoint_url: str | None, credentials: Mapping[str, str]) -> None:
        self._auth = _resolve_auth(endpoint_url, credentials)
        self._service = self._auth.client()
        self.credential_times = CredentialTimes()
        self._access_control: AzureAccess | None = None

    def __repr__(self) -> str:
        return f"AzureAdmin({self._auth.account_url!r})"

    @property
    def _access(self) -> AzureAccess:
        # Imported here: azure_access builds on this module.
        from .azure_access import AzureAccess

        if self._access_control is None:
            self._access_control = AzureAccess(
                self,
                self._service,
                account_url=self._auth.account_url,
                account_name=self._auth.account_name,
                account_key=self._auth.account_key,
            )
        return self._access_control

    # -- access control: sdk.providers.azure_access -------------------------------------------

    async def open_scoped_bucket(self, bucket_name: str) -> AzureStore:
        """A store on container ``bucket_name`` with a renewing container SAS."""
        return await self._access.open_scoped_bucket(bucket_name)

    async def temporary_credentials(
        self, bucket_name: str, *, read_only: bool = False
    ) -> IssuedCredentials:
        """A container SAS for ``bucket_name`` (see :mod:`sdk.providers.azure_access`)."""
        return await self._access.temporary_credentials(bucket_name, read_only=read_only)

    async def create_persistent_credentials(
        self, credentials_id: str, bucket_names: Sequence[str], *, read_only: bool = False
    ) -> PersistentGrant:
        """A stored access policy per container and SAS tokens bound to them."""
        return await self._access.create_persistent_credentials(
            credentials_id, bucket_names, read_only=read_only
        )

    async def detach_persistent_credentials(
        self, state: Mapping[str, Any], bucket_name: str
    ) -> Mapping[str, Any]:
        """Remove the stored access policy from ``bucket_name``."""
        return await self._access.detach_persistent_credentials(state, bucket_name)

    async def revoke_persistent_credentials(self, state: Mapping[str, Any]) -> None:
        """Remove the stored access policies: their SAS tokens stop working."""
        await self._access.revoke_persistent_credentials(state)

    async def set_public_access(self, bucket_name: str, public: bool) -> None:
        """Set the container's access level to ``container`` or private."""
        await self._access.set_public_access(bucket_name, public)

    @_retried
    async def create_bucket(self, bucket_name: str) -> None:
        """Create container ``bucket_name``; :class:`~sdk.errors.AlreadyExists` if taken."""
        validate_container_name(bucket_name)
        with _errors(f"azure:{bucket_name}"):
            await self._service.create_container(bucket_name)

    async def delete_bucket(self, bucket_name: str) -> None:
        """Delete an empty container; :class:`~sdk.errors.NotEmpty` if it holds any blob.

        The emptiness check and the delete are two requests: a blob written in between is
        deleted with the container, as Azure offers no conditional "delete if empty".
        """
        if await AzureStore(self._service, bucket_name)._probe():
            raise NotEmpty(f"azure:{bucket_name}: container is not empty")
        await self._delete_container(bucket_name)

    @_retried
    async def _delete_container(self, bucket_name: str) -> None:
        with _errors(f"azure:{bucket_name}"):
            await self._service.delete_container(bucket_name)

    async def open_bucket(
        self, bucket_name: str, credentials: Mapping[str, str] | None = None
    ) -> AzureStore:
        """A store on container ``bucket_name`` with its own connection pool.

        ``credentials`` are an imported bucket's: ``storage_endpoint`` (the account URL) with
        ``sas_token`` or ``credential`` (the account key); without them the admin's own
        credentials are used.
        """
        auth = (
            self._auth
            if credentials is None
            # An imported bucket that names no account lives in this one.
            else _resolve_auth(None, credentials, default_url=self._auth.account_url)
        )
        return AzureStore(auth.client(), bucket_name, account_key=auth.account_key)

    async def check_bucket(self, bucket_name: str, credentials: Mapping[str, str]) -> None:
        """Raise unless ``credentials`` can list container ``bucket_name``."""
        store = await self.open_bucket(bucket_name, credentials)
        try:
            await store._probe()
        finally:
            await store.close()

    async def close(self) -> None:
        """Close the admin's connection pool (stores it opened keep their own)."""
        await self._service.close()
