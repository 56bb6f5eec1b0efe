"""Small PUTs and small ranged GETs on S3-compatible endpoints from a trio program, without
crossing to asyncio.

Why this exists: the mount daemon runs on trio (pyfuse3) and the sdk on an asyncio loop in
another thread (:mod:`blobfs.bridge.store`).  Every store call crosses between the two: two
cross-thread wake-ups plus GIL hand-offs, 0.45 ms per call measured from the daemon's own
timers.  Closing a small file on the mount is one PUT (6-7 ms per 4 KiB file in all here),
and reading a small file back is one ranged GET.  Doing that PUT on the trio thread with a
trio socket saved 10-15 % per file in interleaved A/B runs of the create-write-close of
4 KiB files: B/A 0.85 and 0.90 for a prototype, 0.88 and 0.86 for this module (5.65 -> 4.98
and 4.41 -> 3.80 ms per file; A/A gives 0.998).  Issue 6 asks for 1,000 such files in under
half of s3fs's time.  The GET gains alike: a 4 KiB ``TrioStore.read_view`` took 1.39 ms on
average from trio against 1.67 ms through the bridge (2,000 of each, interleaved), and
reading 4 KiB files back through the mount after dropping the page cache gave B/A 0.83 and
0.78 in interleaved A/B runs of 1,600 files (4.58 -> 3.82 and 4.19 -> 3.28 ms per file;
measured with a change to ``fs.read`` whose own B/A, 0.92 and 1.01, was within noise).

:class:`S3DirectTrio` is the trio twin of :class:`~sdk.providers.s3.direct.S3Direct`, for
two request shapes only: a PUT of a *small* body (under
:data:`~sdk.providers.s3.direct.HASH_IN_THREAD`, so hashing it never stalls the trio
thread), and a ranged GET of at most :data:`SMALL_GET` bytes with ``If-Match``.  It shares
the request building, signing and response-head parsing with the asyncio client
(:func:`~sdk.providers.s3.direct.signed_head`, :func:`~sdk.providers.s3.direct.range_headers`,
:func:`~sdk.providers.s3.direct.parse_head`); what it adds is the trio I/O:

* a small pool of keep-alive trio streams (``trio.SSLStream`` over https), shared by GETs
  and PUTs; a connection is reused only after a complete response to a completely sent
  request;
* a reused idle connection that fails before any byte of the response came is retried once
  on a fresh one: the server may have closed it while it sat idle, which is no failure of
  the request (GET and PUT are idempotent, so sending it again is safe either way);
* the connect timeout, and the inactivity timeout as a deadline on the whole exchange: a
  small body fits in the socket's buffers, so sending and waiting for the reply are one
  wait with no progress to observe in between;
* credentials from a caller-supplied awaitable (the renewing ones live on the asyncio side),
  kept for :data:`CREDENTIALS_TTL` seconds and dropped when the server refuses them.

It does not judge replies: it returns the status, the headers and, for a 200/206 GET, the
whole body, and raises :class:`~sdk.errors.TransientError` for broken connections and
timeouts.  The store (:meth:`sdk.providers.s3.store.S3Store.trio_direct`) takes only a 200 with an
ETag as a PUT done and a 200/206 body that is no implicit directory as a GET done; for
anything else its caller repeats the request on the asyncio side, which retries and
translates errors (404, 412, 416 ...) as every other store call does.
"""

from __future__ import annotations

import hashlib
import math
import ssl
from collections.abc import Awaitable, Callable, Mapping

import trio
from botocore.auth import EMPTY_SHA256_HASH
from botocore.credentials import ReadOnlyCredentials

from sdk.errors import TransientError
from sdk.providers.s3.direct import (
    HASH_IN_THREAD,
    MAX_HEAD,
    Endpoint,
    Response,
    parse_head,
    range_headers,
    signed_head,
)
from sdk.providers.s3.sigv4 import SigV4Signer

#: Idle connections kept for reuse (the mount closes files from a few tasks at once).
MAX_IDLE = 8
#: Bytes asked of the stream per receive of a reply head: a PUT's is a few hundred bytes,
#: and a 4 KiB GET's body arrives with its head.
RECEIVE = 16 * 1024
#: Largest GET this client makes; larger ranges take the asyncio client.  Why a limit: the
#: body is received (and copied once, from the socket's chunks into its buffer) on the trio
#: thread, which serves every FUSE request, and the deadline covers the whole exchange, so
#: only a body that arrives in one short burst belongs here.  And only small GETs gain: the
#: crossing costs about 0.45 ms against a 4 KiB GET's 1-2 ms, but 1 % of a 16 MiB block
#: fetch's 40 ms.
SMALL_GET = 256 * 1024
#: Largest receive of a GET body (the rest of a :data:`SMALL_GET` at most).
MAX_RECEIVE = SMALL_GET
#: How long a credentials snapshot is used before it is asked for again.  Asking crosses to
#: the asyncio thread -- the very hand-off this module avoids -- so not once per PUT.
#: Renewing credentials are renewed well before they expire: botocore's own providers 10-15
#: minutes ahead (its advisory and mandatory refresh windows), the sdk's scoped stores
#: ``CredentialTimes.margin`` ahead (5 minutes by default), so a snapshot at most a minute
#: old is still valid when used.  Where it is not (credentials revoked, or a test's
#: seconds-long lifetimes), the server refuses it, the snapshot is dropped and the caller's
#: fallback asks the renewing credentials afresh.
CREDENTIALS_TTL = 60.0
#: Statuses by which servers refuse credentials: 403 (SeaweedFS, S3's AccessDenied and
#: SignatureDoesNotMatch), 400 (S3 and MinIO answer ExpiredToken so), 401.
_REFUSED = frozenset({400, 401, 403})
#: The replies read to their end (the connection then stays usable): a PUT's success, and a
#: ranged GET's body (206, or 200 from a server that sends the whole object as its range).
_PUT_KEEP = frozenset({200})
_GET_KEEP = frozenset({200, 206})

