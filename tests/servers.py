"""Real storage servers for the tests: Azurite for Azure Blob Storage, SeaweedFS for S3.

Both bind 127.0.0.1 on free ports only, so test runs never collide with each other or with a
developer's own servers, and both fail with the tail of their log when they do not come up.
SeaweedFS lives in :mod:`sdk.local_server` (the embedded ``local`` cluster uses it too); this
module adds Azurite and re-exports what tests need.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from sdk.local_server import (
    LocalServerInfo,
    SeaweedError,
    SeaweedServer,
    ensure_local_server,
    find_weed,
    stop_local_server,
)

__all__ = [
    "AZURITE_VERSION",
    "AzuriteError",
    "AzuriteServer",
    "LocalServerInfo",
    "SeaweedError",
    "SeaweedServer",
    "ensure_local_server",
    "find_azurite",
    "find_weed",
    "stop_local_server",
]

REPO = Path(__file__).resolve().parent.parent

#: The version scripts/setup.sh installs under .tools/.
AZURITE_VERSION = "3.37.0"

_LOG_TAIL_LINES = 60


class AzuriteError(RuntimeError):
    """Azurite could not be found or started; the message has its log tail."""


def find_azurite() -> Path:
    """``azurite-blob``: ``$BLOBFS_AZURITE``, else ``<repo>/.tools/node_modules/.bin/``."""
    configured = os.environ.get("BLOBFS_AZURITE")
    candidate = Path(configured) if configured else REPO / ".tools/node_modules/.bin/azurite-blob"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    raise AzuriteError(
        f"azurite-blob not found at {candidate}; run scripts/setup.sh "
        f"(npm install --prefix .tools azurite@{AZURITE_VERSION}) or set BLOBFS_AZURITE"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(cannot read log {path}: {e})"
    tail = text.splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def _set_parent_death_signal() -> None:
    import ctypes

    # SIGTERM to Azurite when the test process dies, so a killed run leaves nothing behind.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


class AzuriteServer:
    """One ``azurite-blob`` on a free loopback port, storing under ``directory``.

    Azurite opens exactly one TCP listener (the blob port); queue and table services belong
    to other executables.  ``debug=True`` also writes Azurite's very verbose debug log to
    ``directory/debug.log``.
    """

    account_name = "devstoreaccount1"
    #: The emulator's published, well-known key: not a secret.
    account_key = (
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    )

    def __init__(
        self,
        directory: Path,
        *,
        debug: bool = False,
        startup_timeout: float = 60.0,
        azurite: Path | None = None,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "azurite.log"
        self.debug = debug
        self.startup_timeout = startup_timeout
        self._azurite = azurite
        self.port: int | None = None
        self.pid: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise AzuriteError("the server is not started")
        return f"http://127.0.0.1:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={self.account_name};"
            f"AccountKey={self.account_key};"
            f"BlobEndpoint={self.endpoint_url};"
        )

    def command(self, azurite: Path, port: int) -> list[str]:
        cmd = [
            str(azurite),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(self.data_dir),
            # The newest azure-storage-blob speaks an API version Azurite would refuse.
            "--skipApiVersionCheck",
            "--disableTelemetry",
            # Take the account from the path, never from a host name such as acct.localhost.
            "--disableProductStyleUrl",
            "--silent",
        ]
        if self.debug:
            cmd += ["--debug", str(self.directory / "debug.log")]
        return cmd

    def start(self) -> Self:
        """Start Azurite and return once its blob endpoint answers HTTP.

        Raises :class:`AzuriteError` with the tail of its log if it does not.
        """
        if self._proc is not None and self._proc.poll() is None:
            raise AzuriteError(f"already running (pid {self._proc.pid})")
        azurite = self._azurite or find_azurite()
        if shutil.which("node") is None:
            raise AzuriteError("node is not on PATH; Azurite needs Node.js (scripts/setup.sh)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            port = _free_port()
            if self._start_once(azurite, port):
                return self
        raise AzuriteError(f"Azurite could not bind a free port\n{_log_tail(self.log_path)}")

    def _start_once(self, azurite: Path, port: int) -> bool:
        """False when another process took ``port`` first (worth another try)."""
        started = time.monotonic()
        cmd = self.command(azurite, port)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.ctime()} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            main_thread = threading.current_thread() is threading.main_thread()
            proc = subprocess.Popen(
                cmd,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if main_thread else None,
            )
        self._proc, self.port, self.pid = proc, port, proc.pid
        deadline = started + self.startup_timeout
        try:
            while not self._answers(port):
                code = proc.poll()
                if code is not None:
                    tail = _log_tail(self.log_path)
                    if "EADDRINUSE" in tail:
                        self._proc = None
                        return False
                    raise AzuriteError(f"Azurite exited with code {code} while starting\n{tail}")
                if time.monotonic() > deadline:
                    raise AzuriteError(
                        f"Azurite did not answer within {self.startup_timeout:.0f} s\n"
                        f"{_log_tail(self.log_path)}"
                    )
                time.sleep(0.05)
        except BaseException:
            self.stop(timeout=5.0)
            raise
        self.startup_seconds = time.monotonic() - started
        return True

    def _answers(self, port: int) -> bool:
        """Whether the blob service handles a request for our account.

        Unsigned, so the answer is 403 with an Azure error code; any such answer means the
        service is up (the tests then sign real requests).  http.client ignores proxies.
        """
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        try:
            conn.request("GET", f"/{self.account_name}?comp=list")
            response = conn.getresponse()
            response.read()
            return response.getheader("x-ms-request-id") is not None
        except OSError:
            return False
        finally:
            conn.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return _log_tail(self.log_path, lines)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Azurite closes in about 2 s), SIGKILL after ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def clean(self) -> None:
        """Stop and delete everything under ``directory``."""
        self.stop()
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.directory)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint_url if self.port else "not started"
        return f"AzuriteServer({self.directory}, {where}, pid={self.pid})"
