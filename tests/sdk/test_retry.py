"""sdk.retry: what is retried, how often, and the first attempt of ``retried`` made without
a retry controller."""

from __future__ import annotations

import pytest

from sdk import retry
from sdk.errors import PermissionDenied, TransientError

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    # Both the first wait and tenacity's later ones (it sleeps through asyncio.sleep).
    monkeypatch.setattr(retry.asyncio, "sleep", instant)


async def test_retried_returns_the_first_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientError("connection reset")
        return "ok"

    assert await retry.retried(flaky) == "ok"
    assert calls == 3


async def test_retried_gives_up_after_the_same_number_of_attempts_as_retrying() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise TransientError("server gone")

    with pytest.raises(TransientError, match="server gone"):
        await retry.retried(down)
    assert calls == retry.ATTEMPTS


async def test_retried_never_retries_a_final_error() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise PermissionDenied("bad key")

    with pytest.raises(PermissionDenied):
        await retry.retried(refused)
    assert calls == 1