#: A trio-side source of credentials (for the sdk's stores: a crossing to the asyncio loop
#: where the session's renewing credentials live).
TrioCredentialSource = Callable[[], Awaitable[ReadOnlyCredentials]]


class _NoReply(TransientError):
    """The connection failed before any byte of the reply arrived."""


class S3DirectTrio:
    """PUTs of small bodies and small ranged GETs on one path-style S3 endpoint, from trio
    (see the module docstring).  Use it from one trio run; :meth:`aclose` closes its idle
    connections."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: TrioCredentialSource,
        *,
        connect_timeout: float,
        read_timeout: float,
        credentials_ttl: float = CREDENTIALS_TTL,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = Endpoint.parse(endpoint_url)
        self._signer = SigV4Signer(region)
        self._credentials = credentials
        self._credentials_ttl = credentials_ttl
        self._snapshot: ReadOnlyCredentials | None = None
        self._snapshot_at = -math.inf
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._ssl: ssl.SSLContext | None = None
        if self.endpoint.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._idle: list[trio.abc.Stream] = []
        #: Responses received and connections opened (for tests and logs).
        self.requests = 0
        self.connects = 0

    async def put(
        self, bucket: str, key: str, body: bytes, *, headers: Mapping[str, str] | None = None
    ) -> Response:
        """PUT ``body`` (under :data:`HASH_IN_THREAD` bytes) to ``bucket/key`` with
        ``headers`` (each :func:`~sdk.providers.s3.direct.sendable`).  Returns the status
        and headers (never a body: a PUT's reply has none worth reading); success is the
        caller's to judge.  Raises :class:`~sdk.errors.TransientError` for connection
        failures and timeouts."""
        if len(body) >= HASH_IN_THREAD:
            # Hashing it would stall every other trio task; the asyncio client hashes large
            # bodies in a worker thread.
            raise ValueError(f"a body of {len(body)} bytes is not small: use S3Direct")
        digest = hashlib.sha256(body).hexdigest()
        head = await self._head("PUT", bucket, key, headers or {}, digest, len(body))
        # One write: the head and a small body go out in one segment (the copy of at most
        # 256 KiB costs microseconds; two writes would cost a second send and, with
        # TCP_NODELAY, a second segment).
        response = await self._request(head + body, keep=_PUT_KEEP, limit=MAX_HEAD)
        return Response(response.status, response.headers, None)

    async def get(
        self, bucket: str, key: str, offset: int, length: int, etag: str | None
    ) -> Response:
        """GET ``length`` bytes (at most :data:`SMALL_GET`) of ``bucket/key`` at ``offset``
        with ``If-Match: etag``, the request :meth:`S3Direct.get
        <sdk.providers.s3.direct.S3Direct.get>` makes.  A 200 or 206 whose whole
        ``Content-Length`` body (at most ``length`` bytes) arrived comes with that body as a
        read-only view; any other reply with ``body=None`` (its status is the caller's to
        interpret).  Raises :class:`~sdk.errors.TransientError` for connection failures and
        timeouts."""
        if length > SMALL_GET:
            raise ValueError(f"a range of {length} bytes is not small: use S3Direct")
        headers = range_headers(offset, length, etag)
        head = await self._head("GET", bucket, key, headers, EMPTY_SHA256_HASH, None)
        # A correct server sends at most the range asked for; a larger body (a server that
        # ignored the Range) is not read here but left to the caller's fallback.
        return await self._request(head, keep=_GET_KEEP, limit=length)

    async def _head(
        self,
        method: str,
        bucket: str,
        key: str,
        headers: Mapping[str, str],
        payload_hash: str,
        content_length: int | None,
    ) -> bytes:
        credentials = await self._current_credentials()
        return signed_head(
            self.endpoint,
            self._signer,
            credentials,
            method,
            bucket,
            key,
            (),
            headers,
            payload_hash,
            content_length,
        )

    async def _request(self, request: bytes, *, keep: frozenset[int], limit: int) -> Response:
        """Send ``request`` (idempotent: GET or PUT) on a pooled connection and read its
        reply (see :meth:`_send_and_receive` for ``keep`` and ``limit``)."""
        stream, reused = await self._acquire()
        try:
            response = await self._exchange(stream, request, keep, limit)
        except _NoReply:
            if not reused:
                raise
            # Closed while idle, most likely (servers drop keep-alive connections after a
            # while): once more on a connection of our own making.  Both methods sent here
            # are idempotent, so sending the request again is safe either way.
            stream, _ = await self._acquire(fresh=True)
            response = await self._exchange(stream, request, keep, limit)
        if response.status in _REFUSED:
            self._snapshot = None  # renewed or revoked: ask again next time
        return response

    async def _current_credentials(self) -> ReadOnlyCredentials:
        now = trio.current_time()
        if self._snapshot is None or now - self._snapshot_at >= self._credentials_ttl:
            self._snapshot = await self._credentials()
            self._snapshot_at = now
        return self._snapshot

    async def _exchange(
        self, stream: trio.abc.Stream, request: bytes, keep: frozenset[int], limit: int
    ) -> Response:
        """Send ``request`` on ``stream`` and read the reply; put the stream back in the
        pool when the exchange left it reusable, else close it."""
        reusable = False
        try:
            with trio.fail_after(self.read_timeout):
                response, reusable = await self._send_and_receive(stream, request, keep, limit)
        except trio.TooSlowError:
            raise TransientError(
                f"no reply from {self.endpoint.host} within {self.read_timeout:g} s"
            ) from None
        finally:
            # Also on cancellation: a stream in an unknown state is never reused.
            if reusable and len(self._idle) < MAX_IDLE:
                self._idle.append(stream)
            else:
                await trio.aclose_forcefully(stream)
        self.requests += 1
        return response

    async def _send_and_receive(
        self, stream: trio.abc.Stream, request: bytes, keep: frozenset[int], limit: int
    ) -> tuple[Response, bool]:
        """The reply to ``request`` and whether the connection is still in step.  A reply
        with a status in ``keep`` and a ``Content-Length`` body of at most ``limit`` bytes
        is read to its end and comes with that body; any other reply comes with its status
        and headers only, and its connection is not reused (what is left of it unread)."""
        try:
            await stream.send_all(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            # A reply may still be waiting (a server refusing early); try to read it.
            sent_error: Exception | None = e
        else:
            sent_error = None
        received = bytearray()
        while (end := received.find(b"\r\n\r\n")) < 0:
            if len(received) > MAX_HEAD:
                raise TransientError(f"{self.endpoint.host}: response head too large")
            cause: Exception | None = sent_error
            try:
                chunk = await stream.receive_some(RECEIVE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                chunk, cause = b"", e
            if not chunk:
                reason = f": {cause}" if cause else ""
                if not received:
                    raise _NoReply(f"{self.endpoint.host} closed the connection{reason}")
                raise TransientError(f"{self.endpoint.host}: connection closed mid-response")
            received += chunk
        try:
            status, headers = parse_head(bytes(received[:end]))
        except ValueError as e:
            raise TransientError(f"{self.endpoint.host}: malformed response: {e}") from None
        response = Response(status, headers, None)
        if sent_error is not None and status < 300:
            # A success for a request the server cannot have read whole: out of step.
            raise TransientError(f"{self.endpoint.host} answered {status} to half a body")
        length = headers.get("content-length")
        if (
            sent_error is not None
            or status not in keep
            or length is None
            or not length.isdigit()
            or int(length) > limit
            or "chunked" in headers.get("transfer-encoding", "").lower()
        ):
            # Not a plain reply to a whole request: not read to its end, never reused.
            return response, False
        body = bytearray(int(length))
        filled = len(received) - end - 4
        if filled > len(body):
            return response, False  # more than it announced: out of step
        body[:filled] = received[end + 4 :]
        while filled < len(body):
            try:
                chunk = await stream.receive_some(min(len(body) - filled, MAX_RECEIVE))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                # The status and headers stand (all a PUT's reply says); the body and the
                # connection are lost.
                return response, False
            body[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        reusable = headers.get("connection", "").lower() != "close"
        return Response(status, headers, memoryview(body).toreadonly()), reusable

    async def _acquire(self, *, fresh: bool = False) -> tuple[trio.abc.Stream, bool]:
        """An idle connection (unless ``fresh``) or a new one; and whether it was idle."""
        if self._idle and not fresh:
            return self._idle.pop(), True
        host, port = self.endpoint.hostname, self.endpoint.port
        try:
            with trio.fail_after(self.connect_timeout):
                tcp = await trio.open_tcp_stream(host, port)
                if self._ssl is None:
                    stream: trio.abc.Stream = tcp
                else:
                    tls = trio.SSLStream(
                        tcp, self._ssl, server_hostname=host, https_compatible=True
                    )
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(tls)
                        raise
                    stream = tls
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as e:
            raise TransientError(f"cannot connect to {self.endpoint.host}: {e!r}") from e
        self.connects += 1
        return stream, False

    async def aclose(self) -> None:
        """Close the idle connections (one in use closes when its request ends)."""
        idle, self._idle = self._idle, []
        for stream in idle:
            await trio.aclose_forcefully(stream)


__all__ = ["CREDENTIALS_TTL", "SMALL_GET", "S3DirectTrio", "TrioCredentialSource"]
