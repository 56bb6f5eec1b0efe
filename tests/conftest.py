"""Fixtures every layer's tests may use.  Real servers live in
``tests.harness.server_fixtures``, per-test provider buckets in
``tests.harness.store_fixtures``; this module builds sdk clients on top of them.  Each
layer's folder holds its own tests and helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from sdk.client import Client
from sdk.config import Config
from tests.harness.clusters import cluster_for

pytest_plugins: list[str] = ["tests.harness.server_fixtures", "tests.harness.store_fixtures"]


@pytest.fixture(params=["s3", "azure"])
def provider_kind(request: pytest.FixtureRequest) -> str:
    """Runs a test once against SeaweedFS (S3) and once against Azurite."""
    return str(request.param)


@pytest.fixture
def client_config(provider_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    server = request.getfixturevalue(f"{provider_kind}_server")
    cluster = cluster_for(provider_kind, server)
    return Config(
        clusters={cluster.name: cluster},
        current_cluster=cluster.name,
        owner="alice",
        path=tmp_path / "config.toml",
    )


@pytest_asyncio.fixture
async def client(client_config: Config, tmp_path: Path) -> AsyncIterator[Client]:
    """An sdk client on a real server with a private registry."""
    async with Client(client_config, registry_path=tmp_path / "registry.sqlite3") as c:
        yield c
