"""What every sub-command shares: the global options and the exit codes."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Exit(enum.IntEnum):
    """Exit codes scripts can rely on (also listed in ``blobfs --help``)."""

    OK = 0
    FAILURE = 1
    USAGE = 2  # click's own code for usage errors
    NOT_FOUND = 66  # EX_NOINPUT (sysexits.h)
    CONFIG = 78  # EX_CONFIG
    INTERRUPTED = 130  # 128 + SIGINT

    def __str__(self) -> str:
        return str(self.value)


@dataclass
class CliState:
    """Global options, stored as the click context object."""

    cluster: str | None = None
    verbosity: int = 0
