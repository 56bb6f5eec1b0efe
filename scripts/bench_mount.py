#!/usr/bin/env python3
"""blobfs mount against s3fs-fuse and rclone mount, on one local SeaweedFS, in one run.

Measures, for each of the three mounts of the same bucket:

* ``seq``     -- ``dd`` of a 1 GiB object, cold: page cache dropped, fresh mount; with the
  CPU seconds per GiB it cost the server, the mount's daemon and the whole machine (both
  cores), which show how close the run came to what the machine can do at all;
* ``rand4k``  -- fio random 4 KiB reads of that object (4 jobs, psync, ``--runtime``);
* ``rand128k``-- the same with 128 KiB reads;
* ``ls cold`` -- ``ls -l`` of a directory of 10,000 objects on a fresh mount;
* ``ls warm`` -- the same ``ls -l`` again right after;
* the daemon's RSS once mounted (idle), its peak (VmHWM) by the end of the sequential
  read, and its peak over the whole run of that mount.

Then it prints the figures and blobfs's ratio to the best peer.  Needs root (mounts, page
cache drop), fuse3, s3fs, rclone and fio (all from Debian)::

    sudo .venv/bin/python scripts/bench_mount.py            # 1 GiB, 10,000 entries
    sudo .venv/bin/python scripts/bench_mount.py --size-mib 256 --entries 2000 --runtime 5

The peers run with their defaults plus what they need to reach the server; blobfs with its
defaults.  All three sign with the server's one static key: blobfs mounts the bucket as an
imported one (:func:`import_bucket` says why).  Everything runs on this machine, so the
server competes with the mounts for CPU; every timed phase starts once the server has
settled (:func:`settle`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sdk.client import Client  # noqa: E402
from sdk.config import ClusterConfig, Config  # noqa: E402
from sdk.local_server import SeaweedServer  # noqa: E402
from sdk.types import Bucket, Provider  # noqa: E402

MiB = 1024 * 1024
BIN = Path(sys.executable).parent


@dataclass
class Figures:
    tool: str
    seq_mib_s: float = 0.0
    rand4k_iops: float = 0.0
    rand128k_mib_s: float = 0.0
    ls_cold_s: float = 0.0
    ls_warm_s: float = 0.0
    rss_mib: float = 0.0
    #: The daemon's RSS once mounted and settled, before any read, and its peak (VmHWM)
    #: by the end of the sequential read.
    idle_rss_mib: float = 0.0
    seq_rss_mib: float = 0.0
    #: CPU seconds per GiB of the sequential read: server, mount daemon, whole machine.
    seq_cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)
    notes: list[str] = field(default_factory=list)


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def wait_mounted(where: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(["mountpoint", "-q", str(where)]).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{where} did not mount")


def daemon_pid(where: Path) -> int | None:
    """The process whose command line names the mount point (each peer has one)."""
    target = str(where)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in cmdline]
        if target in args and not any(a.endswith(("fusermount3", "umount")) for a in args[:1]):
            return int(entry.name)
    return None


def peak_rss_mib(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mib(pid: int | None) -> float:
    """The resident memory (VmRSS) of ``pid`` now."""
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds ``pid`` (all its threads) has used so far."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    """CPU seconds all cores together have spent busy (not idle or waiting) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def settle(pid: int | None, quiet: float = 0.02, window: float = 0.5, limit: float = 30) -> float:
    """Flush dirty pages to disk, then wait until process ``pid`` (the server) has used less
    than ``quiet`` CPU seconds over ``window`` seconds, at most ``limit`` seconds; return how
    long it took.  SeaweedFS keeps working for a few seconds after a large upload (merging a
    multipart object's chunk lists, say), and the kernel writes the upload's pages to disk
    about 30 s later: without this, both land on whichever phase comes next.  (While the
    kernel wrote out the 2 GiB of dirty pages a 1 GiB ``dd`` through a mount had left, a
    4 KiB PUT to SeaweedFS took 4.6 ms against 3.2 ms before.)"""
    started = time.monotonic()
    os.sync()
    before = process_cpu(pid)
    while time.monotonic() - started < limit:
        time.sleep(window)
        now = process_cpu(pid)
        if now - before < quiet:
            break
        before = now
    return time.monotonic() - started


