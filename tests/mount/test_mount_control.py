"""Looking at and steering running mounts: ``blobfs status``, ``flush``, ``invalidate``, the
control socket's protection and the metrics endpoint, on SeaweedFS (S3) and Azurite.

Two mounts of one bucket per provider: *sticky* with hour-long TTLs and metrics on a TCP
port, *fast* with short TTLs and metrics on a Unix socket.  The commands run as a user runs
them (the ``blobfs`` command in a subprocess); what is in the bucket is checked from outside
the mount, with the sdk.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from blobfs.cli.main import main as blobfs_main
from blobfs.cli.status_view import detail
from blobfs.mount import client, mountpoint
from tests.mount.world import FAST, Holder, World, new_world, unmount_all

pytestmark = pytest.mark.mount

STICKY = "attr_ttl=3600,entry_ttl=3600,dir_ttl=3600,negative_ttl=3600,memory=64M,readahead=8M"
NOBODY = 65534

if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
    pytest.skip("needs /dev/fuse and root", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module", params=["s3", "azure"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    w = new_world(request, tmp_path_factory, "ctl")
    w.put_many({"inv/a.txt": b"one", "inv/gone.txt": b"gone", "read/r.bin": b"r" * 300_000})
    yield w
    unmount_all(w)


@pytest.fixture(scope="module")
def ports(world: World) -> dict[str, str]:
    return {"tcp": f"127.0.0.1:{free_port()}", "unix": str(world.tmp / "metrics.sock")}


@pytest.fixture(scope="module")
def sticky(world: World, ports: dict[str, str]) -> Iterator[Path]:
    where = world.mount(
        f"blob:{world.bucket}", world.tmp / "sticky", f"{STICKY},metrics={ports['tcp']}"
    )
    yield where
    world.umount(where)


@pytest.fixture(scope="module")
def fast(world: World, ports: dict[str, str]) -> Iterator[Path]:
    where = world.mount(
        f"blob:{world.bucket}", world.tmp / "fast", f"{FAST},metrics={ports['unix']}"
    )
    yield where
    world.umount(where)


def status(world: World, where: Path) -> dict[str, Any]:
    proc = world.blobfs("status", "--json", str(where))
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def head(world: World, key: str) -> Any:
    async def fn(store: Any) -> Any:
        try:
            return await store.head(key)
        except Exception:
            return None

    return world.sdk(fn)


def body(world: World, key: str) -> bytes:
    async def fn(store: Any) -> bytes:
        return bytes(await store.read_range(key, 0, 1 << 30))

    result: bytes = world.sdk(fn)
    return result


# -- status ---------------------------------------------------------------------------------------


def test_status_without_argument_lists_both_mounts(world: World, sticky: Path, fast: Path) -> None:
    proc = world.blobfs("status", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["mountpoint"]: row for row in json.loads(proc.stdout)}
    for where in (sticky, fast):
        row = rows[str(where)]
        assert row["error"] is None, row
        assert row["source"] == f"blob:{world.bucket}"
        assert row["status"]["mount"]["mountpoint"] == str(where)
    assert rows[str(sticky)]["status"]["mount"]["pid"] != rows[str(fast)]["status"]["mount"]["pid"]
    table = world.blobfs("status")
    assert table.returncode == 0, table.stderr
    assert str(sticky) in table.stdout and str(fast) in table.stdout


def test_status_shows_unsaved_data_until_close(world: World, fast: Path) -> None:
    before = status(world, fast)
    assert before["unsaved"]["count"] == 0
    assert before["mount"]["source"] == f"blob:{world.bucket}"
    # The options given (those that differ from the defaults).
    assert "dir_ttl=1.0" in before["mount"]["options"]
    holder = Holder(fast / "open.txt", b"x" * 5000)
    try:
        during = status(world, fast)
        files = {f["path"]: f for f in during["unsaved"]["files"]}
        assert "open.txt" in files, during
        assert files["open.txt"]["size"] == 5000 and files["open.txt"]["pending"] == 5000
        assert files["open.txt"]["open"] == 1
        assert during["unsaved"]["bytes"] >= 5000
        text = world.blobfs("status", str(fast))
        assert text.returncode == 0 and "open.txt" in text.stdout and "Unsaved: 1" in text.stdout
    finally:
        holder.close()
    after = status(world, fast)
    assert "open.txt" not in {f["path"] for f in after["unsaved"]["files"]}
    assert after["requests"]["kinds"]["put"]["outcomes"]["ok"] >= 1
    assert after["memory"]["rss"] > 10 << 20


def test_status_names_background_fills_once_there_are_any(world: World, fast: Path) -> None:
    snapshot = status(world, fast)
    # A loopback store is fast: nothing has been fetched whole in the background.
    assert snapshot["cache"]["fills"] == {"started": 0, "finished": 0, "fetched_bytes": 0}
    line = "Whole objects fetched in the background"

    def shown(s: dict[str, Any]) -> str:
        console = Console(record=True, width=200)
        console.print(detail(s))
        return console.export_text()

    assert line not in shown(snapshot)
    snapshot["cache"]["fills"] = {"started": 2, "finished": 1, "fetched_bytes": 300 << 20}
    assert f"{line} (slow store): 2 started, 1 finished, 300" in shown(snapshot)


# -- flush ----------------------------------------------------------------------------------------


def test_flush_stores_open_files_by_path(world: World, fast: Path) -> None:
    (fast / "fa").mkdir()
    (fast / "fb").mkdir()
    first, second = os.urandom(300_000), os.urandom(20_000)
    fa = Holder(fast / "fa" / "x.bin", first)
    fb = Holder(fast / "fb" / "y.bin", second)
    try:
        assert head(world, "fa/x.bin") is None and head(world, "fb/y.bin") is None
        proc = world.blobfs("flush", str(fast), str(fast / "fa"))
        assert proc.returncode == 0, proc.stderr
        # Returned: the object is in the bucket (and only what was asked for).
        assert body(world, "fa/x.bin") == first
        assert head(world, "fb/y.bin") is None
        assert "fb/y.bin" in {f["path"] for f in status(world, fast)["unsaved"]["files"]}
        proc = world.blobfs("flush", str(fast))
        assert proc.returncode == 0, proc.stderr
        assert body(world, "fb/y.bin") == second
        assert status(world, fast)["unsaved"]["count"] == 0
        fb.append("more")
    finally:
        fa.close()
        fb.close()
    assert body(world, "fb/y.bin") == second + b"more"
    # Nothing pending: a flush is immediate.
    proc = world.blobfs("flush", "--timeout", "5", str(fast))
    assert proc.returncode == 0, proc.stderr


def test_flush_and_invalidate_refuse_paths_off_the_mount(world: World, fast: Path) -> None:
    proc = world.blobfs("flush", str(fast), "/etc")
    assert proc.returncode == 2 and "not on the mount" in proc.stderr
    proc = world.blobfs("invalidate", str(world.tmp))
    assert proc.returncode == 66 and "not a mount point" in proc.stderr


# -- invalidate -----------------------------------------------------------------------------------


def test_invalidate_shows_remote_changes_before_the_ttls(world: World, sticky: Path) -> None:
    assert (sticky / "inv" / "a.txt").read_bytes() == b"one"
    assert sorted(os.listdir(sticky / "inv")) == ["a.txt", "gone.txt"]
    # Another host changes the bucket.
    world.put_many({"inv/a.txt": b"two, longer", "inv/new.txt": b"new"})

    async def delete(store: Any) -> None:
        await store.delete("inv/gone.txt")

    world.sdk(delete)
    # The hour-long TTLs hide it...
    assert (sticky / "inv" / "a.txt").stat().st_size == 3
    assert sorted(os.listdir(sticky / "inv")) == ["a.txt", "gone.txt"]
    proc = world.blobfs("-v", "invalidate", str(sticky), str(sticky / "inv"))
    assert proc.returncode == 0, proc.stderr
    assert "forgot" in proc.stdout
    # ... until now.
    assert (sticky / "inv" / "a.txt").stat().st_size == len(b"two, longer")
    assert (sticky / "inv" / "a.txt").read_bytes() == b"two, longer"
    assert sorted(os.listdir(sticky / "inv")) == ["a.txt", "new.txt"]
    assert not (sticky / "inv" / "gone.txt").exists()
    # The whole mount, without a path: a new top-level entry shows.
    assert "late.txt" not in os.listdir(sticky)
    assert not (sticky / "late.txt").exists()
    world.put_many({"late.txt": b"late"})
    assert "late.txt" not in os.listdir(sticky)
    assert not (sticky / "late.txt").exists()
    proc = world.blobfs("invalidate", str(sticky))
    assert proc.returncode == 0, proc.stderr
    assert (sticky / "late.txt").read_bytes() == b"late"


# -- who may use the control socket ---------------------------------------------------------------


def as_nobody(fn: Any) -> Any:
    """``fn()`` in a child process running as ``nobody``; its JSON-able result."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = fn()
        except BaseException as e:
            result = {"exception": repr(e)}
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_another_user_cannot_use_the_socket(world: World, fast: Path) -> None:
    runner = CliRunner()

    def cli_status() -> dict[str, Any]:
        result = runner.invoke(blobfs_main, ["status", str(fast)])
        return {"code": result.exit_code, "output": result.output}

    got = as_nobody(cli_status)
    assert got["code"] == 77, got
    assert "permission denied" in got["output"], got

    # Were the file modes loosened by mistake, the peer check still refuses: the socket,
    # reachable through a link in an open directory with mode 0666.
    entry = client.find_mount(fast)
    sock = client.control_socket(entry)
    assert sock.stat().st_mode & 0o777 == 0o600 and sock.stat().st_uid == 0
    assert sock.parent.stat().st_mode & 0o077 == 0
    open_dir = Path(tempfile.mkdtemp(dir=sock.parent.parent))
    try:
        open_dir.chmod(0o755)
        link = open_dir / "ctl.sock"
        os.link(sock, link)
        sock.chmod(0o666)

        def raw_status() -> dict[str, Any]:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(link))
                s.sendall(b'{"v": 1, "op": "status"}\n')
                return dict(json.loads(s.makefile().readline()))

        reply = as_nobody(raw_status)
    finally:
        sock.chmod(0o600)
        link.unlink(missing_ok=True)
        open_dir.rmdir()
    assert reply.get("ok") is False and "may not control" in reply["error"], reply
    assert "result" not in reply
    # The owner still may.
    assert status(world, fast)["mount"]["mountpoint"] == str(fast)


