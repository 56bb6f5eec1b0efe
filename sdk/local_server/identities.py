"""Who may use the S3 gateway: the admin key pair, the identities document, and the files
that hold them.

The identities document has one admin identity and no anonymous one, so unsigned and wrongly
signed requests are refused.  Files holding a key are written atomically with mode 0600.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import string
from pathlib import Path
from typing import Any

#: What the admin identity may do: everything, including the IAM API.
ADMIN_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")

#: SeaweedFS accepts any region in a signature; clients must still name one.
REGION = "us-east-1"


def generate_access_key() -> tuple[str, str]:
    """A new (access key id, secret access key) pair in the shape AWS uses."""
    upper = string.ascii_uppercase + string.digits
    alnum = string.ascii_letters + string.digits
    key_id = "BLOBFS" + "".join(secrets.choice(upper) for _ in range(14))
    secret = "".join(secrets.choice(alnum) for _ in range(40))
    return key_id, secret


def admin_identities_config(access_key_id: str, secret_access_key: str) -> dict[str, Any]:
    """An ``-s3.config`` document with one admin identity and no anonymous access."""
    return {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
                "actions": list(ADMIN_ACTIONS),
            }
        ]
    }


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path`` with mode 0600 (it may hold secrets)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
