"""The core's test environment: a Filesystem over a MemoryStore through the real
trio/asyncio bridge, with a fake clock the tests move, and helpers that drive it."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from blobfs.bridge.loop import AsyncioThread, asyncio_loop
from blobfs.bridge.store import TrioStore
from blobfs.cache.blocks import BlockCache
from blobfs.fs.filesystem import Filesystem
from blobfs.fs.handles import FileHandle
from blobfs.fs.inodes import ROOT_INODE, Node
from blobfs.options import MountOptions
from blobfs.write.aborts import NAME as ABORTS
from blobfs.write.sidecar import Sidecar
from sdk.providers.base import ObjectInfo
from sdk.providers.memory import MemoryAdmin, MemoryStore

BLOCK = 64 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Env:
    fs: Filesystem
    store: MemoryStore
    clock: FakeClock
    aio: AsyncioThread

    async def put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> str:
        return await self.aio.run(self.store.put, key, data, metadata=metadata)

    async def delete(self, key: str) -> None:
        await self.aio.run(self.store.delete, key)

    async def path(self, path: str) -> Node:
        """Look up ``a/b/c`` from the root, as the kernel would, one name at a time."""
        node = self.fs.inodes.root
        for name in path.strip("/").split("/"):
            if name:
                node = await self.fs.lookup(node.ino, name)
        return node

    async def listdir(self, ino: int = ROOT_INODE, *, batch: int = 10_000) -> list[str]:
        """All names of a directory, asking in batches of ``batch`` like a small buffer."""
        fh = await self.fs.opendir(ino)
        names: list[str] = []
        start = 0
        while True:
            taken: list[tuple[str, int]] = []

            def emit(name: str, node: Node, next_id: int, taken: list[Any] = taken) -> bool:
                if len(taken) >= batch:
                    return False
                taken.append((name, next_id))
                return True

            await self.fs.readdir(fh, start, emit)
            if not taken:
                break
            names += [n for n, _ in taken]
            start = taken[-1][1]
        await self.fs.releasedir(fh)
        return [n for n in names if n not in (".", "..")]

    async def read_all(self, node: Node, chunk: int = 128 * 1024) -> bytes:
        handle = await self.fs.open(node.ino, os.O_RDONLY)
        out = bytearray()
        try:
            while True:
                data = await self.fs.read(handle.fh, len(out), chunk)
                if not data:
                    break
                out += data
        finally:
            await self.fs.release(handle.fh)
        return bytes(out)

    def forget_all(self) -> None:
        """What the kernel does on unmount: drop every reference it holds."""
        for node in list(self.fs.inodes):
            if node.ino != ROOT_INODE and node.lookups:
                self.fs.forget([(node.ino, node.lookups)])


@asynccontextmanager
async def make_env(
    objects: dict[str, bytes] | None = None, prefix: str = "", **opts: Any
) -> AsyncIterator[Env]:
    options = replace(
        MountOptions(uid=1000, gid=1000),
        block_size=BLOCK,
        memory=64 * BLOCK,
        readahead=8 * BLOCK,
        attr_ttl=1.0,
        entry_ttl=1.0,
        dir_ttl=5.0,
        negative_ttl=1.0,
        **opts,
    )
    clock = FakeClock()
    with tempfile.TemporaryDirectory(prefix="blobfs-staging-") as staging:
        async with _env(objects, prefix, options, clock, Path(staging)) as env:
            yield env


@asynccontextmanager
async def _env(
    objects: dict[str, bytes] | None,
    prefix: str,
    options: MountOptions,
    clock: FakeClock,
    staging: Path,
) -> AsyncIterator[Env]:
    async with asyncio_loop() as aio:
        admin = MemoryAdmin()
        await aio.run(admin.create_bucket, "bucket")
        store = await aio.run(admin.open_bucket, "bucket")
        async with trio.open_nursery() as nursery:
            tstore = TrioStore(store, aio)
            cache = BlockCache(
                tstore, nursery, block_size=BLOCK, memory=options.memory, max_fetches=4
            )
            fs = Filesystem(tstore, cache, options, prefix=prefix, clock=clock, staging_dir=staging)
            env = Env(fs=fs, store=store, clock=clock, aio=aio)
            for key, data in (objects or {}).items():
                await env.put(key, data)
            yield env
            fs.check_consistency()
            env.forget_all()
            fs.check_consistency()
            assert len(fs.inodes) == 1 + sum(1 for n in fs.inodes if n.opens), "inodes leaked"
            nursery.cancel_scope.cancel()


def payload(size: int, seed: int = 0) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def head(env: Env, key: str) -> ObjectInfo:
    return await env.aio.run(env.store.head, key)


async def body(env: Env, key: str) -> bytes:
    return await env.aio.run(env.store.read_range, key, 0, 1 << 40)


async def write_all(env: Env, handle: FileHandle, data: bytes, offset: int = 0) -> None:
    chunk = 128 * 1024
    for start in range(0, len(data), chunk):
        await env.fs.write(handle.fh, offset + start, data[start : start + chunk])


async def create_file(env: Env, name: str, data: bytes, parent: int = ROOT_INODE) -> Node:
    handle = await env.fs.create(parent, name, 0o640, os.O_WRONLY | os.O_CREAT)
    env.fs.inodes.ref(handle.node)
    await write_all(env, handle, data)
    await env.fs.flush(handle.fh)
    await env.fs.release(handle.fh)
    return handle.node


def staged_data(env: Env) -> list[str]:
    """What the staging directory holds besides the emptied spares kept for the next files
    (an empty data file whose sidecar records nothing to upload, and that sidecar) and the
    list of uploads to abort (:mod:`blobfs.write.aborts`)."""
    names = {p.name for p in env.fs.staging_dir.iterdir()} - {ABORTS}
    for data in env.fs.staging_dir.glob("*.data"):
        side = Sidecar.load(data.with_suffix(".key"))
        if data.stat().st_size == 0 and side is not None and not side.dirty and not side.key:
            names -= {data.name, data.with_suffix(".key").name}
    return sorted(names)
