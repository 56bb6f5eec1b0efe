#!/usr/bin/env python3
"""Random access through blobfs, s3fs-fuse and rclone mount, on one local SeaweedFS, in one run.

Workloads, each on a fresh mount with the page cache dropped and every tool's own caches
emptied (cold), unless it says otherwise:

* ``fio``       -- random reads of a 1 GiB object: 4 KiB and 128 KiB, 1 and 4 jobs (psync),
  each for several run lengths, so convergence shows (a tool that keeps what it fetched
  gets faster the longer the run); fio drops the kernel's cache of the file at every pass
  over it unless ``--fio-invalidate 0``;
* ``sqlite``    -- indexed lookups (``SELECT ... WHERE k = ?``, 200 random keys) in a
  database of a few hundred MB, opened read-only by a fresh ``python3`` process; then
  ``sqlite warm``: 200 other keys after a remount (what a disk cache keeps);
* ``zip``       -- reading 50 random members (CRC-checked) of a large zip archive;
* ``scattered`` -- 300 reads of 4 KiB at random offsets of a multi-GiB object.

``bare`` is no file system: plain clients through their own proxy, doing what the server
allows at best for two workloads -- the scattered reads as 300 ranged GETs one after
another (``http.client``, presigned URLs), and the SQLite database fetched whole with 3
GETs of 16 MiB at once (boto3; what blobfs's fill does, and the fastest of 3-12 GETs of
4-16 MiB here).  ``blobfs ÷ bare`` is how close blobfs comes to
the server's own bound on this machine.

For each: the time, IOPS or MiB/s where they apply, the bytes the tool fetched from the
server, and the daemon's peak RSS (VmHWM).  Bytes are counted by a small TCP proxy in front
of SeaweedFS, one per tool (``CountingProxy``: ``splice(2)`` between the sockets, so it
costs the machine next to nothing).  Needs root (mounts, page cache drop), fuse3, s3fs,
rclone and fio (all from Debian)::

    sudo .venv/bin/python scripts/bench_random.py                  # everything
    sudo .venv/bin/python scripts/bench_random.py --quick          # small sizes
    sudo .venv/bin/python scripts/bench_random.py --only fio --runtimes 30 --fio-jobs 4

The peers run with their defaults plus what they need to reach the server, and rclone with
``--vfs-cache-mode full`` (its mode for random access); blobfs with its defaults.  The
shared helpers (mounting, settling, RSS) are :mod:`bench_mount`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mount import (
    BIN,
    can_run,
    daemon_pid,
    drop_caches,
    peak_rss_mib,
    process_cpu,
    run,
    settle,
    unmount,
    wait_mounted,
)
from counting_proxy import CountingProxy

from sdk.client import Client
from sdk.config import ClusterConfig, Config
from sdk.local_server import SeaweedServer
from sdk.types import Provider

MiB = 1024 * 1024
TOOLS = ("blobfs", "s3fs", "rclone")
#: Not a file system: bare ranged GETs (module docstring).
BARE = "bare"


# -- the tools ----------------------------------------------------------------------------------


@dataclass
class Setup:
    server: SeaweedServer
    work: Path
    proxies: dict[str, CountingProxy]
    env: dict[str, str]

    def cache_dirs(self, tool: str) -> list[Path]:
        """Where ``tool`` keeps data between mounts (emptied before every cold phase)."""
        if tool == "blobfs":
            return [self.work / "xdg" / "blobfs" / "blocks"]
        if tool == "rclone":
            return [self.work / "rclone-cache"]
        return []


def mount_blobfs(s: Setup, where: Path) -> None:
    # INFO: the daemon logs what it fetched and where reads were served from at unmount.
    log = f"log_level=INFO,log_file={s.work}/blobfs.log"
    proc = run([str(BIN / "blobfs"), "mount", "blob:bench", str(where), "-o", log], env=s.env)
    if proc.returncode != 0:
        raise RuntimeError(f"blobfs mount failed: {proc.stderr}")


def mount_s3fs(s: Setup, where: Path) -> None:
    passwd = s.work / "s3fs.passwd"
    passwd.write_text(f"{s.server.access_key_id}:{s.server.secret_access_key}\n")
    passwd.chmod(0o600)
    proc = run(
        [
            "s3fs",
            "bench",
            str(where),
            "-o",
            f"url={s.proxies['s3fs'].url},use_path_request_style,passwd_file={passwd},"
            "endpoint=us-east-1,ro",
        ]
    )
    if proc.returncode != 0:
        raise RuntimeError(f"s3fs failed: {proc.stderr}")
    wait_mounted(where)


def mount_rclone(s: Setup, where: Path) -> None:
    conf = s.work / "rclone.conf"
    conf.write_text(
        "[bench]\ntype = s3\nprovider = Other\n"
        f"access_key_id = {s.server.access_key_id}\n"
        f"secret_access_key = {s.server.secret_access_key}\n"
        f"endpoint = {s.proxies['rclone'].url}\nregion = us-east-1\n"
    )
    # rclone refuses AWS_CA_BUNDLE on a plain-http endpoint ("unsupported transport").
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    proc = run(
        [
            "rclone",
            "mount",
            "bench:bench",
            str(where),
            "--config",
            str(conf),
            "--read-only",
            "--vfs-cache-mode",
            "full",
            "--cache-dir",
            str(s.work / "rclone-cache"),
            "--daemon",
        ],
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"rclone mount failed: {proc.stderr}")
    wait_mounted(where)


MOUNTS: dict[str, Callable[[Setup, Path], None]] = {
    "blobfs": mount_blobfs,
    "s3fs": mount_s3fs,
    "rclone": mount_rclone,
}


@dataclass
class Result:
    workload: str
    tool: str
    seconds: float = 0.0
    #: IOPS (fio, lookups, reads) and MiB/s where they apply.
    ops: float = 0.0
    mib_s: float = 0.0
    fetched: int = 0
    rss_mib: float = 0.0
    daemon_cpu: float = 0.0
    notes: list[str] = field(default_factory=list)


@contextmanager
def mounted(s: Setup, tool: str, *, cold: bool = True) -> Iterator[Path]:
    """A fresh mount of ``tool`` (caches emptied first when ``cold``); unmounted after."""
    where = s.work / f"mnt-{tool}"
    where.mkdir(exist_ok=True)
    if cold:
        for d in s.cache_dirs(tool):
            shutil.rmtree(d, ignore_errors=True)
    drop_caches()
    MOUNTS[tool](s, where)
    settle(s.server.pid)
    try:
        yield where
    finally:
        unmount(where)


def measure(
    s: Setup,
    tool: str,
    workload: str,
    body: Callable[[Path], tuple[float, float, float]],
    *,
    cold: bool = True,
    size: int = 0,
) -> Result:
    """Run ``body(mount point) -> (seconds, ops, mib_s)`` on a fresh mount of ``tool``."""
    proxy = s.proxies[tool]
    res = Result(workload, tool)
    with mounted(s, tool, cold=cold) as where:
        pid = daemon_pid(where)
        down, cpu = proxy.down, process_cpu(pid)
        try:
            res.seconds, res.ops, res.mib_s = body(where)
        except Exception as e:  # one tool failing a workload is a figure, not the end
            res.notes.append(f"failed: {str(e)[-200:]}")
        res.fetched = proxy.down - down
        res.daemon_cpu = process_cpu(pid) - cpu
        res.rss_mib = peak_rss_mib(pid)
    if size and res.fetched > size:
        res.notes.append(f"fetched {res.fetched / size:.2f}x the object")
    print(f"  {tool:7} {workload:28} {describe(res)}", flush=True)
    if tool == "blobfs":
        # What the daemon says it did (logged at unmount): GETs, refetches, cache hits.
        log = s.work / "blobfs.log"
        lines = log.read_text().splitlines() if log.exists() else []
        for line in [x for x in lines if "requests:" in x or "read caches:" in x][-2:]:
            print("          " + line.split(": ", 1)[1], flush=True)
        for line in [x for x in lines if f" {pid} " in x and "fill of" in x]:
            print("          " + line.split(": ", 1)[1], flush=True)
    return res


def describe(r: Result) -> str:
    out = f"{r.seconds:7.2f} s"
    if r.ops:
        out += f" {r.ops:10.0f}/s"
    if r.mib_s:
        out += f" {r.mib_s:8.1f} MiB/s"
    out += (
        f"  fetched {r.fetched / MiB:8.1f} MiB  RSS {r.rss_mib:5.0f} MiB  cpu {r.daemon_cpu:5.2f} s"
    )
    return out + (" " + " ".join(r.notes) if r.notes else "")


# -- workloads ----------------------------------------------------------------------------------


def fio_body(
    name: str, bs: str, jobs: int, runtime: int, invalidate: int = 1
) -> Callable[[Path], tuple[float, float, float]]:
    """fio random reads; ``invalidate=1`` (fio's default) drops the kernel's cache of the
    file at the start of every pass over it, so a mount whose data lives in the page cache
    serves each pass again (see docs/BENCHMARKS.md)."""

    def body(where: Path) -> tuple[float, float, float]:
        proc = run(
            [
                "fio",
                "--name=rand",
                f"--filename={where / name}",
                "--readonly",
                "--rw=randread",
                f"--bs={bs}",
                "--ioengine=psync",
                f"--numjobs={jobs}",
                "--group_reporting",
                f"--invalidate={invalidate}",
                "--time_based",
                f"--runtime={runtime}",
                "--output-format=json",
            ]
        )
        if proc.returncode != 0:
            raise RuntimeError(f"fio failed: {proc.stderr[-500:]}")
        job = json.loads(proc.stdout)["jobs"][0]["read"]
        return float(runtime), float(job["iops"]), float(job["bw_bytes"]) / MiB

    return body


SQLITE_QUERY = """
import sqlite3, sys, time
keys = sys.argv[2].split(",")
t = time.perf_counter()
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
found = sum(db.execute("SELECT length(v) FROM t WHERE k = ?", (k,)).fetchone()[0] > 0 for k in keys)
assert found == len(keys), found
print(time.perf_counter() - t)
"""


def sqlite_body(keys: list[str]) -> Callable[[Path], tuple[float, float, float]]:
    def body(where: Path) -> tuple[float, float, float]:
        proc = run(
            [sys.executable, "-c", SQLITE_QUERY, str(where / "sqlite/db.sqlite"), ",".join(keys)]
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-500:])
        seconds = float(proc.stdout.strip())
        return seconds, len(keys) / seconds, 0.0

    return body


ZIP_READ = """
import random, sys, time, zipfile
t = time.perf_counter()
z = zipfile.ZipFile(sys.argv[1])
names = sorted(z.namelist())
total = 0
for name in random.Random(int(sys.argv[3])).sample(names, int(sys.argv[2])):
    total += len(z.read(name))  # checks the CRC
print(time.perf_counter() - t, total)
"""


def zip_body(members: int, seed: int) -> Callable[[Path], tuple[float, float, float]]:
    def body(where: Path) -> tuple[float, float, float]:
        proc = run(
            [
                sys.executable,
                "-c",
                ZIP_READ,
                str(where / "zip/archive.zip"),
                str(members),
                str(seed),
            ]
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-500:])
        seconds, total = proc.stdout.split()
        return float(seconds), members / float(seconds), int(total) / MiB / float(seconds)

    return body


SCATTERED = """
import os, random, sys, time
size, count = int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(11)
offsets = [rng.randrange(0, size - 4096) for _ in range(count)]
t = time.perf_counter()
fd = os.open(sys.argv[1], os.O_RDONLY)
for off in offsets:
    assert len(os.pread(fd, 4096, off)) == 4096
os.close(fd)
print(time.perf_counter() - t)
"""


def scattered_body(
    name: str, size: int, count: int
) -> Callable[[Path], tuple[float, float, float]]:
    def body(where: Path) -> tuple[float, float, float]:
        proc = run([sys.executable, "-c", SCATTERED, str(where / name), str(size), str(count)])
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-500:])
        seconds = float(proc.stdout.strip())
        return seconds, count / seconds, 0.0

    return body


def bare_scattered(s: Setup, size: int, count: int, block: int = 0) -> Result:
    """The scattered reads' offsets as ranged GETs of 4 KiB (or of the aligned ``block``
    around each), one after another, on one kept-alive connection with ``http.client``
    (URLs presigned beforehand: boto3's own request path costs 1-2 ms a GET here, more than
    blobfs's whole read)."""
    rng = random.Random(11)  # SCATTERED's offsets
    offsets = [rng.randrange(0, size - 4096) for _ in range(count)]
    ranges = (
        [(o // block * block, min(size, o // block * block + block)) for o in offsets]
        if block
        else [(o, o + 4096) for o in offsets]
    )
    url = bare_client(s).generate_presigned_url(
        "get_object", Params={"Bucket": "bench", "Key": "big/object.bin"}, ExpiresIn=3600
    )
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc)
    target = f"{parts.path}?{parts.query}"
    conn.request("HEAD", target)  # connected, as a mount is
    conn.getresponse().read()
    workload = f"scattered, {block // 1024} KiB GETs" if block else "scattered"
    res = Result(workload, BARE)
    down = s.proxies[BARE].down
    started = time.perf_counter()
    for start, end in ranges:
        conn.request("GET", target, headers={"Range": f"bytes={start}-{end - 1}"})
        assert len(conn.getresponse().read()) == end - start
    res.seconds = time.perf_counter() - started
    conn.close()
    res.ops, res.fetched = count / res.seconds, s.proxies[BARE].down - down
    print(f"  {BARE:7} {workload:28} {describe(res)}", flush=True)
    return res


def bare_whole(s: Setup, key: str, size: int, workload: str) -> Result:
    """The whole object in 16 MiB GETs, 3 at once."""
    s3, piece = bare_client(s), 16 * MiB
    s3.head_object(Bucket="bench", Key=key)

    def get(offset: int) -> int:
        last = min(size, offset + piece) - 1
        return len(
            s3.get_object(Bucket="bench", Key=key, Range=f"bytes={offset}-{last}")["Body"].read()
        )

    res = Result(workload, BARE, notes=["the whole object, 3 x 16 MiB GETs at once"])
    down = s.proxies[BARE].down
    started = time.perf_counter()
    with ThreadPoolExecutor(3) as pool:
        assert sum(pool.map(get, range(0, size, piece))) == size
    res.seconds = time.perf_counter() - started
    res.mib_s, res.fetched = size / MiB / res.seconds, s.proxies[BARE].down - down
    print(f"  {BARE:7} {workload:28} {describe(res)}", flush=True)
    return res


def bare_client(s: Setup) -> Any:
    kwargs = dict(s.server.boto3_kwargs(), endpoint_url=s.proxies[BARE].url)
    return boto3.client("s3", config=BotoConfig(max_pool_connections=8), **kwargs)


# -- data ---------------------------------------------------------------------------------------


def build_sqlite(path: Path, mib: int) -> list[str]:
    """A database of about ``mib`` MiB: rows of a random 16-character key (indexed) and a
    ~300-byte value; returns the keys."""
    rng = random.Random(7)
    rows = mib * MiB // 360
    keys = [f"{rng.getrandbits(64):016x}" for _ in range(rows)]
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
    db.executemany("INSERT INTO t (k, v) VALUES (?, ?)", ((k, rng.randbytes(300)) for k in keys))
    db.execute("CREATE INDEX t_k ON t (k)")
    db.commit()
    db.close()
    return keys


def build_zip(path: Path, mib: int) -> int:
    """An archive of about ``mib`` MiB of stored members of 64-512 KiB; returns their count."""
    rng = random.Random(9)
    total, n = 0, 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        while total < mib * MiB:
            data = rng.randbytes(rng.randrange(64 * 1024, 512 * 1024))
            z.writestr(f"member/{n:06d}.bin", data)
            total += len(data)
            n += 1
    return n


def upload(server: SeaweedServer, key: str, path: Path | None = None, size: int = 0) -> None:
    """Upload a file, or ``size`` random bytes, to bucket ``bench`` (multipart)."""
    s3 = boto3.client("s3", **server.boto3_kwargs())
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_chunksize=8 * MiB, max_concurrency=4)
    if path is not None:
        s3.upload_file(str(path), "bench", key, Config=config)
        return
    upload_id = s3.create_multipart_upload(Bucket="bench", Key=key)["UploadId"]

    def part(n: int) -> dict[str, object]:
        body = os.urandom(8 * MiB)
        reply = s3.upload_part(Bucket="bench", Key=key, UploadId=upload_id, PartNumber=n, Body=body)
        return {"PartNumber": n, "ETag": reply["ETag"]}

    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(part, range(1, size // (8 * MiB) + 1)))
    s3.complete_multipart_upload(
        Bucket="bench", Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


async def register(work: Path, server: SeaweedServer, endpoint: str) -> None:
    """blobfs's configuration: the bucket imported with the server's static key, reached
    through ``endpoint`` (its counting proxy)."""
    cluster = ClusterConfig(
        name="bench",
        provider=Provider.S3,
        endpoint_url=endpoint,
        region="us-east-1",
        credentials=server.credentials,
    )
    config = Config(
        clusters={"bench": cluster},
        current_cluster="bench",
        owner="bench",
        path=work / "config.toml",
    )
    config.save()
    credentials = {
        "access_key_id": server.access_key_id or "",
        "secret_access_key": server.secret_access_key or "",
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
    }
    async with Client(config, registry_path=work / "data" / "registry.sqlite3") as client:
        await client.buckets.import_external(Provider.S3, "bench", credentials, name="bench")


# -- the run ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", default=",".join((BARE, *TOOLS)))
    parser.add_argument("--only", default="fio,sqlite,zip,scattered", help="workloads to run")
    parser.add_argument("--fio-mib", type=int, default=1024, help="size of the fio object")
    parser.add_argument("--fio-bs", default="4k,128k")
    parser.add_argument("--fio-jobs", default="1,4")
    parser.add_argument(
        "--fio-invalidate",
        type=int,
        choices=(0, 1),
        default=1,
        help="fio's --invalidate: 1 (its default) drops the page cache at every pass",
    )
    parser.add_argument("--runtimes", default="5,15,30", help="fio run lengths, seconds")
    parser.add_argument("--sqlite-mib", type=int, default=300)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--zip-mib", type=int, default=512)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--big-mib", type=int, default=2048, help="object of the scattered reads")
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs")
    args = parser.parse_args()
    if args.quick:
        args.fio_mib, args.sqlite_mib, args.zip_mib, args.big_mib = 256, 64, 128, 1024
        args.runtimes, args.fio_bs = "5", "4k"
    if not can_run("bench_random", ("fio", "s3fs", "rclone", "fusermount3")):
        return 2
    tools = args.tools.split(",")
    only = set(args.only.split(","))

    work = Path(tempfile.mkdtemp(prefix="bench-random-"))
    server = SeaweedServer(work / "seaweedfs", volume_size_limit_mb=1024)
    server.start()
    proxies = {
        tool: CountingProxy(("127.0.0.1", int(server.endpoint_url.rsplit(":", 1)[1])))
        for tool in (*TOOLS, BARE)
    }
    results: list[Result] = []
    try:
        boto3.client("s3", **server.boto3_kwargs()).create_bucket(Bucket="bench")
        (work / "data").mkdir()
        asyncio.run(register(work, server, proxies["blobfs"].url))
        print("filling ...", flush=True)
        started = time.perf_counter()
        keys: list[str] = []
        if "fio" in only:
            upload(server, "fio/object.bin", size=args.fio_mib * MiB)
        if "scattered" in only:
            upload(server, "big/object.bin", size=args.big_mib * MiB)
        if "sqlite" in only:
            keys = build_sqlite(work / "db.sqlite", args.sqlite_mib)
            upload(server, "sqlite/db.sqlite", work / "db.sqlite")
            db_size = (work / "db.sqlite").stat().st_size
            (work / "db.sqlite").unlink()
        if "zip" in only:
            members = build_zip(work / "archive.zip", args.zip_mib)
            upload(server, "zip/archive.zip", work / "archive.zip")
            zip_size = (work / "archive.zip").stat().st_size
            (work / "archive.zip").unlink()
            print(f"  zip: {members} members, {zip_size / MiB:.0f} MiB", flush=True)
        print(f"  filled in {time.perf_counter() - started:.0f} s", flush=True)
        env = dict(
            os.environ,
            BLOBFS_CONFIG=str(work / "config.toml"),
            BLOBFS_DATA_DIR=str(work / "data"),
            XDG_CACHE_HOME=str(work / "xdg"),
        )
        s = Setup(server, work, proxies, env)
        rng = random.Random(3)
        for tool in tools:
            print(f"{tool}:", flush=True)
            if tool == BARE:
                drop_caches()
                if "sqlite" in only:
                    results.append(bare_whole(s, "sqlite/db.sqlite", db_size, "sqlite"))
                if "scattered" in only:
                    results.append(bare_scattered(s, args.big_mib * MiB, args.reads))
                    # What blobfs fetches for each: its block around the read.
                    block = 256 * 1024
                    results.append(bare_scattered(s, args.big_mib * MiB, args.reads, block))
                continue
            if "fio" in only:
                for bs in args.fio_bs.split(","):
                    for jobs in (int(j) for j in args.fio_jobs.split(",")):
                        for runtime in (int(r) for r in args.runtimes.split(",")):
                            results.append(
                                measure(
                                    s,
                                    tool,
                                    f"fio {bs} x{jobs} {runtime}s"
                                    + ("" if args.fio_invalidate else " no-inval"),
                                    fio_body(
                                        "fio/object.bin", bs, jobs, runtime, args.fio_invalidate
                                    ),
                                    size=args.fio_mib * MiB,
                                )
                            )
            if "sqlite" in only:
                cold, warm = rng.sample(keys, args.lookups), rng.sample(keys, args.lookups)
                results.append(measure(s, tool, "sqlite", sqlite_body(cold), size=db_size))
                results.append(
                    measure(
                        s,
                        tool,
                        "sqlite warm (remount)",
                        sqlite_body(warm),
                        cold=False,
                        size=db_size,
                    )
                )
            if "zip" in only:
                results.append(measure(s, tool, "zip", zip_body(args.members, 5), size=zip_size))
            if "scattered" in only:
                results.append(
                    measure(
                        s,
                        tool,
                        "scattered",
                        scattered_body("big/object.bin", args.big_mib * MiB, args.reads),
                        size=args.big_mib * MiB,
                    )
                )
        report(results, args)
    finally:
        for tool in TOOLS:
            where = work / f"mnt-{tool}"
            if where.exists() and run(["mountpoint", "-q", str(where)]).returncode == 0:
                unmount(where)
        for proxy in proxies.values():
            proxy.close()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: list[Result], args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(f"\n{os.cpu_count()} CPUs, load average {load[0]:.1f}; {vars(args)}")
    workloads = list(dict.fromkeys(r.workload for r in results))
    print(
        f"{'workload':28} {'tool':7} {'seconds':>8} {'per s':>10} {'MiB/s':>8} "
        f"{'fetched MiB':>12} {'RSS MiB':>8}"
    )
    for w in workloads:
        for r in (r for r in results if r.workload == w):
            print(
                f"{w:28} {r.tool:7} {r.seconds:8.2f} {r.ops:10.0f} {r.mib_s:8.1f} "
                f"{r.fetched / MiB:12.1f} {r.rss_mib:8.0f}  {' '.join(r.notes)}"
            )
    print("\nblobfs against each peer (higher is better for blobfs; time workloads by time):")
    for w in workloads:
        ours = next((r for r in results if r.workload == w and r.tool == "blobfs"), None)
        if ours is None:
            continue
        parts = []
        for r in results:
            if r.workload != w or r.tool == "blobfs":
                continue
            if w.startswith("fio"):
                ratio = ours.ops / r.ops if r.ops else float("inf")
            else:
                ratio = r.seconds / ours.seconds if ours.seconds else float("inf")
            parts.append(f"{r.tool} {ratio:6.2f}x")
        print(f"  {w:28} {'  '.join(parts)}")


if __name__ == "__main__":
    sys.exit(main())
