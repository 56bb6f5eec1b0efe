"""Persistent S3 credentials: an IAM user per grant.

Persistent credentials are an IAM user with one access key and one inline user policy
covering their buckets (``CreateUser``/``PutUserPolicy``/``CreateAccessKey``: the IAM API of
AWS, and SeaweedFS's embedded IAM on its S3 port; the documents are
:mod:`sdk.providers.s3.policies`).  Revoking deletes the keys, the policy and the user.
Nothing is left behind at the server when creating them fails.

Verified against SeaweedFS 4.48 (``tests/sdk/test_credentials.py``).  Not verified here: AWS
(IAM propagation delays) and MinIO (whose users and policies live in its admin API rather
than IAM, so persistent credentials fail there with a clear error).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sdk.errors import InvalidRequest, ResourceNotFound
from sdk.providers.base import PersistentGrant
from sdk.providers.s3.policies import USER_POLICY_NAME, bucket_policy, iam_user_name
from sdk.providers.s3.services import ServiceClients, Unsupported


class IamUsers:
    """Persistent credentials as IAM users, through an admin's IAM client."""

    def __init__(self, services: ServiceClients) -> None:
        self._services = services

    async def _put_user_policy(
        self, user: str, bucket_names: Sequence[str], read_only: bool
    ) -> None:
        await self._services.call(
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
            await self._services.call(
                "iam", f"create IAM user {user}", "create_user", UserName=user
            )
        except Unsupported as e:
            raise Unsupported(
                f"{e}: persistent credentials on S3 need the IAM API (CreateUser, "
                "PutUserPolicy, CreateAccessKey)"
            ) from e
        try:
            await self._put_user_policy(user, bucket_names, read_only)
            key = (
                await self._services.call(
                    "iam", f"create an access key of {user}", "create_access_key", UserName=user
                )
            )["AccessKey"]
        except BaseException:
            # Leave nothing behind; the clean-up must run even if we are being cancelled.
            await asyncio.shield(self._remove_user(user))
            raise
        state["access_key_id"] = key["AccessKeyId"]
        per_bucket = {
            b: self._services.credentials_for(
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
            keys = await self._services.call(
                "iam", f"list access keys of {user}", "list_access_keys", UserName=user
            )
        except ResourceNotFound:
            return
        for meta in keys.get("AccessKeyMetadata") or ():
            try:
                await self._services.call(
                    "iam",
                    f"delete an access key of {user}",
                    "delete_access_key",
                    UserName=user,
                    AccessKeyId=meta["AccessKeyId"],
                )
            except ResourceNotFound:
                pass
        try:
            await self._services.call(
                "iam",
                f"delete the policy of {user}",
                "delete_user_policy",
                UserName=user,
                PolicyName=USER_POLICY_NAME,
            )
        except ResourceNotFound:
            pass
        try:
            await self._services.call(
                "iam", f"delete IAM user {user}", "delete_user", UserName=user
            )
        except ResourceNotFound:
            pass


__all__ = ["IamUsers"]
