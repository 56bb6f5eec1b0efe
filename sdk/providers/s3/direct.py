"""Ranged GETs and PUTs on S3-compatible endpoints without botocore's per-request machinery.

Why beside aiobotocore: botocore's per-request work (endpoint rules, event hooks, request
serialisation, response parsing) costs about 4 ms of CPU per request on the project's 2-core
machine, where this client's 64 KiB GET costs 0.6 ms (``scripts/bench_s3_direct.py``), and
random readers and small files make many small requests.  Path-style addressing only
(S3-compatible stores; AWS keeps the botocore path), over a small pool of keep-alive HTTP/1.1
connections:

* ``GET`` with ``Range`` and optional ``If-Match`` (:meth:`S3Direct.get`).  A body is received
  straight into a buffer of its ``Content-Length`` (no chunk list, no join) and handed out as
  a read-only view of that buffer, never copied here.
* ``PUT`` of one body with caller-given headers and query (:meth:`S3Direct.put`): PutObject
  and UploadPart.  The request head and the body are written separately (the body is never
  copied into a request), in slices with the transport's flow control, so an 8 MiB part does
  not sit whole in the transport's buffer.  Sending counts as activity for the inactivity
  timeout, the kernel's send buffer draining after the last write included (Linux).  Bodies
  of :data:`~sdk.providers.s3.wire.HASH_IN_THREAD` bytes or more are hashed in a worker
  thread (hashlib releases the GIL).

Requests are built and signed by :mod:`sdk.providers.s3.wire`.  A status other than 200/206,
or a chunked or length-less body, or a body longer than asked for (a GET's range; a buffer is
never sized by what a server merely claims), is not interpreted: the status is returned and
the caller repeats the request through botocore.  Broken connections and timeouts raise
:class:`~sdk.errors.TransientError` (the caller then takes botocore, which retries, and
:attr:`S3Direct.health` counts them: :mod:`sdk.providers.step_aside`); a reused idle
connection that fails before any byte of the reply is tried once more on a fresh one (the
server may have closed it while idle).  A connection is reused only after a complete
response to a completely sent request.  TLS trusts what botocore trusts
(:mod:`sdk.providers.s3.transport`).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import ssl
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

from sdk.errors import TransientError
from sdk.providers.http1 import MAX_HEAD, HttpReply, content_length, parse_reply_head
from sdk.providers.s3.conventions import is_aws
from sdk.providers.s3.sigv4 import SigV4Signer
from sdk.providers.s3.wire import (
    EMPTY_SHA256,
    HASH_IN_THREAD,
    CredentialSource,
    Endpoint,
    range_headers,
    signed_head,
)
from sdk.providers.step_aside import StepAside

#: Idle connections kept for reuse.
MAX_IDLE = 16
#: Slice of a request body handed to the transport at a time; the next waits until the
#: transport's buffer has drained (its flow control), so at most about this much is copied
#: into it and the inactivity clock advances with every slice sent.
SEND_SLICE = 128 * 1024

T = TypeVar("T")

#: Linux's ioctl for the bytes a socket has not sent yet (``SIOCOUTQ`` is ``TIOCOUTQ``).
_SIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if sys.platform == "linux" else None


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
        #: Largest body the request in progress reads (a longer one is not interpreted).
        self._max_body = 0
        #: Some byte of the reply to the request in progress arrived.
        self.replied = False
        self._filled = 0
        self._status = 0
        self._headers: dict[str, str] = {}
        self._waiter: asyncio.Future[HttpReply] | None = None
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
        self.replied = True
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
            self._status, self._headers = parse_reply_head(bytes(self._head[:end]))
        except ValueError as e:
            self._fail(TransientError(f"malformed response: {e}"))
            return
        rest = self._head[end + 4 :]
        length = content_length(self._headers)
        if self._status not in (200, 206) or length is None or length > self._max_body:
            # Not ours to interpret (an error, a chunked body, a body longer than asked
            # for: never allocate what a server merely claims): hand back the status; the
            # connection is not reused.
            self._settle(HttpReply(self._status, self._headers, None))
            self.close()
            return
        self._body = bytearray(length)
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
            self._settle(HttpReply(self._status, self._headers, body))
            self._body = None  # the next response allocates its own
            if self._headers.get("connection", "").lower() == "close":
                self.close()

    def _settle(self, outcome: HttpReply | Exception) -> None:
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

    def begin(self, head: bytes, max_body: int) -> asyncio.Future[HttpReply]:
        """Send a request head; return the future of its response, whose body is read only
        up to ``max_body`` bytes."""
        assert self.transport is not None
        self._head = bytearray()
        self._body = None
        self._max_body = max_body
        self.replied = False
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


def _retrieved(future: asyncio.Future[HttpReply]) -> None:
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
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context``: the TLS settings of an https endpoint (default: the system's
        trust store)."""
        self.endpoint = Endpoint.parse(endpoint_url)
        self._host = self.endpoint.host
        self.region = region
        self._signer = SigV4Signer(region)
        #: Where each request's credentials come from (a coroutine function on this loop).
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._ssl: ssl.SSLContext | None = None
        if self.endpoint.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._idle: list[_Connection] = []
        #: Requests served (for tests and logs).
        self.requests = 0
        #: Whether to try this client now; its caller records failures and replies here.
        self.health = StepAside(f"direct S3 client of {self._host}")

    @staticmethod
    def supports(endpoint_url: str | None) -> bool:
        """Whether ``endpoint_url`` is one this client can serve (an S3-compatible store)."""
        if not endpoint_url:
            return False
        parts = urlsplit(endpoint_url)
        return (
            parts.scheme in ("http", "https") and bool(parts.hostname) and not is_aws(endpoint_url)
        )

    async def get(
        self, bucket: str, key: str, offset: int, length: int, etag: str | None
    ) -> HttpReply:
        """GET ``length`` bytes of ``bucket/key`` at ``offset`` (``If-Match: etag``)."""
        headers = range_headers(offset, length, etag)
        return await self._request("GET", bucket, key, (), headers, b"", EMPTY_SHA256, length)

    async def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        query: Sequence[tuple[str, str]] = (),
    ) -> HttpReply:
        """PUT ``body`` to ``bucket/key`` with ``headers`` (each :func:`sendable`) and
        ``query`` (``partNumber`` and ``uploadId`` for UploadPart).  Success is the caller's
        to judge (S3 answers 200 with an ``ETag``)."""
        if len(body) >= HASH_IN_THREAD:
            digest = await asyncio.to_thread(hashlib.sha256, body)
        else:
            digest = hashlib.sha256(body)
        return await self._request(
            "PUT", bucket, key, query, dict(headers or {}), body, digest.hexdigest(), MAX_HEAD
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
        max_body: int,
    ) -> HttpReply:
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

        conn, reused = await self._acquire()
        try:
            sent, response = await self._exchange(conn, head, body, max_body)
        except TransientError:
            if not reused or conn.replied:
                raise
            # Closed while idle, most likely: once more on a connection of our own making.
            conn, _ = await self._acquire(fresh=True)
            sent, response = await self._exchange(conn, head, body, max_body)
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

    async def _exchange(
        self, conn: _Connection, head: bytes, body: bytes, max_body: int
    ) -> tuple[bool, HttpReply]:
        """Send the request on ``conn``; whether its body went out whole, and the reply."""
        try:
            waiter = conn.begin(head, max_body)
            sent = await self._send_body(conn, waiter, body)
            return sent, await self._wait(conn, waiter)
        except BaseException:
            conn.close()  # cancelled or failed mid-request: its state is unknown
            raise

    async def _send_body(
        self, conn: _Connection, waiter: asyncio.Future[HttpReply], body: bytes
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

    async def _acquire(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        """An idle connection (unless ``fresh``) or a new one; and whether it was idle."""
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
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
        return conn, False

    def close(self) -> None:
        """Close the idle connections (those in use close when their request ends)."""
        for conn in self._idle:
            conn.close()
        self._idle.clear()


__all__ = ["MAX_IDLE", "SEND_SLICE", "S3Direct"]
