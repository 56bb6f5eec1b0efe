"""The sidecar: the on-disk record next to a staging file that crash recovery reads.

A staging file ``NAME.data`` has a sidecar ``NAME.key`` holding one JSON object
(:class:`Sidecar`): the key the data belongs to, the version it was based on (or that the
file is new), how much of that version was copied in, whether there are writes not yet
stored, the metadata a new upload carries, and the multipart upload in progress
(:class:`UploadRecord`), which recovery takes up again where it stopped.
:mod:`blobfs.write.recovery` reads it at the next mount; blanks after the object (the
padding of an in-place rewrite, see :class:`~blobfs.write.files.StagingFiles`) are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class UploadRecord:
    """A multipart upload of the staging file's bytes that is in progress on the server.

    Which parts it holds is not recorded here: the server's list is the authority, and the
    staged bytes of a recorded upload's parts never change while it is recorded (a write
    into them gives the upload up, and the record is cleared before the write).  Parts
    follow :func:`~blobfs.write.parts.part_layout` of ``part_size`` and ``streamed``."""

    key: str
    upload_id: str
    part_size: int
    streamed: bool

    def dumps(self) -> dict[str, object]:
        return {
            "key": self.key,
            "id": self.upload_id,
            "part_size": self.part_size,
            "streamed": self.streamed,
        }

    @classmethod
    def loads(cls, raw: Any) -> UploadRecord | None:
        if raw is None:
            return None
        return cls(str(raw["key"]), str(raw["id"]), int(raw["part_size"]), bool(raw["streamed"]))


@dataclass
class Sidecar:
    """What the ``.key`` file next to a staging file records (JSON), for crash recovery."""

    key: str
    #: ETag of the version the staging file started from; ``None`` with ``new`` set: the
    #: file did not exist (created here).  ``None`` without ``new``: unknown version.
    base_etag: str | None
    new: bool
    #: Bytes of the base version that belong in the file, and how many were copied in.
    source_size: int
    filled: int
    #: Writes not yet stored in the bucket.
    dirty: bool
    metadata: dict[str, str] = field(default_factory=dict)
    #: The multipart upload of these bytes in progress, if any.
    upload: UploadRecord | None = None

    def dumps(self) -> str:
        """The record as one JSON line."""
        # A plain dict, not dataclasses.asdict: that deep-copies, and a sidecar is written
        # for every file created on the mount.
        fields = {
            "key": self.key,
            "base_etag": self.base_etag,
            "new": self.new,
            "source_size": self.source_size,
            "filled": self.filled,
            "dirty": self.dirty,
            "metadata": self.metadata,
            "upload": None if self.upload is None else self.upload.dumps(),
        }
        return json.dumps(fields) + "\n"

    @classmethod
    def load(cls, path: Path) -> Sidecar | None:
        """The sidecar at ``path``; ``None`` if it is missing or unreadable."""
        try:
            raw: Any = json.loads(path.read_text())
            return cls(
                key=str(raw["key"]),
                base_etag=None if raw["base_etag"] is None else str(raw["base_etag"]),
                new=bool(raw["new"]),
                source_size=int(raw["source_size"]),
                filled=int(raw["filled"]),
                dirty=bool(raw["dirty"]),
                metadata={str(k): str(v) for k, v in dict(raw.get("metadata") or {}).items()},
                upload=UploadRecord.loads(raw.get("upload")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


__all__ = ["Sidecar", "UploadRecord"]
