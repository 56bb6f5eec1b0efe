"""The local registry of buckets and credentials (SQLite).

There is no platform server, so this file is where blobfs remembers which buckets exist, who
owns them, what they are called and, for imported buckets, the credentials they were
imported with.  It can hold secrets: the file is created with mode 0600.

Two processes may use it at once (a mount daemon and a CLI command): SQLite's WAL journal
lets readers run beside one writer, and a busy timeout makes a second writer wait instead of
failing.  Calls are synchronous because each is a few hundred microseconds on a local file.

The schema has a version (``PRAGMA user_version``, :data:`SCHEMA_VERSION`); opening a
registry of an older blobfs migrates it in one transaction, and a registry of a newer one is
refused with :class:`~sdk.errors.ConfigError`, untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sdk.errors import AlreadyExists, ConfigError, ResourceNotFound
from sdk.types import Bucket, Provider

#: The schema this blobfs reads and writes, kept in SQLite's ``PRAGMA user_version``.  A
#: registry written before versions were kept has none (0).
SCHEMA_VERSION = 1

#: The tables of a new registry, at :data:`SCHEMA_VERSION`.
_TABLES = (
    """CREATE TABLE buckets (
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
)""",
    """CREATE UNIQUE INDEX buckets_name
    ON buckets (cluster, org, owner, name) WHERE name IS NOT NULL""",
    "CREATE INDEX buckets_cluster ON buckets (cluster, created_at)",
    """CREATE TABLE persistent_credentials (
    id          TEXT PRIMARY KEY,
    cluster     TEXT NOT NULL,
    owner       TEXT NOT NULL,
    name        TEXT,
    read_only   INTEGER NOT NULL,
    bucket_ids  TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  TEXT NOT NULL
)""",
    """CREATE UNIQUE INDEX credentials_name
    ON persistent_credentials (cluster, owner, name) WHERE name IS NOT NULL""",
)

#: ``_MIGRATIONS[n]`` takes a registry from version ``n`` to ``n + 1``.  0 -> 1: the
#: registries of blobfs before versioning get the index every bucket listing uses.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    ("CREATE INDEX IF NOT EXISTS buckets_cluster ON buckets (cluster, created_at)",),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION


@dataclass(frozen=True)
class BucketRecord:
    """A registry row: the public :class:`Bucket` plus what only the sdk needs."""

    bucket: Bucket
    provider_bucket: str
    credentials: Mapping[str, str] | None = field(default=None, repr=False)

    @property
    def paths(self) -> tuple[str, ...]:
        """Paths under the cluster that name this bucket: ``[org/]owner/{name,id}``."""
        b = self.bucket
        base = f"{b.org_name}/{b.owner}" if b.org_name else b.owner
        names = [b.id] + ([b.name] if b.name else [])
        return tuple(f"{base}/{n}" for n in names)


@dataclass(frozen=True)
class CredentialsRecord:
    """A persistent-credentials row; ``data`` holds provider secrets and state."""

    id: str
    cluster: str
    owner: str
    name: str | None
    read_only: bool
    bucket_ids: Sequence[str]
    data: Mapping[str, object] = field(repr=False)
    created_at: datetime


def new_bucket_id() -> str:
    return f"bucket-{uuid.uuid4()}"


def new_credentials_id() -> str:
    return f"bucket-credentials-{uuid.uuid4()}"


class Registry:
    """Bucket and credential records in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Create the file ourselves so it never exists with a wider mode, even briefly.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            # Before anything is written, not even the journal mode: a registry of a newer
            # blobfs is left exactly as it is.
            self._check_version(self._version())
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._migrate()
        except BaseException:
            self._db.close()
            raise
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    def close(self) -> None:
        self._db.close()

    # -- the schema ---------------------------------------------------------------------------

    def _version(self) -> int:
        version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        return version

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the registry {self.path} has schema version {version}, written by a newer "
                f"blobfs (this one knows versions up to {SCHEMA_VERSION}); upgrade blobfs, or "
                "point BLOBFS_DATA_DIR elsewhere. The file was not changed."
            )

    def _migrate(self) -> None:
        """Create the tables of a new registry, or bring an older one to
        :data:`SCHEMA_VERSION`: in one transaction, so a registry is at one version or the
        next, never between; a second process waits for the first and finds it done."""
        with self._write() as db:
            version = self._version()  # again: another process may have migrated meanwhile
            self._check_version(version)
            if version == SCHEMA_VERSION:
                return
            tables = db.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='buckets'"
            ).fetchone()[0]
            steps = _MIGRATIONS[version:] if tables else (_TABLES,)
            for step in steps:
                for statement in step:
                    db.execute(statement)
            # PRAGMA takes no parameters; the value is this module's own integer.
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so check-then-insert sequences
        # cannot interleave with another process's.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    # -- buckets ------------------------------------------------------------------------------

    def add_bucket(self, record: BucketRecord) -> None:
        """Insert; :class:`AlreadyExists` if the name is taken for this owner."""
        b = record.bucket
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO buckets (id, cluster, org, owner, name, provider, provider_bucket,"
                    " created_at, imported, public, credentials)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        b.id,
                        b.cluster_name,
                        b.org_name or "",
                        b.owner,
                        b.name,
                        b.provider.value,
                        record.provider_bucket,
                        b.created_at.isoformat(),
                        int(b.imported),
                        int(b.public),
                        json.dumps(dict(record.credentials)) if record.credentials else None,
                    ),
                )
        except sqlite3.IntegrityError as e:
            raise AlreadyExists(
                f"bucket {b.name!r} already exists for owner {b.owner!r} "
                f"on cluster {b.cluster_name!r}"
            ) from e

    def name_taken(self, cluster: str, org: str | None, owner: str, name: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM buckets WHERE cluster=? AND org=? AND owner=? AND name=?",
            (cluster, org or "", owner, name),
        ).fetchone()
        return row is not None

    def list_buckets(self, cluster: str) -> list[BucketRecord]:
        rows = self._db.execute(
            "SELECT * FROM buckets WHERE cluster=? ORDER BY created_at, id", (cluster,)
        ).fetchall()
        return [_bucket_record(r) for r in rows]

    def get_bucket(
        self, cluster: str, id_or_name: str, *, owner: str, org: str | None
    ) -> BucketRecord:
        """By id anywhere in the cluster first, then by name for ``(org, owner)``."""
        row = self._db.execute(
            "SELECT * FROM buckets WHERE cluster=? AND id=?", (cluster, id_or_name)
        ).fetchone()
        if row is None:
            row = self._db.execute(
                "SELECT * FROM buckets WHERE cluster=? AND org=? AND owner=? AND name=?",
                (cluster, org or "", owner, id_or_name),
            ).fetchone()
        if row is None:
            raise ResourceNotFound(f"bucket {id_or_name!r} not found on cluster {cluster!r}")
        return _bucket_record(row)

    def find_by_path(self, cluster: str, path: str) -> tuple[BucketRecord, str]:
        """The bucket a normalised URI path names, and the key after it.

        ``path`` is ``[org/]owner/bucket[/key]``; the longest matching bucket path wins so an
        org named like an owner cannot shadow a bucket.
        """
        best: tuple[BucketRecord, str] | None = None
        best_len = -1
        for record in self.list_buckets(cluster):
            for candidate in record.paths:
                if path == candidate or path.startswith(candidate + "/"):
                    if len(candidate) > best_len:
                        best = (record, path[len(candidate) + 1 :])
                        best_len = len(candidate)
        if best is None:
            raise ResourceNotFound(f"no bucket found for blob://{cluster}/{path}")
        return best

    def set_public(self, bucket_id: str, public: bool) -> None:
        with self._write() as db:
            db.execute("UPDATE buckets SET public=? WHERE id=?", (int(public), bucket_id))

    def remove_bucket(self, bucket_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM buckets WHERE id=?", (bucket_id,))

    # -- persistent credentials ----------------------------------------------------------------

    def add_credentials(self, record: CredentialsRecord) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO persistent_credentials"
                    " (id, cluster, owner, name, read_only, bucket_ids, data, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.cluster,
                        record.owner,
                        record.name,
                        int(record.read_only),
                        json.dumps(list(record.bucket_ids)),
                        json.dumps(dict(record.data)),
                        record.created_at.isoformat(),
                    ),
                )
        except sqlite3.IntegrityError as e:
            raise AlreadyExists(f"credentials {record.name!r} already exist") from e

    def list_credentials(self, cluster: str) -> list[CredentialsRecord]:
        rows = self._db.execute(
            "SELECT * FROM persistent_credentials WHERE cluster=? ORDER BY created_at, id",
            (cluster,),
        ).fetchall()
        return [_credentials_record(r) for r in rows]

    def get_credentials(self, cluster: str, id_or_name: str, *, owner: str) -> CredentialsRecord:
        row = self._db.execute(
            "SELECT * FROM persistent_credentials WHERE cluster=? AND id=?", (cluster, id_or_name)
        ).fetchone()
        if row is None:
            row = self._db.execute(
                "SELECT * FROM persistent_credentials WHERE cluster=? AND owner=? AND name=?",
                (cluster, owner, id_or_name),
            ).fetchone()
        if row is None:
            raise ResourceNotFound(f"credentials {id_or_name!r} not found on cluster {cluster!r}")
        return _credentials_record(row)

    def update_credentials_buckets(self, credentials_id: str, bucket_ids: Sequence[str]) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE persistent_credentials SET bucket_ids=? WHERE id=?",
                (json.dumps(list(bucket_ids)), credentials_id),
            )

    def update_credentials(
        self, credentials_id: str, bucket_ids: Sequence[str], data: Mapping[str, object]
    ) -> None:
        """Replace the buckets and provider state of persistent credentials (one
        transaction, so the two never disagree)."""
        with self._write() as db:
            db.execute(
                "UPDATE persistent_credentials SET bucket_ids=?, data=? WHERE id=?",
                (json.dumps(list(bucket_ids)), json.dumps(dict(data)), credentials_id),
            )

    def remove_credentials(self, credentials_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM persistent_credentials WHERE id=?", (credentials_id,))


def _bucket_record(row: sqlite3.Row) -> BucketRecord:
    bucket = Bucket(
        id=row["id"],
        owner=row["owner"],
        cluster_name=row["cluster"],
        org_name=row["org"] or None,
        provider=Provider(row["provider"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        imported=bool(row["imported"]),
        public=bool(row["public"]),
        name=row["name"],
    )
    creds = json.loads(row["credentials"]) if row["credentials"] else None
    return BucketRecord(bucket=bucket, provider_bucket=row["provider_bucket"], credentials=creds)


def _credentials_record(row: sqlite3.Row) -> CredentialsRecord:
    return CredentialsRecord(
        id=row["id"],
        cluster=row["cluster"],
        owner=row["owner"],
        name=row["name"],
        read_only=bool(row["read_only"]),
        bucket_ids=json.loads(row["bucket_ids"]),
        data=json.loads(row["data"]),
        created_at=datetime.fromisoformat(row["created_at"]),
    )


def utcnow() -> datetime:
    return datetime.now(UTC)
