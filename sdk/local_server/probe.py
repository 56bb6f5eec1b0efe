"""Whether a starting ``weed`` serves: S3 answers a signed request and storage takes writes.

Requests go straight to 127.0.0.1 with :mod:`http.client`, never through a proxy.
"""

from __future__ import annotations

import hashlib
import http.client
import uuid
from collections.abc import Mapping

from sdk.local_server.identities import REGION
from sdk.providers.s3.sigv4 import SigV4Signer

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _http(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 2.0,
) -> tuple[int, bytes]:
    # http.client rather than urllib: urllib obeys http_proxy, which must not apply here.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def s3_answers(port: int, access_key_id: str | None, secret_access_key: str | None) -> bool:
    """Whether the S3 gateway on ``port`` accepts a (signed, when keyed) ListBuckets."""
    headers: dict[str, str] = {}
    if access_key_id and secret_access_key:
        headers = SigV4Signer(REGION).sign(
            method="GET",
            host=f"127.0.0.1:{port}",
            path="/",
            query="",
            headers={},
            payload_hash=_EMPTY_SHA256,
            access_key=access_key_id,
            secret_key=secret_access_key,
        )
    try:
        status, body = _http(port, "GET", "/", headers=headers)
    except OSError:
        return False
    return status == 200 and b"ListAllMyBucketsResult" in body


def storage_writable(filer_port: int) -> bool:
    """Whether a file can be written, read and deleted through the filer.

    ListBuckets answers before the volume server has registered with the master; a write
    proves the whole path.  The probe lives outside ``/buckets`` so S3 never shows it.
    """
    path = f"/.blobfs-probe/{uuid.uuid4().hex}"
    payload = b"blobfs readiness probe"
    try:
        status, _ = _http(filer_port, "PUT", path, body=payload, timeout=5.0)
        if status not in (200, 201):
            return False
        status, data = _http(filer_port, "GET", path, timeout=5.0)
        _http(filer_port, "DELETE", path, timeout=5.0)
    except OSError:
        return False
    return status == 200 and data == payload
