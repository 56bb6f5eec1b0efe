"""The STS and IAM clients access control works through, opened on demand with an admin's
credentials, and the translation of their errors.

SeaweedFS and MinIO serve STS and IAM on their S3 port; AWS has its own endpoints, which
botocore knows.  A server without the API asked for answers :class:`Unsupported`, not a
transient error, so callers can fall back (a scoped store on the admin's credentials) or
say what is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from typing import Any, Final, Protocol

from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from sdk import logsafe
from sdk.errors import InvalidRequest
from sdk.providers.base import CredentialTimes
from sdk.providers.s3.client import CONNECT_TIMEOUT, READ_TIMEOUT, S3Client, new_session
from sdk.providers.s3.conventions import is_aws
from sdk.providers.s3.errors import translate
from sdk.providers.s3.store import S3Store
from sdk.providers.s3.transport import botocore_verify
from sdk.retry import retrying

# botocore's debug log would print the secrets access control handles.
logsafe.install()

#: Error codes meaning "this server has no such API", as opposed to "you may not".
_UNSUPPORTED_CODES: Final = frozenset(
    {"NotImplemented", "InvalidAction", "UnsupportedOperation", "MethodNotAllowed"}
)


class Unsupported(InvalidRequest):
    """The server does not offer the API asked for (STS, IAM)."""


class AccessOwner(Protocol):
    """What access control needs of the admin it serves (an
    :class:`~sdk.providers.s3.admin.S3Admin`)."""

    @property
    def endpoint_url(self) -> str | None: ...

    @property
    def region(self) -> str | None: ...

    @property
    def credential_times(self) -> CredentialTimes:
        """Read afresh each time: the admin's attribute may be replaced."""
        ...

    async def admin_client(self) -> S3Client:
        """The client holding the admin's own credentials."""
        ...

    async def open_bucket(
        self, bucket_name: str, credentials: Mapping[str, str] | None = None
    ) -> S3Store: ...


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Translate botocore errors as :mod:`sdk.providers.s3.errors` does, except that "no such
    API" answers become :class:`Unsupported` instead of (for a 501) a transient error."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in _UNSUPPORTED_CODES or status in (405, 501):
            raise Unsupported(f"{what}: not supported by this server ({code or status})") from exc
        err = translate(exc, what)
        assert err is not None
        raise err from exc
    except Exception as exc:
        err = translate(exc, what)
        if err is None or err is exc:
            raise
        raise err from exc


class ServiceClients:
    """STS and IAM clients with ``credentials`` (the admin's), opened on first use; the
    admin closes them."""

    def __init__(
        self,
        owner: AccessOwner,
        credentials: Mapping[str, str],
        *,
        sts_endpoint_url: str | None = None,
        iam_endpoint_url: str | None = None,
    ) -> None:
        self._owner = owner
        self._credentials = credentials
        default = None if is_aws(owner.endpoint_url) else owner.endpoint_url
        self._endpoints = {
            "sts": sts_endpoint_url or default,
            "iam": iam_endpoint_url or default,
        }
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    @property
    def region(self) -> str:
        """The region requests are signed for: SigV4 needs one; S3-compatible stores accept
        any, IAM on AWS is us-east-1."""
        return self._owner.region or "us-east-1"

    def endpoint(self, service: str) -> str | None:
        """The endpoint of ``service`` (``None``: botocore's for AWS)."""
        return self._endpoints[service]

    def credentials_for(self, bucket_name: str, **secrets: str) -> dict[str, str]:
        """A credentials mapping for ``bucket_name`` in the reference's keys."""
        out = {"bucket_name": bucket_name, **secrets}
        if self._owner.endpoint_url:
            out["endpoint_url"] = self._owner.endpoint_url
        if self._owner.region:
            out["region_name"] = self._owner.region
        return out

    async def _client(self, service: str) -> Any:
        async with self._lock:
            client = self._clients.get(service)
            if client is None:
                session = new_session(self._credentials, self.region)
                config = AioConfig(
                    retries={"max_attempts": 1, "mode": "standard"},  # sdk.retry retries
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    # AssumeRole without RoleArn: botocore would refuse to send it.
                    parameter_validation=False,
                )
                with api_errors(f"connect to {service.upper()}"):
                    client = await self._stack.enter_async_context(
                        session.client(
                            service,
                            endpoint_url=self._endpoints[service],
                            verify=botocore_verify(self._endpoints[service]),
                            config=config,
                        )
                    )
                self._clients[service] = client
            return client

    async def call(self, service: str, what: str, op: str, **params: Any) -> dict[str, Any]:
        """``<service client>.<op>(**params)`` with translated errors, transient ones
        retried."""
        client = await self._client(service)
        async for attempt in retrying():
            with attempt, api_errors(what):
                result: dict[str, Any] = await getattr(client, op)(**params)
                return result
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def close(self) -> None:
        async with self._lock:
            self._clients.clear()
            await self._stack.aclose()


__all__ = ["AccessOwner", "ServiceClients", "Unsupported", "api_errors"]
