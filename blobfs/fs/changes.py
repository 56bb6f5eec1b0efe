"""Namespace changes other than rename: ``mkdir``, ``unlink``, ``rmdir``, ``symlink``, ``link``.

A directory made here gets a marker object (``name/``) carrying its s3fs metadata; a
symbolic link is an object holding its target, with ``S_IFLNK`` in its ``mode`` metadata.
``rmdir`` deletes the marker of a directory that lists no other key and has no file being
written.  Hard links cannot be expressed in a bucket and are refused.  Each change is
written into the cached listings and negative entries at once (:mod:`blobfs.fs.listings`).
Renames are :mod:`blobfs.fs.rename`'s.
"""

from __future__ import annotations

import stat
import time
from contextlib import aclosing

from blobfs.errors import IsADirectory, NotADirectory, NotEmpty, NotSupported, from_storage
from blobfs.fs.attributes import Attributes, touch
from blobfs.fs.inodes import Kind, Node
from blobfs.fs.listings import Listings
from blobfs.fs.lookup import Lookup
from blobfs.fs.metadata import s3fs_metadata
from blobfs.fs.names import check_name, child_key
from blobfs.fs.staging import Staging
from blobfs.fs.state import FsState


class Changes:
    """Makes and removes directories, files' names and symbolic links."""

    def __init__(
        self,
        state: FsState,
        attributes: Attributes,
        lookup: Lookup,
        listings: Listings,
        staging: Staging,
    ) -> None:
        self.state = state
        self.attributes = attributes
        self.lookup = lookup
        self.listings = listings
        self.staging = staging

    async def mkdir(self, parent_ino: int, name: str, mode: int) -> Node:
        """Make the directory ``name`` (its marker object) in ``parent_ino``."""
        state = self.state
        options = state.options
        inodes = state.inodes
        parent = inodes.directory(parent_ino)
        check_name(name)
        state.check_writable()
        await self.lookup.check_absent(parent, name)
        key = child_key(parent.key, name, directory=True)
        node_mode = options.dir_mode if options.dir_mode is not None else mode & 0o7777
        meta = s3fs_metadata(stat.S_IFDIR | node_mode, options.uid, options.gid, time.time_ns())
        with from_storage():
            await state.store.put(key, b"", metadata=meta)
        parent = inodes.directory(parent_ino)
        node = inodes.remember(parent, name, Kind.DIR, key)
        self.lookup.init_dir(node, None)
        node.mode = node_mode
        touch(node)
        node.metadata_loaded = True
        self.listings.start_empty(node)
        self.listings.put_dir(parent, name, key)
        return node

    async def unlink(self, parent_ino: int, name: str) -> None:
        """Delete the file ``name``; a handle open on it keeps reading its staging file."""
        state = self.state
        parent = state.inodes.directory(parent_ino)
        state.check_writable()
        node = await self.lookup.resolve(parent, name)
        if node.is_dir:
            state.inodes.drop_unreferenced(node)
            raise IsADirectory(node.key)
        staged = state.staged.get(node.ino)
        if staged is not None:
            staged.unlinked = True
        with from_storage():
            await state.store.delete(node.key, missing_ok=True)
        self.listings.drop(parent, name)
        state.inodes.detach(node)
        state.inodes.set_negative(parent.ino, name)

    async def rmdir(self, parent_ino: int, name: str) -> None:
        """Delete the empty directory ``name`` (:class:`NotEmpty` otherwise)."""
        state = self.state
        parent = state.inodes.directory(parent_ino)
        state.check_writable()
        node = await self.lookup.resolve(parent, name)
        if not node.is_dir:
            state.inodes.drop_unreferenced(node)
            raise NotADirectory(node.key)
        if not await self._is_empty(node):
            state.inodes.drop_unreferenced(node)
            raise NotEmpty(node.key)
        with from_storage():
            await state.store.delete(node.key, missing_ok=True)
        self.listings.forget(node.key)
        self.listings.drop(parent, name)
        state.inodes.detach(node)
        state.inodes.set_negative(parent.ino, name)

    async def _is_empty(self, node: Node) -> bool:
        if self.staging.holds_under(node.key):
            return False
        with from_storage():
            listing = self.state.store.list_pages(node.key, delimiter="/", page=2)
            async with aclosing(listing) as pages:
                async for page in pages:
                    if any(item.key != node.key for item in page):
                        return False
        return True

    async def symlink(self, parent_ino: int, name: str, target: str) -> Node:
        """Make the symbolic link ``name`` to ``target``."""
        state = self.state
        options = state.options
        inodes = state.inodes
        parent = inodes.directory(parent_ino)
        check_name(name)
        state.check_writable()
        await self.lookup.check_absent(parent, name)
        key = child_key(parent.key, name, directory=False)
        body = target.encode("utf-8", "surrogateescape")
        now = time.time_ns()
        meta = s3fs_metadata(stat.S_IFLNK | 0o777, options.uid, options.gid, now)
        with from_storage():
            etag = await state.store.put(key, body, metadata=meta)
        parent = inodes.directory(parent_ino)
        node = inodes.remember(parent, name, Kind.FILE, key)
        node.mode, node.uid, node.gid = 0o777, options.uid, options.gid
        node.size, node.etag, node.symlink = len(body), etag, True
        node.metadata_loaded = True
        touch(node, now)
        node.attr_expires = state.clock() + options.attr_ttl
        self.attributes.remember(node)
        self.listings.put(node)
        return node

    async def link(self, ino: int, new_parent_ino: int, new_name: str) -> Node:
        """Hard links: refused (:class:`ReadOnly` on a read-only mount, else
        :class:`NotSupported`)."""
        self.state.check_writable()
        raise NotSupported("hard links are not supported")
