"""The sidecar: the on-disk record next to a staging file that crash recovery reads.

A staging file ``NAME.data`` has a sidecar ``NAME.key`` holding one JSON object
(:class:`Sidecar`): the key the data belongs to, the version it was based on (or that the
file is new), how much of that version was copied in, whether there are writes not yet
stored, and the metadata a new upload carries.  :mod:`blobfs.write.recovery` reads it at
the next mount; blanks after the object (the padding of an in-place rewrite, see
:class:`~blobfs.write.files.StagingFiles`) are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


__all__ = ["Sidecar"]
