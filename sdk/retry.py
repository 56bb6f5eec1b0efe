"""Retries of transient provider failures, decided in one place.

Providers translate every error into :mod:`sdk.errors` first; only
:class:`~sdk.errors.TransientError` is retried, with exponential backoff and jitter, so a
missing key or a refused credential fails at once while a dropped connection or a 503 is
tried again.  Nothing here matches error message text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
    wait_random,
    wait_random_exponential,
)

from sdk.errors import TransientError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Attempts of one operation, and the longest it may keep retrying.  Together they ride out a
#: server restart of a few seconds without hiding an outage for minutes.
ATTEMPTS = 8
MAX_SECONDS = 60.0


#: Seconds between attempts: random, below 0.1 s after the first, doubling, at most 5 s.
FIRST_WAIT = 0.1
MAX_WAIT = 5.0


#: Before repeating a request the server refused as busy (429, 5xx: S3's SlowDown, Azure's
#: ServerBusy) by another route: at least FIRST_WAIT, at most twice that, so that a fleet of
#: clients told to slow down does not come back all at once.
_BUSY_WAIT = wait_fixed(FIRST_WAIT) + wait_random(0, FIRST_WAIT)


def busy_delay() -> float:
    """Seconds to wait before repeating a request a server answered busy (callers that
    sleep on another event loop use this; asyncio callers :func:`back_off_busy`)."""
    return float(_BUSY_WAIT(RetryCallState(AsyncRetrying(), None, (), {})))


async def back_off_busy(what: str, status: int) -> None:
    """Wait :func:`busy_delay` after ``what`` was answered ``status`` (busy), before the
    caller repeats it."""
    delay = busy_delay()
    log.info("%s: server busy (HTTP %d); trying again in %.2f s", what, status, delay)
    await asyncio.sleep(delay)


def retrying(attempts: int = ATTEMPTS, first_wait: float = FIRST_WAIT) -> AsyncRetrying:
    """A fresh retry controller: ``async for attempt in retrying(): with attempt: ...``."""
    return AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=wait_random_exponential(multiplier=first_wait, max=MAX_WAIT),
        stop=stop_after_attempt(attempts) | stop_after_delay(MAX_SECONDS),
        before_sleep=before_sleep_log(log, logging.INFO),
        reraise=True,
    )


def retry_transient(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorate an async provider call so transient failures are retried."""

    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        async for attempt in retrying():
            with attempt:
                return await fn(*args, **kwargs)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    wrapper.__name__ = getattr(fn, "__name__", "wrapper")
    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper
