"""Retries of transient provider failures, decided in one place.

Providers translate every error into :mod:`sdk.errors` first; only
:class:`~sdk.errors.TransientError` is retried, with exponential backoff and jitter, so a
missing key or a refused credential fails at once while a dropped connection or a 503 is
tried again.  Nothing here matches error message text.
"""

from __future__ import annotations

import logging
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

from .errors import TransientError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Attempts of one operation, and the longest it may keep retrying.  Together they ride out a
#: server restart of a few seconds without hiding an outage for minutes.
ATTEMPTS = 8
MAX_SECONDS = 60.0


def retrying() -> AsyncRetrying:
    """A fresh retry controller: ``async for attempt in retrying(): with attempt: ...``."""
    return AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=wait_random_exponential(multiplier=0.1, max=5.0),
        stop=stop_after_attempt(ATTEMPTS) | stop_after_delay(MAX_SECONDS),
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
