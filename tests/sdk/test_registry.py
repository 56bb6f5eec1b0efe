"""The SQLite registry (no servers)."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from sdk.errors import AlreadyExists, ResourceNotFound
from sdk.registry import BucketRecord, Registry, new_bucket_id, utcnow
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
