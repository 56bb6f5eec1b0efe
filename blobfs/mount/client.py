"""Talking to a running mount's daemon through its control socket, from the command line.

:func:`request` finds the socket from the mount point alone
(:func:`control_socket`), sends one request and returns the result
(:mod:`blobfs.mount.control` has the protocol).  Plain blocking sockets: ``blobfs status``
must stay light, so this imports neither trio nor the file system.

Every failure is a :class:`ControlError` with a sentence for the user and the kind of
failure (for the exit code): the path is not a blobfs mount, its daemon cannot be reached
(a dead mount), the socket belongs to someone else, or the daemon refused the request.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

from blobfs.mount import mountpoint
from blobfs.mount.mountpoint import MountEntry

#: The protocol version this client speaks (the daemon's :data:`~blobfs.mount.control.PROTOCOL`).
PROTOCOL = 1


class ControlError(Exception):
    """A request that could not be made or was refused.  ``kind``: ``not_mounted``,
    ``unreachable``, ``denied``, ``refused`` (the daemon said no) or ``timeout``."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def find_mount(where: Path) -> MountEntry:
    """The blobfs mount on ``where`` (:class:`ControlError` if there is none).

    The mount point itself is not looked at, only the directory above it: the mount of a
    daemon that is hung would never answer."""
    absolute = os.path.abspath(where)
    near = os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))
    table = mountpoint.mount_table()
    for candidate in (near, None):
        real = candidate if candidate is not None else os.path.realpath(absolute)
        # The last mount on a path is the one that shows.
        for entry in reversed(table):
            if entry.path == real:
                if not entry.is_blobfs:
                    raise ControlError(
                        f"{where} is a {entry.fstype} mount, not blobfs", "not_mounted"
                    )
                return entry
    raise ControlError(f"{where} is not a mount point (nothing is mounted there)", "not_mounted")


def _candidates(entry: MountEntry) -> list[Path]:
    """Where the daemon's socket may be: this user's runtime directory, then the mounting
    user's (root looking at a user's mount, or a user at root's)."""
    name = mountpoint.control_socket_name(entry.path)
    out = [mountpoint.runtime_dir() / name]
    if entry.uid == 0:
        out.append(Path("/run/blobfs") / name)
    elif entry.uid is not None:
        out.append(Path(f"/run/user/{entry.uid}/blobfs") / name)
        out.append(Path(f"/tmp/blobfs-{entry.uid}") / name)
    return list(dict.fromkeys(out))


def control_socket(entry: MountEntry) -> Path:
    """The control socket of the mount ``entry``, checked to belong to its owner (or root)."""
    denied: Path | None = None
    for path in _candidates(entry):
        try:
            st = os.stat(path)
        except PermissionError:
            denied = path
            continue
        except OSError:
            continue
        if not stat.S_ISSOCK(st.st_mode):
            continue
        if st.st_uid not in (0, entry.uid, os.geteuid()):
            raise ControlError(
                f"refusing {path}: it belongs to uid {st.st_uid}, not to the user who mounted "
                f"{entry.path}",
                "denied",
            )
        return path
    if denied is not None:
        raise ControlError(
            f"permission denied: only the user who mounted {entry.path} (uid {entry.uid}) and "
            f"root may control it ({denied.parent} is theirs)",
            "denied",
        )
    raise ControlError(
        f"no control socket for {entry.path}: its daemon is gone (a dead mount: "
        f"'blobfs umount {entry.path}', with -z if a program still holds files there) or "
        "predates blobfs status",
        "unreachable",
    )


