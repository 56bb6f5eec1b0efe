"""Progress reporting interfaces for transfers and deletes (as in the reference).

Callers implement the abstract classes; the sdk calls them from the event loop, so
implementations must not block.  Events are frozen dataclasses.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from yarl import URL


@dataclass(frozen=True)
class StorageProgressStart:
    src: URL
    dst: URL
    size: int


@dataclass(frozen=True)
class StorageProgressComplete:
    src: URL
    dst: URL
    size: int


@dataclass(frozen=True)
class StorageProgressStep:
    src: URL
    dst: URL
    current: int
    size: int


@dataclass(frozen=True)
class StorageProgressEnterDir:
    src: URL
    dst: URL


@dataclass(frozen=True)
class StorageProgressLeaveDir:
    src: URL
    dst: URL


@dataclass(frozen=True)
class StorageProgressFail:
    src: URL
    dst: URL
    message: str


@dataclass(frozen=True)
class StorageProgressDelete:
    uri: URL
    is_dir: bool


class AbstractFileProgress(abc.ABC):
    """Progress of one file: ``start``, any number of ``step``, then ``complete``."""

    @abc.abstractmethod
    def start(self, data: StorageProgressStart) -> None: ...

    @abc.abstractmethod
    def complete(self, data: StorageProgressComplete) -> None: ...

    @abc.abstractmethod
    def step(self, data: StorageProgressStep) -> None: ...


class AbstractRecursiveFileProgress(AbstractFileProgress):
    """Progress of a tree: file events plus entering, leaving and failing entries."""

    @abc.abstractmethod
    def enter(self, data: StorageProgressEnterDir) -> None: ...

    @abc.abstractmethod
    def leave(self, data: StorageProgressLeaveDir) -> None: ...

    @abc.abstractmethod
    def fail(self, data: StorageProgressFail) -> None: ...


class AbstractDeleteProgress(abc.ABC):
    """Called once for every key removed."""

    @abc.abstractmethod
    def delete(self, data: StorageProgressDelete) -> None: ...
