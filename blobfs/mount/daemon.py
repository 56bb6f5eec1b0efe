"""The mount daemon's lifecycle, from opening the bucket to the last upload.

Started by :func:`blobfs.mount.launch.launch`; :func:`serve`:

1. hosts an asyncio loop inside trio for the sdk (:mod:`blobfs.bridge`), opens the bucket
   and proves the credentials work with one listing request;
2. stores what a killed daemon left in the staging directory (:mod:`blobfs.write.recovery`),
   builds the core (block cache, optional disk cache, write-back,
   :class:`~blobfs.fs.filesystem.Filesystem`) and mounts it (:mod:`blobfs.fuse.session`);
3. opens its control socket (:mod:`blobfs.mount.control`: ``blobfs status``, ``flush``,
   ``invalidate``) and, if asked, its metrics endpoint (:mod:`blobfs.mount.metrics`); once
   a ``stat`` of the mount point goes through the kernel and back, it is *ready*: the
   kernel read-ahead is raised, systemd gets ``READY=1``, the parent gets ``OK``;
4. runs until the file system is unmounted (``blobfs umount``, ``fusermount3 -u``) or a
   SIGTERM/SIGINT/SIGHUP arrives, which unmounts it; then drains pending work
   (:meth:`Filesystem.drain` uploads files still dirty) and exits.  Uploads in progress
   when the signal arrives are shielded from the cancellation, so they finish first; the
   control socket answers until the end, so ``blobfs status`` shows the drain.

Whatever happens after the mount, :func:`blobfs.fuse.session.unmount` runs on the way out, so
a daemon that fails leaves no "Transport endpoint is not connected" behind when it can
help it.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from blobfs import bridge
from blobfs.cache.blocks import BlockCache
from blobfs.cache.disk import CacheBusy, DiskCache
from blobfs.fs.filesystem import Filesystem
from blobfs.fs.names import root_key
from blobfs.fuse import session as fuse_session
from blobfs.mount import memory, mountpoint
from blobfs.mount.control import ControlServer
from blobfs.mount.logs import setup_logging
from blobfs.mount.mountpoint import MountError
from blobfs.mount.notify import ReadyPipe, sd_notify
from blobfs.mount.observe import Observed
from blobfs.options import MountOptions
from blobfs.write import recovery, writeback
from blobfs.write.budget import WriteBudget
from sdk import errors as sdk_errors
from sdk import retry as sdk_retry

log = logging.getLogger("blobfs.mount.daemon")

#: How long the daemon waits at exit for blocks still on their way to the disk cache.
DISK_SETTLE_SECONDS = 10.0


def _storage_reason(e: BaseException, source: str) -> str:
    if isinstance(e, sdk_errors.PermissionDenied):
        return f"credentials refused for {source}: {e}"
    if isinstance(e, sdk_errors.ResourceNotFound):
        return f"unknown bucket: {source} ({e})"
    if isinstance(e, sdk_errors.ConfigError):
        return f"configuration error: {e}"
    if isinstance(e, ValueError):
        return f"invalid source {source!r}: {e}"
    return f"cannot reach the store for {source}: {e}"


async def _check_access(store: bridge.TrioStore, prefix: str, source: str) -> None:
    """One listing request: proves the bucket exists and the credentials are accepted."""
    try:
        await store.first_entry(root_key(prefix), delimiter="/")
    except sdk_errors.BlobfsError as e:
        raise MountError(_storage_reason(e, source)) from e


async def serve(
    source: str,
    where: Path,
    options: MountOptions,
    *,
    cluster: str | None,
    ready: ReadyPipe,
) -> None:
    """Mount ``source`` on ``where`` and serve it until unmounted or signalled."""
    # Process-wide, which is this mount: a daemon serves one.
    sdk_retry.set_policy(options.retry_policy())
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with bridge.asyncio_loop() as aio, AsyncExitStack() as stack:
            try:
                store, prefix = await stack.enter_async_context(
                    bridge.open_source(aio, source, cluster=cluster)
                )
            except (sdk_errors.BlobfsError, ValueError) as e:
                raise MountError(_storage_reason(e, source)) from e
            await _check_access(store, prefix, source)
            store.set_copy_settings(options.copy_settings())
            await _serve_mounted(source, where, options, store, prefix, signals, ready)


def cache_base(options: MountOptions) -> Path:
    """``cache_dir`` if set, else ``blobfs`` in the user's cache directory."""
    if options.cache_dir is not None:
        return options.cache_dir
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blobfs"


