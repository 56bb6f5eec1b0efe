"""Which blob names become local names, and the rule that a download never writes outside
its destination.

A download names each local file and directory after one component of a key (the part
after its folder's prefix, up to the next ``/``).  Keys are arbitrary strings, so some
components cannot be a local name without harm; such an entry is **refused**: it is not
written, the transfer reports it as a failure naming the key and the reason (and logs a
warning), and the rest of the tree is copied.  Refused (:func:`unsafe_name`):

* an empty component (``a//b``, a leading ``/``), ``.`` or ``..`` -- they would name
  the directory itself or its parent;
* a component with NUL or ``/`` (no local name can hold them);
* a component over 255 bytes (``NAME_MAX``), which no common local file system accepts.

A backslash is an ordinary character of a POSIX file name: key ``a\\b`` becomes a file named
``a\\b``, as the mount shows it.  Beyond the names, a target that resolves outside the
destination -- through a symbolic link already in the destination -- is refused too
(:func:`escapes`): a download only ever creates plain directories and files under it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Longest local file name, in bytes.
NAME_MAX = 255


def unsafe_name(name: str) -> str | None:
    """Why blob name ``name`` (one component) cannot become a local name, or ``None``."""
    if name == "":
        return "an empty name (a key with '//' or a leading '/') cannot be a local file name"
    if name in (".", ".."):
        return f"{name!r} cannot be a local file name"
    if "\0" in name or "/" in name:
        return f"{name!r} holds a character no local file name can ('\\0' or '/')"
    if len(os.fsencode(name)) > NAME_MAX:
        return f"{name[:40]!r}... is over {NAME_MAX} bytes, too long for a local file name"
    return None


def escapes(root: Path, target: Path) -> bool:
    """Whether ``target`` resolves (symbolic links followed) outside ``root``, which is
    resolved already (blocking)."""
    return os.path.commonpath([root, os.path.realpath(target)]) != str(root)


__all__ = ["NAME_MAX", "escapes", "unsafe_name"]
