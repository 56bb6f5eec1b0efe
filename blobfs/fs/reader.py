"""Reading files: open a version, read it through the block cache; read symbolic links.

An open file reads the version (key + ETag) it was opened on.  Reads that need data not yet
cached are conditional on that ETag, so if the object is replaced or deleted they fail with
:class:`~blobfs.errors.Stale` instead of mixing versions.  The next ``open`` (after the
attribute TTL) sees the new version.  A file being written is read from its staging file.

How a read is served depends on its handle's access pattern (:mod:`blobfs.cache.readahead`):

* sequential: the blocks it touches, with the read-ahead window behind them, several blocks
  per GET; blocks the reader has left behind are dropped from memory (the kernel's page
  cache has them, and a stream must not flush the memory cache), and none go to disk;
* random or strided: the whole aligned blocks it touches (a strided reader's next ones
  too), one GET per run of missing blocks, kept in memory and on disk; a block that had to
  be fetched (or read from disk) is also pushed into the kernel's page cache
  (:mod:`blobfs.cache.pagecache`), so later reads anywhere in it stay in the kernel; from
  a slow store the whole version is fetched in the background (:mod:`blobfs.cache.fill`).
"""

from __future__ import annotations

from collections.abc import Callable

from blobfs.cache.blocks import Block
from blobfs.cache.fill import Keep
from blobfs.cache.readahead import WIDE_FETCH, Group, Pattern, Plan, is_slow, random_group
from blobfs.errors import InvalidName, Stale, from_storage
from blobfs.fs.handles import FileHandle, new_readahead
from blobfs.fs.inodes import Node
from blobfs.fs.lookup import Lookup
from blobfs.fs.state import FsState

#: Bytes a sequential reader keeps in memory behind the block it reads: reads of one file
#: arrive a little out of order (the read-ahead's reorder slack is at most 512 KiB for the
#: kernel's 128 KiB reads).
BEHIND_SLACK = 2 * 1024 * 1024