def unmount(where: Path) -> None:
    pid = daemon_pid(where)
    run(["fusermount3", "-u", str(where)])
    deadline = time.monotonic() + 60
    while pid is not None and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def timed(cmd: list[str] | str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, shell=isinstance(cmd, str), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.decode()[-500:]}")
    return time.perf_counter() - started


def fio(path: Path, bs: str, runtime: int) -> dict[str, float]:
    proc = run(
        [
            "fio",
            "--name=rand",
            f"--filename={path}",
            "--readonly",
            "--rw=randread",
            f"--bs={bs}",
            "--ioengine=psync",
            "--numjobs=4",
            "--group_reporting",
            "--invalidate=1",
            "--time_based",
            f"--runtime={runtime}",
            "--output-format=json",
        ]
    )
    if proc.returncode != 0:
        raise RuntimeError(f"fio failed: {proc.stderr[-500:]}")
    job = json.loads(proc.stdout)["jobs"][0]["read"]
    return {"iops": float(job["iops"]), "mib_s": float(job["bw_bytes"]) / MiB}


#: Debian package of each program the benchmarks need (scripts/setup.sh installs them all).
PACKAGES = {"fio": "fio", "s3fs": "s3fs", "rclone": "rclone", "fusermount3": "fuse3"}


def can_run(name: str, tools: tuple[str, ...]) -> bool:
    """Root, and every program in ``tools`` on PATH; else say what is missing and how to
    get it."""
    if os.geteuid() != 0:
        print(f"{name}: needs root (mounts, drop_caches)", file=sys.stderr)
        return False
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        packages = " ".join(sorted({PACKAGES.get(tool, tool) for tool in missing}))
        print(
            f"{name}: {', '.join(missing)} not installed; install with "
            f"`apt-get install {packages}` (scripts/setup.sh installs them)",
            file=sys.stderr,
        )
        return False
    return True


def s3_config(server: SeaweedServer, work: Path) -> Config:
    """A saved blobfs configuration whose only cluster is ``server``."""
    cluster = ClusterConfig(
        name="bench",
        provider=Provider.S3,
        endpoint_url=server.endpoint_url,
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
    return config


# -- the three mounts -------------------------------------------------------------------------


@dataclass
class Setup:
    server: SeaweedServer
    work: Path
    bucket_uri: str
    provider_bucket: str
    env: dict[str, str]


def mount_blobfs(s: Setup, where: Path, read_only: bool = True, tree: Path | None = None) -> None:
    """Mount with this environment's ``blobfs``, or with the code of ``tree`` (first on
    ``PYTHONPATH``, its own command line) to compare two versions in one run."""
    # blobfs is mounted read-write either way: its defaults are what is measured.
    command = [str(BIN / "blobfs")]
    env = s.env
    if tree is not None:
        # blobfs.cli is a module in older trees and a package in newer ones; both have main.
        # -P: the working directory's code must not come before the tree's.
        command = [sys.executable, "-P", "-c", "from blobfs.cli import main; main()"]
        env = dict(s.env, PYTHONPATH=str(tree))
    proc = subprocess.run(
        [*command, "mount", s.bucket_uri, str(where), "-o", f"log_file={where}.log"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tree,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"blobfs mount failed: {proc.stderr}")


def mount_s3fs(s: Setup, where: Path, read_only: bool = True) -> None:
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
            "endpoint=us-east-1" + (",ro" if read_only else ""),
        ]
    )
    if proc.returncode != 0:
        raise RuntimeError(f"s3fs failed: {proc.stderr}")
    wait_mounted(where)


def mount_rclone(s: Setup, where: Path, read_only: bool = True) -> None:
    conf = s.work / "rclone.conf"
    conf.write_text(
        "[bench]\ntype = s3\nprovider = Other\n"
        f"access_key_id = {s.server.access_key_id}\n"
        f"secret_access_key = {s.server.secret_access_key}\n"
        f"endpoint = {s.server.endpoint_url}\nregion = us-east-1\n"
    )
    # rclone refuses AWS_CA_BUNDLE on a plain-http endpoint ("unsupported transport").
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    proc = run(
        [
            "rclone",
            "mount",
            f"bench:{s.provider_bucket}",
            str(where),
            "--config",
            str(conf),
            *(["--read-only"] if read_only else []),
            "--daemon",
        ],
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"rclone mount failed: {proc.stderr}")
    wait_mounted(where)


