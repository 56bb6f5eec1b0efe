"""Ranged GETs and PUTs on S3-compatible endpoints without botocore's per-request machinery.

Why this exists beside aiobotocore: botocore's per-request machinery (endpoint rules, event
hooks, user-agent assembly, request serialisation, response parsing) costs about 4 ms of CPU
per request on this project's 2-core test machine, and a mount makes many small requests:
ranged GETs, thousands per GiB for random readers, and one PUT per small file closed.
aiohttp's body path also copies every received byte twice more (parser chunks, then the
join).  Measured on SeaweedFS over loopback: a 64 KiB GET costs 0.6 ms of CPU against 4 ms,
and the mount daemon's asyncio thread spends 0.6 s of user CPU per GiB read sequentially
against 1.0-1.2 s through aiobotocore.  A 4 KiB PUT takes 2.6 ms (0.9 ms of CPU) against
7.8 ms (4.7 ms), an 8 MiB UploadPart 12 ms of CPU against 18.5 ms (wall time is the
server's: 75-80 ms either way) -- ``scripts/bench_s3_direct.py`` -- and a mount creates
and closes a 4 KiB file in 7-8.5 ms against 11-12.5 ms.

It does as little as it can, over a small pool of keep-alive HTTP/1.1 connections, with
path-style addressing only (S3-compatible stores; AWS keeps the botocore path):

* ``GET`` with ``Range`` and optional ``If-Match`` (:meth:`S3Direct.get`).  A body is received
  straight into a buffer of its ``Content-Length`` (no chunk list, no join) and handed out as
  a read-only view of that buffer: no copy (the store's ``read_range`` copies it into
  ``bytes``; ``read_view``, which the mount's block cache uses, does not -- the copy cost
  0.3 s of CPU per GiB).
* ``PUT`` of one body with caller-given headers and query (:meth:`S3Direct.put`): PutObject
  and UploadPart.  The request head and the body are written separately (the body is never
  copied into a request), in slices with the transport's flow control, so an 8 MiB part does
  not sit whole in the transport's buffer.  Sending counts as activity for the inactivity
  timeout, the kernel's send buffer draining after the last write included (Linux).

Requests are signed with SigV4 (:mod:`sdk.providers.s3.sigv4`, which signs what botocore's
signer signs, from plain strings and with a cached key) and the session's (renewing)
credentials.  The payload is signed as botocore signs it in this project's configuration
(``request_checksum_calculation="when_required"``, so no checksum header): its SHA-256, over
http *and* https (botocore sends ``UNSIGNED-PAYLOAD`` over https only beside a checksum
header); large bodies are hashed in a worker thread (hashlib releases the GIL).

Anything it does not expect -- a status other than 200/206, a chunked or length-less body --
it does not interpret: it returns the status and the caller repeats the request through
botocore (GET, PUT and UploadPart are idempotent), whose error translation then applies.
Broken connections and timeouts raise :class:`~sdk.errors.TransientError` (the caller
retries); a connection is reused only after a complete response to a completely sent request.

Building a signed request head (:class:`Endpoint`, :func:`signed_head`,
:func:`range_headers`) and parsing a response head (:func:`parse_head`) are plain functions,
shared with the trio client that makes small PUTs and small ranged GETs without crossing to
this loop (:mod:`sdk.providers.s3.direct_trio`).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import re
import ssl
import sys
import termios
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, urlsplit

from botocore.auth import EMPTY_SHA256_HASH
from botocore.credentials import ReadOnlyCredentials

from sdk.errors import TransientError
from sdk.providers.s3.sigv4 import SigV4Signer

#: Largest response head accepted (status line and headers).
MAX_HEAD = 64 * 1024
#: Idle connections kept for reuse.
MAX_IDLE = 16
#: Slice of a request body handed to the transport at a time; the next waits until the
#: transport's buffer has drained (its flow control), so at most about this much is copied
#: into it and the inactivity clock advances with every slice sent.
SEND_SLICE = 128 * 1024
#: Bodies at least this large are hashed in a worker thread, off the event loop (SHA-256 of
#: an 8 MiB part takes about 6 ms here, long enough to stall other requests' I/O).
HASH_IN_THREAD = 256 * 1024

T = TypeVar("T")

#: Linux's ioctl for the bytes a socket has not sent yet (``SIOCOUTQ`` is ``TIOCOUTQ``).
_SIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if sys.platform == "linux" else None

CredentialSource = Callable[[], Awaitable[ReadOnlyCredentials]]

# RFC 9110 token: what a header name may be.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Printable ASCII, space included: what a header value may be sent as without encoding.
_PLAIN_VALUE = re.compile(r"[\x20-\x7e]*")


def sendable(headers: Mapping[str, str]) -> bool:
    """Whether ``headers`` can go on the wire as they are: names are HTTP tokens and values
    printable ASCII.  Others (non-ASCII metadata, say) must take botocore's path, which
    decides how to encode or refuse them."""
    return all(
        _TOKEN.fullmatch(name) and _PLAIN_VALUE.fullmatch(value) for name, value in headers.items()
    )


@dataclass(frozen=True)
class Endpoint:
    """A path-style S3 endpoint: where to connect and how requests name it."""

    #: The URL it was parsed from.
    url: str
    scheme: str
    hostname: str
    port: int
    #: What the ``Host`` header carries and SigV4 signs: the port only when it is not the
    #: scheme's default.
    host: str
    #: The URL's path, under which ``/bucket/key`` goes (no trailing slash).
    base: str

    @classmethod
    def parse(cls, endpoint_url: str) -> Endpoint:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url}")
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port
        return cls(
            url=endpoint_url,
            scheme=parts.scheme,
            hostname=parts.hostname,
            port=port,
            host=parts.hostname if port == default_port else parts.netloc,
            base=parts.path.rstrip("/"),
        )


def request_head(
    method: str,
    host: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    content_length: int | None,
) -> bytes:
    """An HTTP/1.1 request head: ``method`` on ``path`` (with the already encoded
    ``query``), ``Host`` first, then ``headers`` as given (signed ones) and, for a request
    with a body, its ``Content-Length``."""
    target = f"{path}?{query}" if query else path
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def signed_head(
    endpoint: Endpoint,
    signer: SigV4Signer,
    credentials: ReadOnlyCredentials,
    method: str,
    bucket: str,
    key: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    payload_hash: str,
    content_length: int | None,
) -> bytes:
    """The head of a SigV4-signed request on ``bucket/key`` (path-style), ``query`` encoded
    and sorted as SigV4's canonical query wants it and sent as signed."""
    if not key:
        # ``/bucket/`` is the bucket: GET would list it, PUT would create it.
        raise ValueError("an object request needs a key")
    path = f"{endpoint.base}/{quote(bucket, safe='')}/{quote(key, safe='/~')}"
    encoded = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query))
    signed = signer.sign(
        method=method,
        host=endpoint.host,
        path=path,
        query=encoded,
        headers=headers,
        payload_hash=payload_hash,
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        token=credentials.token,
    )
    return request_head(method, endpoint.host, path, encoded, signed, content_length)


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and headers (names lower-case) of a response head without its final blank
    line; :class:`ValueError` if it is not an HTTP/1.x response head."""
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    if not version.startswith("HTTP/1.") or not status.isdigit():
        raise ValueError(f"status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return int(status), headers


def range_headers(offset: int, length: int, etag: str | None) -> dict[str, str]:
    """The headers of a ranged GET of ``length`` (at least 1) bytes at ``offset``, pinned
    to version ``etag`` when given (a changed object then answers 412, never other bytes)."""
    if offset < 0 or length < 1:
        raise ValueError(f"no HTTP range for offset={offset} length={length}")
    headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
    if etag is not None:
        headers["If-Match"] = f'"{etag}"'
    return headers


@dataclass(frozen=True)
class Response:
    """What a request got: the status, the headers (names lower-case) and, for a 200/206
    with a ``Content-Length`` body, the body (a read-only view of the buffer it was
    received into); otherwise ``body`` is ``None``."""

    status: int
    headers: dict[str, str]
    body: memoryview | None


class _Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection; reads the body of a response into one preallocated buffer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        #: When bytes last arrived or the send buffer last drained (the inactivity clock).
        self.last_activity = time.monotonic()
        #: Bytes the kernel held unsent when last looked at (:meth:`kernel_progress`).
        self._unsent: int | None = None
        self._scratch = bytearray(MAX_HEAD)
        self._head = bytearray()
        self._body: bytearray | None = None
        self._filled = 0
        self._status = 0
        self._headers: dict[str, str] = {}
        self._waiter: asyncio.Future[Response] | None = None
        self._paused = False
        self._progress: asyncio.Future[None] | None = None

    # -- asyncio protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._body is None:
            return memoryview(self._scratch)
        return memoryview(self._body)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        self.last_activity = time.monotonic()
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: the connection is out of step; never reuse it.
            self.close()
            return
        if self._body is not None:
            self._filled += nbytes
            self._maybe_done()
            return
        self._head += self._scratch[:nbytes]
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._fail(TransientError("response head too large"))
            return
        try:
            self._status, self._headers = parse_head(bytes(self._head[:end]))
        except ValueError as e:
            self._fail(TransientError(f"malformed response: {e}"))
            return
        rest = self._head[end + 4 :]
        length = self._headers.get("content-length")
        chunked = "chunked" in self._headers.get("transfer-encoding", "").lower()
        if self._status not in (200, 206) or length is None or chunked:
            # Not ours to interpret: hand back the status; the connection is not reused.
            self._settle(Response(self._status, self._headers, None))
            self.close()
            return
        self._body = bytearray(int(length))
        if len(rest) > len(self._body):
            self._fail(TransientError("more bytes than Content-Length"))
            return
        self._body[: len(rest)] = rest
        self._filled = len(rest)
        self._maybe_done()

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f": {exc}" if exc else ""
        self._settle(TransientError(f"connection closed mid-response{reason}"))
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        # The kernel took what the transport held: progress, as bytes received are.
        self._paused = False
        self.last_activity = time.monotonic()
        self._wake()

    # -- internals -------------------------------------------------------------------------------

    def _maybe_done(self) -> None:
        assert self._body is not None
        if self._filled >= len(self._body):
            body = memoryview(self._body).toreadonly()
            self._settle(Response(self._status, self._headers, body))
            self._body = None  # the next response allocates its own
            if self._headers.get("connection", "").lower() == "close":
                self.close()

    def _settle(self, outcome: Response | Exception) -> None:
        if self._waiter is None or self._waiter.done():
            return
        if isinstance(outcome, Exception):
            self._waiter.set_exception(outcome)
        else:
            self._waiter.set_result(outcome)
        self._wake()  # a sender still writing stops: the reply came first

    def _wake(self) -> None:
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)

    def _fail(self, error: Exception) -> None:
        self._settle(error)
        self.close()

    # -- use -------------------------------------------------------------------------------------

    def begin(self, head: bytes) -> asyncio.Future[Response]:
        """Send a request head; return the future of its response."""
        assert self.transport is not None
        self._head = bytearray()
        self._body = None
        self._filled = 0
        self._status = 0
        self._headers = {}
        self._waiter = asyncio.get_running_loop().create_future()
        # A request abandoned while sending (timeout, cancellation) never awaits its reply:
        # the failure that closing sets must not be logged as never retrieved.
        self._waiter.add_done_callback(_retrieved)
        self.last_activity = time.monotonic()
        self._unsent = None
        self.transport.write(head)
        return self._waiter

    def write(self, data: memoryview) -> asyncio.Future[None] | None:
        """Send more of the request body; while the transport's buffer is above its high-water
        mark, return a future that resolves on progress (drained, connection lost or the reply
        arrived) -- the caller waits for it before writing more."""
        assert self.transport is not None
        self.transport.write(data)
        self.kernel_progress()  # the baseline for the next look
        if not self._paused:
            return None
        self._progress = asyncio.get_running_loop().create_future()
        return self._progress

    def kernel_progress(self) -> bool:
        """Whether the kernel sent some of what it held since this was last asked.

        The transport drains into the socket's send buffer, which may hold megabytes (4 MiB
        by default on Linux): a body's tail sits there after its last write, unseen by flow
        control.  Linux tells how much of it is still unsent (``SIOCOUTQ``); elsewhere this
        is always ``False`` and the clock runs from the last drain."""
        sock = None if self.transport is None else self.transport.get_extra_info("socket")
        if sock is None or _SIOCOUTQ is None:
            return False
        try:
            raw = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0" * 4)
        except OSError:
            return False
        unsent = int.from_bytes(raw, sys.byteorder, signed=True)
        moved = self._unsent is not None and unsent < self._unsent
        self._unsent = unsent
        return moved

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _retrieved(future: asyncio.Future[Response]) -> None:
    if not future.cancelled():
        future.exception()


class S3Direct:
    """GETs and PUTs on one path-style S3 endpoint (see the module docstring)."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.endpoint = Endpoint.parse(endpoint_url)
        self._host = self.endpoint.host
        self.region = region
        self._signer = SigV4Signer(region)
        #: Where each request's credentials come from (a coroutine function on this loop).
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._ssl = ssl.create_default_context() if self.endpoint.scheme == "https" else None
        self._idle: list[_Connection] = []
        #: Requests served (for tests and logs).
        self.requests = 0

    @staticmethod
    def supports(endpoint_url: str | None) -> bool:
        """Whether ``endpoint_url`` is one this client can serve (an S3-compatible store)."""
        if not endpoint_url:
            return False
        parts = urlsplit(endpoint_url)
        host = parts.hostname or ""
        return parts.scheme in ("http", "https") and not host.endswith("amazonaws.com")

    async def get(
        self, bucket: str, key: str, offset: int, length: int, etag: str | None
    ) -> Response:
        """GET ``length`` bytes of ``bucket/key`` at ``offset`` (``If-Match: etag``)."""
        headers = range_headers(offset, length, etag)
        return await self._request("GET", bucket, key, (), headers, b"", EMPTY_SHA256_HASH)

    async def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        query: Sequence[tuple[str, str]] = (),
    ) -> Response:
        """PUT ``body`` to ``bucket/key`` with ``headers`` (each :func:`sendable`) and
        ``query`` (``partNumber`` and ``uploadId`` for UploadPart).  Success is the caller's
        to judge (S3 answers 200 with an ``ETag``)."""
        if len(body) >= HASH_IN_THREAD:
            digest = await asyncio.to_thread(hashlib.sha256, body)
        else:
            digest = hashlib.sha256(body)
        return await self._request(
            "PUT", bucket, key, query, dict(headers or {}), body, digest.hexdigest()
        )

    async def _request(
        self,
        method: str,
        bucket: str,
        key: str,
        query: Sequence[tuple[str, str]],
        headers: dict[str, str],
        body: bytes,
        payload_hash: str,
    ) -> Response:
        credentials = await self.credentials()
        head = signed_head(
            self.endpoint,
            self._signer,
            credentials,
            method,
            bucket,
            key,
            query,
            headers,
            payload_hash,
            len(body) if method == "PUT" else None,
        )

        conn = await self._acquire()
        try:
            waiter = conn.begin(head)
            sent = await self._send_body(conn, waiter, body)
            response = await self._wait(conn, waiter)
        except BaseException:
            conn.close()  # cancelled or failed mid-request: its state is unknown
            raise
        self.requests += 1
        if not sent:
            # Answered before the body was all sent (an error, normally): the server has not
            # read the rest, so the connection is out of step.
            conn.close()
            if response.status < 300:
                raise TransientError(f"{self._host} answered {response.status} to half a body")
        if not conn.closed and len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        return response

    async def _send_body(
        self, conn: _Connection, waiter: asyncio.Future[Response], body: bytes
    ) -> bool:
        """Write ``body`` slice by slice, waiting for the transport to drain between slices;
        return whether all of it was written before the reply (or a failure) came."""
        view = memoryview(body)
        for start in range(0, len(view), SEND_SLICE):
            if waiter.done():
                return False
            progress = conn.write(view[start : start + SEND_SLICE])
            if progress is not None and start + SEND_SLICE < len(view):
                await self._wait(conn, progress)
        return True

    async def _wait(self, conn: _Connection, future: asyncio.Future[T]) -> T:
        # An inactivity timeout, like botocore's read_timeout: a slow transfer is fine while
        # bytes keep moving one way or the other.
        while True:
            idle_for = time.monotonic() - conn.last_activity
            try:
                async with asyncio.timeout(max(0.0, self.read_timeout - idle_for)):
                    return await asyncio.shield(future)
            except TimeoutError:
                if conn.kernel_progress():
                    conn.last_activity = time.monotonic()
                if time.monotonic() - conn.last_activity >= self.read_timeout:
                    raise TransientError(
                        f"no data to or from {self._host} for {self.read_timeout:g} s"
                    ) from None

    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    _Connection,
                    self.endpoint.hostname,
                    self.endpoint.port,
                    ssl=self._ssl,
                    server_hostname=self.endpoint.hostname if self._ssl else None,
                )
        except (OSError, TimeoutError) as e:
            raise TransientError(f"cannot connect to {self._host}: {e}") from e
        return conn

    def close(self) -> None:
        """Close the idle connections (those in use close when their request ends)."""
        for conn in self._idle:
            conn.close()
        self._idle.clear()


__all__ = [
    "HASH_IN_THREAD",
    "MAX_HEAD",
    "MAX_IDLE",
    "CredentialSource",
    "Endpoint",
    "Response",
    "S3Direct",
    "parse_head",
    "range_headers",
    "request_head",
    "sendable",
    "signed_head",
]
