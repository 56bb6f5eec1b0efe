"""The multipart uploads a mount has given up and not yet seen aborted, kept on disk.

An upload is given up when its file is no longer written front to back, when a part fails,
or when the file is deleted; its abort waits for the parts in flight and may fail while the
server is unreachable (then it is tried again later).  A daemon killed meanwhile would leave
the upload's parts on the server for good (S3 keeps them until a lifecycle rule or an
abort), so each such upload is listed in ``aborts.json`` in the staging directory from the
moment it is given up until its abort succeeds, and the next mount's recovery aborts what
is listed (:mod:`blobfs.write.recovery`).

The file is rewritten whole (a temporary file renamed over it) at each change: given-up
uploads are rare, a few per mount at most.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: The journal's name in the staging directory.
NAME = "aborts.json"


class PendingAborts:
    """Uploads of ``directory``'s mount to abort, by upload id (the key they were of)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / NAME
        self._pending: dict[str, str] = {}

    def add(self, key: str, upload_id: str) -> None:
        """``upload_id`` (of ``key``) is given up: abort it even if this daemon dies."""
        if self._pending.get(upload_id) != key:
            self._pending[upload_id] = key
            self._save()

    def done(self, upload_id: str) -> None:
        """``upload_id`` is aborted."""
        if self._pending.pop(upload_id, None) is not None:
            self._save()

    def ids(self) -> set[str]:
        """The upload ids still to abort."""
        return set(self._pending)

    def _save(self) -> None:
        try:
            if not self._pending:
                self.path.unlink(missing_ok=True)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self._pending))
            os.replace(temporary, self.path)
        except OSError as e:
            log.warning("cannot record uploads to abort in %s: %s", self.path, e)

    @staticmethod
    def load(directory: Path) -> dict[str, str]:
        """What an earlier daemon listed in ``directory``: upload id -> key."""
        try:
            raw = json.loads((directory / NAME).read_text())
            return {str(upload_id): str(key) for upload_id, key in dict(raw).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as e:
            log.warning("cannot read %s: %s", directory / NAME, e)
            return {}


__all__ = ["NAME", "PendingAborts"]
