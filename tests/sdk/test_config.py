"""Configuration loading, environment overrides and saving (no servers)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sdk.config import ClusterConfig, load_config
from sdk.errors import ConfigError
from sdk.types import Provider


def test_no_file_gives_embedded_local_cluster(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "none.toml", env={})
    assert cfg.current_cluster == "local"
    local = cfg.cluster()
    assert local.embedded and local.provider is Provider.S3
    assert cfg.owner


def test_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    cfg = load_config(path, env={}).with_cluster(
        ClusterConfig(
            name="lab",
            provider=Provider.MINIO,
            endpoint_url="http://127.0.0.1:9000",
            credentials={"access_key_id": "AK", "secret_access_key": "SECRET"},
        )
    )
    cfg.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_config(path, env={"BLOBFS_CLUSTER": "lab"})
    lab = again.cluster()
    assert lab.endpoint_url == "http://127.0.0.1:9000"
    assert lab.credentials["secret_access_key"] == "SECRET"
    assert "SECRET" not in repr(lab)


def test_env_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[clusters.lab]\nprovider = "s3"\nendpoint_url = "http://a"\n')
    cfg = load_config(
        path,
        env={
            "BLOBFS_CLUSTER": "lab",
            "BLOBFS_OWNER": "bob",
            "BLOBFS_ORG": "research",
            "BLOBFS_CLUSTER_LAB_ENDPOINT_URL": "http://b",
            "BLOBFS_CLUSTER_LAB_SECRET_ACCESS_KEY": "S",
        },
    )
    assert (cfg.current_cluster, cfg.owner, cfg.org) == ("lab", "bob", "research")
    assert cfg.cluster().endpoint_url == "http://b"
    assert cfg.cluster().credentials["secret_access_key"] == "S"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[clusters.x]\nprovider = "ftp"\n', "provider must be one of"),
        ('[clusters.x]\nprovider = "s3"\nbogus = 1\n', "unknown field"),
        ('current_cluster = "nope"\n', "unknown cluster 'nope'"),
        ("this is = not toml [", "cannot read"),
    ],
)
def test_bad_config_is_clear(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path, env={})
