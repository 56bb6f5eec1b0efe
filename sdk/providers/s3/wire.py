"""S3 requests and replies as bytes, with no I/O (sans-IO): what the direct clients send on
a path-style endpoint and how they judge what comes back.

Building a signed request head (:class:`Endpoint`, :func:`signed_head`,
:func:`range_headers`, :func:`put_headers`) takes plain functions, shared by the asyncio
client (:mod:`sdk.providers.s3.direct`) and the prepared requests
(:mod:`sdk.providers.s3.prepared`).  Requests are signed with SigV4
(:mod:`sdk.providers.s3.sigv4`); the payload is signed as botocore signs it in this
provider's configuration (``request_checksum_calculation="when_required"``, so no checksum
header): its SHA-256, over http *and* https (botocore sends ``UNSIGNED-PAYLOAD`` over https
only beside a checksum header).

Only plain successes are taken from a direct reply (:func:`direct_etag`,
:func:`plain_body`); for anything else the caller repeats the request through botocore
(GET, PUT and UploadPart are idempotent), whose error translation then applies.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from botocore.credentials import ReadOnlyCredentials

from sdk.providers.http1 import HttpOrigin, HttpReply
from sdk.providers.s3.conventions import (
    DEFAULT_CONTENT_TYPE,
    is_implicit_directory,
    lower_metadata,
    strip_etag,
)
from sdk.providers.s3.sigv4 import SigV4Signer

#: Bodies at least this large are hashed in a worker thread, never on an event loop's thread
#: (SHA-256 of an 8 MiB part takes about 6 ms here, long enough to stall other requests).
HASH_IN_THREAD = 256 * 1024
#: The payload hash of a request without a body.
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: Where each request's credentials come from (the session's, renewing ones included).
CredentialSource = Callable[[], Awaitable[ReadOnlyCredentials]]

# RFC 9110 token: what a header name may be.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Printable ASCII, space included: what a header value may be sent as without encoding.
_PLAIN_VALUE = re.compile(r"[\x20-\x7e]*")


def sendable(headers: Mapping[str, str]) -> bool:
    """Whether ``headers`` can go on the wire as they are: names are HTTP tokens and values
    printable ASCII.  Others (non-ASCII metadata, say) must take botocore's path, which
    decides how to encode or refuse them."""
    return all(
        _TOKEN.fullmatch(name) and _PLAIN_VALUE.fullmatch(value) for name, value in headers.items()
    )


@dataclass(frozen=True)
class Endpoint:
    """A path-style S3 endpoint: where to connect and how requests name it."""

    #: The URL it was parsed from.
    url: str
    scheme: str
    hostname: str
    port: int
    #: What the ``Host`` header carries and SigV4 signs: the port only when it is not the
    #: scheme's default.
    host: str
    #: The URL's path, under which ``/bucket/key`` goes (no trailing slash).
    base: str

    @classmethod
    def parse(cls, endpoint_url: str) -> Endpoint:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url}")
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port
        # An IPv6 literal keeps its brackets in Host (RFC 9110), as botocore sends and signs
        # it: ``[::1]:8333``, never ``::1:8333``.
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return cls(
            url=endpoint_url,
            scheme=parts.scheme,
            hostname=parts.hostname,
            port=port,
            host=name if port == default_port else f"{name}:{port}",
            base=parts.path.rstrip("/"),
        )

    @property
    def origin(self) -> HttpOrigin:
        """Where to connect, as :class:`~sdk.providers.base.HttpOrigin`."""
        return HttpOrigin(self.scheme, self.hostname, self.port, self.host)


def request_head(
    method: str,
    host: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    content_length: int | None,
) -> bytes:
    """An HTTP/1.1 request head: ``method`` on ``path`` (with the already encoded
    ``query``), ``Host`` first, then ``headers`` as given (signed ones) and, for a request
    with a body, its ``Content-Length``."""
    target = f"{path}?{query}" if query else path
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def signed_head(
    endpoint: Endpoint,
    signer: SigV4Signer,
    credentials: ReadOnlyCredentials,
    method: str,
    bucket: str,
    key: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    payload_hash: str,
    content_length: int | None,
) -> bytes:
    """The head of a SigV4-signed request on ``bucket/key`` (path-style), ``query`` encoded
    and sorted as SigV4's canonical query wants it and sent as signed."""
    if not key:
        # ``/bucket/`` is the bucket: GET would list it, PUT would create it.
        raise ValueError("an object request needs a key")
    path = f"{endpoint.base}/{quote(bucket, safe='')}/{quote(key, safe='/~')}"
    encoded = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query))
    signed = signer.sign(
        method=method,
        host=endpoint.host,
        path=path,
        query=encoded,
        headers=headers,
        payload_hash=payload_hash,
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        token=credentials.token,
    )
    return request_head(method, endpoint.host, path, encoded, signed, content_length)


def range_headers(offset: int, length: int, etag: str | None) -> dict[str, str]:
    """The headers of a ranged GET of ``length`` (at least 1) bytes at ``offset``, pinned
    to version ``etag`` when given (a changed object then answers 412, never other bytes)."""
    if offset < 0 or length < 1:
        raise ValueError(f"no HTTP range for offset={offset} length={length}")
    headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
    if etag is not None:
        headers["If-Match"] = f'"{etag}"'
    return headers


def put_headers(metadata: Mapping[str, str] | None, content_type: str | None) -> dict[str, str]:
    """The headers of a direct PutObject: the user metadata as ``x-amz-meta-*`` (names
    lower-case, as botocore's ``Metadata``) and an explicit content type."""
    headers = {f"x-amz-meta-{k}": v for k, v in lower_metadata(metadata).items()}
    headers["Content-Type"] = content_type or DEFAULT_CONTENT_TYPE
    return headers


def goes_direct(key: str, headers: Mapping[str, str]) -> bool:
    """Whether a PUT of ``key`` with ``headers`` may be sent directly: it needs a key
    (``/bucket/`` is the bucket; botocore refuses an empty key) and headers that go on the
    wire as they are (botocore encodes or refuses the others)."""
    return bool(key) and sendable(headers)


def direct_etag(reply: HttpReply) -> str | None:
    """The ETag of a direct PUT that plainly succeeded (200 with an ETag), else ``None``."""
    etag = reply.headers.get("etag")
    return strip_etag(etag) if reply.status == 200 and etag else None


def plain_body(key: str, reply: HttpReply) -> memoryview | None:
    """The body of a direct ranged GET of ``key`` that plainly succeeded (a 200/206 body
    that is no implicit directory), else ``None``."""
    if reply.body is None:
        return None
    fields = {
        "ETag": reply.headers.get("etag", ""),
        "ContentType": reply.headers.get("content-type"),
    }
    return None if is_implicit_directory(key, fields) else reply.body


__all__ = [
    "EMPTY_SHA256",
    "HASH_IN_THREAD",
    "CredentialSource",
    "Endpoint",
    "direct_etag",
    "goes_direct",
    "plain_body",
    "put_headers",
    "range_headers",
    "request_head",
    "sendable",
    "signed_head",
]
