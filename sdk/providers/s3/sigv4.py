"""AWS Signature Version 4 for requests made without botocore, with the signing key cached:
the direct S3 client's, and the embedded server's readiness probe (:mod:`sdk.local_server`,
which keeps botocore, slow to import, off the path of every CLI command).

Why not botocore's ``S3SigV4Auth``: it rebuilds every request through ``email.message``
headers and an ``AWSRequest``, and derives the signing key (four HMACs) each time -- about
0.2 ms of CPU per request on the project's 2-core machine, a visible share of a small
PUT's.  This signer does the same
computation from plain strings and caches the key per secret and day: ~25 us.

It signs exactly what ``S3SigV4Auth.add_auth`` signs for the direct client's requests (a
test compares the two on the same requests and clock): every header given plus ``host``,
``x-amz-date``, ``x-amz-content-sha256`` and, with a session token,
``x-amz-security-token``; the path as sent (S3 does not normalise it); the query as sent
(already encoded and sorted by the caller).  The algorithm is AWS's published one
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping

#: Headers botocore never signs (they may change on the way).
UNSIGNED_HEADERS = frozenset({"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})


class SigV4Signer:
    """Signs requests for one region and service."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self.region = region
        self.service = service
        # (secret key, date) -> signing key; a new day or a renewed secret adds an entry.
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret_key: str, date: str) -> bytes:
        key = self._keys.get((secret_key, date))
        if key is None:
            key = f"AWS4{secret_key}".encode()
            for part in (date, self.region, self.service, "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            if len(self._keys) > 8:
                self._keys.clear()  # old days and old secrets
            self._keys[(secret_key, date)] = key
        return key

    def sign(
        self,
        *,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        payload_hash: str,
        access_key: str,
        secret_key: str,
        token: str | None = None,
        now: dt.datetime | None = None,
    ) -> dict[str, str]:
        """``headers`` plus the date, payload-hash, token and ``Authorization`` headers of
        the signed request (``Host`` is left to the caller, who sends it first)."""
        when = now or dt.datetime.now(dt.UTC)
        amz_date = when.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        out = dict(headers)
        out["X-Amz-Date"] = amz_date
        out["X-Amz-Content-SHA256"] = payload_hash
        if token:
            out["X-Amz-Security-Token"] = token
        signed = {"host": host}
        for name, value in out.items():
            lower = name.lower()
            if lower not in UNSIGNED_HEADERS:
                signed[lower] = " ".join(value.split())
        names = sorted(signed)
        signed_headers = ";".join(names)
        canonical = "\n".join(
            (
                method,
                path,
                query,
                "".join(f"{name}:{signed[name]}\n" for name in names),
                signed_headers,
                payload_hash,
            )
        )
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        key = self._signing_key(secret_key, date)
        signature = hmac.new(key, string_to_sign.encode(), "sha256").hexdigest()
        out["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return out


__all__ = ["UNSIGNED_HEADERS", "SigV4Signer"]
