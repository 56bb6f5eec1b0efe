#!/usr/bin/env python3
"""What extended attributes cost: blobfs with and without them, s3fs with and without, and
rclone, mounted at once on one local SeaweedFS, measured in alternating rounds.

With extended attributes the kernel asks the file system for ``security.capability``
before every ``write()`` (to clear file capabilities) and ``ls -l`` asks for
``system.posix_acl_access`` (and ``security.selinux``) of every entry; a file system
without them answers ENOSYS once and is never asked again (``-o noxattr``, s3fs's default).
Measured, per mount:

* ``4k write``  -- µs per 4 KiB ``pwrite`` into a file open for writing (a database, a log);
* ``128k write`` -- MiB/s of 128 KiB writes (``cp``), up to but not including ``close()``;
* ``ls -l``     -- seconds for ``ls -l`` of 10,000 entries, warm (the names and attributes
  cached, so what is left is what the file system is asked per entry);
* ``setxattr``  -- seconds to set one attribute on a 1 GiB object, and the bytes the daemon
  sent and received on its TCP connections meanwhile (the kernel's counters, from ``ss``)
  -- where the mount has extended attributes.

Each phase runs ``--rounds`` times on every mount in turn (A B C, C B A, ...) and reports
the median.  Needs root, fuse3, s3fs and rclone (all from Debian)::

    sudo .venv/bin/python scripts/bench_posix.py
    sudo .venv/bin/python scripts/bench_posix.py --size-mib 256 --entries 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_mount import (  # noqa: E402  (one harness: the read benchmark's mount helpers)
    BIN,
    Setup,
    can_run,
    daemon_pid,
    fill,
    mount_rclone,
    run,
    s3_config,
    settle,
    unmount,
    wait_mounted,
)

from blobfs.mount import mountpoint  # noqa: E402
from sdk.local_server import SeaweedServer  # noqa: E402


def mount_blobfs(s: Setup, where: Path, extra: str) -> None:
    proc = run(
        [
            str(BIN / "blobfs"),
            "mount",
            s.bucket_uri,
            str(where),
            "-o",
            f"log_file={s.work}/{where.name}.log" + extra,
        ],
        env=s.env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"blobfs mount failed: {proc.stderr}")


def mount_s3fs(s: Setup, where: Path, extra: str) -> None:
    passwd = s.work / "s3fs.passwd"
    passwd.write_text(f"{s.server.access_key_id}:{s.server.secret_access_key}\n")
    passwd.chmod(0o600)
    proc = run(
        [
            "s3fs",
            s.provider_bucket,
            str(where),
            "-o",
            f"url={s.server.endpoint_url},use_path_request_style,passwd_file={passwd},"
            "endpoint=us-east-1" + extra,
        ]
    )
    if proc.returncode != 0:
        raise RuntimeError(f"s3fs failed: {proc.stderr}")
    wait_mounted(where)


#: name -> (mount, whether it has extended attributes)
MOUNTS: dict[str, tuple[Callable[[Setup, Path], None], bool]] = {
    "blobfs": (lambda s, w: mount_blobfs(s, w, ""), True),
    "blobfs noxattr": (lambda s, w: mount_blobfs(s, w, ",noxattr"), False),
    "s3fs use_xattr": (lambda s, w: mount_s3fs(s, w, ",use_xattr"), True),
    "s3fs": (lambda s, w: mount_s3fs(s, w, ""), False),
    "rclone": (lambda s, w: mount_rclone(s, w, False), False),
}


def small_writes(where: Path, count: int, tag: str) -> float:
    """µs per 4 KiB pwrite (close not counted)."""
    fd = os.open(where / f"w4k-{tag}", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    block = os.urandom(4096)
    try:
        started = time.perf_counter()
        for i in range(count):
            os.pwrite(fd, block, i * 4096)
        return (time.perf_counter() - started) / count * 1e6
    finally:
        os.close(fd)


def large_writes(where: Path, mib: int, tag: str) -> float:
    """MiB/s of 128 KiB writes (close not counted)."""
    fd = os.open(where / f"w128k-{tag}", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    block = os.urandom(128 * 1024)
    try:
        started = time.perf_counter()
        for _ in range(mib * 8):
            os.write(fd, block)
        return mib / (time.perf_counter() - started)
    finally:
        os.close(fd)


def ls_warm(where: Path) -> float:
    subprocess.run(["ls", "-l", str(where / "ls")], stdout=subprocess.DEVNULL, check=True)
    started = time.perf_counter()
    subprocess.run(["ls", "-l", str(where / "ls")], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def tcp_bytes(pid: int) -> dict[str, int]:
    """Bytes sent plus received on each TCP connection of ``pid`` (``ss``: the store
    clients' send/recv calls do not show in ``/proc/PID/io``)."""
    out: dict[str, int] = {}
    lines = run(["ss", "-tinpH"]).stdout.splitlines()
    for head, detail in itertools.pairwise(lines):
        if f"pid={pid}," in head:
            fields = dict(f.split(":", 1) for f in detail.split() if f.startswith("bytes_"))
            key = " ".join(head.split()[3:5])
            out[key] = int(fields.get("bytes_sent", 0)) + int(fields.get("bytes_received", 0))
    return out


def set_one_xattr(where: Path, size_mib: int, round_no: int) -> tuple[float, int]:
    """Seconds to set an attribute on the big object, and the daemon's bytes of I/O."""
    pid = mountpoint.read_pid(where) or daemon_pid(where)
    assert pid is not None, f"no daemon for {where}"
    path = where / "seq" / f"{size_mib}m.bin"
    os.stat(path)
    before = tcp_bytes(pid)
    started = time.perf_counter()
    os.setxattr(path, "user.round", b"%d" % round_no)
    seconds = time.perf_counter() - started
    after = tcp_bytes(pid)
    return seconds, sum(n - before.get(conn, 0) for conn, n in after.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the big object")
    parser.add_argument("--entries", type=int, default=10_000, help="entries for ls -l")
    parser.add_argument("--writes", type=int, default=5000, help="4 KiB writes per round")
    parser.add_argument("--write-mib", type=int, default=128, help="MiB of 128 KiB writes")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not can_run("bench_posix", ("s3fs", "rclone", "fusermount3")):
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-posix-"))
    server = SeaweedServer(work / "seaweedfs", volume_size_limit_mb=1024)
    server.start()
    mounted: list[Path] = []
    try:
        config = s3_config(server, work)
        (work / "data").mkdir()
        registry = work / "data" / "registry.sqlite3"
        uri, bucket = asyncio.run(fill(config, registry, server, args.size_mib, args.entries))
        env = dict(
            os.environ, BLOBFS_CONFIG=str(work / "config.toml"), BLOBFS_DATA_DIR=str(work / "data")
        )
        setup = Setup(server, work, uri, bucket, env)
        wheres: dict[str, Path] = {}
        for name, (mount, _) in MOUNTS.items():
            where = work / ("mnt-" + name.replace(" ", "-"))
            where.mkdir()
            mount(setup, where)
            mounted.append(where)
            wheres[name] = where
        settle(server.pid)
        results: dict[str, dict[str, list[float]]] = {name: {} for name in MOUNTS}

        def phase(what: str, fn: Callable[[str, Path, int], float | None]) -> None:
            names = list(MOUNTS)
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    value = fn(name, wheres[name], r)
                    if value is not None:
                        results[name].setdefault(what, []).append(value)
                settle(server.pid, limit=10)

        phase("4k write us", lambda n, w, r: small_writes(w, args.writes, f"{r}"))
        phase("128k write MiB/s", lambda n, w, r: large_writes(w, args.write_mib, f"{r}"))
        phase("ls -l warm s", lambda n, w, r: ls_warm(w))
        xattr_io: dict[str, list[int]] = {}

        def setxattr(name: str, where: Path, r: int) -> float | None:
            if not MOUNTS[name][1]:
                return None
            seconds, io = set_one_xattr(where, args.size_mib, r)
            xattr_io.setdefault(name, []).append(io)
            return seconds

        phase("setxattr s", setxattr)

        load = os.getloadavg()[0]
        print(
            f"\n{args.rounds} rounds, medians; {args.writes} x 4 KiB, {args.write_mib} MiB in "
            f"128 KiB, ls -l of {args.entries}, setxattr on {args.size_mib} MiB; "
            f"load {load:.1f}"
        )
        columns = ["4k write us", "128k write MiB/s", "ls -l warm s", "setxattr s"]
        print(f"{'':16}" + "".join(f"{c:>18}" for c in columns) + f"{'setxattr I/O':>16}")
        for name in MOUNTS:
            cells = [
                f"{statistics.median(results[name][c]):18.3f}" if c in results[name] else " " * 18
                for c in columns
            ]
            io = f"{statistics.median(xattr_io[name]):10.0f} bytes" if name in xattr_io else ""
            print(f"{name:16}" + "".join(cells) + f"{io:>16}")
        ours, off = results["blobfs"], results["blobfs noxattr"]

        def ratio(what: str, higher_is_better: bool = False) -> float:
            a, b = statistics.median(ours[what]), statistics.median(off[what])
            return b / a if higher_is_better else a / b

        print("\nblobfs with extended attributes against -o noxattr (>1: slower with them):")
        print(f"  4k write   {ratio('4k write us'):.2f}")
        print(f"  128k write {ratio('128k write MiB/s', higher_is_better=True):.2f}")
        print(f"  ls -l warm {ratio('ls -l warm s'):.2f}")
    finally:
        for where in mounted:
            unmount(where)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
