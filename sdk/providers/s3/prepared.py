"""An S3 store's small PUTs and ranged GETs as signed request bytes, for a caller that does
its own I/O on another event loop (:class:`~sdk.providers.base.PreparedRequests`).

The requests are exactly those :class:`~sdk.providers.s3.direct.S3Direct` sends for
:meth:`S3Store.put <sdk.providers.s3.store.S3Store.put>` and
:meth:`S3Store.read_view <sdk.providers.s3.store.S3Store.read_view>` (same headers, same
rules for sending them directly, built by :mod:`sdk.providers.s3.wire`), and a reply is
judged as the store judges its direct client's: a PUT is done on a 200 with an ETag, a read
on a 200/206 body that is no implicit directory.  Only bodies under
:data:`~sdk.providers.s3.wire.HASH_IN_THREAD` bytes are prepared, since preparing hashes the
body on the caller's thread.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.credentials import ReadOnlyCredentials

from sdk.providers.http1 import MAX_HEAD, HttpOrigin, HttpReply
from sdk.providers.s3.sigv4 import SigV4Signer
from sdk.providers.s3.transport import DirectTransport
from sdk.providers.s3.wire import (
    EMPTY_SHA256,
    HASH_IN_THREAD,
    CredentialSource,
    Endpoint,
    direct_etag,
    goes_direct,
    plain_body,
    put_headers,
    range_headers,
    signed_head,
)

#: Statuses by which servers refuse credentials: 403 (SeaweedFS, S3's AccessDenied and
#: SignatureDoesNotMatch), 400 (S3 and MinIO answer ExpiredToken so), 401.
_REFUSED = frozenset({400, 401, 403})
#: The replies read to their end: a PUT's success, and a ranged GET's body (206, or 200 from
#: a server that sends the whole object as its range).
_PUT_KEEP = frozenset({200})
_GET_KEEP = frozenset({200, 206})


@dataclass(frozen=True)
class _Request:
    """One request of :class:`S3PreparedRequests`; :meth:`sign` makes its bytes."""

    owner: S3PreparedRequests
    method: str
    key: str
    headers: Mapping[str, str]
    payload_hash: str
    body: bytes | None
    keep: frozenset[int]
    max_body: int

    def sign(self, credentials: ReadOnlyCredentials, /) -> bytes:
        head = signed_head(
            self.owner.endpoint,
            self.owner.signer,
            credentials,
            self.method,
            self.owner.bucket_name,
            self.key,
            (),
            self.headers,
            self.payload_hash,
            None if self.body is None else len(self.body),
        )
        # One write: the head and a small body go out in one segment (the copy of at most
        # 256 KiB costs microseconds; two writes would cost a second send and, with
        # TCP_NODELAY, a second segment).
        return head if self.body is None else head + self.body


class S3PreparedRequests:
    """:class:`~sdk.providers.base.PreparedRequests` on one bucket of a path-style
    endpoint (see the module docstring).  ``credentials`` is the store's source, awaited on
    the store's loop; ``transport`` how botocore reaches the endpoint (its CA bundle)."""

    def __init__(
        self,
        bucket_name: str,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource,
        *,
        connect_timeout: float,
        read_timeout: float,
        transport: DirectTransport | None = None,
    ) -> None:
        self.bucket_name = bucket_name
        self._transport = transport or DirectTransport()
        self.endpoint = Endpoint.parse(endpoint_url)
        self.signer = SigV4Signer(region)
        self._credentials = credentials
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout

    @property
    def origin(self) -> HttpOrigin:
        return self.endpoint.origin

    @property
    def connect_timeout(self) -> float:
        return self._connect_timeout

    @property
    def read_timeout(self) -> float:
        return self._read_timeout

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.endpoint.scheme != "https":
            return None
        return self._transport.ssl_context() or ssl.create_default_context()

    async def credentials(self) -> ReadOnlyCredentials:
        credentials: ReadOnlyCredentials = await self._credentials()
        return credentials

    def refuses_credentials(self, reply: HttpReply) -> bool:
        return reply.status in _REFUSED

    def put_request(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> _Request | None:
        headers = put_headers(metadata, None)
        if len(data) >= HASH_IN_THREAD or not goes_direct(key, headers):
            return None
        digest = hashlib.sha256(data).hexdigest()
        # A PUT's reply has no body worth reading; a short one is read so the connection
        # stays usable.
        return _Request(self, "PUT", key, headers, digest, data, _PUT_KEEP, MAX_HEAD)

    def put_etag(self, reply: HttpReply) -> str | None:
        return direct_etag(reply)

    def read_request(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> _Request | None:
        # What S3Store.read_view takes from its direct client, and nothing more: bad and
        # empty ranges (an error, a HEAD) and an empty key go to the store.
        if offset < 0 or length <= 0 or not key:
            return None
        headers = range_headers(offset, length, etag)
        # A correct server sends at most the range asked for; a larger body (a server that
        # ignored the Range) is left to the store.
        return _Request(self, "GET", key, headers, EMPTY_SHA256, None, _GET_KEEP, length)

    def read_view(self, key: str, reply: HttpReply) -> memoryview | None:
        return plain_body(key, reply)


__all__ = ["S3PreparedRequests"]
