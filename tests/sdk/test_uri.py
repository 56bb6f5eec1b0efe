"""Blob URI parsing and bucket-name validation (no servers)."""

from __future__ import annotations

import pytest
from yarl import URL

from sdk.uri import BlobLocation, key_uri, parse_blob_uri, validate_bucket_name


def parse(uri: str, org: str | None = None) -> BlobLocation:
    return parse_blob_uri(uri, cluster="local", owner="alice", org=org)


@pytest.mark.parametrize(
    ("uri", "cluster", "path"),
    [
        ("blob:bkt", "local", "alice/bkt"),
        ("blob:bkt/dir/file.txt", "local", "alice/bkt/dir/file.txt"),
        ("blob:bkt/folder/", "local", "alice/bkt/folder/"),
        ("blob:/bob/bkt/k", "local", "bob/bkt/k"),
        ("blob://other/bob/bkt/k", "other", "bob/bkt/k"),
        ("blob://other/org/bob/bkt/k", "other", "org/bob/bkt/k"),
        ("blob:bkt/a%20b/%C3%BC", "local", "alice/bkt/a b/ü"),
    ],
)
def test_parse_forms(uri: str, cluster: str, path: str) -> None:
    loc = parse(uri)
    assert (loc.cluster, loc.path) == (cluster, path)


def test_relative_uri_gets_org() -> None:
    assert parse("blob:bkt/k", org="research").path == "research/alice/bkt/k"


def test_normalised_uri_round_trips() -> None:
    loc = parse("blob:bkt/a b/c")
    assert parse(str(loc.uri)) == loc


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("blob:bkt/k?x=1", "query"),
        ("blob:bkt/k#frag", "fragment"),
        ("blob://user@local/alice/bkt", "user"),
        ("blob://u:pw@local/alice/bkt", "user"),
        ("blob://local:8080/alice/bkt", "port"),
        ("blob:~/bkt", "~"),
        ("file:///tmp/x", "scheme"),
        ("blob:", "no bucket"),
        ("blob:///", "no bucket"),
    ],
)
def test_malformed_uris_are_value_errors(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse(uri)


@pytest.mark.parametrize("name", ["abc", "my-bucket", "a_b-c", "x" * 40, "a1-2"])
def test_valid_bucket_names(name: str) -> None:
    validate_bucket_name(name)


@pytest.mark.parametrize("name", ["ab", "x" * 41, "Abc", "1abc", "-abc", "a b c", "a.bc", "ab/c"])
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid bucket name"):
        validate_bucket_name(name)


def test_key_uri() -> None:
    base = URL("blob://local/alice/bkt")
    assert str(key_uri(base, "a b/c?")) == "blob://local/alice/bkt/a%20b/c%3F"
    assert key_uri(base, "a b/c?").path == "/alice/bkt/a b/c?"
    assert key_uri(base, "") == base
