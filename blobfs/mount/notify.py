"""Telling others how the daemon is doing: systemd's ``sd_notify`` and the readiness pipe.

``sd_notify``: systemd passes ``$NOTIFY_SOCKET`` (a datagram socket, ``@`` meaning the
abstract namespace) to ``Type=notify`` services; a ``READY=1`` datagram marks the unit
started.  Sending it ourselves avoids a dependency for five lines of socket code.

The readiness pipe: ``blobfs mount`` without ``--foreground`` starts the daemon as a child
and waits on a pipe for one line, ``OK`` or ``ERR <reason>``, so it can exit only once the
mount is live -- or fail with the daemon's own one-line reason.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as e:
        log.warning("sd_notify(%s) failed: %s", state, e)
        return False
    return True


class ReadyPipe:
    """The writing end of the readiness pipe (a no-op without one)."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def _send(self, line: str) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, (line.replace("\n", " ") + "\n").encode())
            os.close(self._fd)
        except OSError:
            pass  # the parent gave up waiting; nothing to tell
        self._fd = None

    def ready(self) -> None:
        self._send("OK")

    def failed(self, reason: str) -> None:
        self._send(f"ERR {reason}")


def wait_ready(fd: int, timeout: float) -> str | None:
    """In the parent: ``None`` once the child said OK, else the reason it gave (or ``""``
    if it closed the pipe without a word)."""
    import select

    buf = b""
    with os.fdopen(fd, "rb", buffering=0) as f:
        while b"\n" not in buf:
            ready, _, _ = select.select([f], [], [], timeout)
            if not ready:
                return f"the daemon did not become ready within {timeout:.0f} s"
            chunk = f.read(4096)
            if not chunk:
                break
            buf += chunk
    line = buf.decode(errors="replace").strip()
    if line == "OK":
        return None
    return line[4:] if line.startswith("ERR ") else line
