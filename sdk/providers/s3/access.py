"""Temporary credentials scoped to one S3 bucket, and stores that sign with them.

Everything here acts with the cluster's administrative credentials and hands out only
narrower ones, which the server itself enforces:

* **Temporary credentials** come from STS with an inline session policy that names one
  bucket (``s3:List*`` on the bucket; ``s3:GetObject``, plus ``PutObject``/``DeleteObject``/
  ``AbortMultipartUpload`` unless read-only, on its keys: :mod:`sdk.providers.s3.policies`).
  ``AssumeRole`` is tried first, without a ``RoleArn``: SeaweedFS (4.x) and MinIO then issue
  a session for the caller cut down to the policy.  AWS needs a role there, so
  ``GetFederationToken`` (which AWS allows for IAM users) is tried next.  The first method
  whose credentials can list the bucket is used from then on.  SeaweedFS also answers
  ``GetFederationToken`` but its credentials are refused everywhere for an identity from
  ``-s3.config``, hence the check.
* **Scoped stores** (:meth:`S3Access.open_scoped_bucket`): the sdk's own requests on a
  bucket are signed with temporary credentials for that bucket, held in botocore's
  ``RefreshableCredentials``, which asks for new ones (one STS call) before they expire;
  nothing is renewed while a store is idle.  SeaweedFS refuses presigned URLs made with STS
  credentials (and they would die with the session), so a scoped store signs URLs with the
  admin's client.

Persistent credentials are :mod:`sdk.providers.s3.iam`'s.  Verified against SeaweedFS 4.48
(``tests/sdk/test_credentials.py``); not verified here: AWS (``GetFederationToken``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiobotocore.credentials import AioRefreshableCredentials

from sdk.errors import BlobfsError, InvalidRequest, ResourceNotFound, TransientError
from sdk.providers.base import CredentialTimes, IssuedCredentials, check_expiry
from sdk.providers.s3.client import S3Client, new_session
from sdk.providers.s3.policies import bucket_policy
from sdk.providers.s3.services import AccessOwner, ServiceClients, Unsupported, api_errors
from sdk.providers.s3.store import S3Store

log = logging.getLogger(__name__)

#: STS's limits on DurationSeconds (AssumeRole: 15 min .. 12 h on AWS and SeaweedFS).
STS_MIN_SECONDS: Final = 900
STS_MAX_SECONDS: Final = 43_200


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


class S3Access:
    """Temporary credentials and scoped stores for one admin (created by it on demand)."""

    def __init__(self, admin: AccessOwner, services: ServiceClients) -> None:
        self._admin = admin
        self._services = services
        #: How temporary credentials are issued, once found: "assume_role" or
        #: "get_federation_token".
        self._method: str | None = None
        self._no_sts: str | None = None  # why neither method works, once known
        self._detect_lock = asyncio.Lock()

    @property
    def _times(self) -> CredentialTimes:
        return self._admin.credential_times

    def _duration(self) -> int:
        return int(min(max(self._times.ttl, STS_MIN_SECONDS), STS_MAX_SECONDS))

    async def _sts(self, method: str, policy: str) -> Mapping[str, Any]:
        what = f"issue temporary credentials ({method})"
        if method == "assume_role":
            r = await self._services.call(
                "sts",
                what,
                "assume_role",
                RoleSessionName=f"blobfs-{secrets.token_hex(8)}",
                Policy=policy,
                DurationSeconds=self._duration(),
            )
        else:
            r = await self._services.call(
                "sts",
                what,
                "get_federation_token",
                Name=f"blobfs-{secrets.token_hex(6)}",
                Policy=policy,
                DurationSeconds=self._duration(),
            )
        creds: Mapping[str, Any] = r["Credentials"]
        return creds

    async def _probe(self, bucket_name: str, creds: Mapping[str, Any]) -> None:
        """Raise unless ``creds`` can list ``bucket_name``."""
        client = S3Client()
        session = new_session(
            {
                "access_key_id": creds["AccessKeyId"],
                "secret_access_key": creds["SecretAccessKey"],
                "session_token": creds["SessionToken"],
            },
            self._services.region,
        )
        await client.open({}, self._admin.endpoint_url, self._services.region, session=session)
        try:
            await client.call(
                f"list {bucket_name} with temporary credentials",
                "list_objects_v2",
                Bucket=bucket_name,
                MaxKeys=1,
            )
        except ResourceNotFound:
            pass  # authenticated and authorised; the bucket itself is missing
        finally:
            await client.close()

    async def _detect(self, bucket_name: str, policy: str) -> Mapping[str, Any]:
        """Find the STS method this server honours; return credentials it issued."""
        reasons: list[str] = []
        for method in ("assume_role", "get_federation_token"):
            try:
                creds = await self._sts(method, policy)
                await self._probe(bucket_name, creds)
            except TransientError:
                raise
            except BlobfsError as e:
                reasons.append(str(e))
                continue
            log.debug("%s: temporary credentials via STS %s", self._admin, method)
            self._method = method
            return creds
        self._no_sts = "; ".join(reasons)
        raise self._unsupported()

    def _unsupported(self) -> InvalidRequest:
        return Unsupported(
            f"{self._services.endpoint('sts') or 'AWS STS'} cannot issue credentials scoped to a "
            f"bucket (neither STS AssumeRole with a session policy nor GetFederationToken "
            f"works: {self._no_sts})"
        )

    async def issue(
        self, bucket_name: str, *, read_only: bool
    ) -> tuple[dict[str, str], datetime, datetime]:
        """STS credentials for ``bucket_name``: the raw mapping, the server's expiry and the
        time by which to renew them (never later than ``ttl`` by the clock)."""
        policy = json.dumps(bucket_policy([bucket_name], read_only=read_only))
        if self._no_sts is not None:
            raise self._unsupported()
        if self._method is None:
            async with self._detect_lock:
                if self._method is None:
                    creds = await self._detect(bucket_name, policy)
                else:
                    creds = await self._sts(self._method, policy)
        else:
            creds = await self._sts(self._method, policy)
        expiration: datetime = creds["Expiration"]
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        expiration = expiration.astimezone(UTC)
        times = self._times
        renew_by = min(expiration, times.clock() + timedelta(seconds=times.ttl))
        raw = self._services.credentials_for(
            bucket_name,
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            expiration=_iso(expiration),
        )
        return raw, expiration, renew_by

    async def temporary_credentials(
        self, bucket_name: str, *, read_only: bool = False
    ) -> IssuedCredentials:
        raw, expiration, _ = await self.issue(bucket_name, read_only=read_only)
        return IssuedCredentials(credentials=raw, expires_at=expiration)

    async def open_scoped_bucket(self, bucket_name: str) -> S3Store:
        """A read-write store on ``bucket_name`` signing with renewing STS credentials; with
        the admin's credentials where the server has no usable STS."""
        try:
            raw, _, renew_by = await self.issue(bucket_name, read_only=False)
        except Unsupported as e:
            log.info("%s; the sdk's own requests use the cluster's credentials", e)
            return await self._admin.open_bucket(bucket_name)
        times = self._times
        margin = times.margin

        async def renew() -> dict[str, str]:
            new, _, until = await self.issue(bucket_name, read_only=False)
            log.debug("renewed credentials of bucket %s, valid until %s", bucket_name, until)
            return {
                "access_key": new["access_key_id"],
                "secret_key": new["secret_access_key"],
                "token": new["session_token"],
                "expiry_time": until.isoformat(),
            }

        credentials = AioRefreshableCredentials(
            access_key=raw["access_key_id"],
            secret_key=raw["secret_access_key"],
            token=raw["session_token"],
            expiry_time=renew_by,
            refresh_using=renew,
            method="blobfs-sts",
            time_fetcher=times.clock,
            # Renew ahead of expiry without blocking (advisory), and block requests only
            # in the last stretch (mandatory), as botocore does for its own providers.
            advisory_timeout=margin,
            mandatory_timeout=margin / 2,
        )
        session = new_session(credentials, self._services.region)
        store = ScopedS3Store(bucket_name, self)
        await store.client.open(
            {}, self._admin.endpoint_url, self._services.region, session=session
        )
        log.debug("bucket %s: scoped credentials until %s", bucket_name, renew_by)
        return store

    async def sign_url(self, bucket_name: str, key: str, expires_in_seconds: int) -> str:
        """A presigned GET of ``key`` made with the admin's credentials (1 s .. 7 days)."""
        check_expiry(expires_in_seconds)
        client = await self._admin.admin_client()
        if client.client is None:
            raise RuntimeError("S3 client is closed")
        with api_errors(f"sign {bucket_name}/{key}"):
            url: str = await client.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket_name, "Key": key},
                ExpiresIn=expires_in_seconds,
            )
        return url


class ScopedS3Store(S3Store):
    """An :class:`~sdk.providers.s3.store.S3Store` whose requests use scoped, renewing
    credentials, and whose signed URLs are made by the admin (see the module docstring)."""

    def __init__(self, bucket_name: str, access: S3Access) -> None:
        super().__init__(bucket_name)
        self._access = access

    async def sign_url(self, key: str, expires_in_seconds: int) -> str:
        return await self._access.sign_url(self.bucket_name, key, expires_in_seconds)


__all__ = ["STS_MAX_SECONDS", "STS_MIN_SECONDS", "S3Access", "ScopedS3Store"]
