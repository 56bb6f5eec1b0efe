"""The download side: one blob to one local file, and the walk of a blob folder.

A download goes to a temporary file renamed into place, or with ``continue_`` is written
strictly in order -- in place when appending to an existing partial file, else in
``.NAME.blobfs-part`` -- and kept on failure (see :func:`plan_download`).  The walk never
writes outside its destination: names that cannot be local ones are refused, and so is a
target a symbolic link leads out of it (:mod:`sdk.transfer.names`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from yarl import URL

from sdk.filters import AsyncFilterFunc
from sdk.multipart import download_ranges
from sdk.progress import (
    AbstractFileProgress,
    StorageProgressComplete,
    StorageProgressStart,
    StorageProgressStep,
)
from sdk.providers.base import BlobStore, ObjectInfo, PrefixInfo
from sdk.transfer.common import (
    PART_CONCURRENCY,
    PART_SIZE,
    PART_SUFFIX,
    TIME_THRESHOLD,
    TMP_SUFFIX,
    TREE_PART_CONCURRENCY,
    join_url,
    part_size_for,
    remote_mtime_ns,
    up_to_date,
)
from sdk.transfer.local import (
    in_thread,
    make_local_dir,
    pwrite_all,
    sibling,
)
from sdk.transfer.names import escapes, unsafe_name
from sdk.transfer.tree import Dir, Tree, no_slot


class WriteMode(Enum):
    """Where a download writes."""

    REPLACE = "replace"  # temporary file, renamed into place
    PARTIAL = "partial"  # resumable .NAME.blobfs-part, renamed into place
    APPEND = "append"  # in place, from the end of the existing file


@dataclass(frozen=True)
class Plan:
    """What a download has to do: where it writes and from which offset."""

    mode: WriteMode
    offset: int = 0


def plan_download(path: Path, info: ObjectInfo, *, update: bool, continue_: bool) -> Plan | None:
    """What a download of ``info`` to ``path`` has to do; ``None``: nothing (blocking)."""
    src_ns = remote_mtime_ns(info)
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    if st is None:
        if not path.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "No such directory", str(path.parent))
        if not continue_:
            return Plan(WriteMode.REPLACE)
        try:
            part = sibling(path, PART_SUFFIX).stat()
        except FileNotFoundError:
            return Plan(WriteMode.PARTIAL)
        if _resumable(src_ns, info.size, part):
            return Plan(WriteMode.PARTIAL, part.st_size)
        return Plan(WriteMode.PARTIAL)
    if update and up_to_date(src_ns, info.size, st.st_mtime_ns, st.st_size):
        return None
    if continue_:
        if st.st_size == info.size and (
            src_ns is None or st.st_mtime_ns >= src_ns - TIME_THRESHOLD * 1e9
        ):
            return None
        if _resumable(src_ns, info.size, st):
            return Plan(WriteMode.APPEND, st.st_size)
        return Plan(WriteMode.PARTIAL)
    return Plan(WriteMode.REPLACE)


def _resumable(src_ns: int | None, size: int, st: os.stat_result) -> bool:
    # A partial copy was written after the source version it came from; an older file
    # may hold another version's bytes.
    return src_ns is not None and st.st_size < size and st.st_mtime_ns > src_ns


def _open_target(path: Path, plan: Plan) -> tuple[Path, int]:
    """Open the file a download writes to, cut to the resume offset (blocking)."""
    if plan.mode is WriteMode.REPLACE:
        target = sibling(path, f".{secrets.token_hex(4)}{TMP_SUFFIX}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    elif plan.mode is WriteMode.PARTIAL:
        target = sibling(path, PART_SUFFIX)
        flags = os.O_WRONLY | os.O_CREAT
    else:
        target = path
        flags = os.O_WRONLY
    fd = os.open(target, flags | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        os.ftruncate(fd, plan.offset)
    except BaseException:
        os.close(fd)
        raise
    return target, fd


def _finish_download(fd: int, target: Path, path: Path, mtime_ns: int | None) -> None:
    """Close, date and rename a completed download into place (blocking)."""
    try:
        if mtime_ns is not None:
            os.utime(fd, ns=(os.stat(fd).st_atime_ns, mtime_ns))
        if target != path:
            with contextlib.suppress(FileNotFoundError):
                # Replacing a file keeps its permissions.
                os.fchmod(fd, stat.S_IMODE(path.stat().st_mode))
    finally:
        os.close(fd)
    if target != path:
        os.replace(target, path)


class _InOrder:
    """Passes ranges on strictly in offset order, so the file is always a valid prefix.

    Ranged reads arrive in any order; a range waits here (holding its download slot, which
    bounds memory) until everything before it is written.
    """

    def __init__(self, write: Callable[[int, memoryview], Awaitable[None]], start: int) -> None:
        self._write = write
        self._next = start
        self._turn = asyncio.Condition()

    async def __call__(self, offset: int, data: memoryview) -> None:
        async with self._turn:
            await self._turn.wait_for(lambda: self._next == offset)
        await self._write(offset, data)
        async with self._turn:
            self._next = offset + len(data)
            self._turn.notify_all()


async def get_file(
    store: BlobStore,
    info: ObjectInfo,
    path: Path,
    plan: Plan,
    src: URL,
    dst: URL,
    progress: AbstractFileProgress,
    concurrency: int = PART_CONCURRENCY,
) -> None:
    """Download one blob version as ``plan`` says and give the file the blob's mtime."""
    size = info.size
    # Opening, dating and renaming are quick metadata operations, done inline so that a
    # cancellation cannot separate them from the cleanup; only big writes go to a thread.
    target, fd = _open_target(path, plan)
    keep = plan.mode is not WriteMode.REPLACE  # resumable modes keep what they wrote
    try:
        progress.start(StorageProgressStart(src, dst, size))
        done = plan.offset

        async def write(offset: int, data: memoryview) -> None:
            nonlocal done
            await in_thread(pwrite_all, fd, data, offset)
            done += len(data)
            progress.step(StorageProgressStep(src, dst, done, size))

        # A resumable download is written strictly in order, so the file is always a valid
        # prefix to continue from; a resumed one fetches only the rest, in the same ranges.
        ordered = write if plan.mode is WriteMode.REPLACE else _InOrder(write, plan.offset)
        await download_ranges(
            store,
            info.key,
            size=size,
            etag=info.etag,
            write=ordered,
            part_size=part_size_for(size),
            concurrency=concurrency,
            start=plan.offset,
        )
    except BaseException:
        os.close(fd)
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise
    try:
        _finish_download(fd, target, path, remote_mtime_ns(info))
    except BaseException:
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise
    progress.complete(StorageProgressComplete(src, dst, size))


