#!/usr/bin/env python3
"""The write path of blobfs, s3fs-fuse and rclone mount, on one local SeaweedFS, in one run.

The three mounts of the same bucket are up at once (each writes under its own prefix):

* ``dd``      -- ``dd bs=1M conv=fsync`` of a local file of ``--size`` (1 GiB) into the
  mount: MiB/s over dd's whole run, and the seconds from dd's start until the object is
  complete in the bucket (its size, polled with HEAD every 50 ms after dd returns);
* ``files``   -- creating ``--files`` (1,000) files of 4 KiB one after the other (open,
  write, close), then reading them back after dropping the page cache.  After every 100th
  ``close()`` the object is HEADed at once, and after the last the prefix is listed: what
  the mount guarantees at ``close()`` ("complete" column).  Both run in ten batches per
  tool, the tools taking turns, so that a drift of the machine or the server is shared;
* ``cp -r``   -- ``cp -r`` of a local tree of ``--tree-files`` (100) files (1 KiB to 1 MiB,
  in ten directories).

Beside them, the raw multipart PUT rate of the same ``--size`` with aioboto3 directly
(8 MiB parts, 4 in flight, as ``scripts/bench_sdk.py`` measures it), once before and once
after the mounts, so that a drifting server shows.  Then a table with blobfs's ratios to
the raw PUT and to each peer.  Needs root, fuse3, s3fs and rclone (all from Debian)::

    sudo .venv/bin/python scripts/bench_mount_write.py                 # 1 GiB, 1,000 files
    sudo .venv/bin/python scripts/bench_mount_write.py --size 64M --files 100

The peers run with their defaults (s3fs uploads at flush/close; rclone's default
``--vfs-cache-mode off`` streams the upload and finishes it at close) plus what they need
to reach the server; blobfs with its defaults.  All three sign with the server's one
static key: blobfs mounts the bucket as an imported one (:func:`bench_mount.import_bucket`
says why; ``--scoped`` measures blobfs on a bucket it created instead).  Everything runs on
this machine, so the server competes with the mounts for CPU.  Every timed step starts
once the page cache is flushed and the server has settled (:func:`bench_mount.settle`), so
neither the disk writes nor the server's background work that a large upload leaves
behind is charged to the next step, whichever tool that is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioboto3
import boto3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_mount import (  # noqa: E402  (one harness: the read benchmark's mount helpers)
    MOUNTS,
    Setup,
    can_run,
    daemon_pid,
    drop_caches,
    import_bucket,
    peak_rss_mib,
    run,
    s3_config,
    settle,
    unmount,
    unmount_all,
)

from sdk.client import Client  # noqa: E402
from sdk.config import Config  # noqa: E402
from sdk.local_server import SeaweedServer  # noqa: E402

MiB = 1024 * 1024
FILE_SIZE = 4096
PART = 8 * MiB
IN_FLIGHT = 4


@dataclass
class Figures:
    tool: str
    dd_mib_s: float = 0.0
    dd_complete_s: float = 0.0
    files_s: float = 0.0
    files_complete: str = ""
    read_s: float = 0.0
    cp_s: float = 0.0
    rss_mib: float = 0.0
    failed: bool = False
    notes: list[str] = field(default_factory=list)


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    if text[-1:].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


class Bucket:
    """boto3 on the provider bucket: what is really stored, seen from outside the mounts."""

    def __init__(self, server: SeaweedServer, name: str) -> None:
        self.name = name
        self.client = boto3.client("s3", **server.boto3_kwargs())

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.name, Key=key)["ContentLength"])
        except self.client.exceptions.ClientError:
            return None

    def count(self, prefix: str, size: int | None = None) -> int:
        """Objects under ``prefix`` (of ``size`` bytes, if given)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        return sum(
            1
            for p in pages
            for o in p.get("Contents", [])
            if (size is None or o["Size"] == size) and not o["Key"].endswith("/")
        )


# -- inputs -----------------------------------------------------------------------------------


def make_source(path: Path, size: int) -> None:
    """``size`` incompressible bytes (a repeated 16 MiB random block; no server compresses)."""
    block = os.urandom(16 * MiB)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def make_tree(root: Path, files: int) -> int:
    rng = random.Random(7)
    total = 0
    for i in range(files):
        d = root / f"d{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.choice([1024, 4096, 65_536, 300_000, MiB])
        (d / f"f{i:03d}.bin").write_bytes(rng.randbytes(size))
        total += size
    return total


