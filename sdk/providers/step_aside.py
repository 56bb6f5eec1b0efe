"""When a provider's own fast HTTP client steps aside for its library's client.

The S3 direct clients (:mod:`sdk.providers.s3.direct`, and the prepared requests a caller
sends itself) are a fast path beside botocore: every request they do not plainly answer
goes through botocore, which retries with backoff.  A connection failure of a direct request
sends that request through botocore at once; :class:`StepAside` also remembers failures in
a row, and after :data:`FAILURES` of them the direct path is not tried for
:data:`PAUSE` seconds (doubling while it keeps failing, up to :data:`MAX_PAUSE`): a network
that breaks the direct path then costs at most :data:`FAILURES` failed attempts, not one
per request.  After a pause one request tries the direct path again; a success closes the
matter.  No I/O here; the clock is :func:`time.monotonic`, so asyncio and trio callers
share the rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Connection failures in a row after which the direct path is left alone for a while.
FAILURES = 3
#: Seconds the first pause lasts; each failed retry after a pause doubles it.
PAUSE = 30.0
MAX_PAUSE = 300.0


class StepAside:
    """Consecutive connection failures of one direct client, and whether to use it now."""

    def __init__(
        self,
        name: str,
        *,
        failures: int = FAILURES,
        pause: float = PAUSE,
        max_pause: float = MAX_PAUSE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._limit = failures
        self._first_pause = pause
        self._max_pause = max_pause
        self._clock = clock
        self._failures = 0
        self._pause = pause
        self._until = 0.0
        #: Times the direct path was set aside (for tests and logs).
        self.steps = 0

    @property
    def usable(self) -> bool:
        """Whether to try the direct path for the next request."""
        return self._failures < self._limit or self._clock() >= self._until

    def failed(self, error: BaseException) -> None:
        """A direct request failed below HTTP (connect, reset, timeout)."""
        self._failures += 1
        if self._failures < self._limit:
            return
        if self._failures > self._limit:  # the retry after a pause failed too
            self._pause = min(self._pause * 2, self._max_pause)
        self._until = self._clock() + self._pause
        self.steps += 1
        log.warning(
            "%s: %d direct requests in a row failed (last: %s); botocore alone for %.0f s",
            self.name,
            self._failures,
            error,
            self._pause,
        )

    def succeeded(self) -> None:
        """A direct request got a reply."""
        if self._failures >= self._limit:
            log.info("%s: direct requests work again", self.name)
        self._failures = 0
        self._pause = self._first_pause


__all__ = ["FAILURES", "MAX_PAUSE", "PAUSE", "StepAside"]
