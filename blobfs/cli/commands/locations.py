"""Command-line locations: local paths, ``file:`` URLs and ``blob:`` URIs, and their globs."""

from __future__ import annotations

import asyncio
import errno
import glob
import os
from pathlib import Path

from yarl import URL

from sdk import globbing
from sdk.client import Client
from sdk.types import BucketEntry

BLOB = "blob"
FILE = "file"


def parse_location(text: str) -> URL:
    """A location as typed: ``blob:`` URI, ``file:`` URL, or a local path.

    Blob paths are taken literally (``%``, ``?`` and ``#`` are part of the key), local
    paths are made absolute (keeping a trailing ``/``).
    """
    if text.startswith("blob:"):
        rest = text[len("blob:") :]
        if rest.startswith("//"):
            host, _, path = rest[2:].partition("/")
            return URL.build(scheme=BLOB, host=host, path="/" + path)
        return URL.build(scheme=BLOB, path=rest)
    if text.startswith("file:"):
        return URL(text)
    path = os.path.abspath(os.path.expanduser(text))
    if text.endswith("/") and path != "/":
        path += "/"  # "dir/" insists on a directory, as in cp
    return URL.build(scheme=FILE, path=path)


def is_blob(url: URL) -> bool:
    return url.scheme == BLOB


def is_local(url: URL) -> bool:
    return url.scheme == FILE


def basename(url: URL) -> str:
    """The last path component (a folder's name without its ``/``)."""
    return url.path.rstrip("/").rsplit("/", 1)[-1]


def join(url: URL, name: str) -> URL:
    return URL.build(scheme=url.scheme, host=url.host or "", path=url.path.rstrip("/") + "/" + name)


async def key_base(client: Client, uri: URL) -> tuple[URL, str]:
    """For a blob URI, the URI of its bucket *as the user wrote it* and the key.

    Results of listings and globs are shown (and used) as ``base + key``, so they keep the
    user's short form (``blob:b/k`` rather than ``blob://cluster/owner/b/k``).
    """
    _, key = await client.buckets.resolve_uri(uri)
    path = uri.path
    if key and path.endswith(key):
        base = path[: len(path) - len(key)]
    else:
        base = path.rstrip("/") + "/"
    return URL.build(scheme=uri.scheme, host=uri.host or "", path=base), key


def with_key(base: URL, key: str) -> URL:
    return URL.build(scheme=base.scheme, host=base.host or "", path=base.path + key)


def has_magic(url: URL) -> bool:
    return globbing.has_magic(url.path)


async def expand(client: Client, url: URL) -> list[URL]:
    """The locations a glob pattern matches, sorted (``FileNotFoundError`` if none)."""
    if is_local(url):
        found = await asyncio.to_thread(glob.glob, url.path, recursive=True)
        matches = [URL.build(scheme=FILE, path=p) for p in sorted(found)]
    else:
        base, _ = await key_base(client, url)
        async with client.buckets.glob_blobs(url) as it:
            matches = [with_key(base, entry.key) async for entry in it]
    if not matches:
        raise FileNotFoundError(errno.ENOENT, "No match", url.path)
    return matches


async def is_dir(client: Client, url: URL) -> bool:
    """Whether a location is a directory (local) or folder (blob)."""
    if is_local(url):
        return await asyncio.to_thread(os.path.isdir, url.path)
    if url.path.endswith("/"):
        return True
    return await client.buckets.blob_is_dir(url)


def entry_name(entry: BucketEntry, prefix: str) -> str:
    """An entry's key relative to the listed folder ``prefix``."""
    return entry.key[len(prefix) :] if entry.key.startswith(prefix) else entry.key


def local_path(url: URL) -> Path:
    return Path(url.path)
