"""What a running mount shows of itself: :func:`status`, the one picture ``blobfs status``
(through the control socket, :mod:`blobfs.mount.control`) and the metrics endpoint
(:mod:`blobfs.mount.metrics`) both read.

It is built on the trio thread from the counters the layers keep (requests in
:mod:`blobfs.bridge.requests`, uploads in :mod:`blobfs.write.transfers`, caches, the file
system's staging files): taking it costs a copy of a few hundred numbers and one line per
file with unsaved data, and nothing at all while no one asks.

The result is plain JSON data (:data:`SCHEMA` names its version), documented in
``docs/MOUNT.md``; keys are only ever added to it.  Times are Unix times in seconds, sizes
bytes, paths relative to the mount's root.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blobfs.bridge.requests import LATENCY_BOUNDS, Failure
from blobfs.cache.disk import DiskCache
from blobfs.fs.filesystem import Filesystem
from blobfs.mount import memory
from blobfs.options import MountOptions

#: Version of the status document; raised only if a key changes meaning or goes away.
SCHEMA = 1
#: Errors shown (the newest).
SHOWN_ERRORS = 20


@dataclass
class Observed:
    """A running mount as it shows itself: what was mounted where, and its parts."""

    source: str
    where: Path
    options: MountOptions
    fs: Filesystem
    disk: DiskCache | None = None
    started: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)


def _rate(hits: int, misses: int) -> float | None:
    total = hits + misses
    return hits / total if total else None


def _quantile(buckets: list[int], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (``None``: no requests, or
    beyond the last bound)."""
    total = sum(buckets)
    if not total:
        return None
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= q * total:
            return LATENCY_BOUNDS[index] if index < len(LATENCY_BOUNDS) else None
    return None


def _requests(o: Observed) -> dict[str, Any]:
    kinds: dict[str, Any] = {}
    received = sent = 0
    for kind, stats in o.fs.store.requests.snapshot().items():
        count = stats.count
        kinds[kind] = {
            "count": count,
            "outcomes": stats.outcomes,
            "seconds": stats.seconds,
            "mean": stats.seconds / count if count else None,
            "p50": _quantile(stats.buckets, 0.5),
            "p99": _quantile(stats.buckets, 0.99),
            "buckets": stats.buckets,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
        }
        received += stats.bytes_in
        sent += stats.bytes_out
    return {"kinds": kinds, "bounds": list(LATENCY_BOUNDS), "bytes_in": received, "bytes_out": sent}


def _cache(o: Observed) -> dict[str, Any]:
    cache = o.fs.cache
    cs = cache.stats
    fstats = o.fs.stats
    disk = None
    if o.disk is not None:
        d = o.disk
        disk = {
            "path": str(d.root),
            "used": d.total_bytes,
            "capacity": d.max_bytes,
            "hits": d.hits,
            "misses": d.misses,
            "evictions": d.evictions,
            "hit_rate": _rate(d.hits, d.misses),
        }
    return {
        "memory": {
            "used": cache.memory_used,
            "capacity": cache.memory_budget,
            "hits": cs.memory_hits,
            "misses": cs.memory_misses,
            "evictions": cs.evictions,
            "hit_rate": _rate(cs.memory_hits, cs.memory_misses),
            "fetches": cs.fetches,
            "fetched_bytes": cs.fetched_bytes,
            "refetched_bytes": cs.refetched_bytes,
            "shared_fetches": cs.shared_waits,
        },
        "disk": disk,
        "kernel": {
            "opens": fstats.read_opens,
            "reused": fstats.kernel_reuses,
            "hit_rate": _rate(fstats.kernel_reuses, fstats.read_opens - fstats.kernel_reuses),
            "pushed": o.fs.pages.stats.pushes,
            "pushed_bytes": o.fs.pages.stats.pushed_bytes,
        },
        "fills": {
            "started": o.fs.fills.stats.started,
            "finished": o.fs.fills.stats.finished,
            "fetched_bytes": o.fs.fills.stats.filled_bytes,
        },
    }


def _failure(o: Observed, f: Failure) -> dict[str, Any]:
    return {"time": f.when, "path": _path(o, f.key), "what": f.what, "retry": f.retry}


def _path(o: Observed, key: str) -> str:
    root = o.fs.inodes.root.key
    return key[len(root) :] if key.startswith(root) else key


def status(o: Observed) -> dict[str, Any]:
    """The status document of the mount (see the module docstring)."""
    fs = o.fs
    wb = fs.writeback
    now = time.time()
    uploads = list(wb.transfers.active)
    stream_sent: dict[str, int] = {}
    for t in uploads:
        if t.kind == "stream":
            stream_sent[t.key] = stream_sent.get(t.key, 0) + t.sent
    files = []
    for node, staged in fs.unsaved():
        stored = min(stream_sent.get(staged.key, 0), staged.size)
        files.append(
            {
                "path": _path(o, node.key),
                "size": staged.size,
                "pending": staged.size - stored,
                "since": staged.dirty_since,
                "open": staged.handles,
                "streaming": staged.streaming,
            }
        )
    failures = sorted(
        [*fs.store.requests.failures.recent, *wb.failures.recent], key=lambda f: f.when
    )
    budget = wb.budget
    return {
        "schema": SCHEMA,
        "mount": {
            "mountpoint": str(o.where),
            "source": o.source,
            "bucket": fs.store.bucket_name,
            "prefix": fs.inodes.root.key,
            "pid": o.pid,
            "started": o.started,
            "uptime": now - o.started,
            "options": o.options.to_list(),
            "read_only": o.options.read_only,
        },
        "unsaved": {
            "count": len(files),
            "bytes": sum(f["pending"] for f in files),
            "files": files,
        },
        "uploads": [
            {
                "path": _path(o, t.key),
                "kind": t.kind,
                "total": t.total,
                "sent": t.sent,
                "parts": t.parts,
                "started": t.started,
            }
            for t in uploads
        ],
        "kept": [
            {"path": _path(o, k.key), "staging": str(k.path), "reason": k.reason, "time": k.when}
            for k in wb.kept
        ],
        "errors": {
            "requests": fs.store.requests.failures.total,
            "uploads": wb.failures.total,
            "recent": [_failure(o, f) for f in failures[-SHOWN_ERRORS:]],
        },
        "cache": _cache(o),
        "requests": _requests(o),
        "memory": {
            "rss": memory.resident_bytes(),
            "budget": o.options.memory,
            "cache": fs.cache.memory_budget,
            "uploads_in_use": budget.in_use,
            "uploads_capacity": budget.capacity,
            "uploads_peak": budget.peak,
        },
        "inodes": len(fs.inodes),
        "handles": fs.open_handles(),
    }


__all__ = ["SCHEMA", "Observed", "status"]
