"""Which files a recursive transfer takes: ``.gitignore``-style patterns, chained per directory.

A :class:`FileFilter` holds an ordered list of patterns; the *last* one that matches a path
decides (an exclude pattern drops it, an include pattern -- ``!pat`` in ignore files, or
:meth:`FileFilter.include` -- keeps it).  When none matches, the filter defers to its
``default``, which is how ignore files chain: the filter of ``sub/.gitignore`` defers to the one
of ``.gitignore``, which defers to the caller's filter, exactly as git lets a deeper ignore file
override a shallower one.

Paths are relative to the root of the transfer, with ``/`` separators; directories end with
``/`` so that ``build/`` matches only a directory.  The pattern syntax is git's, matched by
:mod:`pathspec` (``*``, ``?``, ``[...]``, ``**``, a leading ``/`` anchors to the ignore file's
directory, a pattern without a ``/`` matches at any depth, ``\\`` escapes, trailing spaces are
dropped unless escaped).  Ignore files may start with a BOM and use CRLF line ends.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

# pathspec is imported when a filter is first used: it is 31 modules, and processes that
# never filter (a mount daemon) should not hold them.

log = logging.getLogger(__name__)

#: An async predicate on a relative path: ``True`` keeps the file or directory.
AsyncFilterFunc = Callable[[str], Awaitable[bool]]


async def always(path: str) -> bool:
    """The filter that keeps everything."""
    return True


@dataclass
class _Group:
    """Consecutive patterns that apply below the same directory.

    ``prefix`` is the directory of the ignore file relative to the transfer root (``""`` or
    ending with ``/``); ``inner`` is prepended to the rest of the path, for ignore files found
    *above* the transfer root, whose patterns are relative to their own directory.
    """

    prefix: str
    inner: str
    lines: list[str]
    spec: GitIgnoreSpec | None = None

    def check(self, path: str) -> bool | None:
        """``True`` excluded, ``False`` re-included, ``None`` no pattern matched."""
        if not path.startswith(self.prefix):
            return None
        if self.spec is None:
            from pathspec import GitIgnoreSpec

            self.spec = GitIgnoreSpec.from_lines(self.lines)
        # pathspec's ``include`` is "the pattern selects the path", i.e. "ignore it".
        return self.spec.check_file(self.inner + path[len(self.prefix) :]).include


class FileFilter:
    """Ordered include/exclude patterns with gitignore semantics; last match wins.

    ``default`` decides paths no pattern matches (keep everything unless given).
    """

    def __init__(self, default: AsyncFilterFunc = always) -> None:
        self.default = default
        self._groups: list[_Group] = []

    def append(self, exclude: bool, pattern: str, prefix: str = "", inner: str = "") -> None:
        """Add one pattern; ``exclude=False`` keeps what it matches.

        ``prefix`` restricts the pattern to paths below that directory (ignore files in
        subdirectories); ``inner`` is the transfer root's path relative to the ignore file's
        directory when the file lies above the root.
        """
        for name, value in (("prefix", prefix), ("inner", inner)):
            if value and not value.endswith("/"):
                raise ValueError(f"{name} must be empty or end with '/': {value!r}")
        if not pattern.strip():
            return
        if exclude:
            # A leading "#" or "!" is literal in a pattern given on its own.
            line = "\\" + pattern if pattern[0] in "#!" else pattern
        else:
            line = "!" + pattern
        _check_pattern(line)  # raises ValueError for a malformed pattern
        last = self._groups[-1] if self._groups else None
        if last is None or (last.prefix, last.inner) != (prefix, inner):
            last = _Group(prefix=prefix, inner=inner, lines=[])
            self._groups.append(last)
        last.lines.append(line)
        last.spec = None

    def exclude(self, pattern: str, prefix: str = "", inner: str = "") -> None:
        """Drop paths matching ``pattern`` (unless a later pattern keeps them)."""
        self.append(True, pattern, prefix, inner)

    def include(self, pattern: str, prefix: str = "", inner: str = "") -> None:
        """Keep paths matching ``pattern`` (unless a later pattern drops them)."""
        self.append(False, pattern, prefix, inner)

    def read_from_buffer(self, data: bytes, prefix: str = "", inner: str = "") -> None:
        """Add the patterns of an ignore file's content, in order."""
        text = data.decode("utf-8-sig", errors="replace")
        lines = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            try:
                _check_pattern(line)
            except ValueError as e:
                # As git does, one bad line does not spoil the rest of the file.
                log.warning("ignoring pattern on line %d (%r): %s", number, line, e)
                continue
            lines.append(line)
        if lines:
            # Lines go to pathspec as they are: it implements "!" negation, escapes and the
            # trailing-space rule itself.
            self._groups.append(_Group(prefix=prefix, inner=inner, lines=lines))

    def read_from_file(self, path: Path, prefix: str = "", inner: str = "") -> None:
        """Add the patterns of ignore file ``path``."""
        self.read_from_buffer(path.read_bytes(), prefix, inner)

    async def match(self, path: str) -> bool:
        """Whether ``path`` is kept: the last matching pattern decides, else ``default``."""
        for group in reversed(self._groups):
            verdict = group.check(path)
            if verdict is not None:
                return not verdict
        return await self.default(path)

    @property
    def has_patterns(self) -> bool:
        return bool(self._groups)


def _check_pattern(line: str) -> None:
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

    try:
        GitIgnoreSpecPattern(line)
    except re.error as e:  # pathspec passes bad character ranges through to re
        raise ValueError(f"invalid pattern {line!r}: {e}") from None


def read_ignore_files(
    directory: Path,
    names: Iterable[str],
    base: AsyncFilterFunc,
    prefix: str = "",
    inner: str = "",
) -> AsyncFilterFunc:
    """Chain the ignore files called ``names`` found in ``directory`` onto ``base``.

    Blocking (reads files); call it from a worker thread in async code.  Returns ``base``
    itself when there are none.
    """
    result = base
    for name in sorted(names):
        candidate = directory / name
        try:
            data = candidate.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        log.debug("using ignore file %s", candidate)
        chained = FileFilter(result)
        chained.read_from_buffer(data, prefix=prefix, inner=inner)
        if chained.has_patterns:
            result = chained.match
    return result


def read_parent_ignore_files(
    root: Path, names: AbstractSet[str], base: AsyncFilterFunc
) -> AsyncFilterFunc:
    """Chain the ignore files of every directory above ``root``, outermost first.

    As in git, patterns in ``/a/.gitignore`` apply to ``/a/b/root/...`` relative to ``/a``,
    so an upload of ``root`` honours them.  Blocking.
    """
    if not names:
        return base
    root = Path(os.path.abspath(root))
    result = base
    ancestors = list(root.parents)[::-1]  # "/" first
    for ancestor in ancestors:
        inner = root.relative_to(ancestor).as_posix() + "/"
        result = read_ignore_files(ancestor, names, result, inner=inner)
    return result
