"""``weed`` processes known by pid: detached children, liveness, identity and stopping.

A detached server outlives the process that started it and is found again by the pid in its
state file, so a pid is trusted only once :func:`is_weed_for` has checked it is a ``weed``
running in the expected directory (pids are reused).  Detached servers started by this
process are kept in a table so that Popen does not warn when collected and so that stopping
one from here can reap it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from sdk.local_server.errors import SeaweedError

#: Graceful stop of ``mini`` took 3.7 s; leave room for a loaded machine before SIGKILL.
STOP_TIMEOUT = 15.0

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


def adopt(proc: subprocess.Popen[bytes]) -> None:
    """Keep a detached child started by this process until it is stopped."""
    with _CHILDREN_LOCK:
        _CHILDREN[proc.pid] = proc


def release(proc: subprocess.Popen[bytes]) -> None:
    """Forget a child that was stopped."""
    with _CHILDREN_LOCK:
        _CHILDREN.pop(proc.pid, None)


def _pid_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (``Z`` for a zombie), None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _reap(pid: int) -> None:
    with _CHILDREN_LOCK:
        proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            with _CHILDREN_LOCK:
                _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not; one of ours is reaped on the way)."""
    _reap(pid)
    state = _pid_state(pid)
    return state is not None and state not in ("Z", "X")


def is_weed_for(pid: int, directory: Path) -> bool:
    """Whether ``pid`` is a ``weed`` started in ``directory`` (guards against reused pids).

    Compared by the process's working directory, which we set, rather than by the spelling
    of ``-dir``: a path reached through a symlink must not look like another server.
    """
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
        return Path(os.fsdecode(argv0)).name == "weed" and os.path.samefile(
            f"/proc/{pid}/cwd", directory
        )
    except OSError:
        return False


def terminate(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``pid``, SIGKILL it after ``timeout`` seconds, and wait until it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            _reap(pid)
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)
    raise SeaweedError(f"weed (pid {pid}) did not exit after SIGKILL")
