"""Blob URIs: parsing and normalisation, in this one module.

Accepted forms (``C`` cluster, ``O`` org, ``U`` owner, ``B`` bucket name or id, ``K`` key)::

    blob:B/K              relative: the current cluster, org and owner
    blob:/U/B/K           absolute path on the current cluster
    blob:/O/U/B/K         ... with an org
    blob://C/U/B/K        fully qualified
    blob://C/O/U/B/K

Normalised URIs are always fully qualified.  Which leading components are org, owner and
bucket is only known by looking the path up among the registered buckets
(:meth:`sdk.registry.Registry.find_by_path`), as the reference does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from yarl import URL

SCHEME = "blob"

#: Bucket names: lower-case letter first, then letters, digits, ``-`` and ``_``.
BUCKET_NAME_RE = re.compile(r"^[a-z](?:-?[a-z0-9_-])*$")
BUCKET_NAME_MIN = 3
BUCKET_NAME_MAX = 40


def validate_bucket_name(name: str) -> None:
    """Raise :class:`ValueError` unless ``name`` is a valid bucket name."""
    if not BUCKET_NAME_MIN <= len(name) <= BUCKET_NAME_MAX:
        raise ValueError(
            f"invalid bucket name {name!r}: must be {BUCKET_NAME_MIN}-{BUCKET_NAME_MAX} "
            "characters long"
        )
    if not BUCKET_NAME_RE.match(name):
        raise ValueError(
            f"invalid bucket name {name!r}: must start with a lower-case letter and contain "
            "only lower-case letters, digits, '-' and '_'"
        )


def _as_url(uri: URL | str) -> URL:
    if isinstance(uri, URL):
        return uri
    try:
        return URL(uri)
    except ValueError as e:
        raise ValueError(f"invalid blob URI {uri!r}: {e}") from None


@dataclass(frozen=True)
class BlobLocation:
    """A normalised blob URI split into its cluster and the path below it.

    ``path`` has no leading ``/`` and keeps a trailing one (``folder/`` means the folder).
    """

    cluster: str
    path: str

    @property
    def uri(self) -> URL:
        return URL.build(scheme=SCHEME, host=self.cluster, path="/" + self.path)


def parse_blob_uri(
    uri: URL | str, *, cluster: str, owner: str, org: str | None = None
) -> BlobLocation:
    """Check and normalise ``uri`` against the current cluster, owner and org.

    Raises :class:`ValueError` with the reason for anything that is not a blob URI: another
    scheme, a query, fragment, port, user or password, a ``~`` path, or an empty path.
    """
    url = _as_url(uri)
    text = str(uri)
    if url.scheme != SCHEME:
        raise ValueError(f"invalid blob URI {text!r}: scheme must be 'blob:'")
    for what, present in (
        ("query", bool(url.query_string)),
        ("fragment", bool(url.fragment)),
        ("user", url.user is not None),
        ("password", url.password is not None),
        ("port", url.explicit_port is not None),
    ):
        if present:
            raise ValueError(f"invalid blob URI {text!r}: a {what} is not allowed")
    path = url.path
    if path.startswith("~") or path.startswith("/~"):
        raise ValueError(f"invalid blob URI {text!r}: '~' paths are not supported")

    if url.host:  # blob://cluster/...
        cluster_name = url.host
        rest = path.lstrip("/")
    elif path.startswith("/"):  # blob:/owner/...
        cluster_name = cluster
        rest = path.lstrip("/")
    else:  # blob:bucket/...
        cluster_name = cluster
        rest = "/".join(p for p in (org, owner, path) if p) if path else ""
    if not rest.strip("/"):
        raise ValueError(f"invalid blob URI {text!r}: no bucket given")
    return BlobLocation(cluster=cluster_name, path=rest)


def key_uri(bucket_uri: URL, key: str) -> URL:
    """The URI of ``key`` inside the bucket at ``bucket_uri``."""
    if not key:
        return bucket_uri
    return URL.build(
        scheme=bucket_uri.scheme, host=bucket_uri.host or "", path=bucket_uri.path + "/" + key
    )
