"""Work on its way, shared: the first to ask for a key does the work, later askers wait.

Concurrent readers of one block (the kernel sends reads of one file in parallel, and
read-ahead races readers) must cost one GET, concurrent attribute checks of one file one
HEAD, and the lookups of an ``ls -l`` racing a directory's re-listing one LIST.
:class:`InFlight` is the table of that work, and :class:`Flight` one entry of it.

Protocol, on one trio thread (the table is changed only between awaits, so it needs no
lock):

* whoever :meth:`~InFlight.start`\\ s a key owns its flight and must end it with
  :meth:`~InFlight.succeed` or :meth:`~InFlight.fail`, whatever happens: a flight never
  ended strands its waiters.  :meth:`~InFlight.run` does the work of one key that way;
  ``start`` is for an owner that claims several keys at once and ends them one by one;
* everyone else awaits :meth:`Flight.wait`: the owner's result, or its error raised again.
  An owner that was cancelled (its request was interrupted) is not a failure of the work:
  its waiters are told to ask again, and one of them becomes the next owner;
* failures are handed to the waiters of that flight only, never kept: the next asker
  tries again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import trio

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Flight(Generic[T]):
    """One piece of work on its way, and how it ended."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        #: Set when the owner ended the work.
        self.done = trio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    async def wait(self) -> bool:
        """Wait for the owner to end the work: ``True`` when it succeeded (its value is
        :attr:`result`), ``False`` when the owner was cancelled (ask again); the owner's
        error is raised."""
        await self.done.wait()
        if self.error is None:
            return True
        if isinstance(self.error, trio.Cancelled):
            return False
        raise self.error


class InFlight(Generic[K, T]):
    """The flights on their way, by key (see the module docstring)."""

    def __init__(self) -> None:
        self._flights: dict[K, Flight[T]] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._flights

    def get(self, key: K) -> Flight[T] | None:
        """The flight of ``key`` on its way, if any."""
        return self._flights.get(key)

    def start(self, key: K) -> Flight[T]:
        """A new flight of ``key``, owned by the caller, whom later askers wait for."""
        flight: Flight[T] = Flight()
        self._flights[key] = flight
        return flight

    async def run(self, key: K, work: Callable[[], Awaitable[T]]) -> T:
        """``await work()`` as the owner of a new flight of ``key``, ended with its result
        or its error."""
        flight = self.start(key)
        try:
            result = await work()
        except BaseException as e:
            self.fail(key, flight, e)
            raise
        self.succeed(key, flight, result)
        return result

    def succeed(self, key: K, flight: Flight[T], result: T) -> None:
        """End ``flight`` with ``result``."""
        flight.result = result
        self._end(key, flight)

    def fail(self, key: K, flight: Flight[T], error: BaseException) -> None:
        """End ``flight`` with ``error`` (its waiters raise it; a ``trio.Cancelled`` sends
        them to ask again)."""
        flight.error = error
        self._end(key, flight)

    def _end(self, key: K, flight: Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        flight.done.set()


__all__ = ["Flight", "InFlight"]
