"""What ``blobfs status`` prints: a running mount's status document
(:func:`blobfs.mount.observe.status`) as rich tables, and the one-line-per-mount list.

Only rendering lives here; the command (:mod:`blobfs.cli.commands.control`) fetches the
documents.  Empty sections are left out, so a healthy idle mount fits a screen.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from blobfs.cli.formatting import human_bytes, human_size


def duration(seconds: float) -> str:
    """``45s``, ``12m03s``, ``3h07m``, ``2d04h``."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _ms(seconds: float | None, *, over: bool = False) -> str:
    if seconds is None:
        return "> 10 s" if over else "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def _table(*columns: str) -> Table:
    table = Table(*columns, box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    return table


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))


def detail(s: dict[str, Any]) -> RenderableType:
    """The whole status of one mount."""
    now = time.time()
    m = s["mount"]
    mem = s["memory"]
    parts: list[RenderableType] = []
    head = Text()
    head.append(m["mountpoint"], style="bold")
    head.append(f"  {m['source']}")
    head.append(
        f"  (pid {m['pid']}, up {duration(m['uptime'])}, "
        f"{human_bytes(mem['rss'])} resident of {human_bytes(mem['budget'])})"
    )
    parts.append(head)
    parts.append(Text(f"options: {','.join(m['options']) or '(defaults)'}", style="dim"))

    unsaved = s["unsaved"]
    if unsaved["count"]:
        parts.append(
            Text(
                f"\nUnsaved: {unsaved['count']} file(s), {human_bytes(unsaved['bytes'])} "
                "not in the bucket yet",
                style="bold yellow",
            )
        )
        t = _table("PATH", "SIZE", "PENDING", "DIRTY FOR", "OPEN")
        for f in unsaved["files"]:
            t.add_row(
                f["path"],
                human_size(f["size"]),
                human_size(f["pending"]),
                duration(now - f["since"]),
                str(f["open"]),
            )
        parts.append(t)
    else:
        parts.append(Text("\nUnsaved: none (everything written is in the bucket)"))

    if s["uploads"]:
        parts.append(Text("\nUploads in flight:", style="bold"))
        t = _table("PATH", "KIND", "SENT", "OF", "PARTS", "FOR")
        for u in s["uploads"]:
            share = f" ({u['sent'] * 100 // u['total']}%)" if u["total"] else ""
            t.add_row(
                u["path"],
                u["kind"],
                human_size(u["sent"]) + share,
                human_size(u["total"]) + ("+" if u["kind"] == "stream" else ""),
                str(u["parts"]),
                duration(now - u["started"]),
            )
        parts.append(t)

    if s["kept"]:
        parts.append(
            Text("\nNot stored (upload failed after close; stored at next mount):", style="red")
        )
        t = _table("PATH", "STAGING FILE", "REASON")
        for k in s["kept"]:
            t.add_row(k["path"], k["staging"], k["reason"])
        parts.append(t)

    errors = s["errors"]
    if errors["recent"]:
        parts.append(
            Text(
                f"\nErrors: {errors['requests']} request(s), {errors['uploads']} upload(s); "
                "the last:",
                style="bold red",
            )
        )
        t = _table("TIME", "PATH", "WHAT", "TRIED AGAIN")
        for e in errors["recent"]:
            t.add_row(_clock(e["time"]), e["path"], e["what"], e["retry"] or "no")
        parts.append(t)

    parts.append(Text("\nCaches:", style="bold"))
    t = _table("LAYER", "USED", "CAPACITY", "HITS", "MISSES", "HIT RATE", "EVICTIONS")
    c = s["cache"]
    for layer in ("memory", "disk"):
        d = c[layer]
        if d is None:
            continue
        t.add_row(
            layer,
            human_size(d["used"]),
            human_size(d["capacity"]),
            str(d["hits"]),
            str(d["misses"]),
            _pct(d["hit_rate"]),
            str(d["evictions"]),
        )
    k = c["kernel"]
    t.add_row(
        "kernel",
        "-",
        "-",
        str(k["reused"]),
        str(k["opens"] - k["reused"]),
        _pct(k["hit_rate"]),
        "-",
    )
    parts.append(t)
    fills = c.get("fills")  # absent from the reports of older daemons
    if fills and fills["started"]:
        parts.append(
            Text(
                f"Whole objects fetched in the background (slow store): {fills['started']} "
                f"started, {fills['finished']} finished, "
                f"{human_bytes(fills['fetched_bytes'])} fetched"
            )
        )

    r = s["requests"]
    parts.append(
        Text(
            f"\nRequests: {human_bytes(r['bytes_in'])} received, "
            f"{human_bytes(r['bytes_out'])} sent",
            style="bold",
        )
    )
    t = _table("KIND", "COUNT", "FAILED", "MEAN", "P50", "P99", "RECEIVED", "SENT")
    for kind, q in r["kinds"].items():
        if not q["count"]:
            continue
        # Missing objects and changed versions are answers, not failures.
        outcomes = q["outcomes"]
        failed = outcomes["error"] + outcomes["denied"]
        t.add_row(
            kind,
            str(q["count"]),
            str(failed) if failed else "-",
            _ms(q["mean"]),
            _ms(q["p50"], over=True),
            _ms(q["p99"], over=True),
            human_size(q["bytes_in"]),
            human_size(q["bytes_out"]),
        )
    parts.append(t)
    parts.append(
        Text(
            f"\nMemory: {human_bytes(mem['rss'])} resident, budget {human_bytes(mem['budget'])} "
            f"(block cache {human_bytes(mem['cache'])}); upload data "
            f"{human_bytes(mem['uploads_in_use'])} of {human_bytes(mem['uploads_capacity'])}, "
            f"peak {human_bytes(mem['uploads_peak'])}; {s['inodes']} inodes, "
            f"{s['handles']} open handles"
        )
    )
    return Group(*parts)


def listing(rows: list[dict[str, Any]]) -> RenderableType:
    """One line per mount: ``rows`` of ``{"mountpoint", "source", "status", "error"}``."""
    t = _table("MOUNT POINT", "SOURCE", "UP", "UNSAVED", "UPLOADS", "ERRORS", "RSS", "STATE")
    for row in rows:
        s = row["status"]
        if s is None:
            t.add_row(row["mountpoint"], row["source"], "-", "-", "-", "-", "-", row["error"])
            continue
        unsaved = s["unsaved"]
        errors = s["errors"]
        t.add_row(
            row["mountpoint"],
            row["source"],
            duration(s["mount"]["uptime"]),
            f"{unsaved['count']} ({human_size(unsaved['bytes'])})" if unsaved["count"] else "0",
            str(len(s["uploads"])),
            str(errors["requests"] + errors["uploads"]),
            human_size(s["memory"]["rss"]),
            "not stored: see status" if s["kept"] else "ok",
        )
    return t


__all__ = ["detail", "duration", "listing"]
