"""Storage providers behind the :mod:`sdk.providers.base` protocol, and how to open one.

Provider modules are imported only when a cluster needs them, so a process that only talks
to S3 never imports the Azure client (and the reverse).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sdk.errors import InvalidRequest

if TYPE_CHECKING:
    from sdk.config import ClusterConfig
    from sdk.providers.base import ProviderAdmin


async def open_admin(cluster: ClusterConfig) -> ProviderAdmin:
    """The provider admin of ``cluster``.

    An ``embedded`` cluster first makes sure the local SeaweedFS server runs (starting it if
    needed, in a thread since that blocks for seconds) and then talks S3 to it.
    """
    from sdk.types import Provider

    if cluster.embedded:
        from sdk.config import data_dir
        from sdk.local_server import ensure_local_server
        from sdk.providers.s3.admin import S3Admin

        server = await asyncio.to_thread(ensure_local_server, data_dir())
        return S3Admin(
            endpoint_url=server.endpoint_url,
            region=None,
            credentials={
                "access_key_id": server.access_key_id,
                "secret_access_key": server.secret_access_key,
            },
        )
    if cluster.provider.is_s3:
        from sdk.providers.s3.admin import S3Admin

        return S3Admin(
            endpoint_url=cluster.endpoint_url,
            region=cluster.region,
            credentials=cluster.credentials,
            sts_endpoint_url=cluster.sts_endpoint_url,
            iam_endpoint_url=cluster.iam_endpoint_url,
        )
    if cluster.provider is Provider.AZURE:
        from sdk.providers.azure import AzureAdmin

        return AzureAdmin(endpoint_url=cluster.endpoint_url, credentials=cluster.credentials)
    raise InvalidRequest(
        f"cluster {cluster.name!r}: provider {cluster.provider.value!r} is not supported"
    )


__all__ = ["open_admin"]
