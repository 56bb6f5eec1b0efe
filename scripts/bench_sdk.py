#!/usr/bin/env python3
"""Throughput of the sdk's transfer helpers against the raw client library, in one run.

For S3 (a SeaweedFS started here, or ``--s3-endpoint``) and, when available, Azure (Azurite
started through ``tests.harness.servers.AzuriteServer``, or ``--azure-connection-string``) it moves
one blob (1 GiB by default) four ways and prints MiB/s:

* put:   ``sdk.multipart.upload_stream`` (input in 1 MiB chunks, as a file reader hands
  them over) vs. the raw client's own multipart upload of the same parts with the same
  concurrency (aioboto3 ``upload_part``; azure ``stage_block`` + ``commit_block_list``);
* fetch: ``sdk.multipart.download_ranges`` vs. the raw client's parallel ranged GETs;
* stream: one ``BlobStore.read`` stream vs. one raw GET read in 1 MiB chunks.

Rounds alternate sdk and raw so that drift in the server (compaction, page cache) hits both;
the best of ``--rounds`` is reported.  Example::

    .venv/bin/python scripts/bench_sdk.py --size-mib 1024 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdk.multipart import download_ranges, upload_stream
from sdk.providers.base import BlobStore, ProviderAdmin

MiB = 1024 * 1024
CHUNK = MiB


@dataclass
class Results:
    provider: str
    size: int
    rows: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    cpu: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, what: str, path: str, seconds: tuple[float, float]) -> None:
        self.rows.setdefault(what, {}).setdefault(path, []).append(seconds[0])
        self.cpu.setdefault(what, {}).setdefault(path, []).append(seconds[1])

    def print(self) -> None:
        print(f"\n{self.provider}: {self.size / MiB:.0f} MiB, best of rounds (MiB/s)")
        print(
            f"  {'':8} {'sdk':>9} {'raw':>9} {'sdk/raw':>8}   {'client CPU s/GiB sdk|raw':>24}"
            "   all rounds sdk | raw"
        )
        gib = self.size / (1024 * MiB)
        for what, paths in self.rows.items():
            best = {p: self.size / MiB / min(s) for p, s in paths.items()}
            cpu = {p: min(c) / gib for p, c in self.cpu[what].items()}
            rounds = {
                p: " ".join(f"{self.size / MiB / x:.0f}" for x in s) for p, s in paths.items()
            }
            print(
                f"  {what:8} {best['sdk']:9.0f} {best['raw']:9.0f} "
                f"{best['sdk'] / best['raw']:8.2f}   {cpu['sdk']:11.2f} | {cpu['raw']:<10.2f}"
                f"   {rounds['sdk']} | {rounds['raw']}"
            )


class Source:
    """``size`` bytes of incompressible data from a repeated random block, no I/O."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.block = os.urandom(16 * MiB)

    async def chunks(self, chunk: int = CHUNK) -> AsyncIterator[bytes]:
        for offset in range(0, self.size, chunk):
            yield self.part(offset, min(chunk, self.size - offset))

    def part(self, offset: int, length: int) -> bytes:
        # Parts are aligned to the block size for every part size that divides 16 MiB.
        start = offset % len(self.block)
        if start + length <= len(self.block):
            return self.block[start : start + length]
        out = bytearray()
        while len(out) < length:
            start = (offset + len(out)) % len(self.block)
            out += self.block[start : start + length - len(out)]
        return bytes(out)


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Wall-clock seconds, and CPU seconds of this process (immune to a busy machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    await fn()
    return time.perf_counter() - start, time.process_time() - cpu


async def discard(offset: int, data: memoryview) -> None:
    pass


# -- S3 ---------------------------------------------------------------------------------------


async def bench_s3(args: argparse.Namespace, endpoint: str, key_id: str, secret: str) -> Results:
    from sdk.providers.s3.admin import S3Admin

    admin = S3Admin(endpoint, "us-east-1", {"access_key_id": key_id, "secret_access_key": secret})
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    await admin.create_bucket(bucket)
    store = await admin.open_bucket(bucket)
    # The raw baseline uses its own client with the same connection settings.
    raw = store.client.client  # aiobotocore client, used directly
    try:
        return await _bench(
            "S3 (SeaweedFS)" if args.s3_endpoint is None else f"S3 ({endpoint})",
            args,
            admin,
            store,
            raw_put=lambda src, key: _s3_raw_put(raw, bucket, key, src, args),
            raw_fetch=lambda key, size: _s3_raw_fetch(raw, bucket, key, size, args),
            raw_stream=lambda key: _s3_raw_stream(raw, bucket, key),
        )
    finally:
        await _cleanup(admin, store, bucket)


async def _s3_raw_put(
    client: Any, bucket: str, key: str, src: Source, args: argparse.Namespace
) -> None:
    part_size = args.part_mib * MiB
    up = await client.create_multipart_upload(Bucket=bucket, Key=key)
    slots = asyncio.Semaphore(args.concurrency)
    etags: dict[int, str] = {}

    async def part(number: int, offset: int) -> None:
        try:
            r = await client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=up["UploadId"],
                PartNumber=number,
                Body=src.part(offset, min(part_size, src.size - offset)),
            )
            etags[number] = r["ETag"]
        finally:
            slots.release()

    async with asyncio.TaskGroup() as tg:
        for number, offset in enumerate(range(0, src.size, part_size), 1):
            await slots.acquire()
            tg.create_task(part(number, offset))
    await client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(etags.items())]},
    )