MOUNTS: dict[str, Callable[[Setup, Path, bool], None]] = {
    "blobfs": mount_blobfs,
    "s3fs": mount_s3fs,
    "rclone": mount_rclone,
}


def unmount_all(work: Path) -> None:
    """Unmount whatever mount of this benchmark is still mounted under ``work``."""
    for where in work.glob("mnt-*"):
        if where.is_dir() and run(["mountpoint", "-q", str(where)]).returncode == 0:
            unmount(where)


def mounter(tool: str) -> Callable[[Setup, Path, bool], None]:
    """How to mount ``tool``: a peer, ``blobfs``, or ``LABEL=TREE`` (blobfs from TREE)."""
    if tool in MOUNTS:
        return MOUNTS[tool]
    tree = Path(tool.partition("=")[2]).resolve()
    return lambda s, where, read_only: mount_blobfs(s, where, read_only, tree=tree)


def measure(tool: str, s: Setup, size_mib: int, runtime: int) -> Figures:
    mount = mounter(tool)
    tool = tool.partition("=")[0]
    fig = Figures(tool)
    where = s.work / f"mnt-{tool}"
    where.mkdir(exist_ok=True)
    peak = 0.0

    def fresh() -> None:
        nonlocal peak
        if run(["mountpoint", "-q", str(where)]).returncode == 0:
            peak = max(peak, peak_rss_mib(daemon_pid(where)))
            unmount(where)
        drop_caches()
        # Cold means cold: blobfs's disk cache (on by default) is emptied as well.
        shutil.rmtree(s.work / "xdg" / "blobfs" / "blocks", ignore_errors=True)
        mount(s, where, True)
        settle(s.server.pid)

    big = where / "seq" / f"{size_mib}m.bin"
    fresh()
    daemon = daemon_pid(where)
    fig.idle_rss_mib = rss_mib(daemon)
    before = (process_cpu(s.server.pid), process_cpu(daemon), machine_cpu())
    seconds = timed(["dd", f"if={big}", "of=/dev/null", "bs=1M"])
    after = (process_cpu(s.server.pid), process_cpu(daemon), machine_cpu())
    fig.seq_rss_mib = peak_rss_mib(daemon)
    gib = size_mib / 1024
    server_cpu, daemon_cpu, all_cpu = ((b - a) / gib for a, b in zip(before, after, strict=True))
    fig.seq_mib_s = size_mib / seconds
    fig.seq_cpu = (server_cpu, daemon_cpu, all_cpu)
    print(
        f"  {tool}: sequential {fig.seq_mib_s:.0f} MiB/s; CPU s/GiB: server {server_cpu:.2f}, "
        f"{tool} {daemon_cpu:.2f}, machine {all_cpu:.2f} "
        f"({all_cpu * gib / seconds:.2f} cores busy on average); RSS idle "
        f"{fig.idle_rss_mib:.0f} MiB, peak {fig.seq_rss_mib:.0f} MiB",
        flush=True,
    )

    fresh()
    fig.rand4k_iops = fio(big, "4k", runtime)["iops"]
    print(f"  {tool}: random 4 KiB {fig.rand4k_iops:.0f} IOPS", flush=True)
    fresh()
    fig.rand128k_mib_s = fio(big, "128k", runtime)["mib_s"]
    print(f"  {tool}: random 128 KiB {fig.rand128k_mib_s:.1f} MiB/s", flush=True)

    fresh()
    fig.ls_cold_s = timed(f"ls -l {where}/ls > /dev/null")
    fig.ls_warm_s = timed(f"ls -l {where}/ls > /dev/null")
    print(f"  {tool}: ls -l cold {fig.ls_cold_s:.2f} s, warm {fig.ls_warm_s:.2f} s", flush=True)
    count = len(os.listdir(where / "ls"))
    if count != int(s.env["BENCH_ENTRIES"]):
        fig.notes.append(f"listed {count} entries!")
    peak = max(peak, peak_rss_mib(daemon_pid(where)))
    unmount(where)
    fig.rss_mib = peak
    return fig


