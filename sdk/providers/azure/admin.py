"""The Azure :class:`~sdk.providers.base.ProviderAdmin`: containers of one storage account.

Creates and deletes containers and opens stores on them; access control (SAS tokens, stored
access policies, public access) is delegated to :mod:`sdk.providers.azure.access`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sdk.errors import NotEmpty
from sdk.providers.azure.access import AzureAccess
from sdk.providers.azure.auth import resolve_auth
from sdk.providers.azure.checks import validate_container_name
from sdk.providers.azure.errors import translated
from sdk.providers.azure.store import AzureStore
from sdk.providers.base import CredentialTimes, IssuedCredentials, PersistentGrant
from sdk.retry import retry_transient


class AzureAdmin:
    """:class:`~sdk.providers.base.ProviderAdmin` for one storage account.

    ``endpoint_url`` is the account URL (``https://acct.blob.core.windows.net``, or
    ``http://127.0.0.1:10000/devstoreaccount1`` for Azurite); ``credentials`` holds
    ``account_name`` + ``account_key``, or ``sas_token``, or ``connection_string``.
    """

    def __init__(self, endpoint_url: str | None, credentials: Mapping[str, str]) -> None:
        self._auth = resolve_auth(endpoint_url, credentials)
        self._service = self._auth.client()
        self.credential_times = CredentialTimes()
        self._access_control: AzureAccess | None = None

    def __repr__(self) -> str:
        return f"AzureAdmin({self._auth.account_url!r})"

    @property
    def _access(self) -> AzureAccess:
        if self._access_control is None:
            self._access_control = AzureAccess(
                self,
                self._service,
                account_url=self._auth.account_url,
                account_name=self._auth.account_name,
                account_key=self._auth.account_key,
            )
        return self._access_control

    # -- access control: sdk.providers.azure.access -------------------------------------------

    async def open_scoped_bucket(self, bucket_name: str) -> AzureStore:
        """A store on container ``bucket_name`` with a renewing container SAS."""
        return await self._access.open_scoped_bucket(bucket_name)

    async def temporary_credentials(
        self, bucket_name: str, *, read_only: bool = False
    ) -> IssuedCredentials:
        """A container SAS for ``bucket_name`` (see :mod:`sdk.providers.azure.access`)."""
        return await self._access.temporary_credentials(bucket_name, read_only=read_only)

    async def create_persistent_credentials(
        self, credentials_id: str, bucket_names: Sequence[str], *, read_only: bool = False
    ) -> PersistentGrant:
        """A stored access policy per container and SAS tokens bound to them."""
        return await self._access.create_persistent_credentials(
            credentials_id, bucket_names, read_only=read_only
        )

    async def detach_persistent_credentials(
        self, state: Mapping[str, Any], bucket_name: str
    ) -> Mapping[str, Any]:
        """Remove the stored access policy from ``bucket_name``."""
        return await self._access.detach_persistent_credentials(state, bucket_name)

    async def revoke_persistent_credentials(self, state: Mapping[str, Any]) -> None:
        """Remove the stored access policies: their SAS tokens stop working."""
        await self._access.revoke_persistent_credentials(state)

    async def set_public_access(self, bucket_name: str, public: bool) -> None:
        """Set the container's access level to ``container`` or private."""
        await self._access.set_public_access(bucket_name, public)

    @retry_transient
    async def create_bucket(self, bucket_name: str) -> None:
        """Create container ``bucket_name``; :class:`~sdk.errors.AlreadyExists` if taken."""
        validate_container_name(bucket_name)
        with translated(f"azure:{bucket_name}"):
            await self._service.create_container(bucket_name)

    async def delete_bucket(self, bucket_name: str) -> None:
        """Delete an empty container; :class:`~sdk.errors.NotEmpty` if it holds any blob.

        The emptiness check and the delete are two requests: a blob written in between is
        deleted with the container, as Azure offers no conditional "delete if empty".
        """
        if await AzureStore(self._service, bucket_name)._probe():
            raise NotEmpty(f"azure:{bucket_name}: container is not empty")
        await self._delete_container(bucket_name)

    @retry_transient
    async def _delete_container(self, bucket_name: str) -> None:
        with translated(f"azure:{bucket_name}"):
            await self._service.delete_container(bucket_name)

    async def open_bucket(
        self, bucket_name: str, credentials: Mapping[str, str] | None = None
    ) -> AzureStore:
        """A store on container ``bucket_name`` with its own connection pool.

        ``credentials`` are an imported bucket's: ``storage_endpoint`` (the account URL) with
        ``sas_token`` or ``credential`` (the account key); without them the admin's own
        credentials are used.
        """
        auth = (
            self._auth
            if credentials is None
            # An imported bucket that names no account lives in this one.
            else resolve_auth(None, credentials, default_url=self._auth.account_url)
        )
        return AzureStore(auth.client(), bucket_name, account_key=auth.account_key)

    async def check_bucket(self, bucket_name: str, credentials: Mapping[str, str]) -> None:
        """Raise unless ``credentials`` can list container ``bucket_name``."""
        store = await self.open_bucket(bucket_name, credentials)
        try:
            await store._probe()
        finally:
            await store.close()

    async def close(self) -> None:
        """Close the admin's connection pool (stores it opened keep their own)."""
        await self._service.close()
