"""The Prometheus metrics endpoint of a mount (``-o metrics=ADDRESS``), with prometheus_client.

Off unless asked for.  ``ADDRESS`` is ``HOST:PORT`` (``PORT`` alone means loopback,
``127.0.0.1``; another host only if the user names it) or the absolute path of a Unix socket
(mode 0600, like the control socket).  prometheus_client's HTTP server answers scrapes on a
thread of its own; each scrape asks the trio thread for the mount's status document
(:func:`blobfs.mount.observe.status`) and turns it into metric families
(:class:`MountCollector`), so the hot path keeps plain integer counters and never touches a
metrics object: a scrape costs one hop to the trio thread and a copy of the counters.

The families (``docs/MOUNT.md`` lists them): requests by kind and outcome, their latency
histogram and bytes; cache hits, misses, evictions and size per layer (``memory``, ``disk``,
``kernel``: opens that reused the kernel's page cache); files with unsaved data and their
bytes; uploads in flight; files kept unstored; errors; the daemon's memory (plus
prometheus_client's ``process_*`` metrics: RSS, CPU, file descriptors).
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import trio
from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from blobfs.mount import observe
from blobfs.mount.observe import Observed

log = logging.getLogger(__name__)

Status = Callable[[], dict[str, Any] | None]


class MountCollector(Collector):
    """The mount's metrics, from its status document (``status()``; ``None``: the daemon is
    going away, and there is nothing to report)."""

    def __init__(self, status: Status) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        s = self.status()
        if s is None:
            return
        mount = s["mount"]
        info = InfoMetricFamily("blobfs_mount", "What is mounted where.")
        info.add_metric([], {"source": mount["source"], "mountpoint": mount["mountpoint"]})
        yield info
        yield GaugeMetricFamily(
            "blobfs_start_time_seconds", "When the mount started (Unix time).", mount["started"]
        )
        yield from _requests(s["requests"])
        yield from _cache(s["cache"])
        unsaved = s["unsaved"]
        yield GaugeMetricFamily(
            "blobfs_unsaved_files", "Files with data not stored yet.", unsaved["count"]
        )
        yield GaugeMetricFamily(
            "blobfs_unsaved_bytes", "Bytes of those files not stored yet.", unsaved["bytes"]
        )
        yield GaugeMetricFamily(
            "blobfs_uploads_in_flight", "Uploads in progress.", len(s["uploads"])
        )
        yield GaugeMetricFamily(
            "blobfs_kept_files",
            "Files whose upload failed after their last close (stored at the next mount).",
            len(s["kept"]),
        )
        errors = CounterMetricFamily(
            "blobfs_errors", "Failures: store requests after retries, uploads.", labels=["source"]
        )
        errors.add_metric(["request"], s["errors"]["requests"])
        errors.add_metric(["upload"], s["errors"]["uploads"])
        yield errors
        memory = s["memory"]
        yield GaugeMetricFamily(
            "blobfs_resident_memory_bytes", "The daemon's resident set size.", memory["rss"]
        )
        yield GaugeMetricFamily(
            "blobfs_memory_budget_bytes",
            "The memory option: what the daemon aims to stay in.",
            memory["budget"],
        )
        uploads = GaugeMetricFamily(
            "blobfs_upload_memory_bytes", "Upload data held in memory.", labels=["state"]
        )
        uploads.add_metric(["in_use"], memory["uploads_in_use"])
        uploads.add_metric(["capacity"], memory["uploads_capacity"])
        yield uploads


def _requests(r: dict[str, Any]) -> Iterator[Metric]:
    count = CounterMetricFamily(
        "blobfs_requests", "Store requests, by kind and outcome.", labels=["kind", "outcome"]
    )
    latency = HistogramMetricFamily(
        "blobfs_request_duration_seconds", "Store request latency.", labels=["kind"]
    )
    received = CounterMetricFamily(
        "blobfs_received_bytes", "Bytes received from the store.", labels=["kind"]
    )
    sent = CounterMetricFamily("blobfs_sent_bytes", "Bytes sent to the store.", labels=["kind"])
    bounds = [str(b) for b in r["bounds"]] + ["+Inf"]
    for kind, k in r["kinds"].items():
        for outcome, n in k["outcomes"].items():
            count.add_metric([kind, outcome], n)
        cumulative, buckets = 0, []
        for bound, n in zip(bounds, k["buckets"], strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        latency.add_metric([kind], buckets, k["seconds"])
        received.add_metric([kind], k["bytes_in"])
        sent.add_metric([kind], k["bytes_out"])
    yield from (count, latency, received, sent)


def _cache(c: dict[str, Any]) -> Iterator[Metric]:
    hits = CounterMetricFamily("blobfs_cache_hits", "Cache hits.", labels=["layer"])
    misses = CounterMetricFamily("blobfs_cache_misses", "Cache misses.", labels=["layer"])
    evictions = CounterMetricFamily(
        "blobfs_cache_evictions", "Blocks dropped to make room.", labels=["layer"]
    )
    used = GaugeMetricFamily("blobfs_cache_bytes", "Bytes cached.", labels=["layer"])
    capacity = GaugeMetricFamily(
        "blobfs_cache_capacity_bytes", "Bytes the cache may hold.", labels=["layer"]
    )
    for layer in ("memory", "disk"):
        d = c[layer]
        if d is None:
            continue
        hits.add_metric([layer], d["hits"])
        misses.add_metric([layer], d["misses"])
        evictions.add_metric([layer], d["evictions"])
        used.add_metric([layer], d["used"])
        capacity.add_metric([layer], d["capacity"])
    kernel = c["kernel"]
    hits.add_metric(["kernel"], kernel["reused"])
    misses.add_metric(["kernel"], kernel["opens"] - kernel["reused"])
    yield from (hits, misses, evictions, used, capacity)


class _UnixWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server on a Unix socket (prometheus_client serves TCP only)."""

    address_family = socket.AF_UNIX
    daemon_threads = True

    def server_bind(self) -> None:
        path = Path(str(self.server_address))
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.unlink(missing_ok=True)
        self.socket.bind(str(temporary))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
        self.server_name, self.server_port = "localhost", 0
        self.setup_environ()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        # A Unix peer has no address; the request handler wants a host and port.
        request, _ = self.socket.accept()
        return request, ("unix", 0)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


