"""Listing an S3 bucket: ListObjectsV2 pages in S3's key order.

SeaweedFS orders a delimited listing by the directory name, so ``a/`` comes before ``a-``
(``-`` sorts before ``/``); :class:`Reorder` restores S3's order with a small hold-back
buffer.  Undelimited listings keep the server's order: SeaweedFS walks its directory tree,
so there ``a/x`` precedes ``a-``.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sdk.errors import InvalidRequest
from sdk.providers.base import ObjectInfo, PrefixInfo
from sdk.providers.s3.client import S3Client
from sdk.providers.s3.conventions import as_utc, strip_etag

#: Keys per ListObjectsV2 page (S3's largest).
LIST_PAGE = 1000


async def list_entries(
    client: S3Client, bucket_name: str, prefix: str, delimiter: str | None
) -> AsyncIterator[ObjectInfo | PrefixInfo]:
    """Keys of ``bucket_name`` under ``prefix``, paging through ``ListObjectsV2``
    (:meth:`~sdk.providers.base.BlobStore.list`)."""
    if delimiter == "":
        raise InvalidRequest("delimiter must not be empty")
    params: dict[str, Any] = {"Bucket": bucket_name, "Prefix": prefix, "MaxKeys": LIST_PAGE}
    if delimiter:
        params["Delimiter"] = delimiter
    order = Reorder(delimiter) if delimiter else None
    while True:
        page = await client.call(f"list {bucket_name}/{prefix}", "list_objects_v2", **params)
        entries: list[ObjectInfo | PrefixInfo] = [
            ObjectInfo(
                key=o["Key"],
                size=int(o["Size"]),
                etag=strip_etag(o.get("ETag", "")),
                modified_at=as_utc(o.get("LastModified")),
            )
            for o in page.get("Contents") or ()
        ]
        if delimiter:
            # S3 returns keys and prefixes in two lists; merge them in key order.
            entries += [PrefixInfo(key=p["Prefix"]) for p in page.get("CommonPrefixes") or ()]
            entries.sort(key=lambda e: e.key)
        for entry in entries if order is None else order.feed(entries):
            yield entry
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            break
        params["ContinuationToken"] = token
    if order is not None:
        for entry in order.flush():
            yield entry


class Reorder:
    """Restore S3's key order in a delimited listing from servers that order by name.

    SeaweedFS sorts the entries of one level by name and reports the directory ``a`` as the
    prefix ``a/`` at the position of ``a``, before ``a-`` and ``a.txt`` (both sort before
    ``a/``).  Every later entry sorts after the *name* of the current one (``a`` for ``a/``),
    so anything held with a key at most that name can be released.  Only prefixes are ever
    held, and only until the few names between ``a`` and ``a/`` have passed; for a server in
    S3 order nothing changes.
    """

    def __init__(self, delimiter: str) -> None:
        self._delimiter = delimiter
        self._held: list[tuple[str, ObjectInfo | PrefixInfo]] = []

    def feed(self, entries: list[ObjectInfo | PrefixInfo]) -> Iterator[ObjectInfo | PrefixInfo]:
        for entry in entries:
            bisect.insort(self._held, (entry.key, entry), key=lambda t: t[0])
            name = entry.key
            if isinstance(entry, PrefixInfo):
                name = name[: -len(self._delimiter)]
            n = bisect.bisect_right(self._held, name, key=lambda t: t[0])
            ready, self._held[:n] = self._held[:n], []
            for _, e in ready:
                yield e

    def flush(self) -> Iterator[ObjectInfo | PrefixInfo]:
        held, self._held = self._held, []
        for _, e in held:
            yield e


__all__ = ["LIST_PAGE", "Reorder", "list_entries"]
