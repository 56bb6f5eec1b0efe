"""Extended attributes: get, set, list and remove, stored in the object's metadata.

They are stored as s3fs-fuse stores them (the ``xattr`` metadata of
:mod:`blobfs.fs.metadata`), so a bucket written by s3fs shows the same attributes here and
the other way round; on Azure the same value is blob metadata.  A change is stored at once
by :mod:`blobfs.fs.metadata_writes` (a copy of the object onto itself with its metadata
replaced: the data is not sent again), or with the data at ``close()`` of a file being
written, and moves ctime.

Namespaces: ``user.*`` and ``trusted.*`` are stored (the kernel allows ``user.*`` on regular
files and directories only, and ``trusted.*`` to privileged processes only).  ``security.*``
and ``system.*`` are not: the mount enforces neither security labels, capabilities nor
POSIX ACLs, so keeping them would promise what it does not do.  Every call on them is
``EOPNOTSUPP``, answered at once without a request: the kernel asks for
``security.capability`` before every write, and ``ls -l`` asks for
``system.posix_acl_access`` and ``security.selinux`` -- of every entry when the answer is
``ENODATA``, but only once per file system when it is ``EOPNOTSUPP`` (coreutils remembers
a file system without them; ``docs/BENCHMARKS.md`` has the figures).  Such attributes in a
bucket written by s3fs are kept, and not shown.

Size: an attribute that could never fit in the provider's metadata limit is ``E2BIG``, one
that does not fit beside the others ``ENOSPC`` (:meth:`MetadataWrites.check_xattr`); nothing
is changed then.
"""

from __future__ import annotations

from blobfs.errors import FsError, NoAttribute, NotSupported, StorageFailure
from blobfs.fs.inodes import ROOT_INODE, Node
from blobfs.fs.lookup import Lookup
from blobfs.fs.metadata import decode_xattrs, encode_xattrs
from blobfs.fs.metadata_writes import MetadataWrites
from blobfs.fs.state import FsState
from blobfs.fs.times import changed

#: The namespaces whose attributes are stored.
STORED_NAMESPACES = (b"user.", b"trusted.")


def stored(name: bytes) -> bool:
    """Whether attributes named ``name`` are kept by the mount."""
    return name.startswith(STORED_NAMESPACES)


class Xattrs:
    """The extended attributes of nodes."""

    def __init__(self, state: FsState, lookup: Lookup, metadata: MetadataWrites) -> None:
        self.state = state
        self.lookup = lookup
        self.metadata = metadata

    async def get(self, ino: int, name: bytes) -> bytes:
        """The value of ``name`` (:class:`NoAttribute` if the node has none)."""
        node = self.state.inodes.get(ino)
        if not stored(name):
            raise NotSupported(f"{name.decode(errors='replace')}: not kept by this mount")
        await self._load(node)
        value = decode_xattrs(node.xattr).get(name)
        if value is None:
            raise NoAttribute(name.decode(errors="replace"))
        return value

    async def names(self, ino: int) -> list[bytes]:
        """The names of the node's attributes."""
        node = self.state.inodes.get(ino)
        await self._load(node)
        return [name for name in decode_xattrs(node.xattr) if stored(name)]

    async def set(self, ino: int, name: bytes, value: bytes) -> None:
        """Set ``name`` to ``value`` and store it."""
        state = self.state
        node = state.inodes.get(ino)
        state.check_writable()
        if not stored(name):
            raise NotSupported(f"{name.decode(errors='replace')}: not kept by this mount")
        if node.ino == ROOT_INODE:
            raise NotSupported("the mount's root has no object to hold extended attributes")
        await self._load(node, writing=True)
        attrs = decode_xattrs(node.xattr)
        attrs[name] = value
        await self._store(node, encode_xattrs(attrs), encode_xattrs({name: value}))

    async def remove(self, ino: int, name: bytes) -> None:
        """Remove ``name`` (:class:`NoAttribute` if the node has none)."""
        state = self.state
        node = state.inodes.get(ino)
        state.check_writable()
        if not stored(name):
            raise NotSupported(f"{name.decode(errors='replace')}: not kept by this mount")
        await self._load(node, writing=True)
        attrs = decode_xattrs(node.xattr)
        if attrs.pop(name, None) is None:
            raise NoAttribute(name.decode(errors="replace"))
        await self._store(node, encode_xattrs(attrs), None)

    async def _store(self, node: Node, value: str | None, alone: str | None) -> None:
        self.metadata.check_xattr(node, value, alone)
        before = node.xattr, node.ctime_ns
        node.xattr = value
        changed(node)
        try:
            await self.metadata.store(node)
        except FsError:
            node.xattr, node.ctime_ns = before
            raise

    async def _load(self, node: Node, *, writing: bool = False) -> None:
        """Make the node's metadata known: a file's re-checked once its attribute TTL ran
        out (as ``getattr`` does), a directory's from its marker once."""
        state = self.state
        if node.is_dir:
            if node.ino == ROOT_INODE or node.metadata_loaded:
                return
            await self.lookup.load_dir_metadata(node)
            if writing and not node.metadata_loaded:
                # Storing a marker now would drop what the one there holds.
                raise StorageFailure(f"cannot read the metadata of {node.key!r}")
        elif node.ino not in state.staged and (
            not node.metadata_loaded or node.attr_expires <= state.clock()
        ):
            await self.lookup.refresh(node)
