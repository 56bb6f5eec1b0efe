"""The inode table: store keys <-> inode numbers, attributes, lookup counts, TTLs.

An inode is a :class:`Node`.  Files are keyed by their object key (``a/b.txt``), directories
by their prefix *with* the trailing slash (``a/``); the root is the mount's prefix (``""``
for a whole bucket).  So a file ``x`` and a directory ``x/`` are different keys with
different numbers, and the rules in :mod:`blobfs.fs.names` decide which one is shown.

Lifetime (the FUSE contract): every successful ``lookup`` (and every entry handed out by
``readdirplus``) adds one to ``Node.lookups``; ``forget`` takes them away.  A node with no
kernel references and no open handles is dropped, but its number is remembered by key (in a
bounded LRU), so the same key gets the same inode number again while the mount lives -- tools
such as ``find`` and ``tar`` that compare inode numbers see stable ones.  Numbers are never
reused for another key.

Time comes from an injected clock so tests can move it; everything here is synchronous and
only touched from the trio thread, so it needs no locks (see :mod:`blobfs.fs.state`).
"""

from __future__ import annotations

import enum
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cachetools import LRUCache, TTLCache

from blobfs.errors import NotADirectory, NotFound

ROOT_INODE = 1

#: How many key -> inode numbers are remembered after their nodes are dropped.
REMEMBERED_NUMBERS = 1_000_000
#: Upper bound of the negative lookup cache.
NEGATIVE_ENTRIES = 100_000


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"


@dataclass(eq=False)
class Entry:
    """One child as a listing saw it: enough to answer ``lookup`` without a request."""

    name: str
    kind: Kind
    key: str
    size: int = 0
    mtime_ns: int = 0
    etag: str | None = None


@dataclass(eq=False)
class Listing:
    """A directory's children from one complete listing, in listing order."""

    entries: dict[str, Entry]
    expires: float


@dataclass(eq=False, slots=True)
class Node:
    """One inode.  Attributes are mutable: refreshes (and, later, writes) update them."""

    ino: int
    parent: int
    name: str
    key: str
    kind: Kind
    size: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    #: Permission bits only; the file type comes from ``kind`` and, for files, ``ftype``.
    mode: int = 0
    uid: int = 0
    gid: int = 0
    etag: str | None = None
    #: The object's s3fs metadata has been read (by a HEAD), so mode/uid/gid/times, the file
    #: type and the extended attributes are final.
    metadata_loaded: bool = False
    #: Monotonic deadline after which attributes must be re-checked with the store.
    attr_expires: float = 0.0
    lookups: int = 0
    opens: int = 0
    #: Directories only: the cached listing.
    listing: Listing | None = None
    #: The ETag the kernel's page cache holds data of (set on open, used for keep_cache).
    cached_etag: str | None = field(default=None)
    #: Files only: the file type (s3fs: the type bits of its ``mode`` metadata) -- a regular
    #: file, a symbolic link, a FIFO, a socket or a device node.
    ftype: int = stat.S_IFREG
    #: Device nodes only: the device number.
    rdev: int = 0
    #: The extended attributes as stored (s3fs's ``xattr`` metadata), ``None`` for none.
    xattr: str | None = None
    #: Metadata other tools stored under names blobfs does not use, kept through changes.
    extra_metadata: tuple[tuple[str, str], ...] = ()

    @property
    def is_dir(self) -> bool:
        return self.kind is Kind.DIR

    @property
    def symlink(self) -> bool:
        """A symbolic link (its target is the object's content)."""
        return self.kind is Kind.FILE and self.ftype == stat.S_IFLNK


