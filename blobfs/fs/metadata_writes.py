"""Storing a node's metadata alone: after ``chmod``, ``chown``, ``utime`` or an extended
attribute change.

A file's object is copied onto itself server-side with the metadata replaced (S3
CopyObject with ``REPLACE``, Azure Copy Blob; over 5 GiB a multipart copy of parts): its
data is neither downloaded nor uploaded again.  A directory gets a new marker object
carrying the metadata.  A file with writes not yet stored carries the new metadata in its
upload at ``close()`` instead.  The mount's root has no object of its own: its attributes
are the mount's.

Size: a provider limits the metadata of one object (S3 2 KiB, Azure 8 KiB).  The fixed
names take a bounded share of it (:data:`~blobfs.fs.metadata.WIDEST_FIXED`); what is left
is the room for extended attributes, so no later change of mode, owner or time can fail
for want of it.
"""

from __future__ import annotations

from blobfs.errors import NoSpace, Stale, TooBig, from_storage
from blobfs.fs.attributes import Attributes
from blobfs.fs.inodes import ROOT_INODE, Node
from blobfs.fs.listings import Listings
from blobfs.fs.metadata import WIDEST_FIXED, node_metadata
from blobfs.fs.state import FsState


class MetadataWrites:
    """Stores nodes' metadata without their data, and says what fits."""

    def __init__(self, state: FsState, attributes: Attributes, listings: Listings) -> None:
        self.state = state
        self.attributes = attributes
        self.listings = listings

    def xattr_room(self, extra: tuple[tuple[str, str], ...] = ()) -> int:
        """Bytes the ``xattr`` value may take, beside the fixed names at their widest and
        what other tools stored (``extra``)."""
        rules = self.state.store.metadata_rules
        fixed = rules.size(WIDEST_FIXED | dict(extra))
        return rules.limit - fixed - rules.size({"xattr": ""})

    def check_xattr(self, node: Node, value: str | None, alone: str | None) -> None:
        """Refuse extended attributes whose stored value (``value``) would not fit:
        :class:`TooBig` if the attribute being set could never fit (``alone``, the value
        with it as the only one), else :class:`NoSpace`."""
        if value is None:
            return
        room = self.xattr_room(node.extra_metadata)
        if len(value) <= room:
            return
        if alone is not None and len(alone) > room:
            raise TooBig(f"{node.key}: the attribute needs {len(alone)} of {room} bytes")
        raise NoSpace(f"{node.key}: the attributes need {len(value)} of {room} bytes")

    async def store(self, node: Node, *, times_set: bool = False) -> None:
        """Store ``node``'s metadata as it is now.  ``times_set``: ``utime`` set them (a
        streamed upload, which carries older times, must be given the new ones)."""
        state = self.state
        if node.is_dir:
            if node.ino != ROOT_INODE:
                with from_storage():
                    await state.store.put(node.key, b"", metadata=node_metadata(node))
                node.metadata_loaded = True
                state.dir_times.remember(node)
            return
        staged = state.staged.get(node.ino)
        if staged is not None and staged.dirty:
            if times_set:
                staged.mtime_explicit = True
            return  # the new metadata goes up with the data at close
        if staged is not None:
            # Open for writing, nothing written: its content is the object's, read lazily by
            # the version's ETag, which the copy replaces (on Azure, and for copies in
            # parts).  Fill it all first, so it never needs the old version again.
            with from_storage(missing=Stale):
                await staged.fill_all()
        with from_storage():
            await state.store.copy(node.key, node.key, metadata=node_metadata(node))
            # The ETag a copy returns is not always the one listings report (SeaweedFS):
            # take the stored version's own, so a listing does not look like a change.
            info = await state.store.head(node.key)
        node.etag = info.etag
        if staged is not None:
            staged.rebase(info.etag)  # the copy is a new version (Azure, copies in parts)
        node.metadata_loaded = True
        node.attr_expires = state.clock() + state.options.attr_ttl
        self.attributes.remember(node)
        self.listings.put(node)