# -- the raw PUT ------------------------------------------------------------------------------


async def raw_put(server: SeaweedServer, bucket: str, key: str, source: Path, size: int) -> float:
    """MiB/s of a multipart upload of ``source`` (``size`` bytes) with aioboto3 directly."""
    session = aioboto3.Session()
    async with session.client("s3", **server.boto3_kwargs()) as client:
        fd = os.open(source, os.O_RDONLY)
        try:
            started = time.perf_counter()
            up = await client.create_multipart_upload(Bucket=bucket, Key=key)
            slots = asyncio.Semaphore(IN_FLIGHT)
            etags: dict[int, str] = {}

            async def part(number: int, offset: int) -> None:
                try:
                    body = os.pread(fd, min(PART, size - offset), offset)
                    r = await client.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=up["UploadId"],
                        PartNumber=number,
                        Body=body,
                    )
                    etags[number] = r["ETag"]
                finally:
                    slots.release()

            async with asyncio.TaskGroup() as tg:
                for number, offset in enumerate(range(0, size, PART), 1):
                    await slots.acquire()
                    tg.create_task(part(number, offset))
            parts = [{"PartNumber": n, "ETag": e} for n, e in sorted(etags.items())]
            await client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=up["UploadId"],
                MultipartUpload={"Parts": parts},
            )
            return size / MiB / (time.perf_counter() - started)
        finally:
            os.close(fd)


# -- the phases -------------------------------------------------------------------------------
#
# All mounts are up at once.  The dd and cp -r phases run one tool after the other; the
# small-file phases, which take a few ms per file and so feel every drift of this shared
# machine (the same tool's rate moved between 3.6 and 8 ms per file from one minute to the
# next here), run in ROUNDS alternating batches, so every tool sees the same conditions.

#: Batches of the small-file phases per tool; the order of the tools rotates every round.
ROUNDS = 10


@dataclass
class Mount:
    fig: Figures
    where: Path

    @property
    def failed(self) -> bool:
        return self.fig.failed

    @property
    def base(self) -> Path:
        return self.where / self.fig.tool


def attempt(m: Mount, what: str, step: Callable[..., object], *args: Any) -> None:
    """``step(*args)``: one phase of one mount; a failure is noted and the mount skips the
    later phases."""
    if m.failed:
        return
    try:
        step(*args)
    except Exception as e:
        m.fig.failed = True
        m.fig.notes.append(f"{what} failed: {e}")
        print(f"  {m.fig.tool}: {what} failed: {e}", flush=True)


def dd_phase(m: Mount, s: Setup, bucket: Bucket, args: argparse.Namespace) -> None:
    """``dd`` of the source, and the time until the bucket has the whole object."""
    size, tool, fig = args.size_bytes, m.fig.tool, m.fig
    with open(s.work / "source.bin", "rb") as f:  # from the page cache for every tool
        while f.read(16 * MiB):
            pass
    settle(s.server.pid)
    started = time.perf_counter()
    proc = run(["dd", f"if={s.work / 'source.bin'}", f"of={m.base}/big.bin", "bs=1M", "conv=fsync"])
    dd_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"dd: {proc.stderr[-300:]}")
    fig.dd_mib_s = size / MiB / dd_s
    deadline = time.monotonic() + 600
    while bucket.size(f"{tool}/big.bin") != size and time.monotonic() < deadline:
        time.sleep(0.05)
    fig.dd_complete_s = time.perf_counter() - started
    if bucket.size(f"{tool}/big.bin") != size:
        fig.notes.append("dd object never complete!")
    print(f"  {tool}: dd {fig.dd_mib_s:.0f} MiB/s, complete after {fig.dd_complete_s:.1f} s")


