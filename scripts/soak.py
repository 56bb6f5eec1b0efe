#!/usr/bin/env python3
"""Soak: a blobfs mount under mixed load, through a network that misbehaves, for a fixed time.

On one local SeaweedFS (or Azurite, ``--provider azure``) behind the fault-injecting proxy of
tests/harness/proxies.py -- every kind of fault at ``--fault-rate`` of the connections each:
latency, connections dropped, reset mid-request and mid-response, responses cut short or
stalled, "503 busy" -- ``--workers`` threads each work in a directory of their own for
``--seconds``: write small files (4-256 KiB) and large ones (8-40 MiB, streamed in parts),
read whole files back, read random ranges, rename and delete files, and list their
directory.  Every read is checked against what was written; every write whose ``close()``
succeeded is remembered as stored.

Reported: operations done per kind, errors returned (EIO: allowed by the contract; wrong
bytes: never), bytes read and verified, faults struck, and the daemon's RSS sampled every
``--sample`` seconds (it must stay flat).  At the end, with the network sound again, the
mount is unmounted and the bucket checked: every file closed with success is stored
exactly, a failed one is absent or exact, and no multipart upload is left::

    sudo .venv/bin/python scripts/soak.py --seconds 600
    sudo .venv/bin/python scripts/soak.py --seconds 60 --provider azure

Needs root and fuse3.  Figures: docs/BENCHMARKS.md, "Soak".
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_mount import BIN, can_run, run, unmount  # noqa: E402

from blobfs.mount import mountpoint  # noqa: E402
from sdk.client import Client  # noqa: E402
from sdk.config import Config  # noqa: E402
from sdk.providers.base import ObjectInfo  # noqa: E402
from tests.harness.clusters import behind_proxy, cluster_for  # noqa: E402
from tests.harness.proxies import KINDS, Faults  # noqa: E402
from tests.harness.servers import AzuriteServer, SeaweedServer  # noqa: E402

MiB = 1024 * 1024


def content(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass
class Worker:
    """One thread's files: name -> (seed, size) of what a successful close stored, and of
    what a failed one may have."""

    root: Path
    rng: random.Random
    stored: dict[str, tuple[int, int]] = field(default_factory=dict)
    doubtful: dict[str, tuple[int, int]] = field(default_factory=dict)
    ops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    verified: int = 0

    def step(self) -> None:
        kind = self.rng.choices(
            ["small", "large", "read", "range", "rename", "delete", "list"],
            weights=[30, 3, 25, 20, 8, 6, 8],
        )[0]
        if kind in ("read", "range", "rename", "delete") and not self.stored:
            kind = "small"
        try:
            getattr(self, f"_{kind}")()
            self.ops[kind] += 1
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            self.errors[kind] += 1

    def _write(self, size: int) -> None:
        name = f"f{self.rng.randrange(1 << 30):08x}"
        seed = self.rng.randrange(1 << 62)
        data = content(seed, size)
        try:
            with open(self.root / name, "wb") as f:
                for start in range(0, size, MiB):
                    f.write(data[start : start + MiB])
        except OSError:
            self.doubtful[name] = (seed, size)
            raise
        self.stored[name] = (seed, size)

    def _small(self) -> None:
        self._write(self.rng.randrange(4096, 256 * 1024))

    def _large(self) -> None:
        self._write(self.rng.randrange(8 * MiB, 40 * MiB))

    def _pick(self) -> str:
        return self.rng.choice(sorted(self.stored))

    def _read(self) -> None:
        name = self._pick()
        seed, size = self.stored[name]
        data = (self.root / name).read_bytes()
        if data != content(seed, size):
            self.wrong.append(f"read {name}")
        self.verified += len(data)

    def _range(self) -> None:
        name = self._pick()
        seed, size = self.stored[name]
        length = min(size, self.rng.choice([4096, 65536, MiB]))
        offset = self.rng.randrange(0, size - length + 1)
        fd = os.open(self.root / name, os.O_RDONLY)
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if data != content(seed, size)[offset : offset + length]:
            self.wrong.append(f"range {name}@{offset}")
        self.verified += len(data)

    def _rename(self) -> None:
        # A rename or unlink that fails leaves the name in doubt: it is not checked again.
        name = self._pick()
        new = f"r{self.rng.randrange(1 << 30):08x}"
        entry = self.stored.pop(name)
        os.rename(self.root / name, self.root / new)
        self.stored[new] = entry

    def _delete(self) -> None:
        name = self._pick()
        del self.stored[name]
        os.unlink(self.root / name)

    def _list(self) -> None:
        os.listdir(self.root)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_server(provider: str, work: Path) -> Any:
    if provider == "s3":
        return SeaweedServer(work / "server").start()
    return AzuriteServer(work / "server").start()


async def check_bucket(
    config: Config, registry: Path, bucket: str, workers: list[Worker]
) -> tuple[int, list[str], list[str]]:
    """Objects checked, problems found, multipart uploads left."""
    problems: list[str] = []
    checked = 0
    async with Client(config, registry_path=registry) as client:
        found, _ = await client.buckets.resolve_uri(f"blob:{bucket}")
        store = await client.buckets.store_for(found)
        keys = {i.key: i.size async for i in store.list() if isinstance(i, ObjectInfo)}
        for n, w in enumerate(workers):
            for name, (seed, size) in w.stored.items():
                key = f"w{n}/{name}"
                checked += 1
                if keys.get(key) != size or await store.read_range(key, 0, size) != content(
                    seed, size
                ):
                    problems.append(f"{key}: closed with success, not stored exactly")
            for name, (seed, size) in w.doubtful.items():
                key = f"w{n}/{name}"
                if key in keys and name not in w.stored:
                    checked += 1
                    if await store.read_range(key, 0, size + 1) != content(seed, size):
                        problems.append(f"{key}: a failed write left other bytes")
        pending = getattr(store, "pending_uploads", None)
        left = [] if pending is None else await pending()
    return checked, problems, left


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--provider", choices=["s3", "azure"], default="s3")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--fault-rate", type=float, default=0.03)
    parser.add_argument("--sample", type=float, default=30)
    args = parser.parse_args()
    if not can_run("soak", ("fusermount3",)):
        return 2
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    server = start_server(args.provider, work)
    proxy, url = behind_proxy(args.provider, server)
    cluster = cluster_for(args.provider, server)
    direct = Config(clusters={cluster.name: cluster}, current_cluster=cluster.name, owner="soak")
    cluster = replace(cluster, endpoint_url=url)
    config = Config(
        clusters={cluster.name: cluster},
        current_cluster=cluster.name,
        owner="soak",
        path=work / "config.toml",
    )
    config.save()
    registry = work / "data" / "registry.sqlite3"
    env = dict(os.environ, BLOBFS_CONFIG=str(work / "config.toml"))
    env.update(BLOBFS_DATA_DIR=str(work / "data"), XDG_CACHE_HOME=str(work / "cache"))
    where = work / "mnt"
    where.mkdir()
    try:

        async def create() -> None:
            async with Client(config, registry_path=registry) as client:
                await client.buckets.create("soak")

        asyncio.run(create())
        log = work / "daemon.log"
        proc = run(
            [str(BIN / "blobfs"), "mount", "blob:soak", str(where), "-o", f"log_file={log}"],
            env=env,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mount failed: {proc.stderr}")
        pid = mountpoint.read_pid(where)
        assert pid is not None
        rate = args.fault_rate
        proxy.set(
            Faults(
                latency=0.001,
                drop=rate,
                reset_request=rate,
                reset_response=rate,
                truncate=rate,
                stall=rate,
                slowdown=rate,
                after=MiB,
                stall_for=2.0,
            ),
            seed=1,
        )
        workers = []
        for n in range(args.workers):
            (where / f"w{n}").mkdir()
            workers.append(Worker(where / f"w{n}", random.Random(n)))
        deadline = time.monotonic() + args.seconds
        failures: list[BaseException] = []

        def loop(w: Worker) -> None:
            try:
                while time.monotonic() < deadline:
                    w.step()
            except BaseException as e:
                failures.append(e)

        threads = [threading.Thread(target=loop, args=(w,)) for w in workers]
        started = time.monotonic()
        for t in threads:
            t.start()
        samples: list[tuple[float, float]] = [(0.0, rss_mib(pid))]
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(args.sample, left))
            samples.append((time.monotonic() - started, rss_mib(pid)))
        for t in threads:
            t.join()  # each ends after the operation in progress
        samples.append((time.monotonic() - started, rss_mib(pid)))
        proxy.set(None)
        elapsed = time.monotonic() - started
        unmount(where)
        checked, problems, left = asyncio.run(check_bucket(direct, registry, "soak", workers))
        ops: Counter[str] = sum((w.ops for w in workers), Counter())
        errors: Counter[str] = sum((w.errors for w in workers), Counter())
        wrong = [x for w in workers for x in w.wrong]
        verified = sum(w.verified for w in workers)
        print(f"soak: {args.provider}, {elapsed:.0f} s, {args.workers} workers, faults {rate:.0%}")
        print(f"  operations done: {sum(ops.values())} {dict(sorted(ops.items()))}")
        print(f"  errors returned (EIO): {sum(errors.values())} {dict(sorted(errors.items()))}")
        print(f"  wrong bytes read: {len(wrong)} {wrong[:5]}")
        print(f"  bytes read and verified: {verified / MiB:.0f} MiB")
        struck = {k: proxy.stats[k] for k in KINDS}
        print(f"  connections {proxy.stats['connections']}, faults struck {struck}")
        print("  daemon RSS (MiB) over time: " + ", ".join(f"{t:.0f}s {r:.0f}" for t, r in samples))
        print(f"  bucket: {checked} objects checked, problems {problems[:5]}, uploads left {left}")
        if failures:
            print(f"  a worker failed: {failures[0]!r}")
        return 0 if not (wrong or problems or left or failures) else 1
    finally:
        if run(["mountpoint", "-q", str(where)]).returncode == 0:
            run(["fusermount3", "-uz", str(where)])
        proxy.stop()
        server.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
