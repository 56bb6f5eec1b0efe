"""Storing pending changes on demand (``blobfs flush``), and telling which changes are pending.

Every change the mount makes is in the bucket by the time its system call returns, except
the data of files being written: that lives in their staging files until ``close()`` /
``fsync()`` (``docs/SEMANTICS.md``).  So "every change made before now is stored" means:
every dirty staging file has been uploaded since.  :meth:`Syncer.sync` uploads each one in
the scope, as an ``fsync`` would (a stream in progress is completed; writes after that go
up as a whole file at close), a few at once; the write-back's budget bounds their memory.

Files whose upload failed after their last close are no longer staged here: their data is
kept on the staging disk for the next mount (:class:`~blobfs.write.transfers.KeptFile`).
They are changes that are not stored, so a sync reports them as failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from blobfs.bridge.requests import describe
from blobfs.errors import FsError
from blobfs.fs.inodes import Node
from blobfs.fs.scope import Scope
from blobfs.fs.staging import Staging
from blobfs.fs.state import FsState
from blobfs.write.staging import Staged
from blobfs.write.transfers import KeptFile

#: Files uploaded at once by one sync (their memory is bounded by the write budget anyway).
SYNC_UPLOADS = 4


@dataclass
class SyncReport:
    """How a sync is going: keys waiting, stored, failed (with the reason), and the files
    kept from earlier failures.  Filled in as the sync runs."""

    pending: set[str] = field(default_factory=set)
    stored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    kept: list[KeptFile] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def ok(self) -> bool:
        return self.done.is_set() and not self.failed and not self.kept and not self.pending


class Syncer:
    """Lists and uploads the dirty staging files of a scope."""

    def __init__(self, state: FsState, staging: Staging) -> None:
        self.state = state
        self.staging = staging

    def unsaved(self, scope: Scope | None = None) -> list[tuple[Node, Staged]]:
        """The files with data not stored yet (dirty staging files), in the scope."""
        state = self.state
        out = []
        for ino, staged in state.staged.items():
            if not staged.dirty or staged.unlinked:
                continue
            node = state.inodes.find(ino)
            if node is not None and (scope is None or scope.holds(node.key)):
                out.append((node, staged))
        return out

    async def sync(self, scope: Scope, report: SyncReport) -> None:
        """Upload every dirty staging file in ``scope``; ``report`` says how it went (and
        its ``done`` is set at the end, whatever happened)."""
        try:
            todo = self.unsaved(scope)
            report.pending.update(node.key for node, _ in todo)
            limiter = trio.CapacityLimiter(SYNC_UPLOADS)
            async with trio.open_nursery() as nursery:
                for node, staged in todo:
                    nursery.start_soon(self._one, node, staged, report, limiter)
            report.kept = [k for k in self.state.writeback.kept if scope.holds(k.key)]
        finally:
            report.done.set()

    async def _one(
        self, node: Node, staged: Staged, report: SyncReport, limiter: trio.CapacityLimiter
    ) -> None:
        key = node.key
        try:
            async with limiter:
                if self.state.staged.get(node.ino) is staged:
                    if staged.dirty and not staged.unlinked:
                        key = node.key
                        await self.staging.upload(node, staged)
                else:
                    # Its last handle went meanwhile, and the close uploads it: wait for that.
                    # Checked with no await before the upload above, so the two never race
                    # (a close that finishes takes the file out of ``staged`` first).  A
                    # failure shows among the kept files.
                    await staged.settled()
                    if staged.dirty:
                        return
            report.stored.append(key)
        except FsError as e:
            report.failed[key] = describe(e)
        finally:
            report.pending.discard(node.key)
            report.pending.discard(key)


__all__ = ["SYNC_UPLOADS", "SyncReport", "Syncer"]
