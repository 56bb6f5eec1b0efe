"""Glob patterns over blob keys: their translation to regexes, and the walk of a store.

``*`` matches within one path component, ``?`` one character other than ``/``, ``[...]`` a
character class, and a whole ``**`` component any number of components (including none), as
in the reference's ``Storage.glob``.  :func:`glob` lists only where a wildcard needs it: the
literal components before the first wildcard become the listing prefix.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from functools import lru_cache

from sdk.errors import ResourceNotFound
from sdk.providers.base import BlobStore, ObjectInfo, PrefixInfo

_MAGIC = re.compile(r"[*?\[]")


def has_magic(pattern: str) -> bool:
    return _MAGIC.search(pattern) is not None


def literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard (used as a listing prefix)."""
    m = _MAGIC.search(pattern)
    return pattern if m is None else pattern[: m.start()]


@lru_cache(maxsize=256)
def translate(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` to a regex that must match a whole key (or key suffix).

    A trailing ``/`` is optional in what matches, so ``a/*`` matches the prefix ``a/b/``.
    Inside ``[...]`` every character stands for itself but ``a-z`` ranges (and a leading
    ``!``/``^``); a backwards range such as ``[z-a]`` raises :class:`ValueError`.
    """
    out: list[str] = []
    parts = pattern.split("/")
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        if part == "**":
            # "this directory and every directory below it"
            out.append(".*" if last else "(?:.+/)?")
            continue
        out.append(_translate_part(part))
        if not last:
            out.append("/")
    return re.compile("".join(out) + "/?", re.DOTALL)


def _translate_part(part: str) -> str:
    i, n = 0, len(part)
    res: list[str] = []
    while i < n:
        c = part[i]
        i += 1
        if c == "*":
            res.append("[^/]*")
        elif c == "?":
            res.append("[^/]")
        elif c == "[":
            j = i
            if j < n and part[j] in "!^":
                j += 1
            if j < n and part[j] == "]":
                j += 1
            while j < n and part[j] != "]":
                j += 1
            if j >= n:
                res.append(re.escape(c))
                continue
            body = part[i:j]
            i = j + 1
            negate = body[:1] in ("!", "^")
            body = _class(body[1:] if negate else body, part)
            res.append(f"(?![/])[{'^' if negate else ''}{body}]")
        else:
            res.append(re.escape(c))
    return "".join(res)


def _class(body: str, part: str) -> str:
    """The inside of a ``[...]`` class as a regex: every character literal (so ``&&``,
    ``~~``, ``||`` and ``[`` are characters, never regex set operations), ``a-z`` ranges
    kept; :class:`ValueError` for a range that runs backwards."""
    out: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            if low > high:
                raise ValueError(
                    f"invalid glob pattern {part!r}: the range {low}-{high} is empty "
                    f"(write {high}-{low})"
                )
            out.append(f"{re.escape(low)}-{re.escape(high)}")
            i += 3
        else:
            out.append(re.escape(body[i]))
            i += 1
    return "".join(out)


async def glob(
    store: BlobStore, pattern: str, base: str = ""
) -> AsyncIterator[ObjectInfo | PrefixInfo]:
    """The objects and prefixes of ``store`` under ``base`` whose key matches ``pattern``."""
    # Walk literal components into the prefix; list only where a wildcard needs it.
    parts = pattern.split("/")
    while parts and not has_magic(parts[0]) and len(parts) > 1:
        base += parts.pop(0) + "/"
    if not parts:
        return
    part, rest = parts[0], parts[1:]
    if not has_magic(part):  # last component, literal: the key itself
        try:
            yield await store.head(base + part)
        except ResourceNotFound:
            pass
        return
    if part == "**":
        regex = translate("/".join(parts))
        async for item in store.list(base):
            if regex.fullmatch(item.key[len(base) :]):
                yield item
        return
    regex = translate(part)
    async for item in store.list(base + literal_prefix(part), delimiter="/"):
        if not regex.fullmatch(item.key[len(base) :]):
            continue
        if not rest:
            yield item
        elif isinstance(item, PrefixInfo):  # middle wildcard: directories only
            async for found in glob(store, "/".join(rest), item.key):
                yield found