def request(where: Path | MountEntry, op: str, *, timeout: float | None = 30.0, **args: Any) -> Any:
    """Send ``{"op": op, **args}`` to the daemon of the mount on ``where``; its result.

    ``timeout``: seconds to wait for the reply (``None``: as long as it takes)."""
    entry = where if isinstance(where, MountEntry) else find_mount(where)
    path = control_socket(entry)
    message = json.dumps({"v": PROTOCOL, "op": op, **args}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            try:
                sock.sendall(message)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused at once: the reason is waiting to be read
            reply = _receive_line(sock, timeout)
    except TimeoutError:
        raise ControlError(
            f"the daemon of {entry.path} did not answer within {timeout:.0f} s", "timeout"
        ) from None
    except PermissionError:
        raise ControlError(
            f"permission denied: only the user who mounted {entry.path} (uid {entry.uid}) and "
            "root may control it",
            "denied",
        ) from None
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            raise ControlError(
                f"the daemon of {entry.path} is not running (a dead mount: 'blobfs umount "
                f"{entry.path}', with -z if a program still holds files there)",
                "unreachable",
            ) from None
        raise ControlError(
            f"cannot reach the daemon of {entry.path}: {e.strerror}", "unreachable"
        ) from None
    if not reply:
        raise ControlError(f"the daemon of {entry.path} closed the connection", "unreachable")
    try:
        answer = json.loads(reply)
    except ValueError:
        raise ControlError(
            f"the daemon of {entry.path} answered something that is not JSON", "unreachable"
        ) from None
    if not isinstance(answer, dict):
        raise ControlError(f"the daemon of {entry.path} answered {answer!r}", "unreachable")
    if not answer.get("ok"):
        kind = "denied" if "may not control" in str(answer.get("error")) else "refused"
        raise ControlError(f"{entry.path}: {answer.get('error')}", kind)
    return answer["result"]


def _receive_line(sock: socket.socket, timeout: float | None) -> bytes:
    deadline = None if timeout is None else time.monotonic() + timeout
    buffer = b""
    while b"\n" not in buffer:
        if deadline is not None:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    return buffer.split(b"\n", 1)[0]


def flush(entry: MountEntry, paths: list[str], wait: float | None) -> Any:
    """Ask the daemon to store every change under ``paths`` (relative; none: all) made
    before now, and wait for it -- at most ``wait`` seconds, if given.

    With the ``writeback_cache`` option the kernel holds written pages for a while before it
    sends them to the daemon: a ``syncfs(2)`` of the mount sends them first, so the flush
    covers every ``write()`` that returned before it."""
    status = request(entry, "status", timeout=30.0)
    if "writeback_cache" in status["mount"]["options"]:
        _syncfs(entry.path)
    return request(
        entry,
        "flush",
        paths=paths,
        wait=wait,
        timeout=None if wait is None else wait + 30.0,
    )


def _syncfs(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise ControlError(f"syncfs of {path} failed: {os.strerror(code)}", "unreachable")
    finally:
        os.close(fd)


def mounts(*, everyone: bool | None = None) -> list[MountEntry]:
    """The blobfs mounts of this user (of every user for root, unless ``everyone`` is
    False)."""
    if everyone is None:
        everyone = os.geteuid() == 0
    uid = os.geteuid()
    return [e for e in mountpoint.blobfs_mounts() if everyone or e.uid == uid]


def relative_paths(
    entry: MountEntry, paths: list[str] | tuple[str, ...], given: Path | None = None
) -> list[str]:
    """``paths`` on the mount (absolute, or relative to the working directory) as paths
    relative to its root; :class:`ValueError` for a path outside it.  ``given`` is the mount
    point as the user named it (perhaps through a symbolic link).  Paths inside the mount
    are not resolved: no request reaches the mount."""
    roots = {entry.path.rstrip("/") or "/"}
    if given is not None:
        roots.add(os.path.normpath(os.path.join(os.getcwd(), given)))
    out = []
    for p in paths:
        full = os.path.normpath(os.path.join(os.getcwd(), p))
        for root in roots:
            if full == root:
                out.append("")
                break
            if full.startswith(root.rstrip("/") + "/"):
                out.append(full[len(root) :].strip("/"))
                break
        else:
            raise ValueError(f"{p} is not on the mount {entry.path}")
    return out


__all__ = [
    "PROTOCOL",
    "ControlError",
    "control_socket",
    "find_mount",
    "flush",
    "mounts",
    "relative_paths",
    "request",
]
