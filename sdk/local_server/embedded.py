"""The embedded server of the ``local`` cluster: one detached ``weed`` per data directory.

Everything lives in ``<data_dir>/seaweedfs/``: the data, ``state.json`` (pid, ports and the
admin key, mode 0600), the log, and a lock held while a process starts, reuses or stops the
server, so processes starting at the same moment start only one.  The server runs detached,
so it outlives the CLI command that started it; later processes find it through the state
file.  The admin key is generated once and kept across restarts, and so is the data.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdk.local_server.errors import SeaweedError
from sdk.local_server.identities import generate_access_key, write_private
from sdk.local_server.pids import is_weed_for, pid_alive, terminate
from sdk.local_server.ports import SeaweedPorts
from sdk.local_server.probe import s3_answers
from sdk.local_server.server import SeaweedServer


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
    write_private(state_dir / _STATE_FILE, json.dumps(state, indent=2, sort_keys=True))


def _running_from_state(state_dir: Path, state: Mapping[str, Any]) -> int | None:
    """The pid of the recorded server if it is alive and really is that server."""
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    if not pid_alive(pid) or not is_weed_for(pid, state_dir):
        return None
    return pid


def ensure_local_server(data_dir: Path) -> LocalServerInfo:
    """Make sure the embedded SeaweedFS server for ``data_dir`` runs; return how to reach it.

    A recorded server that is alive and answers is reused; otherwise a new one starts,
    detached, on the same data with new ports.  Blocks for seconds when it starts ``weed``;
    call it in a thread from async code.
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
            while pid_alive(pid):
                if s3_answers(ports.s3, key_id, secret):
                    return LocalServerInfo(f"http://127.0.0.1:{ports.s3}", key_id, secret, pid)
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            terminate(pid)
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
            terminate(pid)
        if "pid" in state:
            state = {k: v for k, v in state.items() if k not in ("pid", "ports", "endpoint_url")}
            _write_state(state_dir, state)
        return pid is not None
