"""Clients of one S3 endpoint: sessions, configuration, and :class:`S3Client`, the calls of
one aiobotocore client with translated errors and retries, beside its direct client.

The direct client is a fast path: a request it does not plainly answer (an error reply, a
connection failure, the client stepped aside) is repeated through botocore, after a pause
when the server said it was busy (429, 5xx), and botocore retries with backoff.  Where a
proxy, a client certificate or unverified TLS applies there is no direct client at all
(:mod:`sdk.providers.s3.transport`).

One aiobotocore client per store, opened once and reused: its connection pool is what makes
parallel part uploads and ranged reads fast.  botocore's retries are off; :mod:`sdk.retry`
retries transient failures after :mod:`sdk.providers.s3.errors` has translated them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TypeVar

import aioboto3
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioRefreshableCredentials
from aiobotocore.session import AioSession
from botocore.credentials import ReadOnlyCredentials
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from sdk.errors import PermissionDenied, TransientError
from sdk.providers.http1 import BUSY, HttpReply
from sdk.providers.s3.conventions import is_aws
from sdk.providers.s3.direct import S3Direct
from sdk.providers.s3.errors import translated
from sdk.providers.s3.models import LeanJSONLoader
from sdk.providers.s3.transport import DirectTransport, botocore_verify, direct_transport
from sdk.providers.s3.wire import direct_etag, goes_direct
from sdk.retry import back_off_busy, retrying

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Enough connections for several transfers of 4-8 parallel parts each, plus listing.
MAX_POOL_CONNECTIONS = 64
CONNECT_TIMEOUT = 10.0
#: Longest wait for the next bytes of a response; a stalled read is retried after it.
READ_TIMEOUT = 60.0


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
    matters because every bucket gets its own scoped store.  It keeps botocore's data lean
    (:mod:`sdk.providers.s3.models`).  Timestamps are parsed by :func:`_timestamp`.
    """
    global _shared_loader
    session = AioSession()
    if _shared_loader is None:
        _shared_loader = session.get_component("data_loader")
        _shared_loader.file_loader = LeanJSONLoader()
    else:
        session.register_component("data_loader", _shared_loader)
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_timestamp
    )
    return session


class ClientSession(aioboto3.Session):  # type: ignore[misc]  # aioboto3 is untyped
    """An aioboto3 session for low-level clients only.

    aioboto3 registers boto3's customizations on every session: the resource classes
    (Bucket, Object, DynamoDB tables...) and, on every S3 client class, the managed-transfer
    methods (``upload_file``, ``download_fileobj``, ``copy``...).  The sdk makes no resources
    and does its own transfers (:mod:`sdk.transfer`), while importing those methods' modules
    when the first S3 client is made (s3transfer, aiofiles, multiprocessing: 45 modules,
    1 MiB of allocations) cost a mount daemon 0.3 MB of idle RSS.  So none are registered.
    """

    def _register_default_handlers(self) -> None:
        pass


def new_session(
    credentials: Mapping[str, str] | AioRefreshableCredentials, region: str | None
) -> aioboto3.Session:
    """An aioboto3 session on a :func:`botocore_session`: with explicit keys
    (``access_key_id``, ``secret_access_key``, ``session_token``?), renewing credentials,
    or botocore's default chain (environment, profile, instance role) when the mapping holds
    no key."""
    session = botocore_session()
    if isinstance(credentials, AioRefreshableCredentials):
        session._credentials = credentials  # the public setter makes static ones
        return ClientSession(botocore_session=session, region_name=region)
    kwargs: dict[str, Any] = {"region_name": region, "botocore_session": session}
    if credentials.get("access_key_id"):
        kwargs["aws_access_key_id"] = credentials["access_key_id"]
        kwargs["aws_secret_access_key"] = credentials.get("secret_access_key", "")
        kwargs["aws_session_token"] = credentials.get("session_token") or None
    return ClientSession(**kwargs)


def _config(endpoint_url: str | None) -> AioConfig:
    return AioConfig(
        signature_version="s3v4",
        # Other stores rarely have wildcard DNS for virtual-host buckets.
        s3={"addressing_style": "auto" if is_aws(endpoint_url) else "path"},
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


class S3Client:
    """Calls through one aiobotocore client with translation and retries, and the direct
    client beside it on S3-compatible endpoints."""

    def __init__(self) -> None:
        self.client: Any = None
        #: Ranged GETs and PUTs without botocore's per-request cost (S3-compatible endpoints
        #: only; :mod:`sdk.providers.s3.direct`).
        self.direct: S3Direct | None = None
        #: How the direct clients reach the endpoint (``None``: they step aside).
        self.transport: DirectTransport | None = None
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
        if region is None and not is_aws(endpoint_url):
            region = "us-east-1"  # SigV4 needs some region; S3-compatible stores accept this one
        if session is None:
            session = new_session(credentials, region)
        with translated(f"connect to {endpoint_url or 'AWS S3'}"):
            self.client = await self._stack.enter_async_context(
                session.client(
                    "s3",
                    endpoint_url=endpoint_url,
                    verify=botocore_verify(endpoint_url),
                    config=_config(endpoint_url),
                )
            )
        endpoint = self.client.meta.endpoint_url
        if S3Direct.supports(endpoint):
            self.transport = direct_transport(self.client, endpoint)
            if self.transport is None:
                log.debug("%s: a proxy or TLS setting applies; botocore alone", endpoint)
        if self.transport is not None:
            opened = session

            async def frozen() -> ReadOnlyCredentials:
                # The session's own credentials object: renewing ones renew here too.
                creds = await opened.get_credentials()
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
                ssl_context=self.transport.ssl_context(),
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
        with translated(what):
            return await fn(**params)

    async def try_direct(
        self,
        what: str,
        send: Callable[[S3Direct], Awaitable[HttpReply]],
        judge: Callable[[HttpReply], T | None],
    ) -> T | None:
        """One request through the direct client, and what ``judge`` takes from its reply;
        ``None`` for the caller to repeat the request through botocore (the requests sent
        here are idempotent): there is no direct client or it has stepped aside, the
        connection failed, or the reply was no plain success (botocore's error translation
        then applies).  A busy reply (429, 5xx) is followed by a pause first."""
        direct = self.direct
        if direct is None or not direct.health.usable:
            return None
        try:
            reply = await send(direct)
        except TransientError as e:
            direct.health.failed(e)
            log.info("%s: direct request failed (%s); through botocore", what, e)
            return None
        direct.health.succeeded()
        result = judge(reply)
        if result is None and reply.status in BUSY:
            await back_off_busy(what, reply.status)
        return result

    async def put_direct(
        self,
        what: str,
        bucket: str,
        key: str,
        data: bytes,
        headers: Mapping[str, str],
        query: Sequence[tuple[str, str]] = (),
    ) -> str | None:
        """PUT ``data`` through the direct client (:meth:`try_direct`); return the ETag, or
        ``None`` when the caller must repeat it through botocore -- also when ``headers``
        cannot go on the wire as they are."""
        if not goes_direct(key, headers):
            return None
        return await self.try_direct(
            what, lambda d: d.put(bucket, key, data, headers=headers, query=query), direct_etag
        )


__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_POOL_CONNECTIONS",
    "READ_TIMEOUT",
    "ClientSession",
    "S3Client",
    "botocore_session",
    "new_session",
]