# -- data -------------------------------------------------------------------------------------


async def import_bucket(client: Client, server: SeaweedServer, name: str) -> Bucket:
    """Create provider bucket ``name`` with the server's admin key and register it as an
    imported bucket signing with that same static key, as s3fs and rclone are given it.

    A bucket blobfs creates itself is reached with STS credentials scoped to it, and
    SeaweedFS checks the session token and its policy on every request: 3.23 against 2.91
    ms of server CPU per 4 KiB PUT, measured with boto3.  The peers get no such credentials
    here, so the comparison would charge blobfs for the server's STS work."""
    admin = boto3.client("s3", **server.boto3_kwargs())
    admin.create_bucket(Bucket=name)
    key, secret = server.access_key_id, server.secret_access_key
    assert key is not None and secret is not None  # the bench's server checks signatures
    credentials = {
        "access_key_id": key,
        "secret_access_key": secret,
        "endpoint_url": server.endpoint_url,
        "region_name": "us-east-1",
    }
    return await client.buckets.import_external(Provider.S3, name, credentials, name=name)


async def fill(
    config: Config, registry: Path, server: SeaweedServer, size_mib: int, entries: int
) -> tuple[str, str]:
    async with Client(config, registry_path=registry) as client:
        bucket = await import_bucket(client, server, "bench")
        store = await client.buckets.store_for(bucket)
        chunk = os.urandom(8 * MiB)
        upload = await store.start_multipart(f"seq/{size_mib}m.bin")
        sem = asyncio.Semaphore(4)

        async def part(n: int) -> None:
            async with sem:
                await upload.upload_part(n, chunk)

        parts = max(1, size_mib // 8)
        await asyncio.gather(*(part(n) for n in range(1, parts + 1)))
        await upload.complete()
        sem = asyncio.Semaphore(64)

        async def small(i: int) -> None:
            async with sem:
                await store.put(f"ls/f{i:05d}", b"%d\n" % i)

        await asyncio.gather(*(small(i) for i in range(entries)))
        return "blob:bench", "bench"


async def raw_parallel_get(config: Config, registry: Path, size_mib: int) -> float:
    """MiB/s of the sdk's own parallel ranged GETs of the big object, in plain asyncio:
    the ceiling any Python client on this machine and server reaches."""
    async with Client(config, registry_path=registry) as client:
        bucket, _ = await client.buckets.resolve_uri("blob:bench")
        store = await client.buckets.store_for(bucket)
        sem = asyncio.Semaphore(8)
        piece = 16 * MiB

        async def get(n: int) -> int:
            async with sem:
                data = await store.read_range(f"seq/{size_mib}m.bin", n * piece, piece)
                return len(data)

        started = time.perf_counter()
        total = sum(await asyncio.gather(*(get(n) for n in range(size_mib * MiB // piece))))
        return total / MiB / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--runtime", type=int, default=10, help="seconds per fio run")
    parser.add_argument(
        "--tools",
        default="blobfs,s3fs,rclone",
        help="comma-separated: blobfs, s3fs, rclone, or LABEL=TREE for blobfs from a code "
        "tree (e.g. old=/tmp/base,new=.,s3fs to compare two versions beside a peer)",
    )
    args = parser.parse_args()
    if not can_run("bench_mount", ("fio", "s3fs", "rclone", "fusermount3")):
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-mount-"))
    server = SeaweedServer(work / "seaweedfs", volume_size_limit_mb=1024)
    server.start()
    try:
        config = s3_config(server, work)
        (work / "data").mkdir()
        print(f"filling: {args.size_mib} MiB object, {args.entries} small objects ...", flush=True)
        started = time.perf_counter()
        uri, provider_bucket = asyncio.run(
            fill(config, work / "data" / "registry.sqlite3", server, args.size_mib, args.entries)
        )
        print(f"  filled in {time.perf_counter() - started:.0f} s", flush=True)
        drop_caches()
        settle(server.pid)
        raw = asyncio.run(
            raw_parallel_get(config, work / "data" / "registry.sqlite3", args.size_mib)
        )
        print(f"  raw sdk parallel ranged GETs: {raw:.0f} MiB/s", flush=True)
        env = dict(
            os.environ,
            BLOBFS_CONFIG=str(work / "config.toml"),
            BLOBFS_DATA_DIR=str(work / "data"),
            XDG_CACHE_HOME=str(work / "xdg"),
            BENCH_ENTRIES=str(args.entries),
        )
        setup = Setup(server, work, uri, provider_bucket, env)
        results = []
        for tool in args.tools.split(","):
            print(f"{tool.partition('=')[0]}:", flush=True)
            try:
                results.append(measure(tool, setup, args.size_mib, args.runtime))
            except Exception as e:
                print(f"  {tool} failed: {e}", flush=True)
                unmount(work / f"mnt-{tool.partition('=')[0]}")
        report(results, args)
        print(f"raw sdk parallel ranged GETs (plain asyncio, 8 x 16 MiB): {raw:.0f} MiB/s")
    finally:
        unmount_all(work)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: list[Figures], args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(
        f"\n{args.size_mib} MiB sequential, fio {args.runtime} s x 4 jobs, ls -l of "
        f"{args.entries} entries; {os.cpu_count()} CPUs, load average {load[0]:.1f}"
    )
    header = f"{'':8} {'seq MiB/s':>10} {'4k IOPS':>9} {'128k MiB/s':>11} {'ls cold s':>10}"
    print(header + f" {'ls warm s':>10} {'RSS MiB: idle':>14} {'seq':>5} {'peak':>5}")
    for f in results:
        print(
            f"{f.tool:8} {f.seq_mib_s:10.0f} {f.rand4k_iops:9.0f} {f.rand128k_mib_s:11.1f} "
            f"{f.ls_cold_s:10.2f} {f.ls_warm_s:10.2f} {f.idle_rss_mib:14.0f} "
            f"{f.seq_rss_mib:5.0f} {f.rss_mib:5.0f}  {' '.join(f.notes)}"
        )
    ours = next((f for f in results if f.tool not in ("s3fs", "rclone")), None)
    peers = [f for f in results if f.tool in ("s3fs", "rclone")]
    if ours is None or not peers:
        return
    best_seq = max(peers, key=lambda f: f.seq_mib_s)
    best_4k = max(peers, key=lambda f: f.rand4k_iops)
    best_128k = max(peers, key=lambda f: f.rand128k_mib_s)
    best_cold = min(peers, key=lambda f: f.ls_cold_s)
    best_warm = min(peers, key=lambda f: f.ls_warm_s)
    print("\nblobfs vs the best peer (higher is better for blobfs):")
    print(f"  sequential   {ours.seq_mib_s / best_seq.seq_mib_s:5.2f}x  ({best_seq.tool})")
    print(f"  random 4k    {ours.rand4k_iops / best_4k.rand4k_iops:5.2f}x  ({best_4k.tool})")
    print(
        f"  random 128k  {ours.rand128k_mib_s / best_128k.rand128k_mib_s:5.2f}x  ({best_128k.tool})"
    )
    print(f"  ls -l cold   {best_cold.ls_cold_s / ours.ls_cold_s:5.2f}x  ({best_cold.tool})")
    print(f"  ls -l warm   {best_warm.ls_warm_s / ours.ls_warm_s:5.2f}x  ({best_warm.tool})")
    cores = os.cpu_count() or 1
    print(f"\nsequential read, CPU seconds per GiB ({cores} cores):")
    print(f"{'':8} {'server':>8} {'daemon':>8} {'machine':>8} {'ceiling MiB/s':>14}")
    for f in results:
        server, daemon, machine = f.seq_cpu
        # What the machine could deliver if every core were busy at this cost per GiB.
        ceiling = cores * 1024 / machine if machine else 0.0
        print(f"{f.tool:8} {server:8.2f} {daemon:8.2f} {machine:8.2f} {ceiling:14.0f}")


if __name__ == "__main__":
    sys.exit(main())
