"""Text for humans and scripts: sizes, times, durations, bucket and blob lines."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from yarl import URL

from sdk.types import Bucket, BucketEntry

_UNITS = ("B", "K", "M", "G", "T", "P", "E")


def human_size(size: int) -> str:
    """Binary units the way ``ls -h`` prints them: ``0``, ``999``, ``1.0K``, ``12M``."""
    if size < 1024:
        return str(size)
    value = float(size)
    for unit in _UNITS[1:]:
        value /= 1024
        if value < 9.95:
            return f"{value:.1f}{unit}"
        if value < 1023.5 or unit == _UNITS[-1]:
            return f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


def format_size(size: int, human: bool) -> str:
    return human_size(size) if human else str(size)


def format_time(when: datetime | None) -> str:
    """Local time to the second, or ``-`` when the store does not say."""
    if when is None:
        return "-"
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str) -> timedelta:
    """``1d2h3m4s`` (any part optional, in that order) as a :class:`timedelta`.

    A plain number is seconds.  Raises :class:`ValueError` for anything else or zero.
    """
    text = text.strip()
    if text.isdigit():
        value = timedelta(seconds=int(text))
    else:
        match = _DURATION_RE.fullmatch(text)
        if not text or match is None:
            raise ValueError(f"{text!r} is not a duration like 1d2h3m4s")
        d, h, m, s = (int(g) if g else 0 for g in match.groups())
        value = timedelta(days=d, hours=h, minutes=m, seconds=s)
    if value.total_seconds() <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return value


def bucket_short_uri(bucket: Bucket) -> str:
    """The shortest URI naming the bucket for its owner: ``blob:NAME`` (or its id)."""
    return f"blob:{bucket.name or bucket.id}"


def bucket_fields(bucket: Bucket) -> list[tuple[str, str]]:
    """Label/value pairs describing a bucket, for ``statbucket`` and ``lsbucket -l``."""
    return [
        ("Id", bucket.id),
        ("Name", bucket.name or "-"),
        ("Owner", bucket.owner),
        ("Cluster", bucket.cluster_name),
        ("Org", bucket.org_name or "-"),
        ("Provider", bucket.provider.value),
        ("Created", format_time(bucket.created_at)),
        ("Imported", "yes" if bucket.imported else "no"),
        ("Public", "yes" if bucket.public else "no"),
        ("URI", str(bucket.uri)),
    ]


def entry_line(entry: BucketEntry, name: str, *, long: bool, human: bool) -> str:
    """One line of ``ls``: the name, or ``type size modified name`` with ``-l``."""
    if not long:
        return name
    kind = "d" if entry.is_dir() else "-"
    size = "-" if entry.is_dir() and entry.size == 0 else format_size(entry.size, human)
    return f"{kind} {size:>12} {format_time(entry.modified_at):>19} {name}"


def display_uri(uri: URL) -> str:
    """A URI as a person would type it: decoded, and a local file as its path."""
    if uri.scheme == "file":
        return uri.path
    return uri.human_repr()


def human_bytes(size: float) -> str:
    """A size with binary units spelled out, for summaries: ``12.3 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
