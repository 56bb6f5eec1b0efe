"""Directory trees: walkers list directories and feed a bounded pool of file jobs.

:class:`Tree` reports ``enter``/``leave``/``fail`` progress events, collects failures and
raises :class:`IncompleteTransfer` at the end; the walks themselves are in :mod:`.upload` and
:mod:`.download`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from yarl import URL

from sdk.errors import BlobfsError, raise_first
from sdk.progress import (
    AbstractRecursiveFileProgress,
    StorageProgressEnterDir,
    StorageProgressFail,
    StorageProgressLeaveDir,
)
from sdk.transfer.common import (
    LARGE_FILES_AT_ONCE,
    MAX_OPEN_FILES,
    WALKERS,
    display,
)

log = logging.getLogger(__name__)


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
            f"copied, first {display(first.src)}: {first.message}{more}"
        )


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@dataclass(eq=False)
class Dir:
    """A directory being transferred; ``leave`` fires when nothing in it is pending."""

    src: URL
    dst: URL
    parent: Dir | None
    pending: int = 1  # the walk of the directory itself


@dataclass
class _Job:
    dir: Dir
    src: URL
    dst: URL
    run: Callable[[], Awaitable[None]]


@dataclass
class Tree:
    """One recursive transfer: walkers list directories and feed a bounded file pool."""

    src: URL
    dst: URL
    progress: AbstractRecursiveFileProgress
    failures: list[StorageProgressFail] = field(default_factory=list)
    queue: asyncio.Queue[_Job | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=MAX_OPEN_FILES)
    )
    walk_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(WALKERS))
    large_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(LARGE_FILES_AT_ONCE)
    )

    def enter(self, d: Dir) -> None:
        self.progress.enter(StorageProgressEnterDir(d.src, d.dst))

    def done(self, d: Dir | None) -> None:
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

    def refuse(self, src: URL, dst: URL, reason: str) -> None:
        """An entry that must not be copied (a name that cannot be local): logged as a
        warning and reported as a failure; the rest goes on."""
        log.warning("not copying %s: %s", display(src), reason)
        self.fail(src, dst, reason)

    async def submit(self, d: Dir, src: URL, dst: URL, run: Callable[[], Awaitable[None]]) -> None:
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
            raise_first(group)
        if self.failures:
            raise IncompleteTransfer(self.src, self.dst, self.failures)


@contextlib.asynccontextmanager
async def no_slot() -> AsyncIterator[None]:
    """The slot a small file takes: none (large files take one of :attr:`Tree.large_slots`)."""
    yield