def _per_source(options: MountOptions, kind: str, source: str) -> Path:
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return cache_base(options) / kind / digest


def staging_dir(options: MountOptions, source: str) -> Path:
    """Where files being written are staged: one directory per source under
    :func:`cache_base`, so data a killed daemon left behind is found (and reported) by the
    next mount of the same source."""
    return _per_source(options, "staging", source)


def blocks_dir(options: MountOptions, source: str) -> Path:
    """The disk cache of ``source``'s blocks: one directory per source under
    :func:`cache_base` (a daemon holds it while it runs)."""
    return _per_source(options, "blocks", source)


async def _open_disk_cache(options: MountOptions, source: str) -> DiskCache | None:
    """The disk cache (``None`` when ``cache_size=0``, or when another daemon holds the
    source's cache directory or it cannot be made: reads then work without one)."""
    if options.cache_size <= 0:
        return None
    disk = DiskCache(blocks_dir(options, source), options.cache_size, block_size=options.block_size)
    try:
        await disk.open()
    except (CacheBusy, OSError) as e:
        log.warning("no disk cache for this mount: %s", e)
        return None
    return disk


async def _serve_mounted(
    source: str,
    where: Path,
    options: MountOptions,
    store: bridge.TrioStore,
    prefix: str,
    signals: AsyncIterator[int],
    ready: ReadyPipe,
) -> None:
    memory.release_startup_memory()
    memory.keep_freed_memory(options.fetch_size, options.memory)
    async with trio.open_nursery() as nursery:
        disk = await _open_disk_cache(options, source)
        cache = BlockCache(
            store,
            nursery,
            block_size=options.block_size,
            memory=memory.cache_memory(options, memory.resident_bytes()),
            max_fetches=options.max_fetches,
            fetch_size=options.fetch_size,
            disk=disk,
        )
        wb = writeback.WriteBack(
            staging_dir(options, source), nursery, WriteBudget(options.write_memory)
        )
        if not options.read_only:
            # Before serving: what a killed daemon left is stored (or kept and logged)
            # before anything on the mount can see or change those files.
            await recovery.recover(wb.directory, store, wb)
        else:
            for path, key in writeback.leftovers(wb.directory):
                log.warning("staged data of %r (read-only mount: not uploaded) in %s", key, path)
        fs = Filesystem(store, cache, options, prefix=prefix, writeback=wb)
        # Named before mounting: resolving the mount point later would ask the mount itself,
        # which does not serve requests yet.  (Blocking is fine: nothing is served yet.)
        control = mountpoint.control_socket_name(os.path.realpath(where))  # noqa: ASYNC240
        try:
            fuse_session.mount(fs, where, source)
        except fuse_session.MountFailed as e:
            raise MountError(f"FUSE mount on {where} failed: {e}") from e
        try:
            await _observe(Observed(source, where, options, fs, disk), nursery, control)
            nursery.start_soon(_watch_signals, signals)
            nursery.start_soon(_announce_ready, where, options, ready)
            # What exists by now (botocore's service models above all, ~100,000 objects)
            # lives as long as the daemon: frozen, the cyclic GC stops walking it in every
            # full collection (GC pauses of 80 ms fell to 2-3 ms).
            gc.freeze()
            await fuse_session.serve()
        finally:
            fuse_session.unmount()
            log.info("unmounted %s", where)
        sd_notify("STOPPING=1")
        _log_read_stats(fs, disk)
        with trio.move_on_after(DISK_SETTLE_SECONDS):
            await cache.settle_disk()
        await fs.drain()
        wstats = fs.writeback.stats
        log.info(
            "write-back: %d PUTs, %d multipart uploads (%d streamed while writing, %d given "
            "up for a whole-file upload), %d parts stored while writing, %d at close; peak "
            "%d MiB of %d MiB upload memory",
            wstats.puts,
            wstats.multipart_uploads,
            wstats.streams,
            wstats.fallbacks,
            wstats.parts_streamed,
            wstats.parts_at_flush,
            fs.writeback.budget.peak >> 20,
            fs.writeback.budget.capacity >> 20,
        )
        if disk is not None:
            disk.close()
        nursery.cancel_scope.cancel()


