"""Shared fixtures.  Real servers live in ``tests.conftest_servers``, per-test provider
buckets in ``tests.conftest_stores``; this module builds sdk clients on top of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sdk.client import Client
from sdk.config import ClusterConfig, Config
from sdk.types import Provider

pytest_plugins: list[str] = ["tests.conftest_servers", "tests.conftest_stores"]


def cluster_for(kind: str, server: Any) -> ClusterConfig:
    """A cluster configuration pointing at a test server of ``kind`` (``s3``/``azure``)."""
    if kind == "s3":
        return ClusterConfig(
            name="s3test",
            provider=Provider.S3,
            endpoint_url=server.endpoint_url,
            region="us-east-1",
            credentials=server.credentials,
        )
    return ClusterConfig(
        name="aztest",
        provider=Provider.AZURE,
        endpoint_url=server.endpoint_url,
        credentials={"account_name": server.account_name, "account_key": server.account_key},
    )


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
