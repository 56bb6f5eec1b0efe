"""Proxies between the code under test and the real servers, each on its own asyncio loop in a
thread (so synchronous tests, trio tests and subprocesses can all use them):

* :class:`FaultProxy`, a TCP proxy that misbehaves on purpose: latency, connections dropped
  at once, reset mid-request or mid-response, responses cut short or stalled, and requests
  answered "503 busy" without reaching the server (:class:`Faults`).  It forwards bytes as
  they are, so signatures over the ``Host`` header stay valid: the client names the proxy
  and the server checks what the client signed.
* :class:`HttpProxy`, a plain HTTP proxy (``CONNECT`` tunnels and absolute-form requests),
  which records what went through it: the proxy ``HTTPS_PROXY``/``HTTP_PROXY`` name.

Every fault is drawn per request from a seeded generator and bounded (:attr:`Faults.most`),
so a test is repeatable and ends.  Requests are told apart by their heads and
``Content-Length`` bodies (the clients here never pipeline, so a new request head means the
previous response was read whole); after a chunked request body the connection is only
forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

#: The reply to a request a busy S3 server refuses (what AWS sends for SlowDown).
S3_SLOWDOWN = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>"
)
#: What Azure Blob Storage answers when busy.
AZURE_BUSY = (
    b"<?xml version='1.0' encoding='utf-8'?>\n<Error><Code>ServerBusy</Code>"
    b"<Message>The server is busy.</Message></Error>"
)
_HEAD_LIMIT = 64 * 1024
_CHUNK = 64 * 1024
#: The fault kinds, in the order they are drawn.
KINDS = ("drop", "reset_request", "reset_response", "truncate", "stall", "slowdown")


@dataclass(frozen=True)
class Faults:
    """What :class:`FaultProxy` does to each request: each kind strikes a request with its
    probability (at most one kind per request)."""

    #: Seconds each chunk (up to 64 KiB) is held back before it is forwarded, both ways.
    latency: float = 0.0
    #: The connection is reset as soon as the request's head has arrived.
    drop: float = 0.0
    #: Reset after a random number of the request's bytes (1..``after``): mid-request.
    reset_request: float = 0.0
    #: Reset after a random number of the response's bytes: mid-body, or mid-head.
    reset_response: float = 0.0
    #: The response ends after a random number of bytes with a clean close (FIN).
    truncate: float = 0.0
    #: The response stops after a random number of bytes for ``stall_for`` seconds.
    stall: float = 0.0
    #: The request is answered ``503`` (SlowDown / ServerBusy) by the proxy, which then
    #: closes the connection.
    slowdown: float = 0.0
    after: int = 32 * 1024
    stall_for: float = 2.0
    #: Strike only requests whose head this accepts.
    only: Callable[[bytes], bool] | None = None
    #: At most this many faults in all; then the proxy forwards faithfully.
    most: int | None = None


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a crashed peer or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _LoopThread:
    """An asyncio loop in a daemon thread, serving one listener."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def start(self) -> Self:
        self._thread.start()

        async def listen() -> asyncio.Server:
            return await asyncio.start_server(self._handle, self.host, 0, limit=_HEAD_LIMIT)

        self._server = self._run(listen())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        """``host:port`` as a URL names it (IPv6 literals in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def close_connections(self) -> None:
        """Reset every connection in progress (the listener stays)."""

        async def cancel() -> None:
            for task in list(self._tasks):
                task.cancel()

        self._run(cancel())

    def stop(self) -> None:
        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()

        with contextlib.suppress(Exception):
            self._run(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: How long a new connection may take to send its first request head.
_HEAD_WAIT = 5.0


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The request head the client sends first (empty if it sends none in time)."""
    with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
        async with asyncio.timeout(_HEAD_WAIT):
            return await reader.readuntil(b"\r\n\r\n")
    return b""


