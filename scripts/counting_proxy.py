"""A TCP proxy that counts the bytes passing through it, for benchmarks that report how much
each tool fetched from the server: give every tool its own proxy in front of the server.

Each direction of each connection is a thread moving data with ``splice(2)`` through a
1 MiB pipe, so the bytes are never copied into Python and the proxy costs the machine next
to nothing next to the tools it measures.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading

MiB = 1024 * 1024
_F_SETPIPE_SZ = 1031


class CountingProxy:
    """A TCP proxy on a free loopback port to ``target``, counting the bytes that come back
    from the server (``down``) and go to it (``up``).  Each direction of each connection is
    a thread moving data with ``splice(2)`` through a 1 MiB pipe: no copies in Python."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.down = 0
        self.up = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        r, w = os.pipe()
        try:
            fcntl.fcntl(w, _F_SETPIPE_SZ, MiB)
        except OSError:
            pass
        try:
            while True:
                n = os.splice(src.fileno(), w, MiB)
                if n == 0:
                    break
                with self._lock:
                    if down:
                        self.down += n
                    else:
                        self.up += n
                while n:
                    n -= os.splice(r, dst.fileno(), n)
        except OSError:
            pass
        finally:
            os.close(r)
            os.close(w)
            for s in (dst, src):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            src.close()

    def close(self) -> None:
        self._listener.close()
