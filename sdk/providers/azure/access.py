"""Access control on Azure Blob Storage: SAS tokens scoped to containers, public access.

Everything here needs the storage account key (a cluster configured with only a SAS token
gets a clear :class:`~sdk.errors.InvalidRequest`), and hands out only narrower rights, which
the service enforces:

* **Temporary credentials** are container SAS tokens (read + list, and add/create/write/
  delete unless read-only) that expire after :attr:`CredentialTimes.ttl`.  Signing is local
  HMAC: issuing one costs no request.
* **Persistent credentials** are one stored access policy per container (its identifier is
  the credentials id) and a SAS bound to it, which holds no permissions or expiry of its
  own.  Removing the policy revokes the SAS at once.  Azure allows five stored access
  policies per container.
* **Public access** is the container's access level: ``container`` (anonymous read and
  list) or private.

One request sets both the stored access policies and the public access level of a
container, and leaving either out resets it (an omitted level means private, an omitted
policy is deleted).  Every change here therefore reads both first and writes both back;
two processes changing one container at the same moment can still lose one change, as
Azure offers no conditional write for them.

**Scoped stores**: the sdk's own requests on a container carry a container SAS held by a
:class:`RenewingSasCredential`, which signs a new one locally when the current one nears
its expiry, so a long-running mount or copy never presents an expired token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from azure.core.credentials import AzureSasCredential
from azure.storage.blob import (
    AccessPolicy,
    ContainerSasPermissions,
    PublicAccess,
    generate_container_sas,
)
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

from sdk.errors import InvalidRequest, ResourceNotFound
from sdk.providers.azure.auth import CLIENT_OPTIONS
from sdk.providers.azure.errors import translated
from sdk.providers.azure.store import AzureStore
from sdk.providers.base import CredentialTimes, IssuedCredentials, PersistentGrant
from sdk.retry import retry_transient

log = logging.getLogger(__name__)

#: Azure's limit of stored access policies per container.
MAX_STORED_POLICIES: Final = 5
#: Expiry of the stored access policies behind persistent credentials: "until revoked".
PERSISTENT_YEARS: Final = 100


def sas_permissions(*, read_only: bool) -> ContainerSasPermissions:
    """What scoped credentials may do on a container: read and list, and unless
    ``read_only`` write and delete too (no tags, immutability or version deletion)."""
    if read_only:
        return ContainerSasPermissions(read=True, list=True)
    return ContainerSasPermissions(
        read=True, list=True, add=True, create=True, write=True, delete=True
    )


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


class RenewingSasCredential(AzureSasCredential):
    """A container SAS that is re-signed when it nears expiry.

    azure-core's SAS policy reads :attr:`signature` for every request, so each request
    carries a token valid for at least ``margin`` seconds more.
    """

    def __init__(
        self, sign: Callable[[], tuple[str, datetime]], times: CredentialTimes, what: str
    ) -> None:
        token, self._expiry = sign()
        super().__init__(token)
        self._sign = sign
        self._clock = times.clock
        self._margin = timedelta(seconds=times.margin)
        self._what = what

    @property
    def signature(self) -> str:
        if self._clock() >= self._expiry - self._margin:
            token, self._expiry = self._sign()
            self.update(token)
            log.debug("renewed credentials of bucket %s, valid until %s", self._what, self._expiry)
        return self._signature

    def __repr__(self) -> str:
        return f"RenewingSasCredential({self._what!r}, expiry={_iso(self._expiry)})"


class ScopedAzureStore(AzureStore):
    """An :class:`~sdk.providers.azure.AzureStore` authenticated by a renewing container
    SAS.  The SAS travels in the policy, not in blob URLs, so a copy source gets the current
    one appended; signed URLs are made with the account key, as the admin's store does."""

    def __init__(
        self,
        service: BlobServiceClient,
        bucket_name: str,
        credential: RenewingSasCredential,
        *,
        account_key: str,
    ) -> None:
        super().__init__(service, bucket_name, account_key=account_key)
        self._sas = credential

    def _copy_source_url(self, blob: BlobClient) -> str:
        return f"{blob.url.split('?', 1)[0]}?{self._sas.signature}"

    def _part_source_url(self, key: str) -> str | None:
        return self._copy_source_url(self._blob(key))


class AccessOwner(Protocol):
    """What access control needs of the admin it serves (an
    :class:`~sdk.providers.azure.admin.AzureAdmin`)."""

    @property
    def credential_times(self) -> CredentialTimes:
        """Read afresh each time: the admin's attribute may be replaced."""
        ...

    async def open_bucket(
        self, bucket_name: str, credentials: Mapping[str, str] | None = None
    ) -> AzureStore: ...