async def _s3_raw_fetch(
    client: Any, bucket: str, key: str, size: int, args: argparse.Namespace
) -> None:
    part_size = args.part_mib * MiB
    slots = asyncio.Semaphore(args.concurrency)

    async def get(offset: int) -> None:
        try:
            end = min(offset + part_size, size) - 1
            r = await client.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{end}")
            data = await r["Body"].read()
            assert len(data) == end - offset + 1
        finally:
            slots.release()

    async with asyncio.TaskGroup() as tg:
        for offset in range(0, size, part_size):
            await slots.acquire()
            tg.create_task(get(offset))


async def _s3_raw_stream(client: Any, bucket: str, key: str) -> None:
    r = await client.get_object(Bucket=bucket, Key=key)
    async for _ in r["Body"].iter_chunks(CHUNK):
        pass


# -- Azure ------------------------------------------------------------------------------------


async def bench_azure(args: argparse.Namespace, endpoint: str, account: str, key: str) -> Results:
    from azure.storage.blob import BlobBlock
    from azure.storage.blob.aio import BlobServiceClient

    from sdk.providers.azure import AzureAdmin

    admin = AzureAdmin(endpoint, {"account_name": account, "account_key": key})
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    await admin.create_bucket(bucket)
    store = await admin.open_bucket(bucket)
    async with AsyncExitStack() as stack:
        service = await stack.enter_async_context(
            BlobServiceClient(endpoint, credential={"account_name": account, "account_key": key})
        )
        container = service.get_container_client(bucket)

        async def raw_put(src: Source, name: str) -> None:
            blob = container.get_blob_client(name)
            part_size = args.part_mib * MiB
            slots = asyncio.Semaphore(args.concurrency)
            ids: list[str] = []

            async def stage(number: int, offset: int) -> None:
                try:
                    await blob.stage_block(
                        ids[number], src.part(offset, min(part_size, src.size - offset))
                    )
                finally:
                    slots.release()

            async with asyncio.TaskGroup() as tg:
                for number, offset in enumerate(range(0, src.size, part_size)):
                    ids.append(f"{number:08d}".encode().hex())
                    await slots.acquire()
                    tg.create_task(stage(number, offset))
            await blob.commit_block_list([BlobBlock(block_id=i) for i in ids])

        async def raw_fetch(name: str, size: int) -> None:
            blob = container.get_blob_client(name)
            part_size = args.part_mib * MiB
            slots = asyncio.Semaphore(args.concurrency)

            async def get(offset: int) -> None:
                try:
                    length = min(part_size, size - offset)
                    stream = await blob.download_blob(offset=offset, length=length)
                    data = await stream.readall()
                    assert len(data) == length
                finally:
                    slots.release()

            async with asyncio.TaskGroup() as tg:
                for offset in range(0, size, part_size):
                    await slots.acquire()
                    tg.create_task(get(offset))

        async def raw_stream(name: str) -> None:
            stream = await container.get_blob_client(name).download_blob()
            async for _ in stream.chunks():
                pass

        try:
            return await _bench(
                "Azure (Azurite)", args, admin, store, raw_put, raw_fetch, raw_stream
            )
        finally:
            await _cleanup(admin, store, bucket)


# -- common -----------------------------------------------------------------------------------


