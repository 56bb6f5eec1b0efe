"""Access control on S3 and S3-compatible stores: credentials scoped to buckets, public access.

Everything here acts with the cluster's administrative credentials and hands out only
narrower ones, which the server itself enforces:

* **Temporary credentials** come from STS with an inline session policy that names one
  bucket (``s3:List*`` on the bucket; ``s3:GetObject``, plus ``PutObject``/``DeleteObject``/
  ``AbortMultipartUpload`` unless read-only, on its keys).  ``AssumeRole`` is tried first,
  without a ``RoleArn``: SeaweedFS (4.x) and MinIO then issue a session for the caller cut
  down to the policy.  AWS needs a role there, so ``GetFederationToken`` (which AWS allows
  for IAM users) is tried next.  The first method whose credentials can list the bucket is
  used from then on.  SeaweedFS also answers ``GetFederationToken`` but its credentials are
  refused everywhere for an identity from ``-s3.config``, hence the check.
* **Persistent credentials** are an IAM user with one access key and one inline user policy
  covering their buckets (``CreateUser``/``PutUserPolicy``/``CreateAccessKey``: the IAM API
  of AWS, and SeaweedFS's embedded IAM on its S3 port).  Revoking deletes the keys, the
  policy and the user.  The policy documents are :mod:`sdk.providers.s3.policies`.
* **Public access** is a bucket policy with two statements of ours (``Sid``
  ``blobfs-public-read`` and ``blobfs-public-list``, principal ``*``); other statements of
  the policy are kept, and the policy is deleted when ours were its only ones.
* **Scoped stores** (:meth:`S3Access.open_scoped_bucket`): the sdk's own requests on a
  bucket are signed with temporary credentials for that bucket, held in botocore's
  ``RefreshableCredentials``, which asks for new ones (one STS call) before they expire;
  nothing is renewed while a store is idle.  SeaweedFS refuses presigned URLs made with STS
  credentials (and they would die with the session), so a scoped store signs URLs with the
  admin's client.

Verified against SeaweedFS 4.48 (``tests/test_credentials.py``).  Not verified here: AWS
(``GetFederationToken``, IAM propagation delays, Block Public Access, which refuses public
bucket policies on new AWS buckets until it is turned off) and MinIO (whose users and
policies live in its admin API rather than IAM, so persistent credentials fail there with a
clear error).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioRefreshableCredentials
from botocore.exceptions import ClientError

from sdk import logsafe
from sdk.errors import BlobfsError, InvalidRequest, ResourceNotFound, TransientError
from sdk.providers.base import CredentialTimes, IssuedCredentials, PersistentGrant, check_expiry
from sdk.providers.s3.client import CONNECT_TIMEOUT, READ_TIMEOUT, S3Client, is_aws, new_session
from sdk.providers.s3.errors import error_code, translate
from sdk.providers.s3.policies import (
    PUBLIC_LIST_SID,
    PUBLIC_READ_SID,
    USER_POLICY_NAME,
    bucket_policy,
    iam_user_name,
    public_statements,
)
from sdk.providers.s3.store import S3Store
from sdk.retry import retrying

log = logging.getLogger(__name__)
# botocore's debug log would print the secrets this module handles.
logsafe.install()

#: STS's limits on DurationSeconds (AssumeRole: 15 min .. 12 h on AWS and SeaweedFS).
STS_MIN_SECONDS: Final = 900
STS_MAX_SECONDS: Final = 43_200
#: Error codes meaning "this server has no such API", as opposed to "you may not".
_UNSUPPORTED_CODES: Final = frozenset(
    {"NotImplemented", "InvalidAction", "UnsupportedOperation", "MethodNotAllowed"}
)


class Unsupported(InvalidRequest):
    """The server does not offer the API asked for (STS, IAM)."""


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


@contextmanager
def _api(what: str) -> Iterator[None]:
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


class S3Access:
    """Access control for one admin (created by it on demand).

    Holds STS and IAM clients opened with the admin's credentials; the admin closes it.
    """

    def __init__(
        self,
        admin: AccessOwner,
        credentials: Mapping[str, str],
        *,
        sts_endpoint_url: str | None = None,
        iam_endpoint_url: str | None = None,
    ) -> None:
        self._admin = admin
        self._credentials = credentials
        endpoint = admin.endpoint_url
        # SeaweedFS and MinIO serve STS and IAM on their S3 port; AWS has its own endpoints,
        # which botocore knows.
        default = None if is_aws(endpoint) else endpoint
        self._endpoints = {
            "sts": sts_endpoint_url or default,
            "iam": iam_endpoint_url or default,
        }
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        #: How temporary credentials are issued, once found: "assume_role" or
        #: "get_federation_token".
        self._method: str | None = None
        self._no_sts: str | None = None  # why neither method works, once known
        self._detect_lock = asyncio.Lock()

    @property
    def _times(self) -> CredentialTimes:
        return self._admin.credential_times

    @property
    def _region(self) -> str:
        # SigV4 needs a region; S3-compatible stores accept any, IAM on AWS is us-east-1.
        return self._admin.region or "us-east-1"

    async def close(self) -> None:
        async with self._lock:
            self._clients.clear()
            await self._stack.aclose()

    # -- clients -------------------------------------------------------------------------------

    async def _client(self, service: str) -> Any:
        async with self._lock:
            client = self._clients.get(service)
            if client is None:
                session = new_session(self._credentials, self._region)
                config = AioConfig(
                    retries={"max_attempts": 1, "mode": "standard"},  # sdk.retry retries
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    # AssumeRole without RoleArn: botocore would refuse to send it.
                    parameter_validation=False,
                )
                with _api(f"connect to {service.upper()}"):
                    client = await self._stack.enter_async_context(
                        session.client(
                            service, endpoint_url=self._endpoints[service], config=config
                        )
                    )
                self._clients[service] = client
            return client

    async def _call(self, service: str, what: str, op: str, **params: Any) -> dict[str, Any]:
        """``<service client>.<op>(**params)`` with translated errors, transient ones
        retried."""
        client = await self._client(service)
        async for attempt in retrying():
            with attempt, _api(what):
                result: dict[str, Any] = await getattr(client, op)(**params)
                return result
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _raw(self, bucket_name: str, **secrets_: str) -> dict[str, str]:
        """A credentials mapping in the reference's keys."""
        out = {"bucket_name": bucket_name, **secrets_}
        if self._admin.endpoint_url:
            out["endpoint_url"] = self._admin.endpoint_url
        if self._admin.region:
            out["region_name"] = self._admin.region
        return out

    # -- temporary credentials -----------------------------------------------------------------

    def _duration(self) -> int:
        return int(min(max(self._times.ttl, STS_MIN_SECONDS), STS_MAX_SECONDS))

    async def _sts(self, method: str, policy: str) -> Mapping[str, Any]:
        what = f"issue temporary credentials ({method})"
        if method == "assume_role":
            r = await self._call(
                "sts",
                what,
                "assume_role",
                RoleSessionName=f"blobfs-{secrets.token_hex(8)}",
                Policy=policy,
                DurationSeconds=self._duration(),
            )
        else:
            r = await self._call(
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
            self._region,
        )
        await client.open({}, self._admin.endpoint_url, self._region, session=session)
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
            f"{self._endpoints['sts'] or 'AWS STS'} cannot issue credentials scoped to a "
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
        raw = self._raw(
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

    # -- scoped stores -------------------------------------------------------------------------

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
        session = new_session(credentials, self._region)
        store = ScopedS3Store(bucket_name, self)
        await store.client.open({}, self._admin.endpoint_url, self._region, session=session)
        log.debug("bucket %s: scoped credentials until %s", bucket_name, renew_by)
        return store

    async def sign_url(self, bucket_name: str, key: str, expires_in_seconds: int) -> str:
        """A presigned GET of ``key`` made with the admin's credentials (1 s .. 7 days)."""
        check_expiry(expires_in_seconds)
        client = await self._admin.admin_client()
        if client.client is None:
            raise RuntimeError("S3 client is closed")
        with _api(f"sign {bucket_name}/{key}"):
            url: str = await client.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket_name, "Key": key},
                ExpiresIn=expires_in_seconds,
            )
        return url

    # -- persistent credentials ----------------------------------------------------------------

    async def _put_user_policy(
        self, user: str, bucket_names: Sequence[str], read_only: bool
    ) -> None:
        await self._call(
            "iam",
            f"set the policy of IAM user {user}",
            "put_user_policy",
            UserName=user,
            PolicyName=USER_POLICY_NAME,
            PolicyDocument=json.dumps(bucket_policy(bucket_names, read_only=read_only)),
        )

    async def create_persistent_credentials(
        self, credentials_id: str, bucket_names: Sequence[str], *, read_only: bool = False
    ) -> PersistentGrant:
        """An IAM user with an access key and a policy for ``bucket_names``."""
        if not bucket_names:
            raise InvalidRequest("persistent credentials need at least one bucket")
        user = iam_user_name(credentials_id)
        state: dict[str, Any] = {
            "kind": "s3-iam-user",
            "user_name": user,
            "bucket_names": list(bucket_names),
            "read_only": read_only,
        }
        try:
            await self._call("iam", f"create IAM user {user}", "create_user", UserName=user)
        except Unsupported as e:
            raise Unsupported(
                f"{e}: persistent credentials on S3 need the IAM API (CreateUser, "
                "PutUserPolicy, CreateAccessKey)"
            ) from e
        try:
            await self._put_user_policy(user, bucket_names, read_only)
            key = (
                await self._call(
                    "iam", f"create an access key of {user}", "create_access_key", UserName=user
                )
            )["AccessKey"]
        except BaseException:
            # Leave nothing behind; the clean-up must run even if we are being cancelled.
            await asyncio.shield(self._remove_user(user))
            raise
        state["access_key_id"] = key["AccessKeyId"]
        per_bucket = {
            b: self._raw(
                b,
                access_key_id=key["AccessKeyId"],
                secret_access_key=key["SecretAccessKey"],
            )
            for b in bucket_names
        }
        return PersistentGrant(per_bucket=per_bucket, state=state)

    async def detach_persistent_credentials(
        self, state: Mapping[str, Any], bucket_name: str
    ) -> Mapping[str, Any]:
        remaining = [b for b in state.get("bucket_names", ()) if b != bucket_name]
        if not remaining:
            await self.revoke_persistent_credentials(state)
            return {**state, "bucket_names": []}
        await self._put_user_policy(state["user_name"], remaining, bool(state.get("read_only")))
        return {**state, "bucket_names": remaining}

    async def revoke_persistent_credentials(self, state: Mapping[str, Any]) -> None:
        await self._remove_user(str(state["user_name"]))

    async def _remove_user(self, user: str) -> None:
        """Delete the user's access keys, its policy and the user (IAM refuses to delete a
        user that still has either); parts already gone are skipped."""
        try:
            keys = await self._call(
                "iam", f"list access keys of {user}", "list_access_keys", UserName=user
            )
        except ResourceNotFound:
            return
        for meta in keys.get("AccessKeyMetadata") or ():
            try:
                await self._call(
                    "iam",
                    f"delete an access key of {user}",
                    "delete_access_key",
                    UserName=user,
                    AccessKeyId=meta["AccessKeyId"],
                )
            except ResourceNotFound:
                pass
        try:
            await self._call(
                "iam",
                f"delete the policy of {user}",
                "delete_user_policy",
                UserName=user,
                PolicyName=USER_POLICY_NAME,
            )
        except ResourceNotFound:
            pass
        try:
            await self._call("iam", f"delete IAM user {user}", "delete_user", UserName=user)
        except ResourceNotFound:
            pass

    # -- public access -------------------------------------------------------------------------

    async def set_public_access(self, bucket_name: str, public: bool) -> None:
        """Add or remove our statements in the bucket policy, keeping any others."""
        client = await self._admin.admin_client()
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


class ScopedS3Store(S3Store):
    """An :class:`~sdk.providers.s3.store.S3Store` whose requests use scoped, renewing
    credentials, and whose signed URLs are made by the admin (see the module docstring)."""

    def __init__(self, bucket_name: str, access: S3Access) -> None:
        super().__init__(bucket_name)
        self._access = access

    async def sign_url(self, key: str, expires_in_seconds: int) -> str:
        return await self._access.sign_url(self.bucket_name, key, expires_in_seconds)


__all__ = [
    "STS_MAX_SECONDS",
    "STS_MIN_SECONDS",
    "AccessOwner",
    "S3Access",
    "ScopedS3Store",
    "Unsupported",
]
