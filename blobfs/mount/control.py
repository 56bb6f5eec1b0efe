"""The control socket of a running mount: ``blobfs status``, ``flush`` and ``invalidate``
talk to the daemon through it.

Where: ``mount-<hash of the mount point>.sock`` in the runtime directory of the user who
mounted (:func:`blobfs.mount.mountpoint.secure_runtime_dir`: ``$XDG_RUNTIME_DIR/blobfs``,
``/run/blobfs`` for root), beside the pid file, so a command needs only the mount point.

Who: the socket is created with mode 0600 (bound under a temporary name, then renamed into
place, so it is never reachable with looser permissions) in a directory only its owner may
enter; and every connection's peer credentials (``SO_PEERCRED``) are checked: only the
daemon's own user and root are served.  Either check alone keeps other users out; the
second also holds if the first is loosened by mistake.  ``docs/MOUNT.md`` says why that is
enough.

The protocol (version :data:`PROTOCOL`), documented in ``docs/MOUNT.md``: one JSON object per
line each way.  A request is ``{"v": 1, "op": OP, ...}``; the reply is ``{"v": 1, "ok":
true, "result": {...}}`` or ``{"v": 1, "ok": false, "error": "why"}``.  Operations:
``status``; ``flush`` with ``paths`` (relative to the mount's root; none: all) and
``wait`` (seconds to wait at most, or null); ``invalidate`` with ``paths``.  A connection may carry
several requests, one after the other.

The server runs on the daemon's trio thread, as a task of its nursery; it reads the same
state as the file system's requests, between their awaits, so it needs no locks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import struct
from pathlib import Path
from typing import Any

import trio

from blobfs.errors import FsError
from blobfs.fs.sync import SyncReport
from blobfs.mount import observe
from blobfs.mount.observe import Observed

log = logging.getLogger(__name__)

#: The protocol version this daemon speaks.
PROTOCOL = 1
#: How long a refused connection is kept open for the client to read why.
REFUSED_LINGER = 2.0
#: Longest request line accepted.
MAX_REQUEST = 1 << 20


def peer_uid(sock: trio.socket.SocketType) -> int:
    """The user id of the process at the other end of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def allowed(uid: int) -> bool:
    """Whether a peer of user ``uid`` may use the socket: the daemon's user, or root."""
    return uid in (os.geteuid(), 0)


class ControlServer:
    """Serves the control socket of one mount (see the module docstring)."""

    def __init__(self, observed: Observed, nursery: trio.Nursery) -> None:
        self.observed = observed
        #: Where flushes run: they go on if the client that asked goes away.
        self.nursery = nursery

    async def serve(
        self, path: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``path`` until cancelled (``task_status.started()`` once listening),
        then remove it."""
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            temporary.unlink(missing_ok=True)
            await sock.bind(str(temporary))
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
            identity = os.stat(path).st_ino
            sock.listen(16)
        except BaseException:
            sock.close()
            temporary.unlink(missing_ok=True)
            raise
        task_status.started()
        try:
            await trio.serve_listeners(self._connection, [trio.SocketListener(sock)])
        finally:
            try:
                # Only our own: a new daemon on the same mount point may have replaced it.
                if os.stat(path).st_ino == identity:
                    os.unlink(path)
            except OSError:
                pass

    async def _connection(self, stream: trio.SocketStream) -> None:
        # Whatever happens on one connection stays there: an exception escaping here would
        # end the listener's nursery, and with it the daemon.
        try:
            async with stream:
                await self._converse(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away
        except Exception:
            log.exception("control socket: a connection failed")

    async def _converse(self, stream: trio.SocketStream) -> None:
        uid = peer_uid(stream.socket)
        if not allowed(uid):
            log.warning("control socket: refused a connection of uid %d", uid)
            await _send(stream, _error(f"uid {uid} may not control this mount"))
            # Let the client finish sending (else its send fails before it reads why).
            with trio.move_on_after(REFUSED_LINGER):
                while await stream.receive_some(65536):
                    pass
            return
        buffer = b""
        while True:
            while b"\n" not in buffer:
                if len(buffer) > MAX_REQUEST:
                    await _send(stream, _error("request too long"))
                    return
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
            line, buffer = buffer.split(b"\n", 1)
            await _send(stream, await self.handle(line))

    async def handle(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line."""
        try:
            request = json.loads(line)
        except ValueError:
            return _error("a request is one JSON object per line")
        if not isinstance(request, dict):
            return _error("a request is one JSON object per line")
        version = request.get("v", PROTOCOL)
        if not isinstance(version, int) or version > PROTOCOL:
            return _error(f"protocol version {version!r} is not spoken here (this is {PROTOCOL})")
        op = request.get("op")
        paths = request.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            return _error("paths must be a list of strings")
        try:
            if op == "status":
                return _ok(observe.status(self.observed))
            if op == "flush":
                return _ok(await self.flush(paths, request.get("wait")))
            if op == "invalidate":
                return _ok(await self.invalidate(paths))
        except FsError as e:  # a path that can name nothing
            return _error(str(e))
        except Exception as e:
            log.exception("control socket: %s failed", op)
            return _error(f"{op} failed in the daemon: {type(e).__name__}: {e}")
        return _error(f"unknown operation {op!r} (status, flush, invalidate)")

    async def flush(self, paths: list[str], wait: object) -> dict[str, Any]:
        """Store every change under ``paths`` made before now; stop waiting (the uploads go
        on) after ``wait`` seconds, if it is a positive number."""
        fs = self.observed.fs
        scope = fs.scope(paths)
        limit = float(wait) if isinstance(wait, int | float) and wait > 0 else math.inf
        report = SyncReport()
        self.nursery.start_soon(fs.sync, scope, report)
        with trio.move_on_after(limit):
            await report.done.wait()
        path = scope.path_of
        result = {
            "complete": report.ok,
            "timed_out": not report.done.is_set(),
            "stored": sorted(path(k) for k in report.stored),
            "pending": sorted(path(k) for k in report.pending),
            "failed": [{"path": path(k), "error": e} for k, e in sorted(report.failed.items())],
            "kept": [
                {"path": path(k.key), "staging": str(k.path), "reason": k.reason}
                for k in report.kept
            ],
        }
        log.info(
            "flush of %s: %d stored, %d failed, %d kept, %d still pending",
            ", ".join(paths) or "the mount",
            len(report.stored),
            len(report.failed),
            len(report.kept),
            len(report.pending),
        )
        return result

    async def invalidate(self, paths: list[str]) -> dict[str, Any]:
        """Forget cached state under ``paths``."""
        fs = self.observed.fs
        done = await fs.invalidate(fs.scope(paths))
        log.info(
            "invalidated %s: %d nodes, %d listings, %d blocks, %d kernel entries",
            ", ".join(paths) or "the mount",
            done.nodes,
            done.listings,
            done.blocks,
            done.kernel,
        )
        return {
            "nodes": done.nodes,
            "listings": done.listings,
            "blocks": done.blocks,
            "kernel": done.kernel,
        }


def _ok(result: dict[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL, "ok": True, "result": result}


def _error(reason: str) -> dict[str, Any]:
    return {"v": PROTOCOL, "ok": False, "error": reason}


async def _send(stream: trio.SocketStream, reply: dict[str, Any]) -> None:
    try:
        await stream.send_all(json.dumps(reply).encode() + b"\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away


__all__ = ["MAX_REQUEST", "PROTOCOL", "ControlServer", "allowed", "peer_uid"]
