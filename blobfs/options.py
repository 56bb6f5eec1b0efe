"""Mount options: parsing ``-o a,b=c`` into a typed, validated :class:`MountOptions`.

Every option, its default and its meaning is listed in ``docs/MOUNT.md``; keep both in step.
Options that only matter to mount(8) or systemd (``_netdev``, ``nofail``, ``x-systemd.*``,
``defaults``, ``auto``, ``user`` …) are dropped by :mod:`blobfs.mount.helper` before they
get here, so an unknown option here is an error rather than something silently ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from sdk.providers.base import CopySettings
from sdk.retry import ATTEMPTS, RetryPolicy

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1024 * GiB}


class OptionError(ValueError):
    """An option that is unknown or has a malformed value."""


def parse_size(text: str) -> int:
    """``"512M"`` -> 536870912.  Units are binary (K=1024); a bare number is bytes."""
    m = _SIZE_RE.match(text)
    if not m:
        raise OptionError(f"not a size: {text!r} (examples: 4096, 512M, 10G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _parse_mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise OptionError(f"not an octal mode: {text!r}") from None
    if not 0 <= value <= 0o7777:
        raise OptionError(f"mode out of range: {text!r}")
    return value


def _parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise OptionError(f"negative time: {text!r}")
    return value


def _parse_listen(text: str) -> str:
    """``[HOST:]PORT`` (``PORT`` alone: loopback) or an absolute Unix socket path, normalised
    to ``HOST:PORT`` or the path."""
    text = text.strip()
    if text.startswith("/"):
        return text
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    if not port.isdigit() or not 0 < int(port) < 65536 or not host or host.startswith(":"):
        raise OptionError(
            f"metrics={text!r}: expected [HOST:]PORT (e.g. 9100, 127.0.0.1:9100, [::1]:9100) "
            "or the absolute path of a Unix socket"
        )
    return f"{host}:{int(port)}"


def _parse_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise OptionError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise OptionError(f"negative count: {text!r}")
    return value


def _parse_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise OptionError(f"not a numeric id: {text!r}") from None
    if value < 0:
        raise OptionError(f"negative id: {text!r}")
    return value


@dataclass(frozen=True)
class MountOptions:
    """Everything that shapes one mount.  Defaults are the documented ones."""

    read_only: bool = False
    allow_other: bool = False
    #: Owner of every entry unless the object's s3fs ``uid``/``gid`` metadata says otherwise.
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    #: Set when given explicitly: then they win over object metadata.
    uid_forced: bool = False
    gid_forced: bool = False
    umask: int = 0o022
    #: Permission bits of files / directories; ``None`` means ``0666 & ~umask`` / ``0777 &
    #: ~umask``.  When given they also win over object metadata.
    file_mode: int | None = None
    dir_mode: int | None = None
    #: Where the disk cache and staging files live (``None``: ``$XDG_CACHE_HOME/blobfs``,
    #: else ``~/.cache/blobfs``).
    cache_dir: Path | None = None
    #: Bound of the disk cache of this mount's source; 0 turns the disk cache off.
    cache_size: int = 10 * GiB
    #: What the daemon's resident memory may reach: its own baseline, GETs and uploads in
    #: flight, and cached blocks in the rest.  Data at rest lives in the kernel's page
    #: cache and the disk cache, so the daemon holds little more than what is in flight.
    #: 384 MiB leaves a full ``readahead`` window room in the block cache: at 256 MiB the
    #: window was capped at 20 MiB and a 1 GiB cold read ran at 313 MiB/s against 406.
    memory: int = 384 * MiB
    #: The unit of every cache and of a random reader's fetches: on SeaweedFS a ranged GET
    #: of 256 KiB took 1.4 ms, one of 384 KiB 4.0 ms and 1 MiB 4.8 ms (docs/BENCHMARKS.md).
    block_size: int = 256 * KiB
    attr_ttl: float = 1.0
    entry_ttl: float = 1.0
    #: How long a directory listing is reused for lookups and readdir.
    dir_ttl: float = 5.0
    negative_ttl: float = 1.0
    #: Largest read-ahead window of one sequential reader.
    readahead: int = 64 * MiB
    #: The kernel's own read-ahead for the mount (its bdi ``read_ahead_kb``); 128 KiB is the
    #: kernel default, 1 MiB doubled throughput in our measurements.
    kernel_readahead: int = 1 * MiB
    #: Concurrent GETs for the whole mount.  Few and large: each request has a fixed CPU
    #: cost, and 4 x 16 MiB used a quarter less CPU per GiB than 8 x 8 MiB here.
    max_fetches: int = 4
    #: Largest GET of a sequential reader's read-ahead (several blocks at once).
    fetch_size: int = 16 * MiB
    #: Files over this size are renamed (and chmod-ed) by a server-side copy in parts of
    #: ``copy_part_size``, several at once, rather than by one copy request
    #: (:class:`sdk.providers.base.CopySettings`; S3 allows one request up to 5 GiB).
    copy_threshold: int = CopySettings.threshold
    copy_part_size: int = CopySettings.part_size
    #: How many times a store request that failed for a passing reason (no connection, a
    #: timeout, a 5xx) is tried again before the operation fails -- a close then returns
    #: EIO and the data stays staged.  Waits between tries double from 0.1 s up to 5 s
    #: (random below that bound), and no request is retried past 60 s.
    retries: int = ATTEMPTS - 1
    #: The kernel's write-back cache (FUSE ``writeback_cache``): the kernel collects writes
    #: in its page cache and sends them later (before close/fsync return).  Off: measured,
    #: writes returned faster but objects were complete later (docs/MOUNT.md).
    writeback_cache: bool = False
    #: No extended attributes: the kernel is told so once and stops asking, which saves the
    #: ``security.capability`` request it otherwise makes before every write (docs/MOUNT.md).
    no_xattr: bool = False
    log_level: str = "WARNING"
    log_file: Path | None = None
    fsname: str | None = None
    #: Where to serve Prometheus metrics: ``HOST:PORT`` or a Unix socket path; off if None.
    metrics: str | None = None

    @property
    def write_memory(self) -> int:
        """The write-back's share of ``memory``: upload data (parts, single PUTs) in flight
        across all files of the mount.  An eighth of the budget, at least one 8 MiB part
        (64 MiB = 8 parts with the default 512 MiB)."""
        return max(8 * MiB, self.memory // 8)

    @property
    def effective_file_mode(self) -> int:
        return self.file_mode if self.file_mode is not None else 0o666 & ~self.umask

    @property
    def effective_dir_mode(self) -> int:
        return self.dir_mode if self.dir_mode is not None else 0o777 & ~self.umask

    def copy_settings(self) -> CopySettings:
        """How the store copies large files (``ValueError`` if the options are out of
        range)."""
        return CopySettings(threshold=self.copy_threshold, part_size=self.copy_part_size)

    def retry_policy(self) -> RetryPolicy:
        """How persistently the daemon's store requests are retried."""
        return RetryPolicy(attempts=self.retries + 1)

    def to_list(self) -> list[str]:
        """The options as ``-o`` items, for re-running the daemon in the background."""
        out: list[str] = []
        default = MountOptions()
        for f in fields(self):
            name = f.name
            value = getattr(self, name)
            if name in ("uid_forced", "gid_forced"):
                continue
            if name in ("uid", "gid"):
                if getattr(self, f"{name}_forced"):
                    out.append(f"{name}={value}")
                continue
            if value == getattr(default, name):
                continue
            opt = _REVERSE.get(name, name)
            if isinstance(value, bool):
                if value:
                    out.append(opt)
            elif name in ("umask", "file_mode", "dir_mode"):
                out.append(f"{opt}={value:o}")
            elif value is not None:
                out.append(f"{opt}={value}")
        return out


