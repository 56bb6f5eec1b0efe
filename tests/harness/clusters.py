"""Cluster configurations pointing at the test servers, directly or through a proxy."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sdk.config import ClusterConfig
from sdk.types import Provider
from tests.harness.proxies import AZURE_BUSY, S3_SLOWDOWN, FaultProxy


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


def behind_proxy(kind: str, server: Any) -> tuple[FaultProxy, str]:
    """A started :class:`FaultProxy` in front of test server ``server`` of ``kind``, and
    the endpoint URL that reaches the server through it (stop the proxy when done)."""
    port = server.ports.s3 if kind == "s3" else server.port
    proxy = FaultProxy(
        ("127.0.0.1", port), busy_reply=S3_SLOWDOWN if kind == "s3" else AZURE_BUSY
    ).start()
    path = urlsplit(server.endpoint_url).path
    return proxy, proxy.url + path