async def serve_metrics(
    address: str,
    observed: Observed,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the metrics of ``observed`` on ``address`` until cancelled (``OSError`` if the
    address cannot be bound)."""
    token = trio.lowlevel.current_trio_token()

    def status() -> dict[str, Any] | None:
        try:
            return trio.from_thread.run_sync(observe.status, observed, trio_token=token)
        except trio.RunFinishedError:
            return None

    server = MetricsServer(address, status)
    task_status.started()
    try:
        await trio.sleep_forever()
    finally:
        # Stopping waits for a scrape in progress, which waits for this thread: elsewhere.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.close)


class MetricsServer:
    """A running metrics endpoint; :meth:`close` stops it."""

    def __init__(self, address: str, status: Status) -> None:
        self.address = address
        registry = CollectorRegistry()
        registry.register(MountCollector(status))
        ProcessCollector(registry=registry)
        self._path: Path | None = None
        if address.startswith("/"):
            self._path = Path(address)
            self._server: WSGIServer = _UnixWSGIServer(
                address,  # type: ignore[arg-type]  # a path: the address of an AF_UNIX server
                _QuietHandler,
            )
            self._server.set_app(make_wsgi_app(registry))
            thread = threading.Thread(
                target=self._server.serve_forever, name="blobfs-metrics", daemon=True
            )
            thread.start()
        else:
            host, _, port = address.rpartition(":")
            self._server, _ = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
        log.info("metrics on %s", address)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


__all__ = ["MetricsServer", "MountCollector", "serve_metrics"]
