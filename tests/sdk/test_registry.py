"""The SQLite registry (no servers)."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
import stat
from pathlib import Path

import pytest

from sdk.errors import AlreadyExists, ConfigError, ResourceNotFound
from sdk.registry import SCHEMA_VERSION, BucketRecord, Registry, new_bucket_id, utcnow
from sdk.types import Bucket, Provider


def record(name: str | None, owner: str = "alice", org: str | None = None) -> BucketRecord:
    bucket = Bucket(
        id=new_bucket_id(),
        owner=owner,
        cluster_name="local",
        org_name=org,
        provider=Provider.S3,
        created_at=utcnow(),
        imported=False,
        name=name,
    )
    return BucketRecord(bucket=bucket, provider_bucket=f"pb-{bucket.id}")


def test_file_mode_is_private(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite3")
    reg.add_bucket(record("one"))
    for f in tmp_path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_get_by_id_and_name(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite3")
    r = record("one")
    reg.add_bucket(r)
    assert reg.get_bucket("local", r.bucket.id, owner="zed", org=None) == r
    assert reg.get_bucket("local", "one", owner="alice", org=None) == r
    with pytest.raises(ResourceNotFound):
        reg.get_bucket("local", "one", owner="bob", org=None)
    with pytest.raises(ResourceNotFound):
        reg.get_bucket("other", "one", owner="alice", org=None)


def test_name_unique_per_owner_and_org(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite3")
    reg.add_bucket(record("one"))
    reg.add_bucket(record("one", owner="bob"))
    reg.add_bucket(record("one", org="research"))
    reg.add_bucket(record(None))
    reg.add_bucket(record(None))
    with pytest.raises(AlreadyExists):
        reg.add_bucket(record("one"))
    assert len(reg.list_buckets("local")) == 5


def test_find_by_path(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite3")
    plain, orged = record("data"), record("data", org="research")
    reg.add_bucket(plain)
    reg.add_bucket(orged)
    assert reg.find_by_path("local", "alice/data/a/b") == (plain, "a/b")
    assert reg.find_by_path("local", "alice/data") == (plain, "")
    assert reg.find_by_path("local", "research/alice/data/x/") == (orged, "x/")
    assert reg.find_by_path("local", f"alice/{plain.bucket.id}/k") == (plain, "k")
    with pytest.raises(ResourceNotFound):
        reg.find_by_path("local", "alice/dat")
    with pytest.raises(ResourceNotFound):
        reg.find_by_path("local", "alice/database/k")


def _add_many(path: str, owner: str) -> None:
    reg = Registry(Path(path))
    for n in range(50):
        reg.add_bucket(record(f"b{n}", owner=owner))
    reg.close()


def test_two_processes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    Registry(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(path), f"o{i}")) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(Registry(path).list_buckets("local")) == 100


# -- schema versions ------------------------------------------------------------------------------

#: The registry as blobfs wrote it before schema versions were kept (user_version 0).
_UNVERSIONED = """
CREATE TABLE IF NOT EXISTS buckets (
    id              TEXT PRIMARY KEY,
    cluster         TEXT NOT NULL,
    org             TEXT NOT NULL DEFAULT '',
    owner           TEXT NOT NULL,
    name            TEXT,
    provider        TEXT NOT NULL,
    provider_bucket TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    imported        INTEGER NOT NULL DEFAULT 0,
    public          INTEGER NOT NULL DEFAULT 0,
    credentials     TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS buckets_name
    ON buckets (cluster, org, owner, name) WHERE name IS NOT NULL;
CREATE TABLE IF NOT EXISTS persistent_credentials (
    id          TEXT PRIMARY KEY,
    cluster     TEXT NOT NULL,
    owner       TEXT NOT NULL,
    name        TEXT,
    read_only   INTEGER NOT NULL,
    bucket_ids  TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS credentials_name
    ON persistent_credentials (cluster, owner, name) WHERE name IS NOT NULL;
INSERT INTO buckets VALUES ('bucket-old', 'local', '', 'alice', 'kept', 's3', 'pb-old',
    '2024-05-01T10:00:00+00:00', 1, 0, '{"access_key_id": "AK"}');
INSERT INTO persistent_credentials VALUES ('bucket-credentials-old', 'local', 'alice', 'ci',
    1, '["bucket-old"]', '{"user": "u"}', '2024-05-02T10:00:00+00:00');
"""


def _pragma(path: Path, name: str) -> object:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        db.close()


def test_a_registry_of_today_is_migrated_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_UNVERSIONED)
    db.close()
    assert _pragma(path, "user_version") == 0
    reg = Registry(path)
    old = reg.get_bucket("local", "kept", owner="alice", org=None)
    assert (old.bucket.id, old.provider_bucket, old.bucket.imported) == (
        "bucket-old",
        "pb-old",
        True,
    )
    assert old.credentials == {"access_key_id": "AK"}
    assert reg.get_credentials("local", "ci", owner="alice").bucket_ids == ["bucket-old"]
    reg.add_bucket(record("new"))
    reg.close()
    assert _pragma(path, "user_version") == SCHEMA_VERSION
    db = sqlite3.connect(path)
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    db.close()
    assert "buckets_cluster" in indexes
    again = Registry(path)  # opening a current registry changes nothing
    assert [r.bucket.name for r in again.list_buckets("local")] == ["kept", "new"]
    again.close()


def test_a_new_registry_starts_at_the_current_version(tmp_path: Path) -> None:
    Registry(tmp_path / "r.sqlite3").close()
    assert _pragma(tmp_path / "r.sqlite3", "user_version") == SCHEMA_VERSION


def test_a_registry_of_a_newer_blobfs_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    reg = Registry(path)
    reg.add_bucket(record("one"))
    reg.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=DELETE")  # as a newer blobfs might leave it
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    newer = f"schema version {SCHEMA_VERSION + 1}, written by a newer blobfs"
    with pytest.raises(ConfigError, match=newer):
        Registry(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite3"], "no journal was made"
