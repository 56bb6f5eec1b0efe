"""``rename``: of a file (copy, or upload of its staging file, then delete) and of a
directory (every key under it, by the protocol of ``docs/SEMANTICS.md``, "Renaming
directories").

A directory rename is not atomic but safe to re-run after an interruption; what is left to
do is decided by :func:`blobfs.fs.rename_plan.rename_plan`.  Files being written under a
moved directory are uploaded first and then store under their new keys.  A rename that
fails half way leaves the caches of the target name unknown (its negative entry and the
new parent's listing are dropped).  A rename that would give any key more bytes than the
store allows is refused before anything is copied.  The node moved gets a new ctime, both
parents a new mtime and ctime (in memory: :mod:`blobfs.fs.times`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing

import trio

from blobfs.errors import (
    Exists,
    FsError,
    InvalidName,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotSupported,
    Stale,
    from_storage,
)
from blobfs.fs.inodes import Node
from blobfs.fs.listings import Listings
from blobfs.fs.lookup import Lookup
from blobfs.fs.metadata import node_metadata
from blobfs.fs.names import KEY_MAX, check_key, check_name, child_key
from blobfs.fs.rename_plan import directories_deepest_first, rename_plan
from blobfs.fs.staging import Staging
from blobfs.fs.state import FsState
from blobfs.fs.times import changed
from sdk.providers.base import ObjectInfo

#: renameat2 flags (linux/fs.h).
RENAME_NOREPLACE = 1
#: Server-side copies (and deletes) of one directory rename in flight at once.
RENAME_CONCURRENCY = 8


class Renamer:
    """Moves files and directories to new names."""

    def __init__(
        self, state: FsState, lookup: Lookup, listings: Listings, staging: Staging
    ) -> None:
        self.state = state
        self.lookup = lookup
        self.listings = listings
        self.staging = staging

    async def rename(
        self, parent_ino: int, name: str, new_parent_ino: int, new_name: str, flags: int
    ) -> None:
        """Move ``name`` in ``parent_ino`` to ``new_name`` in ``new_parent_ino``, replacing
        what is there unless ``flags`` has :data:`RENAME_NOREPLACE`."""
        state = self.state
        inodes = state.inodes
        inodes.directory(parent_ino)
        inodes.directory(new_parent_ino)
        state.check_writable()
        check_name(new_name)
        if flags & ~RENAME_NOREPLACE:
            raise NotSupported("only RENAME_NOREPLACE is supported")
        parent, new_parent = inodes.directory(parent_ino), inodes.directory(new_parent_ino)
        src = await self.lookup.resolve(parent, name)
        dst = await self.lookup.find(new_parent, new_name)
        try:
            await self._rename(parent, name, new_parent, new_name, flags, src, dst)
        except FsError:
            # A rename that failed half way may have created part of the target: what the
            # caches say about that name is no longer known to be true.
            inodes.clear_negative(new_parent.ino, new_name)
            new_parent.listing = None
            raise
        finally:
            inodes.drop_unreferenced(src)
            if dst is not None:
                inodes.drop_unreferenced(dst)

    async def _rename(
        self,
        parent: Node,
        name: str,
        new_parent: Node,
        new_name: str,
        flags: int,
        src: Node,
        dst: Node | None,
    ) -> None:
        if dst is src:
            return
        if dst is not None:
            if flags & RENAME_NOREPLACE:
                raise Exists(new_name)
            if src.is_dir and not dst.is_dir:
                raise NotADirectory(dst.key)
            if not src.is_dir and dst.is_dir:
                raise IsADirectory(dst.key)
            # A non-empty destination directory is checked by _rename_dir, which may
            # find it to be an interrupted rename of this same source.
        if src.is_dir:
            new_key = child_key(new_parent.key, new_name, directory=True)
            if new_key.startswith(src.key):
                raise InvalidName("cannot move a directory into itself")
            check_key(new_key)
            await self._rename_dir(src, new_key, dst)
            self.state.dir_times.forget(src.key, below=True)
        else:
            new_key = child_key(new_parent.key, new_name, directory=False)
            check_key(new_key)
            await self._rename_file(src, new_key, dst)
        self.listings.drop(parent, name)
        self.state.inodes.move(src, new_parent, new_name, new_key)
        if src.is_dir:
            await self._after_dir_move(new_key)
        self.state.inodes.set_negative(parent.ino, name)
        self.listings.put(src)
        if src.is_dir:
            self.listings.put_dir(new_parent, new_name, new_key)
        changed(src)
        self.state.dir_times.entries_changed(parent)
        self.state.dir_times.entries_changed(new_parent)

    async def _rename_file(self, src: Node, new_key: str, dst: Node | None) -> None:
        state = self.state
        staged = state.staged.get(src.ino)
        if dst is not None:
            dst_staged = state.staged.get(dst.ino)
            if dst_staged is not None:
                dst_staged.unlinked = True
        with from_storage():
            if staged is not None and staged.dirty and not staged.unlinked:
                # Not yet stored: upload straight under the new name.
                etag = await staged.upload(state.store, new_key, node_metadata(src))
                src.etag, src.size = etag, staged.size
            else:
                if staged is not None:
                    with from_storage(missing=Stale):
                        await staged.fill_all()
                await state.store.copy(src.key, new_key, size=src.size)
                src.etag = (await state.store.head(new_key)).etag
            await state.store.delete(src.key, missing_ok=True)
        if staged is not None:
            staged.rename_key(new_key)
            if not staged.dirty and not staged.unlinked and src.etag is not None:
                staged.rebase(src.etag)  # the copy under the new name is the version now

    async def _rename_dir(self, src: Node, new_key: str, dst: Node | None) -> None:
        """Move every key under ``src`` to ``new_key``: all copies first, then the deletes.

        Not atomic, but safe to re-run after an interruption (``docs/SEMANTICS.md``,
        "Renaming directories"): until the copies are done the source is complete and the
        destination holds only finished copies of some of its files; after, the destination
        is complete and the source holds only files (then directories) it already has.
        Renaming the same source onto such a destination again copies what is missing and
        deletes the rest (:func:`rename_plan`); onto any other non-empty directory it is
        ENOTEMPTY.  The source's own marker goes last, so an interruption just before it
        leaves an empty directory (``rmdir`` ends that).
        """
        store = self.state.store
        if dst is not None and self.staging.holds_under(dst.key):
            raise NotEmpty(dst.key)  # files being written there are not in its listing yet
        # Everything written under the directory goes up first, under the old names.
        await self.staging.upload_under(src)
        src_tree = await self._tree(src.key)
        room = KEY_MAX - len(new_key.encode("utf-8", "surrogateescape"))
        longest = max((len(rel.encode("utf-8", "surrogateescape")) for rel in src_tree), default=0)
        if longest > room:
            raise NameTooLong(f"{new_key}: a key under it would be over {KEY_MAX} bytes")
        # Listed even when the caches say the name is free: keys under it written since
        # (another mount, an earlier interrupted rename) must not be merged into unseen.
        dst_tree = await self._tree(new_key)
        plan = rename_plan(src_tree, dst_tree)
        if plan is None:
            raise NotEmpty(new_key)
        to_copy, to_delete = plan

        async def move(rel: str) -> None:
            try:
                with from_storage():
                    await store.copy(src.key + rel, new_key + rel, size=src_tree[rel].size)
            except NotFound:
                # A key deleted meanwhile has nothing to move.  SeaweedFS cannot copy a
                # `dir/` marker (its folders are not objects): write a new, empty one.
                if rel.endswith("/"):
                    with from_storage():
                        await store.put(new_key + rel, b"")

        async def remove(rel: str) -> None:
            with from_storage():
                await store.delete(src.key + rel, missing_ok=True)

        await self._move_marker(src, new_key, "" in src_tree)
        await _for_each(to_copy, move)
        # Files first, then directories deepest first, the directory itself last: SeaweedFS
        # keeps a folder listed (empty) after its last key goes, until its `dir/` key is
        # deleted once it is empty -- so implicit directories are "deleted" too (a no-op
        # elsewhere).
        await _for_each([rel for rel in to_delete if not rel.endswith("/")], remove)
        for level in directories_deepest_first(to_delete):
            await _for_each(level, remove)
        await remove("")
        self.listings.forget_nodes(src.key)
        self.listings.forget_nodes(new_key)
        self.staging.rekey_under(src.key, new_key)

    async def _move_marker(self, src: Node, new_key: str, listed: bool) -> None:
        """The directory's own marker object under its new name."""
        store = self.state.store
        if listed:
            try:
                with from_storage():
                    await store.copy(src.key, new_key, size=0)
                return
            except NotFound:
                pass  # SeaweedFS lists implicit directories, which cannot be copied
        # An implicit directory gets a marker under its new name, so it persists even if
        # its last file goes.
        with from_storage():
            await store.put(new_key, b"", metadata=node_metadata(src))

    async def _after_dir_move(self, new_key: str) -> None:
        """Known files under a moved directory: same metadata (the copies kept it), maybe
        new ETags (Azure, copies in parts).  One listing gives those, so a lookup answered
        from a listing later still finds the version whose metadata is known -- otherwise
        a symlink would show as a file until its next HEAD."""
        try:
            moved = await self._tree(new_key)
        except FsError:
            moved = {}  # the move is done; the nodes are simply re-checked
        for node in self.state.inodes:
            if node.is_dir or not node.key.startswith(new_key) or node.ino in self.state.staged:
                continue
            info = moved.get(node.key[len(new_key) :])
            node.attr_expires = 0.0  # re-checked on the next getattr/open
            if info is None:
                node.etag, node.metadata_loaded = None, False
            else:
                node.etag, node.size = info.etag, info.size

    async def _tree(self, key: str) -> dict[str, ObjectInfo]:
        """Every object under the directory ``key``, by its name relative to it (the
        directory's own marker is ``""``)."""
        tree: dict[str, ObjectInfo] = {}
        with from_storage():
            async with aclosing(self.state.store.list_pages(key, delimiter=None)) as pages:
                async for page in pages:
                    for item in page:
                        if isinstance(item, ObjectInfo):
                            tree[item.key[len(key) :]] = item
        return tree


async def _for_each(items: Sequence[str], fn: Callable[[str], Awaitable[None]]) -> None:
    """``fn`` on every item, :data:`RENAME_CONCURRENCY` at once.  After a failure no new
    item is started, and the first failure is raised as itself (not as a group), so the
    adapter can give its errno."""
    limit = trio.Semaphore(RENAME_CONCURRENCY)
    failures: list[Exception] = []

    async def one(item: str) -> None:
        try:
            await fn(item)
        except Exception as e:  # collected: the first is raised below
            failures.append(e)
        finally:
            limit.release()

    async with trio.open_nursery() as nursery:
        for item in items:
            await limit.acquire()
            if failures:
                limit.release()
                break
            nursery.start_soon(one, item)
    if failures:
        raise failures[0]
