"""Fault injection for the in-memory provider: faults armed per operation, an offline switch
and a hook awaited before every operation.

Every operation of a memory store or admin first awaits :meth:`Faults.check`, which yields to
the event loop (as a network call would, so concurrent callers interleave), awaits the hook
and raises the first armed fault of that operation.  Faults of one operation fire in the
order they were armed.  An injected fault reaches the caller directly, as if the real
provider had exhausted its retries: the memory provider never retries, so tests do not sleep
through backoff.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from sdk.errors import TransientError

#: Names of the operations faults can be injected into.  ``read_body`` fails a read stream
#: after it delivered its first chunk (a connection dropped mid-transfer); ``copy_part`` is
#: one part of a copy in parts (objects over ``copy_settings.threshold``).
Op = Literal[
    "head",
    "read",
    "read_body",
    "read_range",
    "list",
    "put",
    "start_multipart",
    "upload_part",
    "list_parts",
    "complete",
    "abort",
    "copy",
    "copy_part",
    "delete",
    "delete_many",
    "sign_url",
    "create_bucket",
    "delete_bucket",
    "check_bucket",
]

#: ``hook(op, key)`` is awaited before each operation; it may sleep, record or raise.
Hook = Callable[[str, str], Awaitable[None]]


@dataclass
class _Fault:
    exc: BaseException | None
    times: int  # -1: until cleared


class Faults:
    """Faults armed per operation, consumed in the order they were armed."""

    def __init__(self) -> None:
        self._armed: dict[str, deque[_Fault]] = defaultdict(deque)
        self.offline: BaseException | None = None
        self.hook: Hook | None = None

    def arm(self, op: str, exc: BaseException | None, times: int) -> None:
        """Make the next ``times`` calls of ``op`` (-1: all until cleared) raise ``exc``."""
        self._armed[op].append(_Fault(exc, times))

    def clear(self) -> None:
        """Disarm every fault and come back online."""
        self._armed.clear()
        self.offline = None

    def take(self, op: str) -> BaseException | None:
        """The exception the next call of ``op`` raises, if any (consuming one fault)."""
        if self.offline is not None:
            return self.offline
        queue = self._armed.get(op)
        if not queue:
            return None
        fault = queue[0]
        if fault.times > 0:
            fault.times -= 1
            if fault.times == 0:
                queue.popleft()
        return fault.exc or TransientError(f"injected fault in {op}")

    async def check(self, op: str, key: str) -> None:
        """Yield to the loop, await the hook, and raise the fault armed for ``op``."""
        await asyncio.sleep(0)
        if self.hook is not None:
            await self.hook(op, key)
        exc = self.take(op)
        if exc is not None:
            raise _fresh(exc)


def _fresh(exc: BaseException) -> BaseException:
    """An exception instance fit to raise again: re-raising one object from several tasks
    would chain their tracebacks together."""
    try:
        new = type(exc)(*exc.args)
    except Exception:
        return exc
    new.__cause__ = exc.__cause__
    return new