# -- metrics --------------------------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of the endpoint, parsed by prometheus_client: (name, labels) -> value."""
    if address.startswith("/"):
        conn: http.client.HTTPConnection = UnixHTTPConnection(address)
    else:
        host, port = address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/metrics")
    reply = conn.getresponse()
    assert reply.status == 200
    text = reply.read().decode()
    conn.close()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_with_traffic(
    world: World, sticky: Path, fast: Path, ports: dict[str, str]
) -> None:
    assert Path(ports["unix"]).stat().st_mode & 0o777 == 0o600
    for where, address in ((sticky, ports["tcp"]), (fast, ports["unix"])):
        before = scrape(address)
        assert (
            value(before, "blobfs_mount_info", source=f"blob:{world.bucket}", mountpoint=str(where))
            == 1
        )
        assert value(before, "blobfs_resident_memory_bytes") > 10 << 20
        assert value(before, "process_resident_memory_bytes") > 10 << 20
        name = f"metrics-{where.name}.bin"
        (where / name).write_bytes(b"m" * 100_000)
        assert (where / "read" / "r.bin").read_bytes() == b"r" * 300_000
        after = scrape(address)
        put = ("blobfs_requests_total", {"kind": "put", "outcome": "ok"})
        assert value(after, put[0], **put[1]) >= value(before, put[0], **put[1]) + 1
        assert (
            value(after, "blobfs_sent_bytes_total", kind="put")
            >= value(before, "blobfs_sent_bytes_total", kind="put") + 100_000
        )
        gets = value(after, "blobfs_request_duration_seconds_count", kind="get")
        assert gets >= value(before, "blobfs_request_duration_seconds_count", kind="get")
        assert value(
            after, "blobfs_request_duration_seconds_bucket", kind="put", le="+Inf"
        ) == value(after, "blobfs_request_duration_seconds_count", kind="put")
        assert value(after, "blobfs_unsaved_files") == 0
    # The first read of r.bin went to the store: a GET with its bytes, a cache miss.
    samples = scrape(ports["tcp"])
    assert value(samples, "blobfs_received_bytes_total", kind="get") >= 300_000
    assert value(samples, "blobfs_cache_misses_total", layer="memory") >= 1
    # Read again: the kernel's page cache is reused for the same version.
    (sticky / "read" / "r.bin").read_bytes()
    assert value(scrape(ports["tcp"]), "blobfs_cache_hits_total", layer="kernel") >= 1


def test_control_socket_lives_with_the_daemon(world: World) -> None:
    where = world.mount(f"blob:{world.bucket}", world.tmp / "brief")
    sock = client.control_socket(client.find_mount(where))
    assert sock.name == mountpoint.control_socket_name(str(where))
    world.umount(where)
    # umount returned once the daemon had exited: its socket is gone with it.
    assert not sock.exists()
