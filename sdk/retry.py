"""Retries of transient provider failures, decided in one place.

Providers translate every error into :mod:`sdk.errors` first; only
:class:`~sdk.errors.TransientError` is retried, with exponential backoff and jitter, so a
missing key or a refused credential fails at once while a dropped connection or a 503 is
tried again.  Nothing here matches error message text.

How persistent the retries are is one :class:`RetryPolicy` for the whole process
(:func:`set_policy`): a mount daemon sets its ``retries=`` option there before it opens the
bucket; everything else keeps the defaults.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RetryPolicy:
    """How persistently one operation's transient failures are retried: at most
    ``attempts`` tries (the first included), and no new try after ``max_seconds``."""

    attempts: int = ATTEMPTS
    max_seconds: float = MAX_SECONDS

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if self.max_seconds < 0:
            raise ValueError(f"max_seconds must not be negative, not {self.max_seconds}")


_policy = RetryPolicy()


def set_policy(policy: RetryPolicy) -> None:
    """Make ``policy`` the retry policy of every operation started from now on, in this
    process (the operations in progress keep theirs)."""
    global _policy
    _policy = policy


def current_policy() -> RetryPolicy:
    """The retry policy :func:`retrying` applies (see :func:`set_policy`)."""
    return _policy


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


def retrying(attempts: int | None = None, first_wait: float = FIRST_WAIT) -> AsyncRetrying:
    """A fresh retry controller: ``async for attempt in retrying(): with attempt: ...``.
    ``attempts`` (default: the current policy's) bounds the tries; so does the policy's
    ``max_seconds``."""
    policy = _policy
    return AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=wait_random_exponential(multiplier=first_wait, max=MAX_WAIT),
        stop=stop_after_attempt(policy.attempts if attempts is None else attempts)
        | stop_after_delay(policy.max_seconds),
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
