"""Copies between local files and blobs: single files and whole directory trees.

:class:`Transfers` implements ``upload_file``, ``download_file``, ``upload_dir`` and
``download_dir`` of the Buckets API on top of the :class:`~sdk.providers.base.BlobStore`
protocol, so the same code serves S3, Azure and the in-memory store.

Behaviour worth knowing (see the method docs for the rest):

* Large files move as multipart uploads and parallel ranged reads (:mod:`sdk.multipart`) with
  a bounded number of parts in memory.  Trees move many files at once, at most
  :data:`MAX_OPEN_FILES` open, and at most :data:`LARGE_FILES_AT_ONCE` of them multipart.
* Uploads store the local modification time as object metadata ``mtime`` (seconds since the
  epoch as a decimal string with nanoseconds, as s3fs and rclone do) and downloads give the
  local file that time back, so ``update`` compares like with like in both directions.  An
  object without ``mtime`` is judged by its ``modified_at``.
* Downloads go to a temporary file in the destination directory that is renamed into place,
  so an interrupted download never leaves a truncated file under the final name.  With
  ``continue_`` the file is instead written strictly in order -- in place when appending to
  an existing partial file, else in ``.NAME.blobfs-part`` -- and kept on failure, so the next
  ``continue_`` download picks up where this one stopped.
* Empty directories survive a round trip: every uploaded directory gets a marker object
  ``dir/`` (empty), and markers are not downloaded as files.
* In a tree, a file that cannot be copied is reported through the progress ``fail`` event and
  the others are still copied; the call then raises :class:`IncompleteTransfer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import NoReturn, TypeVar

from yarl import URL

from .errors import BlobfsError, ResourceNotFound
from .filters import AsyncFilterFunc, always, read_ignore_files, read_parent_ignore_files
from .multipart import download_ranges, upload_stream
from .progress import (
    AbstractFileProgress,
    AbstractRecursiveFileProgress,
    StorageProgressComplete,
    StorageProgressEnterDir,
    StorageProgressFail,
    StorageProgressLeaveDir,
    StorageProgressStart,
    StorageProgressStep,
)
from .providers.base import BlobStore, ObjectInfo, PrefixInfo
from .types import Bucket

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Turns a blob URI into its bucket, an open store on it, and the key inside it.
Resolver = Callable[[URL], Awaitable[tuple[Bucket, BlobStore, str]]]

#: Size of multipart parts and ranged reads, and of local reads for uploads.
PART_SIZE = 8 * 1024 * 1024
#: Parts of one file in flight at once...
PART_CONCURRENCY = 8
#: ... and of each of a tree's large files, which move several at a time.
TREE_PART_CONCURRENCY = 4
#: S3 allows 10,000 parts; stay below with some margin by growing the part size.
_MAX_PARTS = 9_000
#: Files of a tree transferred at once (each holds one open local file).
MAX_OPEN_FILES = 10
#: Of those, how many may be multipart at once: bounds a tree's memory to roughly
#: ``LARGE_FILES_AT_ONCE * (TREE_PART_CONCURRENCY + 1) * PART_SIZE`` plus one part per
#: small file.
LARGE_FILES_AT_ONCE = 2
#: Directories listed at once while walking a tree.
_WALKERS = 4
#: Modification times closer than this are "the same time" when sizes match; covers file
#: systems with coarse timestamps (FAT: 2 s) and stores that truncate to whole seconds.
TIME_THRESHOLD = 2.0
#: Object metadata entry holding the source file's modification time.
MTIME_KEY = "mtime"

_TMP_SUFFIX = ".blobfs-tmp"
_PART_SUFFIX = ".blobfs-part"
#: Longest file name most local file systems accept, in bytes.
_NAME_MAX = 255


class IncompleteTransfer(BlobfsError):
    """Some entries of a directory transfer failed; each was reported through ``fail``."""

    def __init__(self, src: URL, dst: URL, failures: list[StorageProgressFail]) -> None:
        self.src = src
        self.dst = dst
        self.failures = failures
        first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(
            f"{len(failures)} entr{'y' if len(failures) == 1 else 'ies'} could not be "
            f"copied, first {_display(first.src)}: {first.message}{more}"
        )


def check_continue_supported(src: URL, dst: URL) -> None:
    """Raise :class:`ValueError` unless ``continue_`` is possible from ``src`` to ``dst``.

    Only downloads can continue: a blob cannot be appended to.
    """
    if src.scheme == "file" and dst.scheme != "file":
        raise ValueError("continuation is not supported when uploading (blobs cannot be appended)")


# -- small helpers -------------------------------------------------------------------------------


def _display(url: URL) -> str:
    return url.path if url.scheme == "file" else url.human_repr()


def _local_path(url: URL) -> Path:
    if url.scheme != "file":
        raise ValueError(f"not a local file URL: {url}")
    if url.host not in (None, "", "localhost"):
        raise ValueError(f"file URLs of other hosts are not supported: {url}")
    return Path(url.path)


def _join(url: URL, name: str) -> URL:
    path = url.path.rstrip("/") + "/" + name
    return URL.build(scheme=url.scheme, host=url.host or "", path=path)


def _dir_prefix(key: str) -> str:
    """The key prefix of a "directory": ``""`` for the bucket root, else ``key/``."""
    key = key.rstrip("/")
    return key + "/" if key else ""


def _format_mtime(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    return f"{sec}.{frac:09d}"


def _parse_mtime_ns(raw: str) -> int | None:
    sec, _, frac = raw.strip().partition(".")
    if not sec.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        return None
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def _remote_mtime_ns(info: ObjectInfo) -> int | None:
    """When the object's content was last modified, by the source's clock if we know it."""
    raw = info.metadata.get(MTIME_KEY)
    if raw is not None:
        ns = _parse_mtime_ns(raw)
        if ns is not None:
            return ns
    return _datetime_ns(info.modified_at)


def _datetime_ns(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1_000_000) * 1000


def _up_to_date(src_ns: int | None, src_size: int, dst_ns: int | None, dst_size: int) -> bool:
    """``update``: whether the destination can stay as it is."""
    if src_ns is None or dst_ns is None:
        return False
    diff = (dst_ns - src_ns) / 1e9
    if diff >= TIME_THRESHOLD:  # destination clearly newer
        return True
    # Within the slack the times cannot tell the copies apart; the sizes can.
    return diff > -TIME_THRESHOLD and dst_size == src_size


def _part_size(size: int) -> int:
    needed = -(-size // _MAX_PARTS)
    mib = 1024 * 1024
    return max(PART_SIZE, -(-needed // mib) * mib)


def _sibling(path: Path, suffix: str) -> Path:
    """A hidden name next to ``path`` ending in ``suffix``, short enough for NAME_MAX."""
    room = _NAME_MAX - len(suffix.encode()) - 1
    name = os.fsencode(path.name)[:room].decode(errors="ignore") if room > 0 else ""
    return path.with_name(f".{name}{suffix}")


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _raise_first(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the error that failed a task group rather than the group itself."""
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = exc.exceptions
        elif not isinstance(exc, asyncio.CancelledError):
            raise exc
    raise group


