"""Namespace changes other than rename: ``mkdir``, ``unlink``, ``rmdir``, ``symlink``,
``mknod``, ``link``.

A directory made here gets a marker object (``name/``) carrying its s3fs metadata; a
symbolic link is an object holding its target, with ``S_IFLNK`` in its ``mode`` metadata;
a FIFO, socket or device node is an empty object whose ``mode`` carries its type (and
``rdev`` metadata its device number), as s3fs makes them -- the mount stores the node,
and opening it is the kernel's business.  ``rmdir`` deletes the marker of a directory that
lists no other key and has no file being written.  Hard links cannot be expressed in a
bucket and are refused.  Each change is written into the cached listings and negative
entries at once (:mod:`blobfs.fs.listings`), and moves the parent directory's mtime and
ctime (:mod:`blobfs.fs.times`).  Renames are :mod:`blobfs.fs.rename`'s.
"""

from __future__ import annotations

import stat
import time
from contextlib import aclosing

from blobfs.errors import (
    InvalidName,
    IsADirectory,
    NotADirectory,
    NotEmpty,
    NotSupported,
    from_storage,
)
from blobfs.fs.attributes import Attributes
from blobfs.fs.inodes import Kind, Node
from blobfs.fs.listings import Listings
from blobfs.fs.lookup import Lookup
from blobfs.fs.metadata import s3fs_metadata
from blobfs.fs.names import check_key, check_name, child_key
from blobfs.fs.staging import Staging
from blobfs.fs.state import FsState
from blobfs.fs.times import changed, created

#: What ``mknod`` makes here; a regular file is ``create``'s.
SPECIAL_TYPES = frozenset({stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK})


class Changes:
    """Makes and removes directories, files' names, symbolic links and special files."""

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
        key = child_key(parent.key, name, directory=True)
        check_key(key)
        await self.lookup.check_absent(parent, name)
        node_mode = options.dir_mode if options.dir_mode is not None else mode & 0o7777
        now = time.time_ns()
        meta = s3fs_metadata(
            stat.S_IFDIR | node_mode,
            options.uid,
            options.gid,
            atime_ns=now,
            mtime_ns=now,
            ctime_ns=now,
        )
        with from_storage():
            await state.store.put(key, b"", metadata=meta)
        parent = inodes.directory(parent_ino)
        state.dir_times.forget(key, below=True)  # a directory of this name removed earlier
        node = inodes.remember(parent, name, Kind.DIR, key)
        self.lookup.init_dir(node, None)
        node.mode = node_mode
        created(node, now)
        node.metadata_loaded = True
        self.listings.start_empty(node)
        self.listings.put_dir(parent, name, key)
        state.dir_times.entries_changed(parent)
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
        changed(node)  # its link count, for a handle still open on it
        state.dir_times.entries_changed(parent)

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
        state.dir_times.forget(node.key)
        state.dir_times.entries_changed(parent)

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
        body = target.encode("utf-8", "surrogateescape")
        return await self._make_file(parent_ino, name, stat.S_IFLNK, 0o777, body)

    async def mknod(self, parent_ino: int, name: str, kind: int, mode: int, rdev: int) -> Node:
        """Make the FIFO, socket or device node ``name`` (``kind``: its ``S_IFMT`` bits;
        :class:`InvalidName` for any other type, as ``mknod(2)`` says EINVAL)."""
        if kind not in SPECIAL_TYPES:
            raise InvalidName(f"mknod of file type {kind:#o}")
        options = self.state.options
        perm = options.file_mode if options.file_mode is not None else mode & 0o7777
        device = rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0
        return await self._make_file(parent_ino, name, kind, perm, b"", rdev=device)

    async def _make_file(
        self, parent_ino: int, name: str, kind: int, perm: int, body: bytes, *, rdev: int = 0
    ) -> Node:
        """A file object made whole by one PUT: a symbolic link or a special file."""
        state = self.state
        options = state.options
        inodes = state.inodes
        parent = inodes.directory(parent_ino)
        check_name(name)
        state.check_writable()
        key = child_key(parent.key, name, directory=False)
        check_key(key)
        await self.lookup.check_absent(parent, name)
        now = time.time_ns()
        meta = s3fs_metadata(
            kind | perm,
            options.uid,
            options.gid,
            atime_ns=now,
            mtime_ns=now,
            ctime_ns=now,
            rdev=rdev,
        )
        with from_storage():
            etag = await state.store.put(key, body, metadata=meta)
        parent = inodes.directory(parent_ino)
        node = inodes.remember(parent, name, Kind.FILE, key)
        node.mode, node.uid, node.gid = perm, options.uid, options.gid
        node.size, node.etag, node.ftype, node.rdev = len(body), etag, kind, rdev
        node.xattr, node.extra_metadata = None, ()
        node.metadata_loaded = True
        created(node, now)
        node.attr_expires = state.clock() + options.attr_ttl
        self.attributes.remember(node)
        self.listings.put(node)
        state.dir_times.entries_changed(parent)
        return node

    async def link(self, ino: int, new_parent_ino: int, new_name: str) -> Node:
        """Hard links: refused (:class:`ReadOnly` on a read-only mount, else
        :class:`NotSupported`)."""
        self.state.check_writable()
        raise NotSupported("hard links are not supported")
