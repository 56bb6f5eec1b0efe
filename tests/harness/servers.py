"""Real storage servers for the tests: Azurite for Azure Blob Storage, SeaweedFS for S3.

Both bind 127.0.0.1 on free ports only, so test runs never collide with each other or with a
developer's own servers, and both fail with the tail of their log when they do not come up.
SeaweedFS lives in :mod:`sdk.local_server` (the embedded ``local`` cluster uses it too); this
module adds Azurite and re-exports what tests need.  Starting, waiting and stopping either
is :class:`sdk.process.ServerProcess`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import time
from pathlib import Path
from typing import Self

from sdk.local_server import (
    LocalServerInfo,
    SeaweedError,
    SeaweedServer,
    ensure_local_server,
    find_weed,
    stop_local_server,
)
from sdk.process import ProcessExited, ServerProcess, free_port

__all__ = [
    "AZURITE_VERSION",
    "STOP_SECONDS",
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

REPO = Path(__file__).resolve().parents[2]

#: The version scripts/setup.sh installs under .tools/.
AZURITE_VERSION = "3.37.0"

#: Seconds a test server has to exit after SIGTERM before it is killed.  Tests delete its
#: data afterwards, so a longer graceful stop buys nothing; weed's volume server sometimes
#: waits out the whole 15 s for a client connection to close (three stops in four, here).
STOP_SECONDS = 3.0


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


class AzuriteServer(ServerProcess):
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
        directory = Path(directory).absolute()
        super().__init__(directory, directory / "azurite.log", startup_timeout)
        self.data_dir = self.directory / "data"
        self.debug = debug
        self._azurite = azurite
        self.port: int | None = None

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
        self._check_not_running(AzuriteError)
        azurite = self._azurite or find_azurite()
        if shutil.which("node") is None:
            raise AzuriteError("node is not on PATH; Azurite needs Node.js (scripts/setup.sh)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            port = free_port()
            if self._start_once(azurite, port):
                return self
        raise AzuriteError(f"Azurite could not bind a free port\n{self.log_tail()}")

    def _start_once(self, azurite: Path, port: int) -> bool:
        """False when another process took ``port`` first (worth another try)."""
        started = time.monotonic()
        cmd = self.command(azurite, port)
        proc = self._spawn(cmd)
        self.port = port
        try:
            try:
                self._wait_ready(proc, lambda: self._answers(port), started)
            except ProcessExited as e:
                tail = self.log_tail()
                if "EADDRINUSE" in tail:
                    self._proc = None
                    return False
                raise AzuriteError(
                    f"Azurite exited with code {e.code} while starting\n{tail}"
                ) from None
            except TimeoutError:
                raise AzuriteError(
                    f"Azurite did not answer within {self.startup_timeout:.0f} s\n{self.log_tail()}"
                ) from None
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

    def clean(self) -> None:
        """Stop and delete everything under ``directory``."""
        self.stop()
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.directory)

    def __repr__(self) -> str:
        where = self.endpoint_url if self.port else "not started"
        return f"AzuriteServer({self.directory}, {where}, pid={self.pid})"
