"""sdk.retry: what is retried, how often, and the pause before repeating a request a server
answered busy; sdk.providers.step_aside: when a direct client is left alone."""

from __future__ import annotations

import pytest

from sdk import retry
from sdk.errors import PermissionDenied, TransientError
from sdk.providers.step_aside import StepAside

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    # tenacity sleeps through asyncio.sleep.
    monkeypatch.setattr(retry.asyncio, "sleep", instant)


async def test_retry_transient_returns_the_first_success() -> None:
    calls = 0

    @retry.retry_transient
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientError("connection reset")
        return "ok"

    assert await flaky() == "ok"
    assert calls == 3


async def test_retry_transient_gives_up_after_its_attempts() -> None:
    calls = 0

    @retry.retry_transient
    async def down() -> None:
        nonlocal calls
        calls += 1
        raise TransientError("server gone")

    with pytest.raises(TransientError, match="server gone"):
        await down()
    assert calls == retry.ATTEMPTS


async def test_the_process_policy_bounds_the_attempts() -> None:
    calls = 0

    @retry.retry_transient
    async def down() -> None:
        nonlocal calls
        calls += 1
        raise TransientError("server gone")

    assert retry.current_policy() == retry.RetryPolicy(retry.ATTEMPTS, retry.MAX_SECONDS)
    retry.set_policy(retry.RetryPolicy(attempts=2))
    try:
        with pytest.raises(TransientError):
            await down()
        assert calls == 2
        calls = 0
        retry.set_policy(retry.RetryPolicy(attempts=1))
        with pytest.raises(TransientError):
            await down()
        assert calls == 1, "one attempt: no retry"
    finally:
        retry.set_policy(retry.RetryPolicy())
    with pytest.raises(ValueError, match="at least 1"):
        retry.RetryPolicy(attempts=0)


async def test_retry_transient_never_retries_a_final_error() -> None:
    calls = 0

    @retry.retry_transient
    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise PermissionDenied("bad key")

    with pytest.raises(PermissionDenied):
        await refused()
    assert calls == 1


async def test_busy_delay_is_a_real_pause_with_jitter() -> None:
    delays = {retry.busy_delay() for _ in range(50)}
    assert all(retry.FIRST_WAIT <= d <= 2 * retry.FIRST_WAIT for d in delays)
    assert len(delays) > 1, "no jitter: clients told to slow down would come back together"


async def test_step_aside_after_failures_in_a_row_then_retry_after_a_pause() -> None:
    now = [0.0]
    health = StepAside("t", failures=3, pause=10.0, max_pause=25.0, clock=lambda: now[0])
    error = TransientError("reset")
    for _ in range(2):
        health.failed(error)
        assert health.usable
    health.succeeded()  # a success in between: the count starts again
    for _ in range(3):
        assert health.usable
        health.failed(error)
    assert not health.usable and health.steps == 1
    now[0] = 10.0
    assert health.usable, "one request tries again after the pause"
    health.failed(error)
    assert not health.usable and health.steps == 2
    now[0] = 29.0
    assert not health.usable, "a failed retry doubles the pause"
    now[0] = 30.0
    health.failed(error)
    now[0] = 54.0
    assert not health.usable
    now[0] = 55.0
    assert health.usable, "the pause is bounded"
    health.succeeded()
    assert health.usable
    health.failed(error)
    assert health.usable, "a success resets the count"
