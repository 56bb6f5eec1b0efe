"""Where the trio daemon meets the asyncio sdk: the sdk's loop in a thread of its own
(:mod:`.loop`), a trio-callable view of a :class:`~sdk.providers.base.BlobStore`
(:mod:`.store`), the small requests made from trio without crossing (:mod:`.direct`), and
opening a bucket by URI (:mod:`.source`).  Nothing above this package calls the sdk's
coroutines directly."""

from blobfs.bridge.loop import AsyncioThread, BridgeClosed, asyncio_loop
from blobfs.bridge.source import open_source
from blobfs.bridge.store import TrioMultipart, TrioStore

__all__ = [
    "AsyncioThread",
    "BridgeClosed",
    "TrioMultipart",
    "TrioStore",
    "asyncio_loop",
    "open_source",
]
