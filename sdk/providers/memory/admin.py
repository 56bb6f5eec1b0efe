"""The in-memory :class:`~sdk.providers.base.ProviderAdmin`: a set of buckets, no access control.

Stores opened on the same bucket share its objects.  Access control is absent: the admin
cannot issue, scope or revoke credentials (:class:`~sdk.errors.InvalidRequest`), and a store
is "scoped" by having the admin's rights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sdk.errors import AlreadyExists, InvalidRequest, NotEmpty, PermissionDenied, ResourceNotFound
from sdk.providers.base import CredentialTimes, IssuedCredentials, PersistentGrant
from sdk.providers.memory.bucket import MemoryBucket
from sdk.providers.memory.checks import check_bucket_name
from sdk.providers.memory.faults import Faults, Op
from sdk.providers.memory.store import MemoryStore


class MemoryAdmin:
    """A set of in-memory buckets; stores opened on the same bucket share its objects.

    With ``credentials`` (``access_key_id``/``secret_access_key``) set, a store opened with
    other credentials fails every operation with :class:`~sdk.errors.PermissionDenied`, the
    way a real provider refuses a wrong secret.
    """

    def __init__(self, credentials: Mapping[str, str] | None = None) -> None:
        self._buckets: dict[str, MemoryBucket] = {}
        self._credentials = dict(credentials or {})
        self._faults = Faults()
        self.credential_times = CredentialTimes()

    # -- fault injection on admin operations -----------------------------------------------

    def fail_next(self, op: Op, exc: BaseException | None = None, *, times: int = 1) -> None:
        """Make the next ``times`` admin operations ``op`` raise ``exc`` (default: a
        :class:`~sdk.errors.TransientError`)."""
        self._faults.arm(op, exc, times)

    # -- ProviderAdmin -----------------------------------------------------------------------

    async def create_bucket(self, bucket_name: str) -> None:
        """Create an empty bucket; :class:`~sdk.errors.AlreadyExists` if the name is taken."""
        await self._faults.check("create_bucket", bucket_name)
        check_bucket_name(bucket_name)
        if bucket_name in self._buckets:
            raise AlreadyExists(f"bucket {bucket_name!r} already exists")
        self._buckets[bucket_name] = MemoryBucket()

    async def delete_bucket(self, bucket_name: str) -> None:
        """Delete an empty bucket."""
        await self._faults.check("delete_bucket", bucket_name)
        bucket = self.bucket(bucket_name)
        if bucket.objects:
            raise NotEmpty(f"bucket {bucket_name!r} is not empty")
        del self._buckets[bucket_name]

    async def open_bucket(
        self, bucket_name: str, credentials: Mapping[str, str] | None = None
    ) -> MemoryStore:
        """A store on ``bucket_name``.  Like the real providers, nothing is checked until the
        first operation."""
        allowed = credentials is None or self._accepts(credentials)
        return MemoryStore(self, bucket_name, allowed=allowed)

    async def check_bucket(self, bucket_name: str, credentials: Mapping[str, str]) -> None:
        """Raise unless ``credentials`` could list ``bucket_name``."""
        await self._faults.check("check_bucket", bucket_name)
        if not self._accepts(credentials):
            raise PermissionDenied("credentials refused")
        self.bucket(bucket_name)

    # -- access control: the in-memory provider has none -------------------------------------

    async def open_scoped_bucket(self, bucket_name: str) -> MemoryStore:
        """A store with the admin's rights: there are no credentials to scope here."""
        return await self.open_bucket(bucket_name)

    def _no_access_control(self) -> InvalidRequest:
        return InvalidRequest("the in-memory provider cannot issue or scope credentials")

    async def temporary_credentials(
        self, bucket_name: str, *, read_only: bool = False
    ) -> IssuedCredentials:
        raise self._no_access_control()

    async def create_persistent_credentials(
        self, credentials_id: str, bucket_names: Sequence[str], *, read_only: bool = False
    ) -> PersistentGrant:
        raise self._no_access_control()

    async def detach_persistent_credentials(
        self, state: Mapping[str, Any], bucket_name: str
    ) -> Mapping[str, Any]:
        raise self._no_access_control()

    async def revoke_persistent_credentials(self, state: Mapping[str, Any]) -> None:
        raise self._no_access_control()

    async def set_public_access(self, bucket_name: str, public: bool) -> None:
        raise self._no_access_control()

    async def close(self) -> None:
        """Nothing to release; the buckets stay for other stores of this admin."""

    # -- inspection helpers for tests --------------------------------------------------------

    def bucket_names(self) -> list[str]:
        return sorted(self._buckets)

    def _accepts(self, credentials: Mapping[str, str]) -> bool:
        return all(
            credentials.get(name) == value
            for name, value in self._credentials.items()
            if name in ("access_key_id", "secret_access_key")
        )

    def bucket(self, bucket_name: str) -> MemoryBucket:
        """The contents of ``bucket_name``; :class:`~sdk.errors.ResourceNotFound` if none."""
        try:
            return self._buckets[bucket_name]
        except KeyError:
            raise ResourceNotFound(f"bucket {bucket_name!r} does not exist") from None
