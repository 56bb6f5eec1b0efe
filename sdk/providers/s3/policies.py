"""The IAM policy documents the sdk writes on S3: what scoped credentials may do on their
buckets, and the bucket-policy statements that make a bucket public.

SeaweedFS's IAM accepts only some actions in user policies (not
``s3:ListBucketMultipartUploads`` nor ``s3:ListMultipartUploadParts``); ``s3:List*`` covers
those on AWS and is accepted by both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

#: Name of the one inline user policy of a persistent-credentials IAM user.
USER_POLICY_NAME: Final = "blobfs-buckets"
#: Statement ids of our public-access statements in a bucket policy.
PUBLIC_READ_SID: Final = "blobfs-public-read"
PUBLIC_LIST_SID: Final = "blobfs-public-list"


def bucket_policy(bucket_names: Sequence[str], *, read_only: bool) -> dict[str, Any]:
    """An IAM policy document allowing what the sdk does on ``bucket_names``: list and read,
    and unless ``read_only`` write, delete and multipart uploads.  Nothing else (no bucket
    policy, ACL or bucket deletion)."""
    buckets = [f"arn:aws:s3:::{b}" for b in bucket_names]
    keys = [f"arn:aws:s3:::{b}/*" for b in bucket_names]
    key_actions = ["s3:GetObject"]
    if not read_only:
        key_actions += [
            "s3:PutObject",  # also CreateMultipartUpload, UploadPart, CompleteMultipartUpload
            "s3:DeleteObject",  # also DeleteObjects
            "s3:AbortMultipartUpload",
            "s3:List*",  # ListMultipartUploadParts
        ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                # ListBucket and ListBucketMultipartUploads (a wildcard, because SeaweedFS's
                # IAM refuses the latter by name).
                "Action": ["s3:List*", "s3:GetBucketLocation"],
                "Resource": buckets,
            },
            {"Effect": "Allow", "Action": key_actions, "Resource": keys},
        ],
    }


def public_statements(bucket_name: str) -> list[dict[str, Any]]:
    """Bucket-policy statements letting anyone read keys of ``bucket_name`` and list it."""
    return [
        {
            "Sid": PUBLIC_READ_SID,
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{bucket_name}/*"],
        },
        {
            "Sid": PUBLIC_LIST_SID,
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket_name}"],
        },
    ]


def iam_user_name(credentials_id: str) -> str:
    """The IAM user of persistent credentials ``credentials_id`` (IAM allows 64 characters
    of ``[\\w+=,.@-]``; ids are ``bucket-credentials-<uuid>``)."""
    return "blobfs-" + credentials_id.removeprefix("bucket-credentials-")[:56]


__all__ = [
    "PUBLIC_LIST_SID",
    "PUBLIC_READ_SID",
    "USER_POLICY_NAME",
    "bucket_policy",
    "iam_user_name",
    "public_statements",
]