class AzureAccess:
    """Access control for one admin (created by it on demand)."""

    def __init__(
        self,
        admin: AccessOwner,
        service: BlobServiceClient,
        *,
        account_url: str,
        account_name: str | None,
        account_key: str | None,
    ) -> None:
        self._admin = admin
        self._service = service
        self._account_url = account_url
        self._account_name = account_name
        self._account_key = account_key

    @property
    def _times(self) -> CredentialTimes:
        return self._admin.credential_times

    def _key(self, what: str) -> tuple[str, str]:
        if not self._account_key or not self._account_name:
            raise InvalidRequest(
                f"{what}: needs the storage account key of {self._account_url}; this cluster "
                "is configured with a SAS token only"
            )
        return self._account_name, self._account_key

    def _raw(self, container: str, sas_token: str, expiry: datetime) -> dict[str, str]:
        return {
            "storage_endpoint": self._account_url,
            "bucket_name": container,
            "sas_token": sas_token,
            "expiry": _iso(expiry),
        }

    def _sign(self, container: str, *, read_only: bool) -> tuple[str, datetime]:
        """A container SAS valid ``ttl`` seconds from now (rounded up: SAS times are whole
        seconds, and a 1 s token must still be usable)."""
        name, key = self._key(f"credentials for azure:{container}")
        times = self._times
        now = times.clock().astimezone(UTC)
        expiry = now.replace(microsecond=0) + timedelta(seconds=max(1, round(times.ttl)) + 1)
        token = generate_container_sas(
            name,
            container,
            account_key=key,
            permission=sas_permissions(read_only=read_only),
            expiry=expiry,
        )
        return token, expiry

    # -- temporary credentials -----------------------------------------------------------------

    async def temporary_credentials(
        self, container: str, *, read_only: bool = False
    ) -> IssuedCredentials:
        token, expiry = self._sign(container, read_only=read_only)
        return IssuedCredentials(credentials=self._raw(container, token, expiry), expires_at=expiry)

    async def open_scoped_bucket(self, container: str) -> AzureStore:
        """A store on ``container`` authenticated by a renewing read-write container SAS; the
        admin's own store where there is no account key to sign with."""
        if not self._account_key or not self._account_name:
            log.info(
                "azure:%s: no account key to sign scoped credentials with; the sdk's own "
                "requests use the cluster's SAS token",
                container,
            )
            return await self._admin.open_bucket(container)
        credential = RenewingSasCredential(
            lambda: self._sign(container, read_only=False), self._times, container
        )
        service = BlobServiceClient(self._account_url, credential=credential, **CLIENT_OPTIONS)
        return ScopedAzureStore(service, container, credential, account_key=self._account_key)

    # -- stored access policies ----------------------------------------------------------------

    @retry_transient
    async def _get_acl(self, container: str) -> tuple[dict[str, Any], str | None]:
        client: ContainerClient = self._service.get_container_client(container)
        with translated(f"azure:{container}: read access policy"):
            acl = await client.get_container_access_policy()
        policies = {si.id: si.access_policy for si in acl.get("signed_identifiers") or ()}
        return policies, acl.get("public_access")

    @retry_transient
    async def _set_acl(
        self, container: str, policies: Mapping[str, Any], public_access: str | None
    ) -> None:
        client: ContainerClient = self._service.get_container_client(container)
        with translated(f"azure:{container}: set access policy"):
            # Both parts always: an omitted level would make the container private and
            # omitted policies would be deleted (see the module docstring).
            await client.set_container_access_policy(
                signed_identifiers=dict(policies), public_access=public_access
            )

    async def _add_policy(self, container: str, identifier: str, read_only: bool) -> datetime:
        policies, public = await self._get_acl(container)
        if identifier not in policies and len(policies) >= MAX_STORED_POLICIES:
            raise InvalidRequest(
                f"azure:{container} already has {MAX_STORED_POLICIES} stored access policies, "
                "Azure's limit; remove some persistent credentials of this bucket first"
            )
        expiry = self._times.clock().astimezone(UTC).replace(microsecond=0) + timedelta(
            days=365 * PERSISTENT_YEARS
        )
        policies[identifier] = AccessPolicy(
            permission=sas_permissions(read_only=read_only), expiry=expiry
        )
        await self._set_acl(container, policies, public)
        return expiry

    async def _remove_policy(self, container: str, identifier: str) -> None:
        try:
            policies, public = await self._get_acl(container)
        except ResourceNotFound:
            return  # the container is gone, and its policies with it
        if policies.pop(identifier, None) is not None:
            await self._set_acl(container, policies, public)

    # -- persistent credentials ----------------------------------------------------------------

    async def create_persistent_credentials(
        self, credentials_id: str, containers: Sequence[str], *, read_only: bool = False
    ) -> PersistentGrant:
        """A stored access policy named ``credentials_id`` on each container, and SAS tokens
        bound to them."""
        if not containers:
            raise InvalidRequest("persistent credentials need at least one bucket")
        name, key = self._key("persistent credentials")
        if len(credentials_id) > 64:
            raise InvalidRequest(f"{credentials_id!r}: stored policy ids have 64 characters")
        done: list[str] = []
        per_bucket: dict[str, dict[str, str]] = {}
        try:
            for container in containers:
                expiry = await self._add_policy(container, credentials_id, read_only)
                done.append(container)
                token = generate_container_sas(
                    name, container, account_key=key, policy_id=credentials_id
                )
                per_bucket[container] = self._raw(container, token, expiry)
        except BaseException:
            for container in done:
                await self._remove_policy(container, credentials_id)
            raise
        state = {
            "kind": "azure-stored-policy",
            "identifier": credentials_id,
            "containers": list(containers),
            "read_only": read_only,
        }
        return PersistentGrant(per_bucket=per_bucket, state=state)

    async def detach_persistent_credentials(
        self, state: Mapping[str, Any], container: str
    ) -> Mapping[str, Any]:
        await self._remove_policy(container, str(state["identifier"]))
        return {**state, "containers": [c for c in state.get("containers", ()) if c != container]}

    async def revoke_persistent_credentials(self, state: Mapping[str, Any]) -> None:
        for container in state.get("containers", ()):
            await self._remove_policy(str(container), str(state["identifier"]))

    # -- public access -------------------------------------------------------------------------

    async def set_public_access(self, container: str, public: bool) -> None:
        policies, _ = await self._get_acl(container)
        await self._set_acl(container, policies, PublicAccess.CONTAINER if public else None)


__all__ = [
    "MAX_STORED_POLICIES",
    "AccessOwner",
    "AzureAccess",
    "RenewingSasCredential",
    "ScopedAzureStore",
    "sas_permissions",
]
