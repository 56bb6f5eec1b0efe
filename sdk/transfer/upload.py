"""The upload side: one local file to one blob, and the walk of a local tree."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from yarl import URL

from sdk.errors import ResourceNotFound
from sdk.filters import AsyncFilterFunc, read_ignore_files
from sdk.multipart import upload_stream
from sdk.progress import (
    AbstractFileProgress,
    StorageProgressComplete,
    StorageProgressStart,
    StorageProgressStep,
)
from sdk.providers.base import BlobStore
from sdk.transfer.common import (
    MTIME_KEY,
    PART_CONCURRENCY,
    PART_SIZE,
    TREE_PART_CONCURRENCY,
    format_mtime,
    join_url,
    part_size_for,
    remote_mtime_ns,
    up_to_date,
)
from sdk.transfer.local import (
    LocalEntry,
    in_thread,
    scan_local,
)
from sdk.transfer.tree import Dir, Tree, no_slot


async def remote_up_to_date(store: BlobStore, key: str, mtime_ns: int, size: int) -> bool:
    """``update``: whether blob ``key`` can stay as it is for a file of that time and size."""
    try:
        info = await store.head(key)
    except ResourceNotFound:
        return False
    return up_to_date(mtime_ns, size, remote_mtime_ns(info), info.size)


async def put_file(
    store: BlobStore,
    key: str,
    path: Path,
    src: URL,
    dst: URL,
    progress: AbstractFileProgress,
    concurrency: int = PART_CONCURRENCY,
) -> None:
    """Upload one local file, with its modification time as metadata."""
    # Opening and closing are quick metadata operations, done inline so a cancellation
    # cannot lose an open file; only the big reads go to a thread.
    f = path.open("rb")
    try:
        # The size and time announced are those of the file actually read.
        st = os.fstat(f.fileno())
        size = st.st_size
        part_size = part_size_for(size)
        progress.start(StorageProgressStart(src, dst, size))

        async def chunks() -> AsyncIterator[bytes]:
            done = 0
            while data := await in_thread(f.read, part_size):
                done += len(data)
                progress.step(StorageProgressStep(src, dst, done, size))
                yield data

        await upload_stream(
            store,
            key,
            chunks(),
            part_size=part_size,
            concurrency=concurrency,
            metadata={MTIME_KEY: format_mtime(st.st_mtime_ns)},
        )
        progress.complete(StorageProgressComplete(src, dst, size))
    finally:
        f.close()


class UploadWalk:
    """Walks a local tree, creating folder markers and queueing file uploads."""

    def __init__(
        self,
        tree: Tree,
        store: BlobStore,
        *,
        update: bool,
        ignore_file_names: frozenset[str],
    ) -> None:
        self._tree = tree
        self._store = store
        self._update = update
        self._ignore = ignore_file_names

    async def walk(
        self,
        tg: asyncio.TaskGroup,
        path: Path,
        prefix: str,
        rel: str,
        d: Dir,
        filter: AsyncFilterFunc,
        seen: frozenset[tuple[int, int]],
    ) -> None:
        subdirs: list[tuple[LocalEntry, Dir]] = []
        try:
            async with self._tree.walk_slots:
                self._tree.enter(d)
                entries = await asyncio.to_thread(scan_local, path)
                present = {e.name for e in entries if stat.S_ISREG(e.mode)} & self._ignore
                if present:
                    filter = await asyncio.to_thread(read_ignore_files, path, present, filter, rel)
                if prefix:
                    await self._store.put(prefix, b"")
                for entry in entries:
                    sub = await self._visit(d, path, prefix, rel, entry, filter, seen)
                    if sub is not None:
                        subdirs.append((entry, sub))
        except Exception as e:
            if d.parent is None:
                raise
            self._tree.fail(d.src, d.dst, e)
        for entry, sub in subdirs:
            d.pending += 1
            tg.create_task(
                self.walk(
                    tg,
                    path / entry.name,
                    prefix + entry.name + "/",
                    rel + entry.name + "/",
                    sub,
                    filter,
                    seen | {entry.ident},
                )
            )
        self._tree.done(d)

    async def _visit(
        self,
        d: Dir,
        path: Path,
        prefix: str,
        rel: str,
        entry: LocalEntry,
        filter: AsyncFilterFunc,
        seen: frozenset[tuple[int, int]],
    ) -> Dir | None:
        """Queue a file or return the directory to walk; ``None`` when skipped."""
        is_dir = stat.S_ISDIR(entry.mode)
        if not await filter(rel + entry.name + ("/" if is_dir else "")):
            return None
        src = join_url(d.src, entry.name)
        dst = join_url(d.dst, entry.name)
        if entry.error is not None:
            self._tree.fail(src, dst, entry.error)
        elif is_dir:
            if entry.ident in seen:
                self._tree.fail(src, dst, "symbolic link loop")
                return None
            return Dir(src, dst, d)
        elif stat.S_ISREG(entry.mode):
            key = prefix + entry.name
            file_path = path / entry.name

            async def run() -> None:
                if self._update and await remote_up_to_date(
                    self._store, key, entry.mtime_ns, entry.size
                ):
                    return
                slot = self._tree.large_slots if entry.size > PART_SIZE else no_slot()
                async with slot:
                    await put_file(
                        self._store,
                        key,
                        file_path,
                        src,
                        dst,
                        self._tree.progress,
                        TREE_PART_CONCURRENCY,
                    )

            await self._tree.submit(d, src, dst, run)
        else:
            self._tree.fail(src, dst, "not a regular file or directory")
        return None
