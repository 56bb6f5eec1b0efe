#!/usr/bin/env python3
"""Server-side copy of one large object: one request vs. parallel part copies, in one run.

Picks :class:`sdk.providers.base.CopySettings` from a figure rather than a guess.  On S3 (a
SeaweedFS started here) and, with ``--azure``, on Azure (an Azurite started here) it copies
one object of ``--size-mib`` with ``BlobStore.copy`` two ways:

* ``single``: the whole object in one request (S3 CopyObject, Azure Copy Blob);
* ``parts``:  parts of ``--part-mib`` copied ``--concurrency`` at once (S3 UploadPartCopy,
  Azure Put Block From URL) and assembled.

Rounds alternate the order of the two, since a shared machine drifts; printed are the MiB/s
of every round, the best of each and the median of the per-round ratios parts/single.
Example::

    .venv/bin/python scripts/bench_copy.py --size-mib 256 --rounds 5 --part-mib 32 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdk.multipart import upload_stream
from sdk.providers.base import MAX_PART_SIZE, BlobStore, CopySettings, ProviderAdmin

MiB = 1024 * 1024


async def _chunks(size: int) -> AsyncIterator[bytes]:
    block = os.urandom(MiB)
    for _ in range(size // MiB):
        yield block


async def bench(name: str, admin: ProviderAdmin, args: argparse.Namespace) -> None:
    bucket = f"bench-copy-{uuid.uuid4().hex[:12]}"
    await admin.create_bucket(bucket)
    store: BlobStore = await admin.open_bucket(bucket)
    size = args.size_mib * MiB
    try:
        await upload_stream(store, "src", _chunks(size))
        ways: dict[str, CopySettings] = {"single": CopySettings(threshold=MAX_PART_SIZE)}
        for part in args.part_mib:
            ways[f"parts {part} MiB x{args.concurrency}"] = CopySettings(
                threshold=0, part_size=part * MiB, concurrency=args.concurrency
            )
        rates: dict[str, list[float]] = {w: [] for w in ways}
        await store.copy("src", "warm-up")  # first connections, volume growth
        for r in range(args.rounds):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for way in order:
                store.copy_settings = replace(ways[way])
                t0 = time.perf_counter()
                await store.copy("src", f"dst-{r}")
                rates[way].append(size / MiB / (time.perf_counter() - t0))
                assert (await store.head(f"dst-{r}")).size == size
                await store.delete(f"dst-{r}")
        print(f"\n{name}: copy of {args.size_mib} MiB, MiB/s per round")
        for way, values in rates.items():
            ratio = ""
            if way != "single":
                paired = [p / s for p, s in zip(values, rates["single"], strict=True)]
                ratio = f"  median ratio to single {statistics.median(paired):.2f}"
            shown = " ".join(f"{v:6.0f}" for v in values)
            print(f"  {way:22} best {max(values):6.0f}   [{shown}]{ratio}")
    finally:
        keys = [e.key async for e in store.list()]
        await store.delete_many(keys)
        await admin.delete_bucket(bucket)
        await store.close()
        await admin.close()


async def main(args: argparse.Namespace) -> None:
    from sdk.providers.s3.admin import S3Admin
    from tests.harness.servers import AzuriteServer, SeaweedServer

    with SeaweedServer(Path(tempfile.mkdtemp(prefix="bench-copy-")), auth=True) as server:
        admin = S3Admin(
            endpoint_url=server.endpoint_url,
            region="us-east-1",
            credentials=server.credentials,
        )
        await bench("S3 (SeaweedFS)", admin, args)
    if args.azure:
        from sdk.providers.azure import AzureAdmin

        with AzuriteServer(Path(tempfile.mkdtemp(prefix="bench-copy-az-"))) as azurite:
            azure = AzureAdmin(
                endpoint_url=azurite.endpoint_url,
                credentials={
                    "account_name": azurite.account_name,
                    "account_key": azurite.account_key,
                },
            )
            await bench("Azure (Azurite)", azure, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--part-mib", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--azure", action="store_true", help="also on Azurite")
    asyncio.run(main(parser.parse_args()))