class _NoProgress(AbstractRecursiveFileProgress):
    def start(self, data: StorageProgressStart) -> None:
        pass

    def complete(self, data: StorageProgressComplete) -> None:
        pass

    def step(self, data: StorageProgressStep) -> None:
        pass

    def enter(self, data: StorageProgressEnterDir) -> None:
        pass

    def leave(self, data: StorageProgressLeaveDir) -> None:
        pass

    def fail(self, data: StorageProgressFail) -> None:
        pass


_NO_PROGRESS = _NoProgress()


# -- local file I/O (blocking; run in worker threads) -------------------------------------------


async def _in_thread(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn`` in a worker thread; if cancelled, let it finish before giving up.

    A thread cannot be stopped, and the file it works on must not be closed (or its
    descriptor reused) under it, so cancellation waits for the call to return.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class _WriteMode(Enum):
    REPLACE = "replace"  # temporary file, renamed into place
    PARTIAL = "partial"  # resumable .NAME.blobfs-part, renamed into place
    APPEND = "append"  # in place, from the end of the existing file


@dataclass(frozen=True)
class _Plan:
    mode: _WriteMode
    offset: int = 0


def _plan_download(path: Path, info: ObjectInfo, *, update: bool, continue_: bool) -> _Plan | None:
    """What a download of ``info`` to ``path`` has to do; ``None``: nothing (blocking)."""
    src_ns = _remote_mtime_ns(info)
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
            return _Plan(_WriteMode.REPLACE)
        try:
            part = _sibling(path, _PART_SUFFIX).stat()
        except FileNotFoundError:
            return _Plan(_WriteMode.PARTIAL)
        if _resumable(src_ns, info.size, part):
            return _Plan(_WriteMode.PARTIAL, part.st_size)
        return _Plan(_WriteMode.PARTIAL)
    if update and _up_to_date(src_ns, info.size, st.st_mtime_ns, st.st_size):
        return None
    if continue_:
        if st.st_size == info.size and (
            src_ns is None or st.st_mtime_ns >= src_ns - TIME_THRESHOLD * 1e9
        ):
            return None
        if _resumable(src_ns, info.size, st):
            return _Plan(_WriteMode.APPEND, st.st_size)
        return _Plan(_WriteMode.PARTIAL)
    return _Plan(_WriteMode.REPLACE)


def _resumable(src_ns: int | None, size: int, st: os.stat_result) -> bool:
    # A partial copy was written after the source version it came from; an older file
    # may hold another version's bytes.
    return src_ns is not None and st.st_size < size and st.st_mtime_ns > src_ns


def _open_target(path: Path, plan: _Plan) -> tuple[Path, int]:
    """Open the file a download writes to, cut to the resume offset (blocking)."""
    if plan.mode is _WriteMode.REPLACE:
        target = _sibling(path, f".{secrets.token_hex(4)}{_TMP_SUFFIX}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    elif plan.mode is _WriteMode.PARTIAL:
        target = _sibling(path, _PART_SUFFIX)
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

    def __init__(self, write: Callable[[int, bytes], Awaitable[None]], start: int) -> None:
        self._write = write
        self._next = start
        self._turn = asyncio.Condition()

    async def __call__(self, offset: int, data: bytes) -> None:
        async with self._turn:
            await self._turn.wait_for(lambda: self._next == offset)
        await self._write(offset, data)
        async with self._turn:
            self._next = offset + len(data)
            self._turn.notify_all()


# -- directory trees -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Dir:
    """A directory being transferred; ``leave`` fires when nothing in it is pending."""

    src: URL
    dst: URL
    parent: _Dir | None
    pending: int = 1  # the walk of the directory itself


@dataclass
class _Job:
    dir: _Dir
    src: URL
    dst: URL
    run: Callable[[], Awaitable[None]]


@dataclass
class _Tree:
    """One recursive transfer: walkers list directories and feed a bounded file pool."""

    src: URL
    dst: URL
    progress: AbstractRecursiveFileProgress
    failures: list[StorageProgressFail] = field(default_factory=list)
    queue: asyncio.Queue[_Job | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=MAX_OPEN_FILES)
    )
    walk_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(_WALKERS))
    large_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(LARGE_FILES_AT_ONCE)
    )

    def enter(self, d: _Dir) -> None:
        self.progress.enter(StorageProgressEnterDir(d.src, d.dst))

    def done(self, d: _Dir | None) -> None:
        while d is not None:
            d.pending -= 1
            if d.pending:
                return
            self.progress.leave(StorageProgressLeaveDir(d.src, d.dst))
            d = d.parent

    def fail(self, src: URL, dst: URL, exc: BaseException | str) -> None:
        message = exc if isinstance(exc, str) else _message(exc)
        log.debug("cannot copy %s to %s: %s", src, dst, message, exc_info=not isinstance(exc, str))
        event = StorageProgressFail(src, dst, message)
        self.failures.append(event)
        self.progress.fail(event)

    async def submit(self, d: _Dir, src: URL, dst: URL, run: Callable[[], Awaitable[None]]) -> None:
        d.pending += 1
        await self.queue.put(_Job(d, src, dst, run))

    async def _worker(self) -> None:
        while (job := await self.queue.get()) is not None:
            try:
                await job.run()
            except Exception as e:
                self.fail(job.src, job.dst, e)
            finally:
                self.done(job.dir)

    async def run(self, walk: Callable[[asyncio.TaskGroup], Awaitable[None]]) -> None:
        """Run ``walk`` (which spawns sub-walks into the given group) and the file pool."""
        try:
            async with asyncio.TaskGroup() as pool:
                workers = [pool.create_task(self._worker()) for _ in range(MAX_OPEN_FILES)]
                async with asyncio.TaskGroup() as walkers:
                    await walk(walkers)
                for _ in workers:
                    await self.queue.put(None)
        except BaseExceptionGroup as group:
            _raise_first(group)
        if self.failures:
            raise IncompleteTransfer(self.src, self.dst, self.failures)


