"""What the mount asks of the store, counted: requests by kind and outcome, bytes, latency,
and the last failures.

:class:`RequestStats` is filled by :func:`metered`, which wraps the methods of
:class:`~blobfs.bridge.store.TrioStore` and :class:`~blobfs.bridge.store.TrioMultipart`.
Each store call is one request of its kind, however it went (on the trio thread or through
the sdk's loop, retried or not): its outcome is the call's, after the sdk's retries.

Cost: counting is plain integer arithmetic on the trio thread -- two clock reads, a bisect
into the latency buckets and a few additions, about 1 us against the millisecond a request
takes -- and nothing is allocated unless a request fails.  Readers (``blobfs status``, the
metrics endpoint) take a copy on the same thread (:meth:`RequestStats.snapshot`), so no
lock is needed.

A failure that is an answer (the object is missing, its version changed) is counted under
its outcome and nothing more; any other failure is also logged once, as a warning, and
kept in :class:`FailureLog` for ``blobfs status``.
"""

from __future__ import annotations

import functools
import logging
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sdk import errors as sdk_errors
from sdk.logsafe import redact

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Request kinds, in the order ``blobfs status`` shows them.
KINDS = (
    "head",
    "get",
    "list",
    "put",
    "copy",
    "delete",
    "start_multipart",
    "put_part",
    "complete_multipart",
    "abort_multipart",
)
#: Outcomes: the request succeeded, or what its failure means.
OUTCOMES = ("ok", "not_found", "changed", "denied", "error", "cancelled")
#: Upper bounds (seconds) of the latency histogram's buckets; the last bucket is unbounded.
LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Failures kept for ``blobfs status``.
KEPT_FAILURES = 32


def outcome_of(exc: BaseException) -> str:
    """The outcome a store exception stands for."""
    if isinstance(exc, sdk_errors.ResourceNotFound):
        return "not_found"
    if isinstance(exc, sdk_errors.PreconditionFailed):
        return "changed"
    if isinstance(exc, sdk_errors.PermissionDenied):
        return "denied"
    if isinstance(exc, Exception):
        return "error"
    return "cancelled"  # trio.Cancelled, KeyboardInterrupt: the caller went away


def describe(exc: BaseException) -> str:
    """A one-line reason, without secrets."""
    text = str(exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    """Something that failed: when (Unix time), which key, what, and whether and how it will
    be tried again (``""``: it will not)."""

    when: float
    key: str
    what: str
    retry: str = ""


class FailureLog:
    """The last :data:`KEPT_FAILURES` failures, and how many there were in all."""

    def __init__(self) -> None:
        self.recent: deque[Failure] = deque(maxlen=KEPT_FAILURES)
        self.total = 0

    def record(self, key: str, what: str, retry: str = "") -> None:
        """Keep a failure of ``key``; ``what`` is cleaned of secrets."""
        self.total += 1
        self.recent.append(Failure(time.time(), key, redact(what), retry))


class KindStats:
    """Counters of one kind of request."""

    __slots__ = ("buckets", "bytes_in", "bytes_out", "outcomes", "seconds")

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.seconds = 0.0
        #: Requests per latency bucket (``len(LATENCY_BOUNDS) + 1``; not cumulative).
        self.buckets = [0] * (len(LATENCY_BOUNDS) + 1)
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def count(self) -> int:
        return sum(self.outcomes.values())

    def copy(self) -> KindStats:
        out = KindStats()
        out.outcomes = dict(self.outcomes)
        out.seconds = self.seconds
        out.buckets = list(self.buckets)
        out.bytes_in, out.bytes_out = self.bytes_in, self.bytes_out
        return out


class RequestStats:
    """The store requests of one mount (see the module docstring)."""

    def __init__(self) -> None:
        self.kinds = {kind: KindStats() for kind in KINDS}
        self.failures = FailureLog()

    def done(self, kind: str, started: float, received: int = 0, sent: int = 0) -> None:
        """A request of ``kind`` begun at ``started`` (``perf_counter``) succeeded."""
        elapsed = time.perf_counter() - started
        stats = self.kinds[kind]
        stats.outcomes["ok"] += 1
        stats.seconds += elapsed
        stats.buckets[bisect_left(LATENCY_BOUNDS, elapsed)] += 1
        stats.bytes_in += received
        stats.bytes_out += sent

    def failed(self, kind: str, started: float, key: str, exc: BaseException) -> None:
        """A request of ``kind`` for ``key`` begun at ``started`` raised ``exc``."""
        elapsed = time.perf_counter() - started
        stats = self.kinds[kind]
        outcome = outcome_of(exc)
        stats.outcomes[outcome] += 1
        stats.seconds += elapsed
        stats.buckets[bisect_left(LATENCY_BOUNDS, elapsed)] += 1
        if outcome in ("error", "denied"):
            reason = describe(exc)
            log.warning("%s %r failed after %.1f s: %s", kind, key, elapsed, reason)
            self.failures.record(key, f"{kind} failed: {reason}")

    def snapshot(self) -> dict[str, KindStats]:
        """A copy of the counters (take it on the trio thread)."""
        return {kind: stats.copy() for kind, stats in self.kinds.items()}


class Metered(Protocol):
    """What :func:`metered` methods belong to: an object with :class:`RequestStats`."""

    requests: RequestStats


S = TypeVar("S", bound=Metered)


def _key(self: object, args: tuple[Any, ...]) -> str:
    if args and isinstance(args[0], str):
        return args[0]
    return str(getattr(self, "key", ""))


def metered(
    kind: str,
    *,
    received: bool = False,
    sent: Callable[..., int] | None = None,
) -> Callable[
    [Callable[Concatenate[S, P], Coroutine[Any, Any, T]]],
    Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
]:
    """Count each call of the decorated store method as one request of ``kind``.

    ``received``: the result's length is bytes received; ``sent(*args, **kwargs)``, given
    the call's arguments: bytes sent.  The
    key in a failure is the first argument if it is a string, else the object's ``key``.
    """

    def wrap(
        fn: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            started = time.perf_counter()
            try:
                result = await fn(self, *args, **kwargs)
            except BaseException as e:
                self.requests.failed(kind, started, _key(self, args), e)
                raise
            self.requests.done(
                kind,
                started,
                len(result) if received else 0,  # type: ignore[arg-type]
                sent(*args, **kwargs) if sent is not None else 0,
            )
            return result

        return call

    return wrap


__all__ = [
    "KINDS",
    "LATENCY_BOUNDS",
    "OUTCOMES",
    "Failure",
    "FailureLog",
    "KindStats",
    "RequestStats",
    "describe",
    "metered",
    "outcome_of",
]