_FLAGS = {
    "ro": "read_only",
    "allow_other": "allow_other",
    "writeback_cache": "writeback_cache",
    "noxattr": "no_xattr",
}
_REVERSE = {"read_only": "ro", "no_xattr": "noxattr"}
_VALUED: dict[str, Callable[[str], object]] = {
    "uid": _parse_id,
    "gid": _parse_id,
    "umask": _parse_mode,
    "file_mode": _parse_mode,
    "dir_mode": _parse_mode,
    "cache_dir": Path,
    "cache_size": parse_size,
    "memory": parse_size,
    "block_size": parse_size,
    "attr_ttl": _parse_seconds,
    "entry_ttl": _parse_seconds,
    "dir_ttl": _parse_seconds,
    "negative_ttl": _parse_seconds,
    "readahead": parse_size,
    "kernel_readahead": parse_size,
    "max_fetches": _parse_id,
    "fetch_size": parse_size,
    "copy_threshold": parse_size,
    "copy_part_size": parse_size,
    "retries": _parse_count,
    "log_level": str.upper,
    "log_file": Path,
    "fsname": str,
    "metrics": _parse_listen,
}
#: Accepted and meaningless for this file system (mount(8) passes them along).
_IGNORED = {"rw", "defaults", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "async"}


def split_options(items: list[str] | tuple[str, ...]) -> list[str]:
    """Flatten ``["a,b", "c=d"]`` into ``["a", "b", "c=d"]``, dropping empty items."""
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


#: Options naming a path: a relative one is taken from the directory ``blobfs mount`` runs
#: in, and handed to the daemon (which runs in ``/``) made absolute.
_PATHS = ("cache_dir", "log_file")


def absolute_paths(items: list[str]) -> list[str]:
    """``items`` (split) with the relative paths of path options made absolute."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if sep and value and name.strip().replace("-", "_") in _PATHS:
            item = f"{name}={Path(value).absolute()}"
        out.append(item)
    return out


def parse_options(items: list[str] | tuple[str, ...]) -> MountOptions:
    """Parse ``-o`` values (each may hold several comma-separated options)."""
    opts = MountOptions()
    changes: dict[str, object] = {}
    for item in split_options(items):
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if name in _IGNORED and not sep:
            continue
        if name in _FLAGS:
            if sep:
                raise OptionError(f"option {name} takes no value")
            changes[_FLAGS[name]] = True
        elif name in _VALUED:
            if not sep or not value:
                raise OptionError(f"option {name} needs a value ({name}=...)")
            changes[name] = _VALUED[name](value)
            if name in ("uid", "gid"):
                changes[f"{name}_forced"] = True
        else:
            raise OptionError(f"unknown mount option {name!r}")
    opts = replace(opts, **changes)  # type: ignore[arg-type]
    _validate(opts)
    return opts


def _validate(opts: MountOptions) -> None:
    if opts.block_size < 64 * KiB or opts.block_size & (opts.block_size - 1):
        raise OptionError("block_size must be a power of two of at least 64K")
    if opts.cache_size < 0:
        raise OptionError("cache_size must not be negative (0 turns the disk cache off)")
    if opts.memory < 4 * opts.block_size:
        raise OptionError("memory must hold at least four blocks")
    if opts.readahead < opts.block_size:
        raise OptionError("readahead must be at least one block")
    if opts.fetch_size < opts.block_size:
        raise OptionError("fetch_size must be at least one block")
    if opts.max_fetches < 1:
        raise OptionError("max_fetches must be at least 1")
    try:
        opts.copy_settings()
    except ValueError as e:
        raise OptionError(str(e)) from None
    if opts.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise OptionError(f"unknown log_level {opts.log_level!r}")
