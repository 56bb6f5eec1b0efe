#!/usr/bin/env python3
"""Two versions of blobfs on one local SeaweedFS, interleaved: is B faster than A?

Closing a 4 KiB file on the mount takes a few ms, and on this project's shared 2-core
machine the same code's rate drifted between 3.6 and 8 ms per file from one minute to the
next: one run of A and one of B compare the minutes, not the code.  This mounts the same
bucket twice at once, once with each code tree (its path first on ``PYTHONPATH``, which
the ``blobfs`` command of this environment honours, and as the working directory, from
where the daemon of a tree older than 1460893 imported its code), and creates ``--files``
files of 4 KiB on each, closed one after the other, in ``--rounds`` batches that take turns
(A B, B A, ...); then reads them back the same way after dropping the page cache.  It
prints ms per file for each and B/A.  A against itself gave 0.998 and 0.926: take a
difference under 10 % from one run as noise, and run it again with A and B swapped.

With ``--seq-mib N`` it measures cold sequential reads instead: ``dd`` of an N MiB object
through a fresh mount of each tree (page cache dropped, disk cache emptied), ``--rounds``
times per side taking turns, with the daemon's CPU seconds and peak RSS per read.
Needs root and fuse3::

    sudo .venv/bin/python scripts/bench_ab.py /path/to/tree-a /path/to/tree-b
    sudo .venv/bin/python scripts/bench_ab.py --seq-mib 1024 --rounds 6 /tmp/base .
    git worktree add /tmp/base main && sudo .venv/bin/python scripts/bench_ab.py /tmp/base .
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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
    can_run,
    daemon_pid,
    drop_caches,
    fill,
    peak_rss_mib,
    process_cpu,
    s3_config,
    settle,
    timed,
    unmount,
)

from sdk.local_server import SeaweedServer  # noqa: E402

FILE_SIZE = 4096
#: Runs a tree's ``blobfs`` command: ``blobfs.cli`` is a module in older trees and a package
#: in newer ones, and both have ``main``.
COMMAND_LINE = "from blobfs.cli import main; main()"


def mount(tree: Path, uri: str, where: Path, work: Path, tag: str, options: str = "") -> None:
    env = dict(
        os.environ,
        BLOBFS_CONFIG=str(work / "config.toml"),
        BLOBFS_DATA_DIR=str(work / "data"),
        PYTHONPATH=str(tree),
        XDG_CACHE_HOME=str(work / f"cache-{tag}"),
    )
    where.mkdir(exist_ok=True)
    opts = f"log_file={work}/blobfs-{tag}.log" + (f",{options}" if options else "")
    proc = subprocess.run(
        [sys.executable, "-c", COMMAND_LINE, "mount", uri, str(where), "-o", opts],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mount of {tree} failed: {proc.stderr}")


def interleaved(
    dirs: dict[str, Path],
    files: int,
    rounds: int,
    server_pid: int | None,
    batch: Callable[[Path, range], None],
) -> dict[str, float]:
    """``batch(dir, indices)`` over ``range(files)`` in ``rounds`` slices per side, the
    sides taking turns; the seconds each side spent."""
    spent = dict.fromkeys(dirs, 0.0)
    bounds = [files * r // rounds for r in range(rounds + 1)]
    for r in range(rounds):
        for tag in ("A", "B") if r % 2 == 0 else ("B", "A"):
            settle(server_pid)
            started = time.perf_counter()
            batch(dirs[tag], range(bounds[r], bounds[r + 1]))
            spent[tag] += time.perf_counter() - started
    return spent


def fetched_mib(tree: Path, where: Path, work: Path) -> float:
    """MiB the mount at ``where`` has fetched, from its ``blobfs status`` (NaN for a tree
    without it)."""
    env = dict(os.environ, PYTHONPATH=str(tree), BLOBFS_CONFIG=str(work / "config.toml"))
    proc = subprocess.run(
        [sys.executable, "-P", "-c", COMMAND_LINE, "status", str(where), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return float(json.loads(proc.stdout)["cache"]["memory"]["fetched_bytes"]) / 2**20
    except (ValueError, KeyError, TypeError):
        return math.nan


def sequential(
    trees: dict[str, Path],
    options: dict[str, str],
    uri: str,
    work: Path,
    size_mib: int,
    rounds: int,
    server_pid: int | None,
) -> None:
    """Cold ``dd`` reads of the big object, a fresh mount of each tree per read, in turns."""
    seconds: dict[str, list[float]] = {tag: [] for tag in trees}
    cpu: dict[str, list[float]] = {tag: [] for tag in trees}
    peak: dict[str, list[float]] = {tag: [] for tag in trees}
    fetched: dict[str, list[float]] = {tag: [] for tag in trees}
    for r in range(rounds):
        for tag in ("A", "B") if r % 2 == 0 else ("B", "A"):
            where = work / f"mnt-{tag}"
            shutil.rmtree(work / f"cache-{tag}", ignore_errors=True)
            mount(trees[tag], uri, where, work, tag, options[tag])
            try:
                drop_caches()
                settle(server_pid)
                pid = daemon_pid(where)
                before = process_cpu(pid)
                seconds[tag].append(
                    timed(["dd", f"if={where}/seq/{size_mib}m.bin", "of=/dev/null", "bs=1M"])
                )
                cpu[tag].append((process_cpu(pid) - before) / (size_mib / 1024))
                peak[tag].append(peak_rss_mib(pid))
                fetched[tag].append(fetched_mib(trees[tag], where, work))
            finally:
                unmount(where)
    print(f"{size_mib} MiB cold dd, {rounds} rounds per side, load {os.getloadavg()[0]:.1f}")
    for tag in trees:
        rates = " ".join(f"{size_mib / s:.0f}" for s in seconds[tag])
        print(
            f"  {tag}: MiB/s {rates}; median {size_mib / statistics.median(seconds[tag]):.0f}, "
            f"daemon CPU s/GiB {statistics.median(cpu[tag]):.2f}, "
            f"peak RSS {statistics.median(peak[tag]):.0f} MiB, "
            f"fetched {statistics.median(fetched[tag]):.0f} MiB"
        )
    print(f"  B/A time (total): {sum(seconds['B']) / sum(seconds['A']):.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="code tree A (a checkout of blobfs)")
    parser.add_argument("b", type=Path, help="code tree B")
    parser.add_argument("--files", type=int, default=1600, help="4 KiB files per side")
    parser.add_argument("--rounds", type=int, default=16, help="batches per side")
    parser.add_argument(
        "--seq-mib", type=int, default=0, help="cold sequential reads of an object this big"
    )
    parser.add_argument("--a-options", default="", help="mount options (-o) for A")
    parser.add_argument("--b-options", default="", help="mount options (-o) for B")
    args = parser.parse_args()
    options = {"A": args.a_options, "B": args.b_options}
    for tree in (args.a, args.b):
        if not (tree / "blobfs").is_dir() or not (tree / "sdk").is_dir():
            parser.error(f"{tree} is not a blobfs checkout")
    if not can_run("bench_ab", ("fusermount3",)):
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    server = SeaweedServer(work / "seaweedfs", volume_size_limit_mb=1024)
    server.start()
    mounted: list[Path] = []
    try:
        config = s3_config(server, work)
        (work / "data").mkdir()
        registry = work / "data" / "registry.sqlite3"
        uri, _ = asyncio.run(fill(config, registry, server, max(8, args.seq_mib), 1))
        if args.seq_mib:
            trees = {"A": args.a.resolve(), "B": args.b.resolve()}
            sequential(trees, options, uri, work, args.seq_mib, args.rounds, server.pid)
            return 0
        dirs = {}
        for tag, tree in (("A", args.a), ("B", args.b)):
            where = work / f"mnt-{tag}"
            mount(tree.resolve(), uri, where, work, tag, options[tag])
            mounted.append(where)
            dirs[tag] = where / f"small-{tag}"
            dirs[tag].mkdir()
        data = os.urandom(FILE_SIZE)

        def create(d: Path, indices: range) -> None:
            for i in indices:
                with open(d / f"f{i:05d}", "wb") as f:
                    f.write(data)

        def read(d: Path, indices: range) -> None:
            for i in indices:
                if (d / f"f{i:05d}").read_bytes() != data:
                    raise RuntimeError(f"{d}/f{i:05d} read back wrong")

        created = interleaved(dirs, args.files, args.rounds, server.pid, create)
        drop_caches()
        read_back = interleaved(dirs, args.files, args.rounds, server.pid, read)
        print(f"{args.files} x 4 KiB per side, {args.rounds} rounds, load {os.getloadavg()[0]:.1f}")
        for what, spent in (("create-write-close", created), ("read back", read_back)):
            per = {tag: s / args.files * 1000 for tag, s in spent.items()}
            print(
                f"  {what:19} A {per['A']:.2f} ms, B {per['B']:.2f} ms per file; "
                f"B/A {spent['B'] / spent['A']:.3f}"
            )
    finally:
        for where in mounted:
            unmount(where)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
