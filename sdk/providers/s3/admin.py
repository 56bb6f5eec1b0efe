"""The S3 :class:`~sdk.providers.base.ProviderAdmin`: buckets of one endpoint.

Creates and deletes buckets, opens stores on them and makes buckets public; credentials
scoped to buckets are delegated to :mod:`sdk.providers.s3.access` (temporary, STS) and
:mod:`sdk.providers.s3.iam` (persistent, IAM users), over the clients of
:mod:`sdk.providers.s3.services`.  What the admin hands out is always narrower than its own
credentials, which never leave it.

* SeaweedFS deletes a bucket that still holds objects; :meth:`S3Admin.delete_bucket` checks
  that it is empty first, so :class:`~sdk.errors.NotEmpty` is raised as on AWS.
* **Public access** is a bucket policy with two statements of ours (``Sid``
  ``blobfs-public-read`` and ``blobfs-public-list``, principal ``*``); other statements of
  the policy are kept, and the policy is deleted when ours were its only ones.  Not verified
  here: AWS's Block Public Access, which refuses public bucket policies on new AWS buckets
  until it is turned off.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sdk.errors import NotEmpty, ResourceNotFound
from sdk.providers.base import CredentialTimes, IssuedCredentials, PersistentGrant
from sdk.providers.s3.access import S3Access
from sdk.providers.s3.client import S3Client
from sdk.providers.s3.conventions import is_aws
from sdk.providers.s3.errors import error_code
from sdk.providers.s3.iam import IamUsers
from sdk.providers.s3.policies import PUBLIC_LIST_SID, PUBLIC_READ_SID, public_statements
from sdk.providers.s3.services import ServiceClients
from sdk.providers.s3.store import S3Store


class S3Admin:
    """Bucket administration on one S3 endpoint.

    ``credentials`` may hold ``access_key_id``, ``secret_access_key`` and ``session_token``
    (other keys are ignored); an empty mapping means botocore's default chain (environment,
    profile, instance role).
    """

    def __init__(
        self,
        endpoint_url: str | None,
        region: str | None,
        credentials: Mapping[str, str],
        *,
        sts_endpoint_url: str | None = None,
        iam_endpoint_url: str | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._credentials = dict(credentials)
        self._client: S3Client | None = None
        self._lock = asyncio.Lock()
        self.credential_times = CredentialTimes()
        self._sts_endpoint_url = sts_endpoint_url
        self._iam_endpoint_url = iam_endpoint_url
        self._services: ServiceClients | None = None
        self._sts: S3Access | None = None
        self._iam: IamUsers | None = None

    def __repr__(self) -> str:
        return f"S3Admin({self.endpoint_url or 'AWS'!r})"

    def _service_clients(self) -> ServiceClients:
        if self._services is None:
            self._services = ServiceClients(
                self,
                self._credentials,
                sts_endpoint_url=self._sts_endpoint_url,
                iam_endpoint_url=self._iam_endpoint_url,
            )
        return self._services

    @property
    def _access(self) -> S3Access:
        if self._sts is None:
            self._sts = S3Access(self, self._service_clients())
        return self._sts

    @property
    def _users(self) -> IamUsers:
        if self._iam is None:
            self._iam = IamUsers(self._service_clients())
        return self._iam

    async def admin_client(self) -> S3Client:
        """The client with the admin's own credentials, opened on first use."""
        async with self._lock:
            if self._client is None:
                client = S3Client()
                await client.open(self._credentials, self.endpoint_url, self.region)
                self._client = client
            return self._client

    async def create_bucket(self, bucket_name: str) -> None:
        """Create ``bucket_name``; :class:`~sdk.errors.AlreadyExists` if it exists, even
        when it is our own (AWS's ``BucketAlreadyOwnedByYou``)."""
        client = await self.admin_client()
        params: dict[str, Any] = {"Bucket": bucket_name}
        if self.region and self.region != "us-east-1" and is_aws(self.endpoint_url):
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        await client.call(f"create bucket {bucket_name}", "create_bucket", **params)

    async def delete_bucket(self, bucket_name: str) -> None:
        """Delete an empty bucket."""
        client = await self.admin_client()
        what = f"delete bucket {bucket_name}"
        # SeaweedFS would delete a bucket with objects in it: check first.
        page = await client.call(what, "list_objects_v2", Bucket=bucket_name, MaxKeys=1)
        if page.get("KeyCount", 0) or page.get("Contents"):
            raise NotEmpty(f"{what}: the bucket is not empty")
        await client.call(what, "delete_bucket", Bucket=bucket_name)

    async def open_bucket(
        self, bucket_name: str, credentials: Mapping[str, str] | None = None
    ) -> S3Store:
        """A store on ``bucket_name``, with the admin's credentials or an imported bucket's
        (``access_key_id``, ``secret_access_key``, ``endpoint_url``?, ``region_name``?,
        ``session_token``?); a missing endpoint or region falls back on the admin's."""
        if credentials is None:
            return await S3Store.open(
                bucket_name, self._credentials, endpoint_url=self.endpoint_url, region=self.region
            )
        return await S3Store.open(
            bucket_name,
            credentials,
            endpoint_url=credentials.get("endpoint_url") or self.endpoint_url,
            region=credentials.get("region_name") or self.region,
        )

    async def check_bucket(self, bucket_name: str, credentials: Mapping[str, str]) -> None:
        """Raise unless ``credentials`` can list ``bucket_name``."""
        store = await self.open_bucket(bucket_name, credentials)
        try:
            await store.client.call(
                f"list {bucket_name}", "list_objects_v2", Bucket=bucket_name, MaxKeys=1
            )
        finally:
            await store.close()

    # -- access control -----------------------------------------------------------------------

    async def open_scoped_bucket(self, bucket_name: str) -> S3Store:
        """A store on ``bucket_name`` with renewing STS credentials for it alone."""
        return await self._access.open_scoped_bucket(bucket_name)

    async def temporary_credentials(
        self, bucket_name: str, *, read_only: bool = False
    ) -> IssuedCredentials:
        """STS credentials for ``bucket_name`` alone (see :mod:`sdk.providers.s3.access`)."""
        return await self._access.temporary_credentials(bucket_name, read_only=read_only)

    async def create_persistent_credentials(
        self, credentials_id: str, bucket_names: Sequence[str], *, read_only: bool = False
    ) -> PersistentGrant:
        """An IAM user, access key and user policy for ``bucket_names``."""
        return await self._users.create_persistent_credentials(
            credentials_id, bucket_names, read_only=read_only
        )

    async def detach_persistent_credentials(
        self, state: Mapping[str, Any], bucket_name: str
    ) -> Mapping[str, Any]:
        """Drop ``bucket_name`` from the IAM user's policy."""
        return await self._users.detach_persistent_credentials(state, bucket_name)

    async def revoke_persistent_credentials(self, state: Mapping[str, Any]) -> None:
        """Delete the IAM user with its keys and policy."""
        await self._users.revoke_persistent_credentials(state)

    async def set_public_access(self, bucket_name: str, public: bool) -> None:
        """Add or remove our public-read statements in the bucket policy, keeping any
        others."""
        client = await self.admin_client()
        what = f"set public access of {bucket_name}"
        try:
            r = await client.call(what, "get_bucket_policy", Bucket=bucket_name)
            policy = json.loads(r.get("Policy") or "{}")
        except ResourceNotFound as e:
            if error_code(e) != "NoSuchBucketPolicy":
                raise
            policy = {}
        ours = {PUBLIC_READ_SID, PUBLIC_LIST_SID}
        statements = policy.get("Statement") or []
        if isinstance(statements, dict):
            statements = [statements]
        statements = [s for s in statements if s.get("Sid") not in ours]
        if public:
            statements += public_statements(bucket_name)
        if statements:
            policy = {"Version": policy.get("Version", "2012-10-17"), "Statement": statements}
            await client.call(
                what, "put_bucket_policy", Bucket=bucket_name, Policy=json.dumps(policy)
            )
        else:
            await client.call(what, "delete_bucket_policy", Bucket=bucket_name)

    async def close(self) -> None:
        """Close the admin's connections (stores it opened stay open)."""
        if self._services is not None:
            await self._services.close()
            self._services = self._sts = self._iam = None
        async with self._lock:
            if self._client is not None:
                await self._client.close()
                self._client = None


__all__ = ["S3Admin"]
