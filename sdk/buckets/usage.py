"""Disk usage of a bucket: running totals while its objects are listed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sdk.providers.base import BlobStore, ObjectInfo
from sdk.types import BucketUsage

#: Seconds between partial totals: a live display updates a few times a second without one
#: event per object on a million-object bucket.
REPORT_INTERVAL = 0.2


async def disk_usage(store: BlobStore) -> AsyncIterator[BucketUsage]:
    """Partial totals every :data:`REPORT_INTERVAL`, then the whole bucket's.

    Yields at least once, so an empty bucket reports zero rather than nothing.  Folder
    markers count as objects, as in the reference.
    """
    total = count = 0
    loop = asyncio.get_running_loop()
    last = loop.time()
    async for item in store.list(""):
        assert isinstance(item, ObjectInfo)
        total += item.size
        count += 1
        if loop.time() - last >= REPORT_INTERVAL:
            last = loop.time()
            yield BucketUsage(total_bytes=total, object_count=count)
    yield BucketUsage(total_bytes=total, object_count=count)