def interleaved(
    mounts: list[Mount], s: Setup, files: int, batch: Callable[[Mount, range], None]
) -> None:
    """Run ``batch(mount, indices)`` over ``range(files)`` in :data:`ROUNDS` slices per
    mount, rotating the order of the mounts every round."""
    bounds = [files * r // ROUNDS for r in range(ROUNDS + 1)]
    for r in range(ROUNDS):
        order = mounts[r % len(mounts) :] + mounts[: r % len(mounts)]
        for m in order:
            settle(s.server.pid)
            attempt(m, "small files", batch, m, range(bounds[r], bounds[r + 1]))


def files_phase(mounts: list[Mount], s: Setup, bucket: Bucket, args: argparse.Namespace) -> None:
    """Create ``args.files`` files of 4 KiB on every mount, each closed before the next;
    after every 100th ``close()`` (outside the timing) HEAD the object, and at the end list
    the prefix: what each mount guarantees at ``close()``.  Then read them back."""
    data = os.urandom(FILE_SIZE)
    sampled = {m.fig.tool: [0, 0] for m in mounts}
    for m in mounts:
        attempt(m, "mkdir", (m.base / "small").mkdir)

    def create(m: Mount, indices: range) -> None:
        tool, small, spent = m.fig.tool, m.base / "small", 0.0
        started = time.perf_counter()
        for i in indices:
            with open(small / f"f{i:05d}", "wb") as f:
                f.write(data)
            if i % 100 == 99:
                spent += time.perf_counter() - started
                sampled[tool][0] += bucket.size(f"{tool}/small/f{i:05d}") == FILE_SIZE
                sampled[tool][1] += 1
                started = time.perf_counter()
        m.fig.files_s += spent + time.perf_counter() - started

    def read(m: Mount, indices: range) -> None:
        started = time.perf_counter()
        for i in indices:
            if (m.base / "small" / f"f{i:05d}").read_bytes() != data:
                raise RuntimeError(f"f{i:05d} read back wrong!")
        m.fig.read_s += time.perf_counter() - started

    interleaved(mounts, s, args.files, create)
    for m in mounts:
        present, total = sampled[m.fig.tool]
        listed = bucket.count(f"{m.fig.tool}/small/", FILE_SIZE)
        m.fig.files_complete = f"{present}/{total} HEAD, {listed}/{args.files} listed"
    drop_caches()
    interleaved(mounts, s, args.files, read)
    for m in mounts:
        if not m.failed:
            print(
                f"  {m.fig.tool}: {args.files} x 4 KiB created in {m.fig.files_s:.1f} s "
                f"(at close: {m.fig.files_complete}), read back in {m.fig.read_s:.1f} s",
                flush=True,
            )


def cp_phase(m: Mount, s: Setup, bucket: Bucket, args: argparse.Namespace) -> None:
    settle(s.server.pid)
    started = time.perf_counter()
    proc = run(["cp", "-r", str(s.work / "tree"), str(m.base / "tree")])
    m.fig.cp_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"cp -r: {proc.stderr[-300:]}")
    copied = bucket.count(f"{m.fig.tool}/tree/")
    if copied != args.tree_files:
        m.fig.notes.append(f"cp -r: {copied} of {args.tree_files} objects in the bucket!")
    print(f"  {m.fig.tool}: cp -r of {args.tree_files} files {m.fig.cp_s:.1f} s", flush=True)


def measure(tools: list[str], s: Setup, bucket: Bucket, args: argparse.Namespace) -> list[Figures]:
    mounts = []
    drop_caches()
    for tool in tools:
        m = Mount(Figures(tool), s.work / f"mnt-{tool}")
        m.where.mkdir(exist_ok=True)
        attempt(m, "mount", MOUNTS[tool], s, m.where, False)
        attempt(m, "mkdir", m.base.mkdir)
        mounts.append(m)
    try:
        for m in mounts:
            attempt(m, "dd", dd_phase, m, s, bucket, args)
        files_phase([m for m in mounts if not m.failed], s, bucket, args)
        for m in mounts:
            attempt(m, "cp -r", cp_phase, m, s, bucket, args)
    finally:
        for m in mounts:
            m.fig.rss_mib = peak_rss_mib(daemon_pid(m.where))
            unmount(m.where)
    return [m.fig for m in mounts]


# -- the run ----------------------------------------------------------------------------------


