"""The three times of a node and the POSIX rules that move them.

* **mtime** (data changed) and **ctime** (data or attributes changed): a write, append or
  truncate moves both; ``chmod``, ``chown``, an extended attribute change and a rename move
  ctime; ``utime`` sets atime and mtime as asked (``UTIME_NOW``, ``UTIME_OMIT``) and moves
  ctime.  A directory's mtime and ctime move when an entry is made in it or removed from it
  (create, ``mkdir``, ``mknod``, ``symlink``, ``unlink``, ``rmdir``, rename in or out).
* **atime** follows ``relatime``: a read (of a file, a directory's entries, a link's
  target) moves it only if it is not already later than mtime and ctime, or is a day old.
  A read never causes a request: atime changes are kept in memory and reach the bucket
  with the next change stored for other reasons.

What the bucket keeps is said in ``docs/SEMANTICS.md``: a file's three times are stored
with every upload and metadata change (:mod:`blobfs.fs.metadata`); the times entries give a
directory are kept in memory only (a request per entry made would double the cost of
creating files), by key in :class:`DirectoryTimes` so the kernel forgetting a directory
does not lose them.
"""

from __future__ import annotations

import time

from cachetools import LRUCache

from blobfs.fs.inodes import Node

#: relatime moves an atime at least once a day.
DAY_NS = 24 * 3600 * 1_000_000_000
#: Directories whose entry-made times are remembered after their nodes are dropped.
RECENT_DIRECTORIES = 65536


def modified(node: Node, when_ns: int | None = None) -> None:
    """The data changed: mtime and ctime (to now unless given)."""
    node.mtime_ns = node.ctime_ns = when_ns if when_ns is not None else time.time_ns()


def changed(node: Node) -> None:
    """An attribute changed: ctime."""
    node.ctime_ns = time.time_ns()


def created(node: Node, when_ns: int) -> None:
    """A node just made: all three times."""
    node.atime_ns = node.mtime_ns = node.ctime_ns = when_ns


def accessed(node: Node) -> bool:
    """A read: move atime by the ``relatime`` rule; whether it moved."""
    atime = node.atime_ns
    if atime > node.mtime_ns and atime > node.ctime_ns:
        now = time.time_ns()
        if now - atime < DAY_NS:
            return False
    node.atime_ns = time.time_ns()
    return True


class DirectoryTimes:
    """The times directories got here, by key, beyond the life of their nodes.

    A directory's marker says when it was made or last set by ``utime``/``chmod``; entries
    made and removed through this mount move its mtime and ctime in memory only.  This keeps
    those, so a directory node made again after the kernel forgot the first (memory
    pressure, ``drop_caches``) shows them too.  ~150 bytes each.
    """

    def __init__(self) -> None:
        self._recent: LRUCache[str, tuple[int, int, int]] = LRUCache(maxsize=RECENT_DIRECTORIES)

    def entries_changed(self, directory: Node) -> None:
        """An entry was made in or removed from ``directory``: mtime and ctime."""
        modified(directory)
        self.remember(directory)

    def accessed(self, directory: Node) -> None:
        """Its entries were read: atime, by the ``relatime`` rule."""
        if accessed(directory):
            self.remember(directory)

    def remember(self, directory: Node) -> None:
        """Keep ``directory``'s times as they are now."""
        self._recent[directory.key] = (directory.atime_ns, directory.mtime_ns, directory.ctime_ns)

    def recall(self, directory: Node) -> None:
        """Give a directory node its times from here, where they are later than its own."""
        known = self._recent.get(directory.key)
        if known is not None:
            atime, mtime, ctime = known
            directory.atime_ns = max(directory.atime_ns, atime)
            directory.mtime_ns = max(directory.mtime_ns, mtime)
            directory.ctime_ns = max(directory.ctime_ns, ctime)

    def forget(self, key: str, *, below: bool = False) -> None:
        """The directory ``key`` is gone (``rmdir``), and with ``below`` those under it too
        (renamed away)."""
        self._recent.pop(key, None)
        if below:
            for other in [k for k in self._recent if k.startswith(key)]:
                del self._recent[other]
