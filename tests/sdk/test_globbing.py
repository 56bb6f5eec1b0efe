"""Glob pattern translation (no servers)."""

from __future__ import annotations

import pytest

from sdk.globbing import has_magic, literal_prefix, translate


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", "d/a.txt", False),
        ("?.txt", "a.txt", True),
        ("?.txt", "ab.txt", False),
        ("[ab].txt", "b.txt", True),
        ("[!ab].txt", "c.txt", True),
        ("[!ab].txt", "a.txt", False),
        ("**/*.txt", "a.txt", True),
        ("**/*.txt", "x/y/a.txt", True),
        ("**/*.txt", "x/y/a.bin", False),
        ("d/**", "d/x/y", True),
        ("d/*", "d/sub/", True),
        ("a[", "a[", True),
        # inside [...] every character is literal but ranges: no regex set operations
        ("[a&&b]", "&", True),
        ("[a&&b]", "c", False),
        ("[~|]x", "|x", True),
        ("[[]", "[", True),
        ("[!a-c]", "d", True),
        ("[!a-c]", "b", False),
        ("[a-]", "-", True),
        ("[\\]", "\\", True),
    ],
)
def test_translate(pattern: str, key: str, matches: bool) -> None:
    assert bool(translate(pattern).fullmatch(key)) is matches


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("pattern", ["[z-a]", "x/[b-a]*", "[!9-0]"])
def test_backwards_ranges_are_clear_errors(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"invalid glob pattern .*: the range .* is empty"):
        translate(pattern)


def test_magic_and_prefix() -> None:
    assert has_magic("a*") and has_magic("a?") and has_magic("a[b]")
    assert not has_magic("plain/key")
    assert literal_prefix("dir/ab*c") == "dir/ab"
    assert literal_prefix("nomagic") == "nomagic"