def _log_read_stats(fs: Filesystem, disk: DiskCache | None) -> None:
    cs, ps = fs.cache.stats, fs.pages.stats
    log.info(
        "requests: %d HEAD, %d LIST, %d GET (%d bytes, %d fetched before); %d names skipped",
        fs.stats.heads,
        fs.stats.lists,
        cs.fetches,
        cs.fetched_bytes,
        cs.refetched_bytes,
        fs.stats.skipped_names,
    )
    log.info(
        "read caches: %d memory hits, %d disk hits, %d shared fetches, %d blocks dropped "
        "behind readers; %d pushed to the kernel (%d bytes, %d skipped, %d failed); disk "
        "cache %d bytes",
        cs.memory_hits,
        cs.disk_hits,
        cs.shared_waits,
        cs.dropped_behind,
        ps.pushes,
        ps.pushed_bytes,
        ps.skipped,
        ps.failed,
        disk.total_bytes if disk is not None else 0,
    )


async def _observe(observed: Observed, nursery: trio.Nursery, control: str) -> None:
    """Open the control socket and, if asked for, the metrics endpoint of the mount, as
    tasks of ``nursery`` (closed when it ends).  Without a control socket the mount still
    serves; a metrics endpoint that was asked for and cannot be opened fails the mount.
    ``control`` is the control socket's file name."""
    try:
        path = mountpoint.secure_runtime_dir() / control
        await nursery.start(ControlServer(observed, nursery).serve, path)
    except OSError as e:
        log.warning("no control socket (blobfs status, flush, invalidate): %s", e)
    address = observed.options.metrics
    if address is not None:
        # Imported only when asked for: prometheus_client costs 50 ms and 2 MiB at start.
        from blobfs.mount.metrics import serve_metrics

        try:
            await nursery.start(serve_metrics, address, observed)
        except OSError as e:
            raise MountError(f"metrics endpoint {address}: {e.strerror or e}") from e


async def _watch_signals(signals: AsyncIterator[int]) -> None:
    async for signum in signals:
        log.info("signal %s: unmounting", signal.Signals(signum).name)
        sd_notify("STOPPING=1")
        fuse_session.terminate()
        return


async def _announce_ready(where: Path, options: MountOptions, ready: ReadyPipe) -> None:
    # The stat goes through the kernel to our own getattr, so it returns only once the
    # FUSE loop serves requests: that, not the mount syscall, is "ready".
    st = await trio.to_thread.run_sync(os.stat, where)
    mountpoint.set_kernel_readahead(st.st_dev, options.kernel_readahead)
    mountpoint.write_pid(where)
    log.info("mounted on %s", where)
    sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving {where}")
    ready.ready()


def _unwrap(exc: BaseException) -> BaseException:
    """The one exception inside nested single-exception groups (trio wraps what escapes a
    nursery), so a MountError keeps its one-line message."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_foreground(
    source: str,
    where: Path,
    options: MountOptions,
    *,
    cluster: str | None,
    ready_fd: int | None,
) -> int:
    """Run the daemon in this process; return the exit code."""
    ready = ReadyPipe(ready_fd)
    setup_logging(options)
    memory.limit_arenas()
    try:
        trio.run(lambda: serve(source, where, options, cluster=cluster, ready=ready))
    except Exception as raised:
        e = _unwrap(raised)
        if isinstance(e, MountError):
            log.error("%s", e)
            ready.failed(str(e))
            print(f"blobfs mount: {e}", file=sys.stderr)
            return e.exit_code
        log.error("daemon failed", exc_info=raised)
        ready.failed(f"daemon failed: {e}")
        print(f"blobfs mount: daemon failed: {e}", file=sys.stderr)
        return 1
    finally:
        try:
            mountpoint.pid_file(where).unlink(missing_ok=True)
        except OSError:
            pass
    return 0
