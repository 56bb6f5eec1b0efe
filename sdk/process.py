"""Supervising a local server process: start it, wait until it serves, stop it.

:class:`ServerProcess` holds what the SeaweedFS server (:mod:`sdk.local_server`) and the
tests' Azurite (``tests/servers.py``) share: the child writes to a log file whose tail goes
into every start failure, it runs in its own session (a Ctrl-C at the terminal reaches only
us) and, unless detached, gets SIGTERM when the starting process dies, and it is stopped with
SIGTERM, then SIGKILL after a timeout.  What "serving" means and how to tell a port taken by
another process is each server's own business.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["LOG_TAIL_LINES", "ProcessExited", "ServerProcess", "free_port", "log_tail"]

#: Lines of the log shown with a start failure.
LOG_TAIL_LINES = 60
#: Bytes read from the end of a log for its tail: a long log is not read whole.
_TAIL_BYTES = 64 * 1024
#: How often readiness is checked while a server starts.
_POLL_SECONDS = 0.05


class ProcessExited(Exception):
    """The process ended while we waited for it to serve."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exited with code {code}")
        self.code = code


def free_port() -> int:
    """A TCP port free on 127.0.0.1 when chosen (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the log at ``path``, headed by its name, for messages."""
    if path is None:
        return "(no log)"
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(cannot read log {path}: {e})"
    tail = text.splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def _set_parent_death_signal() -> None:
    # Runs in the child between fork and exec: ask the kernel for SIGTERM when the parent
    # dies, so a killed test run leaves no server behind.
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


class ServerProcess:
    """A server child process with its output in ``log_path``.

    Subclasses implement :meth:`start` with :meth:`_spawn` and :meth:`_wait_ready`;
    :meth:`stop`, :attr:`running`, :meth:`log_tail` and the context manager come from here.
    """

    #: Seconds :meth:`stop` waits after SIGTERM before SIGKILL.
    stop_timeout: float = 10.0

    def __init__(self, directory: Path, log_path: Path, startup_timeout: float) -> None:
        self.directory = directory
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.pid: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Start the server and return once it serves."""
        raise NotImplementedError

    def _check_not_running(self, error: type[Exception]) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise error(f"already running (pid {self._proc.pid})")

    def _spawn(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        detached: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in :attr:`directory`, appending its output to the log.

        Without ``detached`` the child gets SIGTERM when this process dies -- when started
        from the main thread only, because the kernel ties that signal to the thread.
        """
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.ctime()} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            tie = not detached and threading.current_thread() is threading.main_thread()
            proc = subprocess.Popen(
                list(cmd),
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if tie else None,
            )
        self._proc, self.pid = proc, proc.pid
        return proc

    def _wait_ready(
        self, proc: subprocess.Popen[bytes], ready: Callable[[], bool], t0: float
    ) -> None:
        """Return once ``ready()`` is true.

        :raises ProcessExited: ``proc`` ended first.
        :raises TimeoutError: :attr:`startup_timeout` seconds after ``t0`` (monotonic).
        """
        deadline = t0 + self.startup_timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise ProcessExited(code)
            if ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready within {self.startup_timeout:.0f} s")
            time.sleep(_POLL_SECONDS)

    def _forget(self, proc: subprocess.Popen[bytes]) -> None:
        """Called with every process :meth:`stop` has stopped."""

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (default :attr:`stop_timeout`);
        returns when the process is gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._forget(proc)

    @property
    def running(self) -> bool:
        """Whether the process started here is still alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of the server's log, for messages."""
        return log_tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
