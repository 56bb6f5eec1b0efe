"""A store's prepared requests sent from trio: small PUTs and small ranged reads made on the
trio thread, with no crossing to the sdk's loop.

Why: every call through :meth:`~blobfs.bridge.loop.AsyncioThread.run` costs about 0.45 ms
(two cross-thread wake-ups and GIL hand-offs), of the 6-7 ms a 4 KiB file's
create-write-close takes on the mount; closing a small file is one PUT and reading one back
one ranged GET.  The store builds and signs the requests and judges the replies
(:class:`~sdk.providers.base.PreparedRequests`); this module owns only the I/O:

* :class:`TrioHttp`, a small pool of keep-alive trio streams (``trio.SSLStream`` over
  https) to one origin, shared by GETs and PUTs; a connection is reused only after a
  complete reply to a completely sent request.  A reused idle connection that fails before
  any byte of the reply came is retried once on a fresh one: the server may have closed it
  while it sat idle (the requests are idempotent, so sending one again is safe either
  way).  The connect timeout, and the inactivity timeout as a deadline on the whole
  exchange: a small body fits in the socket's buffers, so sending and waiting for the reply
  are one wait with no progress to observe in between.
* :class:`TrioDirect`, the store's requests over it, with a credentials snapshot fetched on
  the store's loop and kept for :data:`CREDENTIALS_TTL` seconds.

Only plain successes are answered: for anything else (errors, broken connections, timeouts)
:class:`TrioDirect` answers ``None`` and its caller asks the store on its loop, which retries
and returns or raises what it always does.  Two rules keep a failing network from costing
more here: a reply saying the server is busy (429, 5xx: SlowDown) is followed by a pause
(:func:`sdk.retry.busy_delay`) before the caller asks again, and after repeated connection
failures the trio path steps aside for a while (:class:`~sdk.providers.step_aside.StepAside`).
TLS trusts what the store's own client trusts (its prepared requests' ``ssl_context``).
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import trio

from sdk.errors import TransientError
from sdk.providers.base import PreparedRequest, PreparedRequests
from sdk.providers.http1 import BUSY, MAX_HEAD, HttpOrigin, HttpReply, parse_reply_head
from sdk.providers.step_aside import StepAside
from sdk.retry import busy_delay

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Idle connections kept for reuse (the mount closes files from a few tasks at once).
MAX_IDLE = 8
#: Bytes asked of the stream per receive of a reply head: a PUT's is a few hundred bytes,
#: and a 4 KiB GET's body arrives with its head.
RECEIVE = 16 * 1024
#: Largest read made here; larger ones go through the store's loop.  The body is received on
#: the trio thread, which serves every FUSE request, under one deadline, and only small
#: reads gain: the crossing costs about 0.45 ms against a 4 KiB GET's 1-2 ms, but 1 % of a
#: 16 MiB block fetch's 40 ms.
SMALL_GET = 256 * 1024
#: Largest receive of a GET body (the rest of a :data:`SMALL_GET` at most).
MAX_RECEIVE = SMALL_GET
#: How long a credentials snapshot is used before it is asked for again: asking crosses to
#: the store's loop, the very hand-off this module avoids.  Renewing credentials are renewed
#: minutes before they expire (botocore's providers 10-15, the sdk's scoped stores
#: ``CredentialTimes.margin``), so a snapshot a minute old is still valid; where it is not,
#: the server refuses it, the snapshot is dropped and the caller's fallback asks afresh.
CREDENTIALS_TTL = 60.0


class OnLoop(Protocol):
    """Runs a coroutine function on the store's event loop and hands its result (or
    exception) back to the calling trio task: :meth:`~blobfs.bridge.loop.AsyncioThread.run`."""

    def __call__(self, fn: Callable[[], Awaitable[T]], /) -> Awaitable[T]: ...


class _NoReply(TransientError):
    """The connection failed before any byte of the reply arrived."""


class TrioHttp:
    """Keep-alive HTTP/1.1 connections to one origin, from one trio run (see the module
    docstring).  :meth:`aclose` closes the idle ones."""

    def __init__(
        self,
        origin: HttpOrigin,
        *,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.origin = origin
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._ssl: ssl.SSLContext | None = None
        if origin.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._idle: list[trio.abc.Stream] = []
        #: Replies received and connections opened (for tests and logs).
        self.requests = 0
        self.connects = 0

    async def send(self, request: bytes, *, keep: frozenset[int], limit: int) -> HttpReply:
        """Send ``request`` (idempotent) on a pooled connection and read its reply: with its
        body when its status is in ``keep`` and its ``Content-Length`` body is at most
        ``limit`` bytes, else its status and headers only.  Raises
        :class:`~sdk.errors.TransientError` for connection failures and timeouts."""
        stream, reused = await self._acquire()
        try:
            return await self._exchange(stream, request, keep, limit)
        except _NoReply:
            if not reused:
                raise
            # Closed while idle, most likely (servers drop keep-alive connections after a
            # while): once more on a connection of our own making.
            stream, _ = await self._acquire(fresh=True)
            return await self._exchange(stream, request, keep, limit)

    async def _exchange(
        self, stream: trio.abc.Stream, request: bytes, keep: frozenset[int], limit: int
    ) -> HttpReply:
        """Send ``request`` on ``stream`` and read the reply; put the stream back in the
        pool when the exchange left it reusable, else close it."""
        reusable = False
        try:
            with trio.fail_after(self.read_timeout):
                reply, reusable = await self._send_and_receive(stream, request, keep, limit)
        except trio.TooSlowError:
            raise TransientError(
                f"no reply from {self.origin.host} within {self.read_timeout:g} s"
            ) from None
        finally:
            # Also on cancellation: a stream in an unknown state is never reused.
            if reusable and len(self._idle) < MAX_IDLE:
                self._idle.append(stream)
            else:
                await trio.aclose_forcefully(stream)
        self.requests += 1
        return reply

    async def _send_and_receive(
        self, stream: trio.abc.Stream, request: bytes, keep: frozenset[int], limit: int
    ) -> tuple[HttpReply, bool]:
        """The reply to ``request`` and whether the connection is still in step.  A reply
        with a status in ``keep`` and a ``Content-Length`` body of at most ``limit`` bytes
        is read to its end and comes with that body; any other reply comes with its status
        and headers only, and its connection is not reused (what is left of it unread)."""
        host = self.origin.host
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
                raise TransientError(f"{host}: response head too large")
            cause: Exception | None = sent_error
            try:
                chunk = await stream.receive_some(RECEIVE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                chunk, cause = b"", e
            if not chunk:
                reason = f": {cause}" if cause else ""
                if not received:
                    raise _NoReply(f"{host} closed the connection{reason}")
                raise TransientError(f"{host}: connection closed mid-response")
            received += chunk
        try:
            status, headers = parse_reply_head(bytes(received[:end]))
        except ValueError as e:
            raise TransientError(f"{host}: malformed response: {e}") from None
        reply = HttpReply(status, headers, None)
        if sent_error is not None and status < 300:
            # A success for a request the server cannot have read whole: out of step.
            raise TransientError(f"{host} answered {status} to half a body")
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
            return reply, False
        body = bytearray(int(length))
        filled = len(received) - end - 4
        if filled > len(body):
            return reply, False  # more than it announced: out of step
        body[:filled] = received[end + 4 :]
        while filled < len(body):
            try:
                chunk = await stream.receive_some(min(len(body) - filled, MAX_RECEIVE))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                # The status and headers stand (all a PUT's reply says); the body and the
                # connection are lost.
                return reply, False
            body[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        reusable = headers.get("connection", "").lower() != "close"
        return HttpReply(status, headers, memoryview(body).toreadonly()), reusable

    async def _acquire(self, *, fresh: bool = False) -> tuple[trio.abc.Stream, bool]:
        """An idle connection (unless ``fresh``) or a new one; and whether it was idle."""
        if self._idle and not fresh:
            return self._idle.pop(), True
        host, port = self.origin.hostname, self.origin.port
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
            raise TransientError(f"cannot connect to {self.origin.host}: {e!r}") from e
        self.connects += 1
        return stream, False

    async def aclose(self) -> None:
        """Close the idle connections (one in use closes when its request ends)."""
        idle, self._idle = self._idle, []
        for stream in idle:
            await trio.aclose_forcefully(stream)


class TrioDirect:
    """Small PUTs and small ranged reads of one store, made from trio with its
    :class:`~sdk.providers.base.PreparedRequests` (see the module docstring).  ``on_loop``
    reaches the store's loop, where its credentials are fetched.  Use it from one trio run;
    close it with :meth:`aclose`."""

    def __init__(
        self,
        requests: PreparedRequests[Any],
        on_loop: OnLoop,
        *,
        credentials_ttl: float = CREDENTIALS_TTL,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.prepared = requests
        self._on_loop = on_loop
        self._credentials_ttl = credentials_ttl
        self._snapshot: Any = None
        self._snapshot_at = -math.inf
        #: The connections (their counters are for tests and logs).
        self.client = TrioHttp(
            requests.origin,
            connect_timeout=requests.connect_timeout,
            read_timeout=requests.read_timeout,
            ssl_context=ssl_context or requests.ssl_context(),
        )
        #: Whether to try the trio path now (connection failures in a row set it aside).
        self.health = StepAside(f"trio-side requests to {requests.origin.host}")

    async def put(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> str | None:
        """Store ``data`` under ``key`` as :meth:`BlobStore.put
        <sdk.providers.base.BlobStore.put>` would; return the new ETag, or ``None`` when not
        handled here (a body too large, headers that need encoding, a refusal, a broken
        connection, a timeout ...): the caller then calls the store's own PUT."""
        if not self.health.usable:
            return None
        request = self.prepared.put_request(key, data, metadata=metadata)
        if request is None:
            return None
        reply = await self._send_judged(request, f"put {key}")
        return None if reply is None else await self._busy(self.prepared.put_etag(reply), reply)

    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview | None:
        """What :meth:`BlobStore.read_view <sdk.providers.base.BlobStore.read_view>`
        returns when it is a plain ranged read of at most :data:`SMALL_GET` bytes that the
        server answered with bytes; ``None`` for everything else: the caller then calls the
        store's own read."""
        if length > SMALL_GET or not self.health.usable:
            return None
        request = self.prepared.read_request(key, offset, length, etag=etag)
        if request is None:
            return None
        reply = await self._send_judged(request, f"read {key}")
        return (
            None if reply is None else await self._busy(self.prepared.read_view(key, reply), reply)
        )

    async def _send_judged(self, request: PreparedRequest[Any], what: str) -> HttpReply | None:
        """:meth:`send`, a connection failure counted and answered ``None`` (the caller
        repeats the request on the store's loop, which retries with backoff)."""
        try:
            reply = await self.send(request)
        except TransientError as e:
            self.health.failed(e)
            log.debug("%s from trio: %s", what, e)
            return None
        self.health.succeeded()
        return reply

    async def _busy(self, result: T | None, reply: HttpReply) -> T | None:
        """``result``, after a pause when it is ``None`` because the server said it was
        busy: the caller's repeat of the request must not come at once."""
        if result is None and reply.status in BUSY:
            await trio.sleep(busy_delay())
        return result

    async def send(self, request: PreparedRequest[Any]) -> HttpReply:
        """``request`` signed with the credentials snapshot, sent, and its reply (for
        callers that judge it themselves); the snapshot is dropped when the reply refuses
        it.  Raises :class:`~sdk.errors.TransientError` for connection failures and
        timeouts."""
        signed = request.sign(await self._credentials())
        reply = await self.client.send(signed, keep=request.keep, limit=request.max_body)
        if self.prepared.refuses_credentials(reply):
            self._snapshot = None  # renewed or revoked: ask again next time
        return reply

    async def _credentials(self) -> Any:
        now = trio.current_time()
        if self._snapshot is None or now - self._snapshot_at >= self._credentials_ttl:
            self._snapshot = await self._on_loop(self.prepared.credentials)
            self._snapshot_at = now
        return self._snapshot

    async def aclose(self) -> None:
        """Close the idle connections."""
        await self.client.aclose()


__all__ = ["CREDENTIALS_TTL", "SMALL_GET", "OnLoop", "TrioDirect", "TrioHttp"]
