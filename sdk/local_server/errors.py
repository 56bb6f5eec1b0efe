"""Why a SeaweedFS server could not be found, started or stopped."""

from __future__ import annotations


class SeaweedError(RuntimeError):
    """SeaweedFS could not be found, started or stopped; the message has its log tail."""


class PortTaken(SeaweedError):
    """Another process took a chosen port before ``weed`` bound it (worth trying again)."""
