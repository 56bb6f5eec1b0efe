"""The direct S3 client's SigV4 signer (sdk/providers/sigv4.py): AWS's published example,
and the same signature as botocore's ``S3SigV4Auth`` for the requests the client makes."""

from __future__ import annotations

import datetime as dt

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from sdk.providers.s3.sigv4 import SigV4Signer

ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_aws_documented_get_object_example() -> None:
    # "Example: GET Object" of AWS's Signature Version 4 documentation for S3.
    headers = SigV4Signer("us-east-1").sign(
        method="GET",
        host="examplebucket.s3.amazonaws.com",
        path="/test.txt",
        query="",
        headers={"Range": "bytes=0-9"},
        payload_hash=EMPTY,
        access_key=ACCESS,
        secret_key=SECRET,
        now=dt.datetime(2013, 5, 24, tzinfo=dt.UTC),
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert headers["X-Amz-Date"] == "20130524T000000Z"
    assert headers["X-Amz-Content-SHA256"] == EMPTY


CASES = [
    # method, path, query, headers
    ("GET", "/bucket/k", "", {"Range": "bytes=0-1023", "If-Match": '"abc"'}),
    ("GET", "/bucket/dir/a%20b%2Bc%C3%A9", "", {"Range": "bytes=5-5"}),
    (
        "PUT",
        "/bucket/new%21file",
        "",
        {
            "Content-Type": "application/octet-stream",
            "x-amz-meta-mode": "33188",
            "x-amz-meta-mtime": "1700000000",
            "x-amz-meta-note": "two  spaces\tand tab",
        },
    ),
    ("PUT", "/bucket/big", "partNumber=7&uploadId=2~x-y_z.abc%2B%2F", {}),
    ("PUT", "/prefix/bucket/k", "", {"User-Agent": "not signed", "Expect": "100-continue"}),
]


class GivenPayload(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 signer with the payload hash given (it would hash the request's body,
    which the direct client never attaches)."""

    def __init__(self, credentials: ReadOnlyCredentials, region: str, payload: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload


@pytest.mark.parametrize("token", [None, "session/token+value=="])
@pytest.mark.parametrize(("method", "path", "query", "headers"), CASES)
def test_same_signature_as_botocore(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    token: str | None,
) -> None:
    now = dt.datetime(2026, 11, 26, 3, 4, 5)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now)
    host = "127.0.0.1:8333"
    payload = "0f" * 32 if method == "PUT" else EMPTY
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers={**headers})
    credentials = ReadOnlyCredentials(ACCESS, SECRET, token)
    GivenPayload(credentials, "eu-west-3", payload).add_auth(request)

    ours = SigV4Signer("eu-west-3").sign(
        method=method,
        host=host,
        path=path,
        query=query,
        headers=headers,
        payload_hash=payload,
        access_key=ACCESS,
        secret_key=SECRET,
        token=token,
        now=now.replace(tzinfo=dt.UTC),
    )
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


def test_cached_signing_key_follows_the_day_and_the_secret() -> None:
    cached = SigV4Signer("us-east-1")

    def auth(signer: SigV4Signer, secret: str, day: int) -> str:
        return signer.sign(
            method="GET",
            host="h",
            path="/b/k",
            query="",
            headers={},
            payload_hash=EMPTY,
            access_key=ACCESS,
            secret_key=secret,
            now=dt.datetime(2026, 1, day, 12, tzinfo=dt.UTC),
        )["Authorization"]

    # A renewed secret or a new day must never sign with a key cached for another.
    seen = set()
    for secret, day in [(SECRET, 1), (SECRET, 1), (SECRET, 2), ("renewed", 2), (SECRET, 1)]:
        signature = auth(cached, secret, day)
        assert signature == auth(SigV4Signer("us-east-1"), secret, day)
        seen.add(signature)
    assert len(seen) == 3
