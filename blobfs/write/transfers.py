"""Uploads in flight and files left unstored, as ``blobfs status`` and the metrics show them.

A :class:`Transfer` is one upload while it runs: a single PUT, a multipart upload of a whole
file, or a stream (parts sent while the file is written, whose total grows as parts are
handed to it).  The code that uploads registers it in :class:`Transfers` and adds to
``sent`` as parts are stored: plain attribute updates on the trio thread, once per part.

A :class:`KeptFile` is a file whose upload failed after its last close: its data stays in
the staging directory, and the next mount of the source stores it
(:mod:`blobfs.write.recovery`).  ``blobfs flush`` reports these as not stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(eq=False, slots=True)
class Transfer:
    """One upload in flight."""

    key: str
    #: ``put`` (one request), ``multipart`` (a whole file in parts) or ``stream``.
    kind: str
    #: Bytes to send: the file's size; for a stream, the bytes handed to it so far.
    total: int
    #: Bytes stored so far (whole parts; a PUT's at its end).
    sent: int = 0
    parts: int = 0
    started: float = field(default_factory=time.time)


class Transfers:
    """The uploads of one mount in flight."""

    def __init__(self) -> None:
        self.active: list[Transfer] = []

    def start(self, key: str, kind: str, total: int) -> Transfer:
        """Register a new upload of ``total`` bytes of ``key``."""
        return self.add(Transfer(key, kind, total))

    def add(self, transfer: Transfer) -> Transfer:
        """Register ``transfer`` (until :meth:`end`)."""
        self.active.append(transfer)
        return transfer

    def end(self, transfer: Transfer) -> None:
        try:
            self.active.remove(transfer)
        except ValueError:
            pass


@dataclass(frozen=True)
class KeptFile:
    """Data whose upload failed after the file's last close, kept on the staging disk."""

    key: str
    path: Path
    reason: str
    when: float = field(default_factory=time.time)


__all__ = ["KeptFile", "Transfer", "Transfers"]