class InodeTable:
    """All nodes the kernel may refer to, plus the negative lookup cache."""

    def __init__(
        self,
        root_key: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        negative_ttl: float = 1.0,
    ) -> None:
        self.clock = clock
        self._nodes: dict[int, Node] = {}
        self._children: dict[tuple[int, str], int] = {}
        self._numbers: LRUCache[tuple[str, Kind], int] = LRUCache(maxsize=REMEMBERED_NUMBERS)
        self._next_ino = ROOT_INODE + 1
        self._negative: TTLCache[tuple[int, str], bool] = TTLCache(
            maxsize=NEGATIVE_ENTRIES, ttl=max(negative_ttl, 1e-9), timer=clock
        )
        self._negative_enabled = negative_ttl > 0
        root = Node(ino=ROOT_INODE, parent=ROOT_INODE, name="", key=root_key, kind=Kind.DIR)
        root.lookups = 1  # the kernel holds the root for the whole mount
        self._nodes[ROOT_INODE] = root

    # -- queries -------------------------------------------------------------------------------

    @property
    def root(self) -> Node:
        return self._nodes[ROOT_INODE]

    def get(self, ino: int) -> Node:
        """The node of ``ino``; :class:`NotFound` if the kernel names one we dropped."""
        try:
            return self._nodes[ino]
        except KeyError:
            raise NotFound(f"inode {ino} is not known") from None

    def find(self, ino: int) -> Node | None:
        """The node of ``ino``, or ``None`` if it was dropped."""
        return self._nodes.get(ino)

    def directory(self, ino: int) -> Node:
        """The node of ``ino``, which must be a directory (else :class:`NotADirectory`)."""
        node = self.get(ino)
        if not node.is_dir:
            raise NotADirectory(node.key)
        return node

    def child(self, parent: int, name: str) -> Node | None:
        ino = self._children.get((parent, name))
        return None if ino is None else self._nodes[ino]

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self._nodes.values()))

    # -- negative cache ------------------------------------------------------------------------

    def is_negative(self, parent: int, name: str) -> bool:
        return (parent, name) in self._negative

    def set_negative(self, parent: int, name: str) -> None:
        if self._negative_enabled:
            self._negative[(parent, name)] = True

    def clear_negative(self, parent: int, name: str) -> None:
        self._negative.pop((parent, name), None)

    def clear_negatives(self) -> None:
        """Forget every name found missing."""
        self._negative.clear()

    # -- changes -------------------------------------------------------------------------------

    def remember(self, parent: Node, name: str, kind: Kind, key: str) -> Node:
        """The node for ``name`` in ``parent``, created if new.

        If the name now refers to something else (a file replaced by a directory of the same
        name), the old node is detached -- it lives on while the kernel still references it,
        reachable only by number -- and a new one takes the name.
        """
        # The guard matters: TTLCache.pop costs ~60 us even on a miss, and a cold listing
        # remembers every name of the directory.
        if self._negative.currsize:
            self._negative.pop((parent.ino, name), None)
        existing = self.child(parent.ino, name)
        if existing is not None:
            if existing.kind is kind and existing.key == key:
                return existing
            self.detach(existing)
        ino = self._numbers.get((key, kind))
        if ino is None or ino in self._nodes:
            ino = self._next_ino
            self._next_ino += 1
        self._numbers[(key, kind)] = ino
        node = Node(ino=ino, parent=parent.ino, name=name, key=key, kind=kind)
        self._nodes[ino] = node
        self._children[(parent.ino, name)] = ino
        return node

    def move(self, node: Node, new_parent: Node, new_name: str, new_key: str) -> None:
        """Give ``node`` a new name (a rename); a directory's descendants get new keys too.

        Whatever held the new name is detached first.
        """
        old_key = node.key
        existing = self.child(new_parent.ino, new_name)
        if existing is not None and existing is not node:
            self.detach(existing)
        if self._children.get((node.parent, node.name)) == node.ino:
            del self._children[(node.parent, node.name)]
        self._negative.pop((new_parent.ino, new_name), None)
        node.parent, node.name, node.key = new_parent.ino, new_name, new_key
        self._children[(new_parent.ino, new_name)] = node.ino
        self._numbers[(new_key, node.kind)] = node.ino
        if node.is_dir:
            for other in self._nodes.values():
                if other is not node and other.ino != ROOT_INODE and other.key.startswith(old_key):
                    other.key = new_key + other.key[len(old_key) :]
                    self._numbers[(other.key, other.kind)] = other.ino

    def detach(self, node: Node) -> None:
        """Remove ``node``'s name from its parent (it vanished or was replaced)."""
        if self._children.get((node.parent, node.name)) == node.ino:
            del self._children[(node.parent, node.name)]
        self._drop_if_unused(node)

    def ref(self, node: Node, count: int = 1) -> None:
        """The kernel learned about ``node`` (lookup, readdirplus entry, create)."""
        node.lookups += count

    def forget(self, ino: int, count: int) -> None:
        """The kernel dropped ``count`` references to ``ino``."""
        node = self._nodes.get(ino)
        if node is None or ino == ROOT_INODE:
            return
        node.lookups = max(0, node.lookups - count)
        self._drop_if_unused(node)

    def opened(self, node: Node) -> None:
        node.opens += 1

    def closed(self, node: Node) -> None:
        node.opens = max(0, node.opens - 1)
        self._drop_if_unused(node)

    def drop_unreferenced(self, node: Node) -> None:
        """Drop a node created for the kernel that the kernel did not take after all."""
        self._drop_if_unused(node)

    def _drop_if_unused(self, node: Node) -> None:
        if node.ino == ROOT_INODE or node.lookups > 0 or node.opens > 0:
            return
        if self._nodes.get(node.ino) is not node:
            return
        del self._nodes[node.ino]
        if self._children.get((node.parent, node.name)) == node.ino:
            del self._children[(node.parent, node.name)]

    # -- tests ---------------------------------------------------------------------------------

    def check_consistency(self) -> None:
        """Raise AssertionError if the table's invariants do not hold (used by tests)."""
        assert ROOT_INODE in self._nodes, "root missing"
        for (parent, name), ino in self._children.items():
            node = self._nodes.get(ino)
            assert node is not None, f"name {name!r} in {parent} points to dropped inode {ino}"
            assert (node.parent, node.name) == (parent, name), f"inode {ino} misfiled"
        seen: dict[tuple[str, Kind], int] = {}
        for ino, node in self._nodes.items():
            assert node.ino == ino, f"inode {ino} stored under the wrong number"
            assert node.lookups >= 0 and node.opens >= 0, f"inode {ino} has negative counts"
            if ino != ROOT_INODE:
                assert node.lookups > 0 or node.opens > 0, f"inode {ino} kept unreferenced"
                assert ino < self._next_ino, f"inode {ino} beyond the counter"
            if node.kind is Kind.DIR:
                assert node.key == "" or node.key.endswith("/"), f"dir key {node.key!r}"
            else:
                assert not node.key.endswith("/"), f"file key {node.key!r}"
            if self._children.get((node.parent, node.name)) == ino:
                prior = seen.get((node.key, node.kind))
                assert prior is None, f"key {node.key!r} named by inodes {prior} and {ino}"
                seen[(node.key, node.kind)] = ino