class Reader:
    """Opens files for reading and serves their reads."""

    def __init__(self, state: FsState, lookup: Lookup) -> None:
        self.state = state
        self.lookup = lookup

    async def open(self, node: Node) -> FileHandle:
        """A handle on the file's current version (re-checked once its TTL ran out)."""
        state = self.state
        if node.attr_expires <= state.clock() or node.etag is None:
            await self.lookup.refresh(node)
        assert node.etag is not None
        fh = state.handles.new_fh()
        handle = FileHandle(
            fh=fh,
            node=node,
            key=node.key,
            etag=node.etag,
            size=node.size,
            readahead=new_readahead(state.cache, state.options),
            keep_cache=node.cached_etag == node.etag,
        )
        node.cached_etag = node.etag
        state.stats.read_opens += 1
        state.stats.kernel_reuses += handle.keep_cache
        state.handles.files[fh] = handle
        state.inodes.opened(node)
        return handle

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        """Up to ``size`` bytes at ``offset``; a view into a cached block when the read
        falls inside one (no copy on the way to the kernel)."""
        handle = self.state.handles.file(fh)
        if handle.staged is not None:
            with from_storage(missing=Stale):
                return await handle.staged.read(offset, size)
        if offset >= handle.size or size <= 0:
            return b""
        bs = self.state.cache.block_size
        end = min(offset + size, handle.size)
        first, last = offset // bs, (end - 1) // bs
        plan = handle.readahead.on_read(offset, size, handle.size)
        if plan.pattern is Pattern.SEQUENTIAL:
            blocks = await self._sequential(handle, plan, first, last)
        else:
            blocks = await self._whole_blocks(handle, plan, first, last)
        start = offset - first * bs
        if len(blocks) == 1:
            return memoryview(blocks[0])[start : start + end - offset]
        return b"".join(blocks)[start : start + end - offset]

    async def _sequential(
        self, handle: FileHandle, plan: Plan, first: int, last: int
    ) -> list[Block]:
        cache, ra = self.state.cache, handle.readahead
        key, etag, size = handle.key, handle.etag, handle.size
        ahead = plan.prefetch[-1] if plan.prefetch else last
        start = max(first, ra.claimed + 1)
        if start <= max(last, ahead) and (first != last or ahead > last):
            # Several blocks: claimed together so they come in one GET, in a task.  A single
            # block with nothing to read ahead (a small file, a file's last block) is fetched
            # below in this task: no task to start and wake up.  Only blocks not claimed by
            # an earlier read are looked at.
            ra.claimed = cache.prefetch_range(
                key, etag, size, start, max(last, ahead), needed=first, to_disk=False
            )
        blocks = [
            await cache.get(key, etag, size, i, to_disk=False) for i in range(first, last + 1)
        ]
        # Blocks this sequential run has left behind are in the kernel's page cache: memory
        # is for what comes next (and for what other readers fetched before the run began).
        bs = cache.block_size
        behind = max(0, first * bs - BEHIND_SLACK) // bs
        start = max(handle.dropped_behind, ra.run_start // bs + 1)
        for index in range(start, behind):
            cache.discard(key, etag, index)
        handle.dropped_behind = max(handle.dropped_behind, behind)
        return blocks

    async def _whole_blocks(
        self, handle: FileHandle, plan: Plan, first: int, last: int
    ) -> list[Block]:
        cache, pages = self.state.cache, self.state.pages
        key, etag, size = handle.key, handle.etag, handle.size
        push = self._pusher(handle)
        bs = cache.block_size
        total = (size - 1) // bs + 1
        # At most fetch_size (and an eighth of memory) per miss.
        most = max(1, min(cache.fetch_blocks, cache.memory_budget // 8 // bs))
        latency = cache.block_latency(key, etag)
        node, fills = handle.node, self.state.fills
        if is_slow(latency) and (
            fills.running(key, etag)
            or fills.start(
                key,
                etag,
                size,
                first,
                wanted=lambda: node.opens > 0 and node.etag == etag,
                keep=self._keeper(handle),
            )
        ):
            # The whole version is on its way: a miss fetches only its own block.
            g = Group(1, 1)
        else:
            g = random_group(
                cache.fetched_blocks(key, etag),
                total,
                wide=min(most, WIDE_FETCH // bs),
                most=most,
                latency=latency,
            )
        if g.blocks > 1 or first != last:
            # The aligned group around the read: its missing blocks, per_get blocks per GET.
            n = g.blocks
            lo, hi = first // n * n, min(total, (last // n + 1) * n) - 1
            cache.prefetch_range(key, etag, size, lo, hi, loaded=push, per_get=g.per_get)
            if push is not None and n > 1 and not pages.is_pending(handle.node.ino, first * bs):
                # A dense reader's kernel has lost (or never had) this part of the object:
                # what of it is in memory goes back in the same batch.  (Not while a push of
                # it is on its way: then the read only came before the push landed.)
                for index in range(lo, hi + 1):
                    block = cache.peek(key, etag, index)
                    if block is not None and not first <= index <= last:
                        push(index, block)
        for index in plan.ahead:
            cache.prefetch_range(key, etag, size, index, index, loaded=push)
        blocks: list[Block] = []
        for index in range(first, last + 1):
            block = await cache.get(key, etag, size, index)
            if push is not None:
                # The kernel asked, so it lacks this block's pages: give it all of them.
                push(index, block)
            blocks.append(block)
        return blocks

    def _pusher(self, handle: FileHandle) -> Callable[[int, Block], None] | None:
        """What pushes a block of ``handle``'s version into the kernel's page cache (``None``
        when there is no kernel to push to)."""
        state = self.state
        pages = state.pages
        if not pages.enabled:
            return None
        node, bs = handle.node, state.cache.block_size
        current = self._current(handle)

        def push(index: int, block: Block) -> None:
            pages.push(node.ino, index * bs, block, current)

        return push

    def _current(self, handle: FileHandle) -> Callable[[], bool]:
        """Whether the kernel may get bytes of ``handle``'s version: the inode still shows
        it and is not being written (:mod:`blobfs.cache.pagecache`'s docstring)."""
        node, etag, staged = handle.node, handle.etag, self.state.staged

        def current() -> bool:
            return node.etag == etag and node.cached_etag == etag and node.ino not in staged

        return current

    def _keeper(self, handle: FileHandle) -> Keep | None:
        """What gives the kernel the blocks a fill of ``handle``'s version brought
        (``None`` when there is no kernel to push to)."""
        pages = self.state.pages
        if not pages.enabled:
            return None
        ino, bs, current = handle.node.ino, self.state.cache.block_size, self._current(handle)

        async def keep(blocks: list[tuple[int, Block]]) -> None:
            await pages.store_now(ino, [(index * bs, block) for index, block in blocks], current)

        return keep

    async def readlink(self, ino: int) -> bytes:
        """The target of the symbolic link ``ino`` (the object's content)."""
        node = self.state.inodes.get(ino)
        if node.is_dir or not node.symlink:
            raise InvalidName(f"{node.key} is not a symbolic link")
        with from_storage():
            return await self.state.store.read_all(node.key)
