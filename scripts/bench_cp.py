#!/usr/bin/env python3
"""Time ``blobfs cp`` of a large file up and down against a raw aioboto3 baseline.

Starts a private SeaweedFS (``weed mini``) on loopback, writes a random file (1 GiB by
default), then in the same run and against the same server, alternating:

* baseline up:   aioboto3 multipart upload, PART-sized parts, CONCURRENCY in flight, parts
                 read from the file in a worker thread;
* blobfs up:     ``blobfs cp FILE blob:bench/...`` (the installed command, as a user runs it);
* baseline down: aioboto3 head + parallel ranged GETs written with ``os.pwrite``;
* blobfs down:   ``blobfs cp blob:bench/... FILE``;
* sdk up/down:   the same through ``client.buckets.upload_file``/``download_file`` in this
                 process, which tells the transfer engine apart from the command's own costs.

Each is run ``--rounds`` times, in alternating order; the best rate of each is reported, and
the median over the rounds of baseline time / blobfs time (1.00 = as fast as raw aioboto3).
The ``blobfs`` times include starting the Python process; the startup alone
(``blobfs --version``) is printed too.

    .venv/bin/python scripts/bench_cp.py [--size-mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aioboto3
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mount import s3_config  # the benchmarks' one cluster configuration

from sdk.client import Client
from sdk.local_server import SeaweedServer
from sdk.transfer import PART_CONCURRENCY, PART_SIZE

MiB = 1024 * 1024
BLOBFS = str(Path(sys.executable).with_name("blobfs"))


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 64 * MiB)
            f.write(os.urandom(n))
            left -= n


async def baseline_up(client: Any, bucket: str, key: str, path: Path) -> None:
    upload = await client.create_multipart_upload(Bucket=bucket, Key=key)
    upload_id = upload["UploadId"]
    slots = asyncio.Semaphore(PART_CONCURRENCY)
    parts: dict[int, str] = {}

    async def send(number: int, data: bytes) -> None:
        try:
            r = await client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            parts[number] = r["ETag"]
        finally:
            slots.release()

    with path.open("rb") as f:
        async with asyncio.TaskGroup() as tg:
            number = 0
            while True:
                await slots.acquire()
                data = await asyncio.to_thread(f.read, PART_SIZE)
                if not data:
                    slots.release()
                    break
                number += 1
                tg.create_task(send(number, data))
    await client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": parts[n]} for n in sorted(parts)]},
    )


async def baseline_down(client: Any, bucket: str, key: str, path: Path) -> None:
    size = (await client.head_object(Bucket=bucket, Key=key))["ContentLength"]
    slots = asyncio.Semaphore(PART_CONCURRENCY)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    async def fetch(offset: int) -> None:
        try:
            end = min(offset + PART_SIZE, size) - 1
            r = await client.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{end}")
            async with r["Body"] as body:
                data = await body.read()
            await asyncio.to_thread(os.pwrite, fd, data, offset)
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as tg:
            for offset in range(0, size, PART_SIZE):
                await slots.acquire()
                tg.create_task(fetch(offset))
    finally:
        os.close(fd)


async def blobfs(env: dict[str, str], *args: str) -> float:
    """Run ``blobfs -q ARGS`` and return its wall time."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(BLOBFS, "-q", *args, env=env)
    if await proc.wait():
        raise SystemExit(f"blobfs {' '.join(args)} failed")
    return time.perf_counter() - t0


def rate(size: int, seconds: float) -> str:
    return f"{size / MiB / seconds:8.1f} MiB/s ({seconds:6.2f} s)"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MiB

    work = Path(tempfile.mkdtemp(prefix="blobfs-bench-"))
    server = SeaweedServer(work / "seaweedfs", volume_size_limit_mb=1024, memory_limit_mb=None)
    server.start()
    try:
        assert server.access_key_id and server.secret_access_key
        config = s3_config(server, work)  # saved as work/config.toml
        env = dict(os.environ, BLOBFS_CONFIG=str(work / "config.toml"))
        env["BLOBFS_DATA_DIR"] = str(work / "data")
        await blobfs(env, "mkbucket", "bench")

        src = work / "src.bin"
        print(f"writing {args.size_mib} MiB of random data ...", flush=True)
        make_file(src, size)
        startup = min([await blobfs(env, "--version") for _ in range(3)])

        times: dict[str, list[float]] = {
            k: []
            for k in ("base up", "blobfs up", "sdk up", "base down", "blobfs down", "sdk down")
        }
        client = Client(config, registry_path=work / "data" / "registry.sqlite3")
        session = aioboto3.Session()
        async with session.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=server.access_key_id,
            aws_secret_access_key=server.secret_access_key,
        ) as s3:
            await s3.create_bucket(Bucket="baseline")
            out = work / "out.bin"

            async def run(name: str) -> None:
                t0 = time.perf_counter()
                if name == "base up":
                    await baseline_up(s3, "baseline", "big", src)
                elif name == "blobfs up":
                    await blobfs(env, "cp", str(src), "blob:bench/big")
                elif name == "sdk up":
                    await client.buckets.upload_file(URL(src.as_uri()), URL("blob:bench/big2"))
                elif name == "base down":
                    await baseline_down(s3, "baseline", "big", out)
                elif name == "blobfs down":
                    await blobfs(env, "cp", "blob:bench/big", str(out))
                else:
                    await client.buckets.download_file(URL("blob:bench/big2"), URL(out.as_uri()))
                times[name].append(time.perf_counter() - t0)
                if name == "blobfs down" and not filecmp.cmp(src, out, shallow=False):
                    raise SystemExit("blobfs download differs from the source!")
                if name.endswith("down"):
                    out.unlink()

            for n in range(args.rounds):
                # The machine may be shared: alternate the order so neither side always
                # runs first, and compare within each round.
                for direction in ("up", "down"):
                    names = [f"base {direction}", f"blobfs {direction}", f"sdk {direction}"]
                    for name in names if n % 2 == 0 else names[::-1]:
                        await run(name)
                print(
                    f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                    flush=True,
                )

        print(
            f"\n{args.size_mib} MiB, part {PART_SIZE // MiB} MiB x {PART_CONCURRENCY} in flight, "
            f"{args.rounds} rounds; blobfs startup {startup:.2f} s; ratio = baseline time / "
            "blobfs time (1.00 = as fast), median of the rounds' ratios"
        )
        for direction in ("up", "down"):
            base, ours, sdk = (times[f"{who} {direction}"] for who in ("base", "blobfs", "sdk"))
            ratio = statistics.median(b / o for b, o in zip(base, ours, strict=True))
            sdk_ratio = statistics.median(b / o for b, o in zip(base, sdk, strict=True))
            print(
                f"{direction:>4}: best baseline {rate(size, min(base))}, "
                f"blobfs {rate(size, min(ours))}, sdk in-process {rate(size, min(sdk))}\n"
                f"      ratio blobfs cp {ratio:.2f}, sdk in-process {sdk_ratio:.2f}"
            )
        await client.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
