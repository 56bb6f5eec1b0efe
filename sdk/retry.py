"""Retries of transient provider failures, decided in one place.

Providers translate every error into :mod:`sdk.errors` first; only
:class:`~sdk.errors.TransientError` is retried, with exponential backoff and jitter, so a
missing key or a refused credential fails at once while a dropped connection or a 503 is
tried again.  Nothing here matches error message text.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
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


def retrying(attempts: int = ATTEMPTS, first_wait: float = FIRST_WAIT) -> AsyncRetrying:
    """A fresh retry controller: ``async for attempt in retrying(): with attempt: ...``."""
    return AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=wait_random_exponential(multiplier=first_wait, max=MAX_WAIT),
        stop=stop_after_attempt(attempts) | stop_after_delay(MAX_SECONDS),
        before_sleep=before_sleep_log(log, logging.INFO),
        reraise=True,
    )


async def retried(fn: Callable[[], Awaitable[T]]) -> T:
    """``await fn()`` with :func:`retrying`'s policy, the first attempt made without a retry
    controller: building one costs ~0.1 ms of CPU, which shows on the small requests of a
    mount (a PUT per small file closed, a GET per random read)."""
    try:
        return await fn()
    except TransientError as e:
        delay = random.uniform(0, FIRST_WAIT)  # what retrying() waits after a first attempt
        log.info("%s; trying again in %.2f s", e, delay)
        await asyncio.sleep(delay)
    # The rest as retrying() would go on: one attempt fewer, waits from the second on.
    async for attempt in retrying(ATTEMPTS - 1, first_wait=2 * FIRST_WAIT):
        with attempt:
            return await fn()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


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
