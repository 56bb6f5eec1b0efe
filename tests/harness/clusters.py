"""Cluster configurations pointing at the test servers."""

from __future__ import annotations

from typing import Any

from sdk.config import ClusterConfig
from sdk.types import Provider


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
