"""The staging file of each inode being written, and its upload.

An inode open for writing (or being truncated) has one :class:`Staged` file in
``FsState.staged``, shared by all its handles; reads of the inode go there too.  A dirty
staging file is uploaded on ``close()`` (flush), after its last handle goes, before a
rename of it or of a directory above it, and when the daemon drains.  An upload that fails
after the last close keeps its staging file on disk, so the data is not lost (crash
recovery, :mod:`blobfs.write.recovery`, picks it up).
"""

from __future__ import annotations

import logging

from blobfs.bridge.requests import describe
from blobfs.errors import FsError, Stale, StorageFailure, from_storage
from blobfs.fs.attributes import Attributes
from blobfs.fs.inodes import Node
from blobfs.fs.listings import Listings
from blobfs.fs.metadata import TIME_NAMES, node_metadata, parse_time
from blobfs.fs.state import FsState
from blobfs.write.staging import Staged
from blobfs.write.transfers import KeptFile

log = logging.getLogger(__name__)


class Staging:
    """Creates, uploads, re-keys and finishes the staging files of inodes."""

    def __init__(self, state: FsState, attributes: Attributes, listings: Listings) -> None:
        self.state = state
        self.attributes = attributes
        self.listings = listings

    def stage(self, node: Node, *, keep_content: bool, dirty: bool = False) -> Staged:
        """A staging file for ``node``: empty, or backed lazily by its current object;
        ``dirty`` when it must be stored even if never written."""
        state = self.state
        store = state.store
        source_key, source_etag = node.key, node.etag

        async def fetch(offset: int, length: int) -> memoryview:
            with from_storage(missing=Stale):
                return await store.read_view(source_key, offset, length, etag=source_etag)

        def metadata() -> dict[str, str]:
            return node_metadata(node)

        keep = keep_content and node.size > 0
        staged = Staged(
            state.writeback,
            node.key,
            source_size=node.size if keep else 0,
            fetch=fetch if keep else None,
            # What a crash recovery checks before uploading (see blobfs.write.recovery).
            base_etag=node.etag,
            new=node.etag is None,
            store=store,
            metadata=metadata,
            dirty=dirty,
        )
        state.staged[node.ino] = staged
        return staged

    async def upload(self, node: Node, staged: Staged) -> None:
        """Store the staging file as ``node``'s object, with its current metadata."""
        state = self.state
        store = state.store
        key = node.key
        wanted = node_metadata(node)
        try:
            with from_storage(missing=Stale):
                etag = await staged.upload(store, key, wanted)
                stored = staged.stored_metadata
                changed = {name for name, value in wanted.items() if stored.get(name) != value}
                changed |= set(stored) - set(wanted)
                if changed - TIME_NAMES or (changed and staged.mtime_explicit):
                    # A streamed upload carries the metadata of its start: a chmod, chown,
                    # utime or extended attribute change made while it ran is applied
                    # now, by a copy onto itself.
                    await store.copy(key, key, metadata=wanted)
                    etag = (await store.head(key)).etag
                elif changed:
                    # Only the times the writes themselves moved: show what is stored.
                    mtime = parse_time(stored.get("mtime"))
                    if mtime is not None:
                        node.mtime_ns = mtime
                        node.ctime_ns = parse_time(stored.get("ctime")) or mtime
        except FsError as e:
            self._failed(key, staged, e)
            raise
        except OSError as e:  # the staging disk
            failure = StorageFailure(f"staging file {staged.path}: {e}")
            self._failed(key, staged, failure)
            raise failure from e
        node.etag = etag
        node.size = staged.size
        node.metadata_loaded = True
        node.attr_expires = state.clock() + state.options.attr_ttl
        self.attributes.remember(node)
        self.listings.put(node)

    def _failed(self, key: str, staged: Staged, e: FsError) -> None:
        """Record a failed upload for ``blobfs status``: a file still open stays dirty and
        is tried again; one closed for the last time is recorded by :meth:`finish`."""
        if staged.handles > 0:
            self.state.writeback.failures.record(
                key,
                f"upload failed: {e}",
                "at the file's next close or fsync, or blobfs flush",
            )

    def _kept(self, key: str, staged: Staged, e: FsError) -> None:
        """The data of ``key`` stays on the staging disk, not stored: record it."""
        wb = self.state.writeback
        wb.kept.append(KeptFile(key, staged.path, describe(e)))
        wb.failures.record(
            key, f"upload failed, data kept in {staged.path}: {e}", "at the next mount"
        )

    async def finish(self, node: Node, staged: Staged) -> None:
        """The last handle is gone: upload if still dirty, then drop the staging file
        (kept on disk if the upload failed, so the data is not lost)."""
        if self.state.staged.get(node.ino) is staged:
            del self.state.staged[node.ino]
        if staged.dirty and not staged.unlinked:
            try:
                await self.upload(node, staged)
            except FsError as e:
                log.error(
                    "upload of %r failed after its last close (%s); data kept in %s",
                    node.key,
                    e,
                    staged.path,
                )
                self._kept(node.key, staged, e)
                staged.keep()
                node.attr_expires = 0
                return
        staged.discard()

    async def finish_or_raise(self, node: Node, staged: Staged) -> None:
        """Upload a staging file that no handle holds (truncate of a closed file)."""
        try:
            await self.upload(node, staged)
        except FsError:
            if self.state.staged.get(node.ino) is staged:
                del self.state.staged[node.ino]
            staged.discard()
            node.attr_expires = 0
            raise
        if self.state.staged.get(node.ino) is staged:
            del self.state.staged[node.ino]
        staged.discard()

    def holds_under(self, key: str) -> bool:
        """Whether a file at or under ``key`` is being written (and not unlinked)."""
        state = self.state
        for ino, staged in state.staged.items():
            node = state.inodes.find(ino)
            if node is not None and not staged.unlinked and node.key.startswith(key):
                return True
        return False

    async def upload_under(self, directory: Node) -> None:
        """Upload every dirty staging file under ``directory``, under its current name."""
        state = self.state
        for ino, staged in list(state.staged.items()):
            node = state.inodes.find(ino)
            if node is not None and node.key.startswith(directory.key) and staged.dirty:
                if not staged.unlinked:
                    await self.upload(node, staged)

    def rekey_under(self, old_key: str, new_key: str) -> None:
        """The staging files at or under ``old_key`` now store under ``new_key``; their
        nodes still have the old keys."""
        state = self.state
        for ino, staged in state.staged.items():
            node = state.inodes.find(ino)
            if node is not None and node.key.startswith(old_key):
                staged.rename_key(new_key + node.key[len(old_key) :])

    async def drain(self) -> None:
        """Upload whatever is still dirty (called before the daemon exits).

        Files still open when the mount goes away are uploaded as they are; a failed upload
        leaves its staging file on disk and is logged with its key.
        """
        state = self.state
        for ino, staged in list(state.staged.items()):
            node = state.inodes.find(ino)
            if node is None or staged.unlinked or not staged.dirty:
                continue
            try:
                await self.upload(node, staged)
            except FsError as e:
                log.error(
                    "could not upload %r before exit (%s); its data is kept in %s",
                    node.key,
                    e,
                    staged.path,
                )
                self._kept(node.key, staged, e)
        # Streaming uploads given up meanwhile are aborted, so they leave no parts.
        await state.writeback.settle()
        state.writeback.close_spares()