@dataclass(frozen=True)
class _LocalEntry:
    name: str
    mode: int  # 0 when the entry cannot be stat'ed (e.g. a dangling symlink)
    size: int = 0
    mtime_ns: int = 0
    ident: tuple[int, int] = (0, 0)
    error: OSError | None = None


def _scan_local(path: Path) -> list[_LocalEntry]:
    """The entries of a local directory, sorted, symlinks followed (blocking)."""
    out = []
    with os.scandir(path) as it:
        for entry in it:
            try:
                st = entry.stat()
            except OSError as e:
                out.append(_LocalEntry(entry.name, 0, error=e))
                continue
            out.append(
                _LocalEntry(
                    entry.name, st.st_mode, st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino)
                )
            )
    out.sort(key=lambda e: e.name)
    return out


def _make_local_dir(path: Path) -> None:
    try:
        path.mkdir()
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(path)) from None


# -- the public class ----------------------------------------------------------------------------


class Transfers:
    """Copies between local ``file:`` URLs and blob URIs, resolved with ``resolve``."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve

    # -- single files ----------------------------------------------------------------------------

    async def upload_file(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        progress: AbstractFileProgress | None = None,
    ) -> None:
        """Upload local file ``src`` to blob ``dst``.

        With ``update``, upload only if the blob is missing or older than the file.

        :raises FileNotFoundError: ``src`` does not exist.
        :raises IsADirectoryError: ``src`` is a directory ("use recursive copy"), or ``dst``
            names a folder (ends with ``/``, the bucket root, or a prefix holding blobs).
        """
        path = _local_path(src)
        st = await asyncio.to_thread(_stat_source, path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory, use recursive copy", str(path))
        _, store, key = await self._resolve(dst)
        if not key or key.endswith("/"):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(dst))
        async for _ in store.list(key + "/"):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(dst))
        if update and await _remote_up_to_date(store, key, st.st_mtime_ns, st.st_size):
            return
        await _put_file(store, key, path, src, dst, progress or _NO_PROGRESS)

    async def download_file(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        continue_: bool = False,
        progress: AbstractFileProgress | None = None,
    ) -> None:
        """Download blob ``src`` to local file ``dst``.

        With ``update``, download only if the file is missing or older than the blob.  With
        ``continue_``, a destination that is newer than the blob and shorter is completed
        by appending the missing tail, one of the same size is left alone, and anything
        else is downloaded whole.

        :raises FileNotFoundError: ``src`` does not exist (or ``dst``'s directory does not).
        :raises IsADirectoryError: ``src`` is a folder ("use recursive copy") or ``dst`` is
            a directory.
        """
        path = _local_path(dst)
        _, store, key = await self._resolve(src)
        if not key or key.endswith("/"):
            raise IsADirectoryError(errno.EISDIR, "Is a directory, use recursive copy", str(src))
        try:
            info = await store.head(key)
        except ResourceNotFound:
            async for _ in store.list(key + "/"):
                raise IsADirectoryError(
                    errno.EISDIR, "Is a directory, use recursive copy", str(src)
                ) from None
            raise FileNotFoundError(errno.ENOENT, "No such file", str(src)) from None
        plan = await asyncio.to_thread(
            _plan_download, path, info, update=update, continue_=continue_
        )
        if plan is not None:
            await _get_file(store, info, path, plan, src, dst, progress or _NO_PROGRESS)

    # -- trees -----------------------------------------------------------------------------------

    async def upload_dir(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        filter: AsyncFilterFunc | None = None,
        ignore_file_names: AbstractSet[str] = frozenset(),
        progress: AbstractRecursiveFileProgress | None = None,
    ) -> None:
        """Upload local directory ``src`` recursively to the blob folder ``dst``.

        ``filter`` is called with each entry's path relative to ``src`` (``/``-separated,
        directories ending with ``/``) and skips it when false.  Files named in
        ``ignore_file_names`` (in ``src``, its subdirectories and the directories above it)
        add ``.gitignore``-style patterns for their directory.  Every directory gets a
        marker blob ``dir/`` so empty ones survive.

        :raises FileNotFoundError: ``src`` does not exist.
        :raises NotADirectoryError: ``src`` is not a directory, or ``dst`` is a blob.
        :raises IncompleteTransfer: some entries failed (each was reported with ``fail``).
        """
        root = _local_path(src)
        st = await asyncio.to_thread(_stat_source, root)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(root))
        _, store, key = await self._resolve(dst)
        prefix = _dir_prefix(key)
        if prefix:
            with contextlib.suppress(ResourceNotFound):
                await store.head(prefix[:-1])
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(dst))
        base = filter or always
        names = frozenset(ignore_file_names)
        if names:
            base = await asyncio.to_thread(read_parent_ignore_files, root, names, base)
        tree = _Tree(src, dst, progress or _NO_PROGRESS)
        walker = _UploadWalk(tree, store, update=update, ignore_file_names=names)
        root_id = frozenset({(st.st_dev, st.st_ino)})
        await tree.run(
            lambda tg: walker.walk(tg, root, prefix, "", _Dir(src, dst, None), base, root_id)
        )

    async def download_dir(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        continue_: bool = False,
        filter: AsyncFilterFunc | None = None,
        progress: AbstractRecursiveFileProgress | None = None,
    ) -> None:
        """Download the blob folder ``src`` recursively into local directory ``dst``.

        ``dst`` is created if missing (its parent must exist).  ``update``, ``continue_``
        and ``filter`` work as for :meth:`download_file` and :meth:`upload_dir`; folder
        markers become (possibly empty) directories.

        :raises FileNotFoundError: nothing exists under ``src``.
        :raises NotADirectoryError: ``src`` is a blob, or ``dst`` is not a directory.
        :raises IncompleteTransfer: some entries failed (each was reported with ``fail``).
        """
        root = _local_path(dst)
        _, store, key = await self._resolve(src)
        prefix = _dir_prefix(key)
        if prefix and not await _has_keys(store, prefix):
            try:
                await store.head(prefix[:-1])
            except ResourceNotFound:
                raise FileNotFoundError(errno.ENOENT, "No such directory", str(src)) from None
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(src))
        await asyncio.to_thread(_make_local_dir, root)
        tree = _Tree(src, dst, progress or _NO_PROGRESS)
        walker = _DownloadWalk(tree, store, update=update, continue_=continue_)
        await tree.run(
            lambda tg: walker.walk(tg, prefix, root, "", _Dir(src, dst, None), filter or always)
        )


# -- the two primitives --------------------------------------------------------------------------


async def _remote_up_to_date(store: BlobStore, key: str, mtime_ns: int, size: int) -> bool:
    try:
        info = await store.head(key)
    except ResourceNotFound:
        return False
    return _up_to_date(mtime_ns, size, _remote_mtime_ns(info), info.size)


async def _put_file(
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
        part_size = _part_size(size)
        progress.start(StorageProgressStart(src, dst, size))

        async def chunks() -> AsyncIterator[bytes]:
            done = 0
            while data := await _in_thread(f.read, part_size):
                done += len(data)
                progress.step(StorageProgressStep(src, dst, done, size))
                yield data

        await upload_stream(
            store,
            key,
            chunks(),
            part_size=part_size,
            concurrency=concurrency,
            metadata={MTIME_KEY: _format_mtime(st.st_mtime_ns)},
        )
        progress.complete(StorageProgressComplete(src, dst, size))
    finally:
        f.close()


async def _get_file(
    store: BlobStore,
    info: ObjectInfo,
    path: Path,
    plan: _Plan,
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
    keep = plan.mode is not _WriteMode.REPLACE  # resumable modes keep what they wrote
    try:
        progress.start(StorageProgressStart(src, dst, size))
        done = plan.offset

        async def write(offset: int, data: bytes) -> None:
            nonlocal done
            await _in_thread(_pwrite_all, fd, data, offset)
            done += len(data)
            progress.step(StorageProgressStep(src, dst, done, size))

        if plan.offset:
            await _read_tail(store, info, plan.offset, write)
        else:
            ordered = write if plan.mode is _WriteMode.REPLACE else _InOrder(write, 0)
            await download_ranges(
                store,
                info.key,
                size=size,
                etag=info.etag,
                write=ordered,
                part_size=_part_size(size),
                concurrency=concurrency,
            )
    except BaseException:
        os.close(fd)
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise
    try:
        _finish_download(fd, target, path, _remote_mtime_ns(info))
    except BaseException:
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise
    progress.complete(StorageProgressComplete(src, dst, size))


async def _read_tail(
    store: BlobStore,
    info: ObjectInfo,
    offset: int,
    write: Callable[[int, bytes], Awaitable[None]],
) -> None:
    """Stream ``info`` from ``offset`` to the end, writing in order in large pieces."""
    pending: list[bytes] = []
    held = 0
    async with store.read(info.key, offset, etag=info.etag) as chunks:
        async for chunk in chunks:
            pending.append(chunk)
            held += len(chunk)
            if held >= PART_SIZE:
                await write(offset, b"".join(pending))
                offset += held
                pending.clear()
                held = 0
    if pending:
        await write(offset, b"".join(pending))
        offset += held
    if offset != info.size:
        raise OSError(errno.EIO, f"blob ended at {offset} bytes, expected {info.size}")


async def _has_keys(store: BlobStore, prefix: str) -> bool:
    async for _ in store.list(prefix):
        return True
    return False


def _stat_source(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path)) from None


class _UploadWalk:
    """Walks a local tree, creating folder markers and queueing file uploads."""

    def __init__(
        self,
        tree: _Tree,
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
        d: _Dir,
        filter: AsyncFilterFunc,
        seen: frozenset[tuple[int, int]],
    ) -> None:
        subdirs: list[tuple[_LocalEntry, _Dir]] = []
        try:
            async with self._tree.walk_slots:
                self._tree.enter(d)
                entries = await asyncio.to_thread(_scan_local, path)
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
        d: _Dir,
        path: Path,
        prefix: str,
        rel: str,
        entry: _LocalEntry,
        filter: AsyncFilterFunc,
        seen: frozenset[tuple[int, int]],
    ) -> _Dir | None:
        """Queue a file or return the directory to walk; ``None`` when skipped."""
        is_dir = stat.S_ISDIR(entry.mode)
        if not await filter(rel + entry.name + ("/" if is_dir else "")):
            return None
        src = _join(d.src, entry.name)
        dst = _join(d.dst, entry.name)
        if entry.error is not None:
            self._tree.fail(src, dst, entry.error)
        elif is_dir:
            if entry.ident in seen:
                self._tree.fail(src, dst, "symbolic link loop")
                return None
            return _Dir(src, dst, d)
        elif stat.S_ISREG(entry.mode):
            key = prefix + entry.name
            file_path = path / entry.name

            async def run() -> None:
                if self._update and await _remote_up_to_date(
                    self._store, key, entry.mtime_ns, entry.size
                ):
                    return
                slot = self._tree.large_slots if entry.size > PART_SIZE else _no_slot()
                async with slot:
                    await _put_file(
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


class _DownloadWalk:
    """Walks a blob folder, creating local directories and queueing file downloads."""

    def __init__(
        self,
        tree: _Tree,
        store: BlobStore,
        *,
        update: bool,
        continue_: bool,
    ) -> None:
        self._tree = tree
        self._store = store
        self._update = update
        self._continue = continue_

    async def walk(
        self,
        tg: asyncio.TaskGroup,
        prefix: str,
        path: Path,
        rel: str,
        d: _Dir,
        filter: AsyncFilterFunc,
    ) -> None:
        subdirs: list[tuple[str, _Dir]] = []
        try:
            async with self._tree.walk_slots:
                self._tree.enter(d)
                if d.parent is not None:  # the root was made (and checked) up front
                    await asyncio.to_thread(_make_local_dir, path)
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
        d: _Dir,
        prefix: str,
        path: Path,
        rel: str,
        item: ObjectInfo | PrefixInfo,
        filter: AsyncFilterFunc,
    ) -> tuple[str, _Dir] | None:
        is_dir = isinstance(item, PrefixInfo)
        name = item.key[len(prefix) :][:-1] if is_dir else item.key[len(prefix) :]
        if not is_dir and not name:
            return None  # this folder's own marker
        if name and not await filter(rel + name + ("/" if is_dir else "")):
            return None
        src = _join(d.src, name)
        dst = _join(d.dst, name)
        if name in ("", ".", "..") or "\0" in name:
            self._tree.fail(src, dst, f"{name!r} cannot be a local file name")
            return None
        if is_dir:
            return name, _Dir(src, dst, d)
        assert isinstance(item, ObjectInfo)
        key = item.key
        file_path = path / name

        async def run() -> None:
            # HEAD for the metadata (mtime) and the version listed a moment ago may be gone.
            info = await self._store.head(key)
            plan = await asyncio.to_thread(
                _plan_download, file_path, info, update=self._update, continue_=self._continue
            )
            if plan is None:
                return
            slot = self._tree.large_slots if info.size > PART_SIZE else _no_slot()
            async with slot:
                await _get_file(
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


@contextlib.asynccontextmanager
async def _no_slot() -> AsyncIterator[None]:
    yield