async def _bench(
    provider: str,
    args: argparse.Namespace,
    admin: ProviderAdmin,
    store: BlobStore,
    raw_put: Callable[[Source, str], Awaitable[None]],
    raw_fetch: Callable[[str, int], Awaitable[None]],
    raw_stream: Callable[[str], Awaitable[None]],
) -> Results:
    src = Source(args.size_mib * MiB)
    res = Results(provider, src.size)
    part_size, conc = args.part_mib * MiB, args.concurrency

    async def sdk_put(key: str) -> None:
        await upload_stream(
            store, key, src.chunks(args.chunk_mib * MiB), part_size=part_size, concurrency=conc
        )

    async def sdk_fetch(key: str) -> None:
        info = await store.head(key)
        await download_ranges(
            store,
            key,
            size=info.size,
            etag=info.etag,
            write=discard,
            part_size=part_size,
            concurrency=conc,
        )

    async def sdk_stream(key: str) -> None:
        async with store.read(key) as chunks:
            async for _ in chunks:
                pass

    # Warm up: the first writes into a new bucket make SeaweedFS grow volumes, and the first
    # connections are opened; neither belongs to either side's figure.
    warm = Source(min(src.size, 2 * conc * part_size))
    await raw_put(warm, "warm-up")
    await raw_fetch("warm-up", warm.size)
    await store.delete("warm-up")

    for r in range(args.rounds):
        order = ["sdk", "raw"] if r % 2 == 0 else ["raw", "sdk"]
        for path in order:
            key = f"{path}-{r}"
            put = (lambda k=key: sdk_put(k)) if path == "sdk" else (lambda k=key: raw_put(src, k))
            res.add("put", path, await timed(put))
            assert (await store.head(key)).size == src.size
        for path in order:
            key = f"{path}-{r}"
            fetch = (
                (lambda k=key: sdk_fetch(k))
                if path == "sdk"
                else (lambda k=key: raw_fetch(k, src.size))
            )
            res.add("fetch", path, await timed(fetch))
        if not args.no_stream:
            for path in order:
                key = f"{path}-{r}"
                stream = (
                    (lambda k=key: sdk_stream(k))
                    if path == "sdk"
                    else (lambda k=key: raw_stream(k))
                )
                res.add("stream", path, await timed(stream))
        for path in order:
            await store.delete(f"{path}-{r}")
        print(f"  {provider}: round {r + 1}/{args.rounds} done", file=sys.stderr)
    return res


async def _cleanup(admin: ProviderAdmin, store: BlobStore, bucket: str) -> None:
    try:
        from sdk.providers.base import ObjectInfo

        keys = [e.key async for e in store.list() if isinstance(e, ObjectInfo)]
        await store.delete_many(keys)
        await admin.delete_bucket(bucket)
    finally:
        await store.close()
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--chunk-mib", type=int, default=1, help="size of the chunks fed to upload_stream"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-stream", action="store_true", help="skip the single-stream read")
    parser.add_argument("--s3-endpoint", help="use this S3 endpoint instead of starting one")
    parser.add_argument("--s3-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    parser.add_argument("--s3-secret", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    parser.add_argument("--azure-endpoint", help="Azure account URL (e.g. Azurite's)")
    parser.add_argument("--azure-account", default="devstoreaccount1")
    parser.add_argument("--azure-key", default=os.environ.get("AZURE_STORAGE_KEY"))
    parser.add_argument("--no-azure", action="store_true")
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()

    results: list[Results] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sdk-")))
        if not args.no_s3:
            if args.s3_endpoint:
                endpoint, key_id, secret = args.s3_endpoint, args.s3_key, args.s3_secret
            else:
                from sdk.local_server import SeaweedServer

                # Big volumes: the benchmark writes several GiB into one collection.
                server = SeaweedServer(tmp / "weed", volume_size_limit_mb=1024)
                stack.callback(server.stop)
                server.start()
                endpoint = server.endpoint_url
                key_id, secret = server.access_key_id or "", server.secret_access_key or ""
            results.append(asyncio.run(bench_s3(args, endpoint, key_id, secret)))
        if not args.no_azure:
            endpoint, account, key = args.azure_endpoint, args.azure_account, args.azure_key
            if endpoint is None:
                try:
                    from tests.harness.servers import AzuriteServer  # type: ignore[import-not-found]
                except ImportError:
                    print("(no AzuriteServer: Azure skipped)", file=sys.stderr)
                else:
                    azurite = AzuriteServer(tmp / "azurite")
                    azurite.start()
                    stack.callback(azurite.stop)
                    endpoint, account, key = (
                        azurite.endpoint_url,
                        azurite.account_name,
                        azurite.account_key,
                    )
            if endpoint is not None:
                results.append(asyncio.run(bench_azure(args, endpoint, account, key)))
    print(
        f"\nparts of {args.part_mib} MiB, {args.concurrency} in flight; "
        f"upload_stream fed {args.chunk_mib} MiB chunks"
    )
    for res in results:
        res.print()


if __name__ == "__main__":
    main()