async def has_keys(store: BlobStore, prefix: str) -> bool:
    """Whether any key starts with ``prefix``."""
    async for _ in store.list(prefix):
        return True
    return False


class Outside(OSError):
    """A download target that resolves outside the destination."""


def _inside(root: Path, path: Path) -> None:
    """Raise :class:`Outside` unless ``path`` resolves inside ``root`` (blocking)."""
    if escapes(root, path):
        raise Outside(
            errno.EACCES, "a symbolic link leads outside the destination; not followed", str(path)
        )


def _make_dir_inside(root: Path, path: Path) -> None:
    _inside(root, path)
    make_local_dir(path)


def _plan_inside(root: Path, path: Path, info: ObjectInfo, update: bool, cont: bool) -> Plan | None:
    _inside(root, path)
    return plan_download(path, info, update=update, continue_=cont)


class DownloadWalk:
    """Walks a blob folder, creating local directories and queueing file downloads, all
    inside ``root`` (the destination, symbolic links resolved)."""

    def __init__(
        self,
        tree: Tree,
        store: BlobStore,
        *,
        update: bool,
        continue_: bool,
        root: Path,
    ) -> None:
        self._tree = tree
        self._store = store
        self._update = update
        self._continue = continue_
        self._root = root

    async def walk(
        self,
        tg: asyncio.TaskGroup,
        prefix: str,
        path: Path,
        rel: str,
        d: Dir,
        filter: AsyncFilterFunc,
    ) -> None:
        subdirs: list[tuple[str, Dir]] = []
        try:
            async with self._tree.walk_slots:
                self._tree.enter(d)
                if d.parent is not None:  # the root was made (and checked) up front
                    await asyncio.to_thread(_make_dir_inside, self._root, path)
                async for item in self._store.list(prefix, delimiter="/"):
                    found = await self._visit(d, prefix, path, rel, item, filter)
                    if found is not None:
                        subdirs.append(found)
        except Exception as e:
            if d.parent is None:
                raise
            self._tree.fail(d.src, d.dst, e)
        for name, sub in subdirs:
            d.pending += 1
            tg.create_task(
                self.walk(tg, prefix + name + "/", path / name, rel + name + "/", sub, filter)
            )
        self._tree.done(d)

    async def _visit(
        self,
        d: Dir,
        prefix: str,
        path: Path,
        rel: str,
        item: ObjectInfo | PrefixInfo,
        filter: AsyncFilterFunc,
    ) -> tuple[str, Dir] | None:
        is_dir = isinstance(item, PrefixInfo)
        name = item.key[len(prefix) :][:-1] if is_dir else item.key[len(prefix) :]
        if not is_dir and not name:
            return None  # this folder's own marker
        if name and not await filter(rel + name + ("/" if is_dir else "")):
            return None
        src = join_url(d.src, name)
        dst = join_url(d.dst, name)
        unsafe = unsafe_name(name)
        if unsafe is not None:
            self._tree.refuse(src, dst, unsafe)
            return None
        if is_dir:
            return name, Dir(src, dst, d)
        assert isinstance(item, ObjectInfo)
        key = item.key
        file_path = path / name

        async def run() -> None:
            # HEAD for the metadata (mtime) and the version listed a moment ago may be gone.
            info = await self._store.head(key)
            plan = await asyncio.to_thread(
                _plan_inside, self._root, file_path, info, self._update, self._continue
            )
            if plan is None:
                return
            slot = self._tree.large_slots if info.size > PART_SIZE else no_slot()
            async with slot:
                await get_file(
                    self._store,
                    info,
                    file_path,
                    plan,
                    src,
                    dst,
                    self._tree.progress,
                    TREE_PART_CONCURRENCY,
                )

        await self._tree.submit(d, src, dst, run)
        return None
