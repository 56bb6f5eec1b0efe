"""Forgetting what the mount believes about part of the bucket (``blobfs invalidate``).

After another host changed the bucket, the mount shows the old view until its TTLs run
out.  :meth:`Invalidator.invalidate` drops, for every entry in a :class:`Scope`:

* the attributes of its nodes (the next access asks the store: a HEAD, or a new listing);
  a directory's metadata too (its marker is read again);
* the listings of its directories, and the listing of each directory holding a path of the
  scope (that listing names it), kept ones included;
* the negative entries (all of them: they are cheap to rebuild);
* the blocks of its files in the memory cache.  Blocks on the disk cache stay: they are
  keyed by version (ETag), so an object that changed is never served from them;
* the kernel's attributes, page cache and directory entries of its nodes, through the
  :class:`KernelCache` the FUSE layer attaches (the core never calls the kernel itself).

Files being written here keep their state: their staging file is the truth until it is
stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from blobfs.fs.inodes import ROOT_INODE
from blobfs.fs.listings import Listings
from blobfs.fs.scope import Scope
from blobfs.fs.state import FsState


class KernelCache(Protocol):
    """What the kernel caches, as the core may ask it to forget (the FUSE layer provides
    it: :class:`blobfs.fuse.kernel.KernelNotifier`)."""

    async def forget(self, inodes: Sequence[int], entries: Sequence[tuple[int, str]]) -> int:
        """Drop the attributes and data of ``inodes`` and the directory entries
        ``(parent inode, name)``; return how many the kernel had."""
        ...


class NoKernel:
    """A :class:`KernelCache` for a file system no kernel mounts (tests, before mounting)."""

    async def forget(self, inodes: Sequence[int], entries: Sequence[tuple[int, str]]) -> int:
        return 0


@dataclass(frozen=True)
class Invalidated:
    """What one invalidation dropped."""

    nodes: int
    listings: int
    blocks: int
    kernel: int


class Invalidator:
    """Drops cached attributes, listings and data under a scope (see the module doc)."""

    def __init__(self, state: FsState, listings: Listings) -> None:
        self.state = state
        self.listings = listings
        self.kernel: KernelCache = NoKernel()

    async def invalidate(self, scope: Scope) -> Invalidated:
        state = self.state
        parents = set(scope.parent_keys())
        inodes: list[int] = []
        entries: list[tuple[int, str]] = []
        nodes = listings = 0
        for node in state.inodes:
            inside = scope.holds(node.key)
            if node.is_dir and node.key in parents and not inside:
                # It names a path of the scope: its listing and attributes go.
                listings += node.listing is not None
                node.listing = None
                node.attr_expires = 0
                inodes.append(node.ino)
                continue
            if not inside:
                continue
            nodes += 1
            if node.is_dir:
                listings += node.listing is not None
                node.listing = None
                if node.ino != ROOT_INODE:
                    node.metadata_loaded = False
            elif node.ino not in state.staged:
                node.cached_etag = None
            node.attr_expires = 0
            if node.lookups > 0 or node.opens > 0:
                inodes.append(node.ino)
            if node.ino != ROOT_INODE and state.inodes.child(node.parent, node.name) is node:
                entries.append((node.parent, node.name))
        # Kept listings by key: a parent's ``forget`` takes those below it too.
        for key in parents if not scope.everything else {scope.root}:
            self.listings.forget(key)
        state.inodes.clear_negatives()
        blocks = state.cache.forget_keys(scope.holds)
        kernel = await self.kernel.forget(inodes, entries)
        return Invalidated(nodes=nodes, listings=listings, blocks=blocks, kernel=kernel)


__all__ = ["Invalidated", "Invalidator", "KernelCache", "NoKernel"]