class FaultProxy(_LoopThread):
    """A TCP proxy to ``upstream`` that applies :class:`Faults` (see the module docstring).
    ``busy_reply`` is the error body of its 503 replies (:data:`S3_SLOWDOWN` or
    :data:`AZURE_BUSY`)."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        busy_reply: bytes = S3_SLOWDOWN,
        seed: int = 0,
    ) -> None:
        super().__init__(host)
        self.upstream = upstream
        self.busy_reply = busy_reply
        self.faults = Faults()
        self._random = random.Random(seed)
        #: ``connections``, each fault kind struck, ``bytes_up`` and ``bytes_down``.
        self.stats: Counter[str] = Counter()
        #: Every request head, in order, and when it came (:func:`time.monotonic`).
        self.heads: list[bytes] = []
        self.head_times: list[float] = []

    def set(self, faults: Faults | None = None, *, seed: int | None = None) -> None:
        """Apply ``faults`` to connections from now on (none: behave)."""
        self.faults = faults or Faults()
        if seed is not None:
            self._random.seed(seed)

    def struck(self) -> int:
        return sum(self.stats[k] for k in KINDS)

    def _draw(self, faults: Faults, head: bytes) -> str | None:
        if faults.most is not None and self.struck() >= faults.most:
            return None
        if faults.only is not None and not faults.only(head):
            return None
        roll = self._random.random()
        for kind in KINDS:
            chance = float(getattr(faults, kind))
            if roll < chance:
                return kind
            roll -= chance
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        strike = _Strike()
        up_writer: asyncio.StreamWriter | None = None
        responses: asyncio.Task[None] | None = None
        try:
            head = await _next_head(reader)
            while head:
                faults = self.faults
                self.heads.append(head)
                self.head_times.append(time.monotonic())
                kind = self._draw(faults, head)
                if kind is not None:
                    self.stats[kind] += 1
                if kind == "drop":
                    _reset(writer)
                    return
                if kind == "slowdown":
                    writer.write(
                        b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                        b"x-ms-error-code: ServerBusy\r\nConnection: close\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(self.busy_reply), self.busy_reply)
                    )
                    await writer.drain()
                    return
                if up_writer is None:
                    up_reader, up_writer = await asyncio.open_connection(
                        *self.upstream, limit=_HEAD_LIMIT
                    )
                    responses = asyncio.create_task(
                        self._responses(up_reader, writer, up_writer, strike)
                    )
                cut = self._random.randint(1, max(1, faults.after))
                # The client sends a request only once it has the whole previous response
                # (no pipelining), so the response side is between responses now.
                strike.arm(kind if kind in _RESPONSE_KINDS else None, cut, faults)
                length = _body_length(head)
                mid_request = cut if kind == "reset_request" else None
                await self._request(reader, up_writer, writer, head, length, faults, mid_request)
                if length is None:  # a chunked body: no more request boundaries to see
                    await _tunnel(reader, up_writer, b"")
                head = await _next_head(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, _Closed):
            pass
        finally:
            if responses is not None:
                responses.cancel()
                with contextlib.suppress(BaseException):
                    await responses
            if up_writer is not None:
                up_writer.close()

    async def _request(
        self,
        reader: asyncio.StreamReader,
        up: asyncio.StreamWriter,
        down: asyncio.StreamWriter,
        head: bytes,
        length: int | None,
        faults: Faults,
        cut: int | None,
    ) -> None:
        """Forward one request (head, then ``length`` bytes of body); reset both sides
        after ``cut`` bytes of it when given."""
        pending, left, sent = head, length or 0, 0
        while pending:
            if faults.latency:
                await asyncio.sleep(faults.latency)
            if cut is not None and sent + len(pending) >= cut:
                up.write(pending[: cut - sent])
                await up.drain()
                _reset(up)
                _reset(down)
                raise _Closed
            up.write(pending)
            await up.drain()
            sent += len(pending)
            self.stats["bytes_up"] += len(pending)
            pending = await reader.read(min(_CHUNK, left)) if left else b""
            if left and not pending:
                raise _Closed
            left -= len(pending)

    async def _responses(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        strike: _Strike,
    ) -> None:
        """Forward the server's responses; apply the fault the request in progress drew."""
        try:
            while chunk := await source.read(_CHUNK):
                faults = strike.faults
                if faults.latency:
                    await asyncio.sleep(faults.latency)
                if strike.kind is not None and strike.sent + len(chunk) >= strike.cut:
                    keep = strike.cut - strike.sent
                    sink.write(chunk[:keep])
                    await sink.drain()
                    if strike.kind == "stall":
                        await asyncio.sleep(faults.stall_for)
                        chunk, strike.kind = chunk[keep:], None
                    elif strike.kind == "truncate":
                        sink.close()
                        other.close()
                        return
                    else:
                        _reset(sink)
                        _reset(other)
                        return
                sink.write(chunk)
                await sink.drain()
                strike.sent += len(chunk)
                self.stats["bytes_down"] += len(chunk)
            sink.close()  # the server closed: so does the client's side
        except OSError:
            sink.close()


#: Fault kinds that strike the response to a request.
_RESPONSE_KINDS = ("reset_response", "truncate", "stall")


@dataclass
class _Strike:
    """The response fault the request in progress on a connection drew, and where."""

    kind: str | None = None
    cut: int = 0
    sent: int = 0
    faults: Faults = Faults()

    def arm(self, kind: str | None, cut: int, faults: Faults) -> None:
        self.kind, self.cut, self.sent, self.faults = kind, cut, 0, faults


async def _next_head(reader: asyncio.StreamReader) -> bytes:
    """The next request head on a kept-alive connection; ``b""`` when the client closed."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""


def _body_length(head: bytes) -> int | None:
    """The request body's length (0 without one); ``None`` for a chunked body."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return None
        if name == b"content-length":
            length = int(value.strip())
    return length


class _Closed(Exception):
    """A direction of a proxied connection ended."""


class HttpProxy(_LoopThread):
    """An HTTP proxy: ``CONNECT`` tunnels and absolute-form requests, forwarded as they
    come; :attr:`requests` records the first request line of each connection."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.requests: list[str] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        if not head:
            return
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.decode("latin-1").split(" ", 2)
        self.requests.append(f"{method} {target}")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            first = b""
        else:
            url = urlsplit(target)
            assert url.hostname is not None, target
            up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            kept = [h for h in rest.split(b"\r\n") if not h.lower().startswith(b"proxy-")]
            first = f"{method} {path} {version}\r\n".encode("latin-1") + b"\r\n".join(kept)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_tunnel(reader, up_writer, first))
                tg.create_task(_tunnel(up_reader, writer, b""))
        except* (OSError, _Closed):
            pass
        finally:
            up_writer.close()


async def _tunnel(source: asyncio.StreamReader, sink: asyncio.StreamWriter, first: bytes) -> None:
    if first:
        sink.write(first)
    while chunk := await source.read(_CHUNK):
        sink.write(chunk)
        await sink.drain()
    raise _Closed


__all__ = ["AZURE_BUSY", "KINDS", "S3_SLOWDOWN", "FaultProxy", "Faults", "HttpProxy"]
