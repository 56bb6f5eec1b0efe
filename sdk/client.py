"""The sdk's entry point: ``async with Client.from_config() as client: client.buckets...``."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from sdk.buckets import Buckets
from sdk.config import Config, data_dir, load_config
from sdk.registry import Registry
from sdk.store_pool import StorePool


class Client:
    """Holds the configuration, the registry and open provider connections.

    Use it as an async context manager; it closes every connection on exit.
    """

    def __init__(self, config: Config, *, registry_path: Path | None = None) -> None:
        self.config = config
        self._registry = Registry(registry_path or data_dir() / "registry.sqlite3")
        self._pool = StorePool(config)
        self.buckets = Buckets(config, self._registry, self._pool)

    @classmethod
    def from_config(cls, config: Config | None = None) -> Client:
        """A client for ``config``, or for the configuration file and environment."""
        return cls(config or load_config())

    @property
    def cluster_name(self) -> str:
        return self.config.current_cluster

    @property
    def username(self) -> str:
        return self.config.owner

    async def close(self) -> None:
        await self._pool.close()
        self._registry.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
