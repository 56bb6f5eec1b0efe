"""Configuration: named clusters, the current cluster, the owner and org.

The file is TOML at ``$BLOBFS_CONFIG`` or ``<user config dir>/blobfs/config.toml``; it may hold
secrets, so it is written with mode 0600.  With no file at all there is one cluster, ``local``,
served by an embedded SeaweedFS server that blobfs starts itself (:mod:`sdk.local_server`)::

    current_cluster = "aws"
    owner = "alice"            # default: the login name
    org = "research"           # optional

    [clusters.aws]
    provider = "aws"
    region = "eu-west-1"       # credentials from the usual AWS chain when not given here

    [clusters.lab]
    provider = "s3"            # any S3-compatible store
    endpoint_url = "http://minio.lab:9000"
    access_key_id = "..."
    secret_access_key = "..."

    [clusters.az]
    provider = "azure"
    endpoint_url = "https://acct.blob.core.windows.net"
    account_name = "acct"
    account_key = "..."        # or sas_token, or connection_string

Environment overrides, strongest first: ``BLOBFS_CLUSTER`` (current cluster),
``BLOBFS_OWNER``, ``BLOBFS_ORG``, and any cluster field as
``BLOBFS_CLUSTER_<NAME>_<FIELD>`` (e.g. ``BLOBFS_CLUSTER_LAB_SECRET_ACCESS_KEY``).
``BLOBFS_DATA_DIR`` moves the registry and the embedded server's data.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from sdk.errors import ConfigError
from sdk.types import Provider

LOCAL_CLUSTER = "local"

#: Fields of a cluster that are credentials: kept out of ``repr`` and error messages.
SECRET_FIELDS = frozenset(
    {"secret_access_key", "session_token", "account_key", "sas_token", "connection_string"}
)
#: Every field a cluster may have besides ``provider``.
CLUSTER_FIELDS = frozenset(
    {
        "endpoint_url",
        "region",
        "access_key_id",
        "account_name",
        "embedded",
        "sts_endpoint_url",
        "iam_endpoint_url",
    }
    | SECRET_FIELDS
)


def config_path() -> Path:
    env = os.environ.get("BLOBFS_CONFIG")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("blobfs")) / "config.toml"


def data_dir() -> Path:
    env = os.environ.get("BLOBFS_DATA_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("blobfs"))


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster: a provider kind, where it is and how to authenticate to it.

    ``credentials`` holds the administrative credentials given in the file or environment
    (``access_key_id``/``secret_access_key``/``session_token`` for S3;
    ``account_name``/``account_key``/``sas_token``/``connection_string`` for Azure).  Empty
    means "let the provider library find them" (AWS's default chain).
    """

    name: str
    provider: Provider
    endpoint_url: str | None = None
    region: str | None = None
    embedded: bool = False
    sts_endpoint_url: str | None = None
    iam_endpoint_url: str | None = None
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider.value}
        for key in ("endpoint_url", "region", "sts_endpoint_url", "iam_endpoint_url"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.embedded:
            out["embedded"] = True
        out.update(self.credentials)
        return out

    @classmethod
    def from_toml(cls, name: str, raw: Mapping[str, Any]) -> ClusterConfig:
        unknown = set(raw) - CLUSTER_FIELDS - {"provider"}
        if unknown:
            raise ConfigError(f"cluster {name!r}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            provider = Provider(str(raw.get("provider", "")))
        except ValueError:
            choices = ", ".join(p.value for p in Provider)
            raise ConfigError(
                f"cluster {name!r}: provider must be one of {choices}, got {raw.get('provider')!r}"
            ) from None
        creds = {
            k: str(v)
            for k, v in raw.items()
            if k in SECRET_FIELDS or k in ("access_key_id", "account_name")
        }
        return cls(
            name=name,
            provider=provider,
            endpoint_url=raw.get("endpoint_url"),
            region=raw.get("region"),
            embedded=bool(raw.get("embedded", False)),
            sts_endpoint_url=raw.get("sts_endpoint_url"),
            iam_endpoint_url=raw.get("iam_endpoint_url"),
            credentials=creds,
        )


def embedded_local_cluster() -> ClusterConfig:
    """The zero-configuration cluster: SeaweedFS on loopback, started on demand."""
    return ClusterConfig(name=LOCAL_CLUSTER, provider=Provider.S3, embedded=True)


@dataclass(frozen=True)
class Config:
    """The whole configuration, after environment overrides."""

    clusters: Mapping[str, ClusterConfig]
    current_cluster: str
    owner: str
    org: str | None = None
    path: Path | None = None

    def cluster(self, name: str | None = None) -> ClusterConfig:
        name = name or self.current_cluster
        try:
            return self.clusters[name]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise ConfigError(f"unknown cluster {name!r} (configured: {known})") from None

    # -- editing -----------------------------------------------------------------------------

    def with_cluster(self, cluster: ClusterConfig) -> Config:
        clusters = dict(self.clusters)
        clusters[cluster.name] = cluster
        return replace(self, clusters=clusters)

    def without_cluster(self, name: str) -> Config:
        self.cluster(name)
        clusters = {k: v for k, v in self.clusters.items() if k != name}
        current = self.current_cluster if self.current_cluster != name else LOCAL_CLUSTER
        if LOCAL_CLUSTER not in clusters:
            clusters[LOCAL_CLUSTER] = embedded_local_cluster()
        return replace(self, clusters=clusters, current_cluster=current)

    def save(self, path: Path | None = None) -> Path:
        """Write the file (mode 0600, atomically).  Environment overrides are not saved."""
        path = path or self.path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {"current_cluster": self.current_cluster, "owner": self.owner}
        if self.org:
            doc["org"] = self.org
        doc["clusters"] = {name: c.to_toml() for name, c in sorted(self.clusters.items())}
        # Imported here: only the command line writes the configuration, never a daemon
        # (which would keep it resident: 40 KiB).
        import tomli_w

        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump(doc, f)
        os.replace(tmp, path)
        return path


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the configuration file (if any) and apply environment overrides."""
    env = os.environ if env is None else env
    path = path or config_path()
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from e

    clusters: dict[str, ClusterConfig] = {}
    for name, body in (raw.get("clusters") or {}).items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: [clusters.{name}] must be a table")
        clusters[name] = ClusterConfig.from_toml(name, _with_env(name, body, env))
    if LOCAL_CLUSTER not in clusters:
        clusters[LOCAL_CLUSTER] = embedded_local_cluster()

    current = env.get("BLOBFS_CLUSTER") or raw.get("current_cluster") or LOCAL_CLUSTER
    owner = env.get("BLOBFS_OWNER") or raw.get("owner") or getpass.getuser()
    org = env.get("BLOBFS_ORG") or raw.get("org") or None
    cfg = Config(clusters=clusters, current_cluster=current, owner=owner, org=org, path=path)
    cfg.cluster()  # fail early on a current cluster that does not exist
    return cfg


def _with_env(name: str, body: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    prefix = f"BLOBFS_CLUSTER_{name.upper().replace('-', '_')}_"
    out = dict(body)
    for key, value in env.items():
        if key.startswith(prefix):
            out[key[len(prefix) :].lower()] = value
    return out
