"""HTTP/1.1 as plain values, for the providers' own HTTP clients and the callers of
:class:`~sdk.providers.base.PreparedRequests`: where requests go (:class:`HttpOrigin`), what
came back (:class:`HttpReply`), and how a reply head reads (:func:`parse_reply_head`).
No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Largest reply head accepted (status line and headers).
MAX_HEAD = 64 * 1024
#: Statuses by which a server says it is busy or failing for now (S3's SlowDown is 503,
#: InternalError 500; Azure's ServerBusy 503): worth repeating, after a pause.
BUSY = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpOrigin:
    """Where requests go: scheme (``http`` or ``https``), host name and port to connect to,
    and ``host``, the name the requests carry in their ``Host`` header (for messages too)."""

    scheme: str
    hostname: str
    port: int
    host: str


@dataclass(frozen=True)
class HttpReply:
    """What a request got: the status, the headers (names lower-case) and the body when it
    was read whole (``None`` otherwise: a read-only view of the buffer it was received
    into)."""

    status: int
    headers: Mapping[str, str]
    body: memoryview | None


def content_length(headers: Mapping[str, str]) -> int | None:
    """The body length a reply announces: ``None`` when it has none, a chunked body, or a
    value that is not a plain decimal number."""
    value = headers.get("content-length")
    if (
        value is None
        or not value.isdigit()
        or "chunked" in headers.get("transfer-encoding", "").lower()
    ):
        return None
    return int(value)


def parse_reply_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and headers (names lower-case) of a reply head without its final blank
    line; :class:`ValueError` if it is not an HTTP/1.x reply head."""
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


__all__ = ["BUSY", "MAX_HEAD", "HttpOrigin", "HttpReply", "content_length", "parse_reply_head"]