async def create_bucket(
    config: Config, registry: Path, server: SeaweedServer, *, scoped: bool
) -> str:
    """The bucket ``blob:benchw``, imported with the server's static key, or with
    ``scoped`` created by blobfs (its requests then carry STS credentials scoped to it);
    returns its name on the server."""
    async with Client(config, registry_path=registry) as client:
        if not scoped:
            await import_bucket(client, server, "benchw")
            return "benchw"
        store = await client.buckets.store_for(await client.buckets.create("benchw"))
        return str(store.bucket_name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1G", help="dd and raw PUT size (64M, 1G, ...)")
    parser.add_argument("--files", type=int, default=1000, help="4 KiB files to create")
    parser.add_argument("--tree-files", type=int, default=100, help="files in the cp -r tree")
    parser.add_argument("--tools", default="blobfs,s3fs,rclone")
    parser.add_argument(
        "--scoped",
        action="store_true",
        help="blobfs mounts a bucket it created, signing with STS credentials scoped to it "
        "(the peers keep the server's static key)",
    )
    args = parser.parse_args()
    args.size_bytes = parse_size(args.size)
    unknown = set(args.tools.split(",")) - set(MOUNTS)
    if unknown:
        parser.error(f"unknown tools {sorted(unknown)}; choose from {', '.join(MOUNTS)}")
    if not can_run("bench_mount_write", ("s3fs", "rclone", "fusermount3")):
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-mount-write-"))
    server = SeaweedServer(work / "seaweedfs", volume_size_limit_mb=1024)
    server.start()
    raws: list[float] = []
    try:
        config = s3_config(server, work)
        (work / "data").mkdir()
        provider_bucket = asyncio.run(
            create_bucket(config, work / "data" / "registry.sqlite3", server, scoped=args.scoped)
        )
        bucket = Bucket(server, provider_bucket)
        make_source(work / "source.bin", args.size_bytes)
        tree_bytes = make_tree(work / "tree", args.tree_files)
        print(
            f"{args.size_bytes / MiB:.0f} MiB dd, {args.files} x 4 KiB files, cp -r of "
            f"{args.tree_files} files ({tree_bytes / MiB:.1f} MiB)",
            flush=True,
        )
        settle(server.pid)
        raws.append(
            asyncio.run(
                raw_put(server, provider_bucket, "raw/1", work / "source.bin", args.size_bytes)
            )
        )
        print(f"  raw multipart PUT: {raws[-1]:.0f} MiB/s", flush=True)
        env = dict(
            os.environ,
            BLOBFS_CONFIG=str(work / "config.toml"),
            BLOBFS_DATA_DIR=str(work / "data"),
            XDG_CACHE_HOME=str(work / "cache"),
        )
        setup = Setup(server, work, "blob:benchw", provider_bucket, env)
        results = measure(args.tools.split(","), setup, bucket, args)
        settle(server.pid)
        raws.append(
            asyncio.run(
                raw_put(server, provider_bucket, "raw/2", work / "source.bin", args.size_bytes)
            )
        )
        print(f"  raw multipart PUT again: {raws[-1]:.0f} MiB/s", flush=True)
        report(results, raws, args)
    finally:
        unmount_all(work)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: list[Figures], raws: list[float], args: Any) -> None:
    load = os.getloadavg()
    raw = sum(raws) / len(raws)
    print(
        f"\n{args.size_bytes / MiB:.0f} MiB dd conv=fsync, {args.files} x 4 KiB files, cp -r of "
        f"{args.tree_files} files; {os.cpu_count()} CPUs, load average {load[0]:.1f}; raw "
        f"multipart PUT {' / '.join(f'{r:.0f}' for r in raws)} MiB/s (before / after)"
    )
    print(
        f"{'':8} {'dd MiB/s':>9} {'complete s':>11} {'files s':>8} {'read s':>7} "
        f"{'cp -r s':>8} {'RSS MiB':>8}  complete at close()"
    )
    for f in results:
        if f.failed:
            print(f"{f.tool:8} " + " ".join(f.notes))
            continue
        print(
            f"{f.tool:8} {f.dd_mib_s:9.0f} {f.dd_complete_s:11.1f} {f.files_s:8.1f} "
            f"{f.read_s:7.1f} {f.cp_s:8.1f} {f.rss_mib:8.0f}  {f.files_complete}  "
            + " ".join(f.notes)
        )
    ours = next((f for f in results if f.tool == "blobfs" and not f.failed), None)
    if ours is None:
        return
    print("\nblobfs ratios (above 1 is better for blobfs; times as peer / blobfs):")
    print(f"  dd vs raw multipart PUT  {ours.dd_mib_s / raw:5.2f}  (goal >= 0.85)")
    for peer in results:
        if peer is ours or peer.failed:
            continue
        print(
            f"  vs {peer.tool:7} dd {ours.dd_mib_s / peer.dd_mib_s:5.2f}, "
            f"complete {peer.dd_complete_s / ours.dd_complete_s:5.2f}, "
            f"files {peer.files_s / ours.files_s:5.2f}, read {peer.read_s / ours.read_s:5.2f}, "
            f"cp -r {peer.cp_s / ours.cp_s:5.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
