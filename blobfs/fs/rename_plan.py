"""What a directory rename copies and deletes: pure functions of two listings.

A bucket has no rename: a directory is moved by copying every key under it, then deleting
the originals (:mod:`blobfs.fs.rename` does the requests).  These functions decide, from
the objects under the source and under the destination, what is left to copy and what to
delete -- including when the destination is what an earlier, interrupted rename of the same
source left behind, so that running the rename again finishes it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sdk.providers.base import ObjectInfo

#: An S3 ETag that is the md5 of the content (a single PUT or copy), as opposed to a
#: multipart ``md5-N`` or an opaque Azure ETag.
_PLAIN_MD5 = re.compile(r"[0-9a-f]{32}")


def rename_plan(
    src: dict[str, ObjectInfo], dst: dict[str, ObjectInfo]
) -> tuple[list[str], list[str]] | None:
    """What a directory rename must copy and then delete, given the objects under the source
    and under the destination (relative names; ``""`` is a directory's own marker).

    Returns ``(to_copy, to_delete)`` -- neither includes ``""`` -- or ``None`` when the
    destination is a non-empty directory that is not part of this move (ENOTEMPTY).  The
    destination counts as part of the move -- an earlier, interrupted rename of this source
    -- when the names the two share are not none, every shared name is the same object
    (:func:`same_copy`), and one side's files all appear in the other: the destination's in
    the source (interrupted while copying) or the source's in the destination (interrupted
    while deleting).  Shared names are then only deleted from the source, not copied again.
    """
    src_names = set(src) - {""}
    dst_names = set(dst) - {""}
    if dst_names:
        shared = src_names & dst_names
        # Directory markers hold no data and one that cannot be copied is written anew
        # (SeaweedFS), so only the files decide which side is contained in the other.
        src_files = {name for name in src_names if not name.endswith("/")}
        dst_files = {name for name in dst_names if not name.endswith("/")}
        if not shared or not (dst_files <= src_files or src_files <= dst_files):
            return None
        if not all(same_copy(src[name], dst[name]) for name in shared):
            return None
    to_copy = sorted(src_names - dst_names)
    return to_copy, sorted(src_names)


def same_copy(src: ObjectInfo, dst: ObjectInfo) -> bool:
    """Whether ``dst`` can be a finished copy of ``src`` made by a rename.

    Directory markers carry no content.  Otherwise the sizes must agree, and the ETags:
    equal ETags are the same content (a single-request S3 copy keeps the source's).  Two
    plain md5 ETags that differ are different content for sure.  Where copies get new ETags
    (Azure; S3 copies made in parts, ``md5-N``) the content cannot be told apart without
    reading it, and a destination no older than its source is taken for its copy: a source
    changed after it was copied is newer than the copy, so it is not.
    """
    if src.key.endswith("/"):
        return True
    if src.size != dst.size:
        return False
    if src.etag == dst.etag:
        return True
    if _PLAIN_MD5.fullmatch(src.etag) and _PLAIN_MD5.fullmatch(dst.etag):
        return False
    return (
        src.modified_at is not None
        and dst.modified_at is not None
        and dst.modified_at >= src.modified_at
    )


def directories_deepest_first(names: Sequence[str]) -> list[list[str]]:
    """Every directory ``names`` (relative keys) hold, listed or implied by a deeper key,
    grouped by depth, deepest group first (the top directory itself, ``""``, excluded)."""
    dirs: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]  # "a/b/c" -> a/, a/b/; "a/b/" -> a/, a/b/
        dirs.update("/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
    levels: dict[int, list[str]] = {}
    for d in dirs:
        levels.setdefault(d.count("/"), []).append(d)
    return [sorted(levels[depth]) for depth in sorted(levels, reverse=True)]
