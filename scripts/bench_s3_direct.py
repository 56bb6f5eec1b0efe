#!/usr/bin/env python3
"""PUTs through the direct S3 client vs. through aiobotocore, on a SeaweedFS started here.

:mod:`sdk.providers.s3.direct` exists for its per-request cost; this prints it.  One
:class:`~sdk.providers.s3.store.S3Store` sends, one after the other (the latency a file's close
waits for), ``--small`` PUTs of 4 KiB and ``--parts`` UploadParts of 8 MiB, once with its
direct client and once with it switched off (the botocore path, as on AWS).  Rounds
alternate the order, since a shared machine drifts; printed per round are the wall time and
this process's CPU time (all threads: the hashing thread counts) per request, then the best
of each.  Example::

    .venv/bin/python scripts/bench_s3_direct.py --small 300 --parts 12 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdk.local_server import SeaweedServer
from sdk.providers.s3.admin import S3Admin
from sdk.providers.s3.direct import S3Direct
from sdk.providers.s3.store import S3Store

MiB = 1024 * 1024


async def timed(n: int, step: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    """Wall and CPU milliseconds per call of ``step(i)`` for ``i`` in ``range(n)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await step(i)
    return (time.perf_counter() - wall) * 1000 / n, (time.process_time() - cpu) * 1000 / n


async def bench(store: S3Store, args: argparse.Namespace) -> None:
    direct = store.client.direct
    assert direct is not None, "the endpoint should take the direct path"
    small, part = os.urandom(4096), os.urandom(8 * MiB)
    best: dict[str, tuple[float, float]] = {}

    async def run(label: str, use: S3Direct | None, round_no: int) -> None:
        store.client.direct = use
        meta = {"mode": "33188", "mtime": "1700000000.5"}
        puts = await timed(
            args.small, lambda i: store.put(f"{label}/{round_no}/s{i}", small, metadata=meta)
        )
        upload = await store.start_multipart(f"{label}/{round_no}/big")
        parts = await timed(args.parts, lambda i: upload.upload_part(i + 1, part))
        await upload.abort()
        for what, (wall, cpu) in (("PUT 4 KiB", puts), ("UploadPart 8 MiB", parts)):
            key = f"{what} {label}"
            print(f"  {key:<26} {wall:7.2f} ms wall {cpu:7.2f} ms CPU")
            old = best.get(key, (float("inf"), float("inf")))
            best[key] = (min(old[0], wall), min(old[1], cpu))

    for round_no in range(args.rounds):
        print(f"round {round_no + 1}")
        order = [("direct", direct), ("botocore", None)]
        for label, use in order if round_no % 2 == 0 else order[::-1]:
            await run(label, use, round_no)
    store.client.direct = direct
    print("best")
    for key, (wall, cpu) in sorted(best.items()):
        print(f"  {key:<26} {wall:7.2f} ms wall {cpu:7.2f} ms CPU")


async def main(server: SeaweedServer, args: argparse.Namespace) -> None:
    admin = S3Admin(server.endpoint_url, "us-east-1", server.credentials)
    await admin.create_bucket("bench-direct")
    store = await admin.open_bucket("bench-direct")
    try:
        await store.put("warm-up", b"x")
        await bench(store, args)
    finally:
        await store.close()
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=300, help="4 KiB PUTs per round")
    parser.add_argument("--parts", type=int, default=12, help="8 MiB UploadParts per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-direct-") as work:
        server = SeaweedServer(Path(work) / "seaweedfs", volume_size_limit_mb=1024)
        server.start()
        try:
            asyncio.run(main(server, args))
        finally:
            server.stop()
