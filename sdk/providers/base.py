"""The provider protocol: what every storage back end (S3, Azure, in-memory) offers.

Two levels:

* :class:`ProviderAdmin` -- one per cluster, holding the cluster's administrative credentials:
  creates and deletes provider buckets and opens a :class:`BlobStore` on one of them.
* :class:`BlobStore` -- object operations on one provider bucket (an S3 bucket, an Azure
  container) with the credentials it was opened with.  Everything above the providers works
  through this protocol and nothing else, so the in-memory provider can stand in for the real
  ones in fast unit tests.

A store may also offer its small PUTs and ranged GETs as signed request bytes to a caller
that does its own I/O (:class:`OffersPreparedRequests`).

Access control (temporary and persistent credentials scoped to buckets, public access) is
part of :class:`ProviderAdmin` too; the S3 and Azure admins delegate it to
:mod:`sdk.providers.s3.access` and :mod:`sdk.providers.azure.access`.

Every method raises only :mod:`sdk.errors` exceptions; the provider modules translate at this
boundary and retry transient failures themselves (:mod:`sdk.retry`).
"""

from __future__ import annotations

import builtins
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from sdk.errors import InvalidRequest
from sdk.providers.http1 import HttpOrigin, HttpReply

#: Smallest part of a multipart upload that S3 accepts (every part but the last).
MIN_PART_SIZE = 5 * 1024 * 1024
#: Largest part S3 accepts, and the largest object one S3 CopyObject may copy.
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
#: Most parts one multipart upload may have (S3; Azure allows 50,000 blocks).
MAX_PARTS = 10_000
#: SigV4 presigned URLs live at most seven days; Azure SAS URLs are held to the same.
MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600


def check_expiry(expires_in_seconds: int) -> None:
    """Refuse a signed-URL lifetime outside 1 second .. 7 days
    (:class:`~sdk.errors.InvalidRequest`)."""
    if not 1 <= expires_in_seconds <= MAX_SIGNED_URL_SECONDS:
        raise InvalidRequest(
            f"a signed URL must expire between 1 second and 7 days, got {expires_in_seconds} s"
        )


@dataclass(frozen=True)
class CopySettings:
    """When and how :meth:`BlobStore.copy` copies a large object in parts.

    An object larger than ``threshold`` bytes is copied as a multipart upload of the
    destination whose parts (``part_size`` bytes, ``concurrency`` at once) are server-side
    copies of ranges of the source (S3 UploadPartCopy, Azure Put Block From URL); smaller
    objects with one server-side copy request (S3 CopyObject, Azure Copy Blob).

    The default threshold is S3's CopyObject limit (5 GiB), so every object that one request
    can copy is copied by one request: parts gave no clear gain on SeaweedFS, and on Azurite
    one Copy Blob is a metadata operation while parts move the data (``docs/BENCHMARKS.md``,
    "Server-side copies").  A single S3 copy also keeps the source's ETag, which lets an
    interrupted directory rename recognise finished copies.  Above the threshold, parts keep every
    request bounded (Azure: a Copy Blob may stay ``pending`` for long).  Stores where parallel
    part copies pay (AWS) may lower it; tests lower it to exercise the part path.
    """

    threshold: int = MAX_PART_SIZE
    part_size: int = 256 * 1024 * 1024
    concurrency: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= MAX_PART_SIZE:
            raise ValueError(f"copy threshold {self.threshold} outside 0..{MAX_PART_SIZE}")
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise ValueError(
                f"copy part size {self.part_size} outside {MIN_PART_SIZE}..{MAX_PART_SIZE}"
            )
        if self.concurrency < 1:
            raise ValueError("copy concurrency must be at least 1")

    def part_size_for(self, size: int) -> int:
        """The part size for an object of ``size`` bytes: ``part_size``, or larger where
        that would need more than :data:`MAX_PARTS` parts."""
        return max(self.part_size, -(-size // MAX_PARTS))


@dataclass(frozen=True)
class MetadataRules:
    """How much user metadata one object may carry, as a provider counts it.

    ``limit`` bytes of names and values in UTF-8, each name counted with ``name_prefix``
    (the header it travels in) where the provider's documentation leaves open whether the
    prefix counts -- the stricter reading, so nothing the limit allows is refused.
    """

    limit: int
    name_prefix: str = ""

    def size(self, metadata: Mapping[str, str]) -> int:
        """The bytes ``metadata`` takes of :attr:`limit`."""
        prefix = len(self.name_prefix)
        return sum(prefix + len(k.encode()) + len(v.encode()) for k, v in metadata.items())


@dataclass(frozen=True)
class ObjectInfo:
    """What the store says about one object.

    ``metadata`` holds user metadata (S3 ``x-amz-meta-*``, Azure blob metadata) with lower-case
    names; listings leave it empty because neither provider returns it there cheaply.
    """

    key: str
    size: int
    etag: str
    modified_at: datetime | None = None
    created_at: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass(frozen=True)
class PrefixInfo:
    """A common prefix in a delimited listing; ``key`` ends with the delimiter."""

    key: str


class MultipartUpload(Protocol):
    """An upload assembled from parts; invisible until :meth:`complete`.

    Parts are numbered from 1, may be uploaded concurrently and in any order, and every part
    but the last must be at least :data:`MIN_PART_SIZE` bytes.  ``upload_id`` names the
    upload on the server: another process may take it up again
    (:meth:`ResumesUploads.resume_multipart`).
    """

    key: str
    upload_id: str

    async def upload_part(self, part_number: int, data: bytes) -> None: ...

    async def complete(self) -> str:
        """Assemble the uploaded parts in part-number order; return the new ETag."""
        ...

    async def abort(self) -> None:
        """Drop the uploaded parts; safe to call more than once and after a failure."""
        ...


@dataclass(frozen=True)
class StoredPart:
    """A part an unfinished multipart upload holds on the server.

    ``md5`` is the MD5 (hex) of the part's bytes where the server tells it (S3's part
    ETags; ``None`` where it does not: Azure's uncommitted blocks, S3 parts encrypted with
    KMS), so a caller can tell whether the part holds the bytes it means to send.  ``tag``
    is what completing the upload needs of it (S3's ETag)."""

    number: int
    size: int
    md5: str | None = None
    tag: str | None = None


class ResumableUpload(MultipartUpload, Protocol):
    """A multipart upload taken up again by its id, with the parts it already holds."""

    async def stored_parts(self) -> dict[int, StoredPart]:
        """The parts the server holds, by number; :class:`~sdk.errors.ResourceNotFound`
        if the upload is gone (completed, aborted, expired)."""
        ...

    def keep_part(self, part: StoredPart) -> None:
        """Count a stored part (from :meth:`stored_parts`) in :meth:`complete` without
        sending its bytes again."""
        ...


@runtime_checkable
class ResumesUploads(Protocol):
    """A :class:`BlobStore` whose multipart uploads outlive the process that started them,
    so a later one can finish them: S3 (an upload stays until completed or aborted), Azure
    (uncommitted blocks stay for 7 days, or until the blob is next written), the in-memory
    store (while the store lives)."""

    async def resume_multipart(
        self,
        key: str,
        upload_id: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> ResumableUpload:
        """The unfinished upload ``upload_id`` of ``key``, as :meth:`BlobStore.start_multipart`
        began it.  No request is made: :meth:`ResumableUpload.stored_parts` finds out whether
        it is still there.  ``metadata`` and ``content_type`` are those it was started with
        (Azure applies them at completion; S3 kept them from the start)."""
        ...


class PartCopyUpload(MultipartUpload, Protocol):
    """A multipart upload whose parts can also be server-side copies of another object's
    ranges (used by :meth:`BlobStore.copy` for large objects:
    :mod:`sdk.providers.part_copy`)."""

    async def copy_part(
        self, part_number: int, src_key: str, offset: int, length: int, *, etag: str
    ) -> None:
        """Make part ``part_number`` the ``length`` bytes at ``offset`` of ``src_key``, read
        server-side; :class:`~sdk.errors.PreconditionFailed` unless the source is still
        version ``etag``."""
        ...


@runtime_checkable
class BlobStore(Protocol):
    """Object operations on one provider bucket."""

    #: Provider-side name of the bucket (S3 bucket name, Azure container name).
    bucket_name: str
    #: How much user metadata one object may carry (S3 2 KiB, Azure 8 KiB).
    metadata_rules: MetadataRules

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``; :class:`~sdk.errors.ResourceNotFound` if it does not exist."""
        ...

    def read(
        self,
        key: str,
        offset: int = 0,
        length: int | None = None,
        *,
        etag: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream ``length`` bytes (to the end when ``None``) of ``key`` from ``offset``.

        With ``etag`` the read fails with :class:`~sdk.errors.PreconditionFailed` if the
        object is no longer that version.  An offset at or past the end yields nothing.
        """
        ...

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        """Read up to ``length`` bytes at ``offset`` into memory (short only at the end)."""
        ...

    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview:
        """What :meth:`read_range` reads, as a read-only view of the buffer the store
        received it into.  A store that receives a body into a buffer of its own (S3's
        direct path) hands that buffer out without copying it into ``bytes``: about 0.3 s
        of CPU per GiB.  For callers that pass the bytes on (caches, file writes)."""
        ...

    def list(
        self, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | PrefixInfo]:
        """Every key starting with ``prefix`` in key order, paging through the provider.

        With ``delimiter="/"`` keys with a further ``/`` after the prefix are folded into
        :class:`PrefixInfo` entries.  Order: lexicographic by key, prefixes mixed in.  One
        exception callers must allow for: SeaweedFS returns *recursive* listings in
        directory-tree order (``a/x`` before ``a-``); putting them in key order would need
        unbounded buffering, so consumers that need a total order sort what they keep.
        """
        ...

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> str:
        """Create or replace ``key`` with ``data`` in one request; return the new ETag."""
        ...

    async def start_multipart(
        self,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> MultipartUpload: ...

    #: When :meth:`copy` switches to a copy in parts, and their size (settable).
    copy_settings: CopySettings

    async def copy(
        self,
        src_key: str,
        dst_key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> str:
        """Server-side copy of ``src_key`` to ``dst_key``; returns the new ETag.

        ``size`` is the source's size when the caller knows it (from a listing): a copy
        that keeps the metadata and will be one request then skips the HEAD that otherwise
        picks the method (measured on SeaweedFS: 60 vs 30 small copies/s), and is not pinned
        to a version.

        The content type comes along; the user metadata too, unless ``metadata`` replaces
        it.  The copy is all or nothing: the destination appears complete or not at all,
        and is one version of the source (a source replaced meanwhile fails the copy with
        :class:`~sdk.errors.PreconditionFailed` rather than mixing versions).  Objects over
        :attr:`copy_settings` ``.threshold`` are copied in parallel parts; the new ETag is
        then not the source's (on S3 it is for a single-request copy).
        """
        ...

    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Delete ``key``; :class:`~sdk.errors.ResourceNotFound` if missing unless
        ``missing_ok``."""
        ...

    async def delete_many(self, keys: builtins.list[str]) -> None:
        """Delete keys in batches; missing keys are ignored."""
        ...

    async def sign_url(self, key: str, expires_in_seconds: int) -> str:
        """A URL that allows an anonymous GET of ``key`` until it expires
        (:func:`check_expiry`: 1 second .. 7 days)."""
        ...

    async def close(self) -> None:
        """Release connections.  The store must not be used afterwards."""
        ...


Credentials = TypeVar("Credentials")
Credentials_contra = TypeVar("Credentials_contra", contravariant=True)


class PreparedRequest(Protocol[Credentials_contra]):
    """One request of :class:`PreparedRequests`, built but for its signature."""

    @property
    def keep(self) -> frozenset[int]:
        """Statuses whose ``Content-Length`` body is read to its end: after such a reply
        the connection stays usable.  Any other reply is taken by its status and headers
        and its connection dropped."""
        ...

    @property
    def max_body(self) -> int:
        """Largest body read; a larger one is left unread (its connection dropped)."""
        ...

    def sign(self, credentials: Credentials_contra, /) -> bytes:
        """The whole request (head and body) signed with ``credentials``, to be sent as it
        is.  Sending it again (once the connection it went on broke) is safe: the
        requests are idempotent."""
        ...


class PreparedRequests(Protocol[Credentials]):
    """Small PUTs and ranged GETs of one store as signed HTTP/1.1 request bytes, plus the
    rules to judge their replies (:mod:`sdk.providers.http1` values), for a caller that
    does its own I/O on another event loop.

    The caller owns the connections (keep-alive, TLS, :attr:`connect_timeout` and
    :attr:`read_timeout`) and the credentials it signs with: :meth:`credentials` runs on
    the store's own loop; the caller may keep what it returned for a while, and drops it
    when :meth:`refuses_credentials` says a reply refused it.  Only plain successes are
    answered here: for everything else (``None`` from any method below, errors, broken
    connections, timeouts) the caller calls the :class:`BlobStore` method, which gives the
    same result or raises the same error as if this did not exist.
    """

    @property
    def origin(self) -> HttpOrigin: ...

    @property
    def connect_timeout(self) -> float: ...

    @property
    def read_timeout(self) -> float:
        """Longest wait for a reply to a sent request."""
        ...

    def ssl_context(self) -> ssl.SSLContext | None:
        """A new TLS context for an https origin, trusting what the store's own client
        trusts (``None`` over http)."""
        ...

    async def credentials(self) -> Credentials:
        """The store's current credentials; await it on the store's event loop."""
        ...

    def refuses_credentials(self, reply: HttpReply) -> bool:
        """Whether ``reply`` refused the credentials the request was signed with."""
        ...

    def put_request(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> PreparedRequest[Credentials] | None:
        """The request :meth:`BlobStore.put` makes (same metadata, same content type), or
        ``None`` when it is not one to send from the caller's thread (a body too large to
        hash there, headers that need encoding ...)."""
        ...

    def put_etag(self, reply: HttpReply) -> str | None:
        """The new ETag when ``reply`` is a plain success of a :meth:`put_request`."""
        ...

    def read_request(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> PreparedRequest[Credentials] | None:
        """The ranged GET :meth:`BlobStore.read_view` makes for these arguments, or
        ``None`` where it answers otherwise (an empty or negative range ...)."""
        ...

    def read_view(self, key: str, reply: HttpReply) -> memoryview | None:
        """What :meth:`BlobStore.read_view` returns when ``reply`` to a
        :meth:`read_request` is a plain body of ``key``; ``None`` for anything else (a
        missing key, a changed object, a range past the end ...)."""
        ...


@runtime_checkable
class OffersPreparedRequests(Protocol):
    """A :class:`BlobStore` that can hand out :class:`PreparedRequests` (S3 on
    S3-compatible endpoints)."""

    def prepared_requests(self) -> PreparedRequests[Any] | None:
        """This store's :class:`PreparedRequests`, or ``None`` where it has none."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class CredentialTimes:
    """How long the credentials an admin issues live, and when they are renewed.

    ``ttl`` is the lifetime asked for (a provider may impose a floor: STS issues at least
    900 s, but the stores renew after ``ttl`` by ``clock`` whatever the server granted, so a
    test can make renewal happen every few seconds).  Credentials are renewed
    ``min(renew_before, ttl / 4)`` seconds before they expire.  ``clock`` returns the current
    time (UTC-aware).
    """

    ttl: float = 3600.0
    renew_before: float = 300.0
    clock: Callable[[], datetime] = _utcnow

    @property
    def margin(self) -> float:
        """Seconds before expiry at which credentials are renewed."""
        return min(self.renew_before, self.ttl / 4)


@dataclass(frozen=True)
class IssuedCredentials:
    """Raw provider credentials for one bucket, as the reference hands them out.

    S3: ``access_key_id``, ``secret_access_key``, ``bucket_name``, ``endpoint_url``?,
    ``region_name``?, ``session_token``?, ``expiration``? (ISO 8601).  Azure:
    ``storage_endpoint``, ``bucket_name``, ``sas_token``, ``expiry`` (ISO 8601).
    """

    credentials: Mapping[str, str] = field(repr=False)
    expires_at: datetime | None = None


@dataclass(frozen=True)
class PersistentGrant:
    """Persistent credentials created at the provider.

    ``per_bucket`` maps each provider bucket name to its raw credentials (as in
    :class:`IssuedCredentials`); ``state`` is what the admin needs to change or revoke them
    later (JSON-serialisable; may hold secrets, so it is kept in the registry only).
    """

    per_bucket: Mapping[str, Mapping[str, str]] = field(repr=False)
    state: Mapping[str, Any] = field(repr=False)


class ProviderAdmin(Protocol):
    """Administrative operations of one cluster.

    The access-control methods act with the admin's own credentials, which never leave it:
    what they hand out is always narrower (one bucket, or a set of buckets, possibly
    read-only), and the server itself enforces that.  A provider that cannot scope
    credentials raises :class:`~sdk.errors.InvalidRequest` saying so.
    """

    #: Lifetime and renewal of the temporary credentials this admin issues (a knob for tests).
    credential_times: CredentialTimes

    async def create_bucket(self, bucket_name: str) -> None:
        """Create a provider bucket; :class:`~sdk.errors.AlreadyExists` if taken."""
        ...

    async def delete_bucket(self, bucket_name: str) -> None:
        """Delete an empty provider bucket; :class:`~sdk.errors.NotEmpty` if it holds keys,
        :class:`~sdk.errors.ResourceNotFound` if it does not exist."""
        ...

    async def open_bucket(
        self, bucket_name: str, credentials: Mapping[str, str] | None = None
    ) -> BlobStore:
        """A store on ``bucket_name``: with the given raw credentials (imported buckets) or
        the cluster's own."""
        ...

    async def check_bucket(self, bucket_name: str, credentials: Mapping[str, str]) -> None:
        """Raise unless ``credentials`` can list ``bucket_name`` (used by import)."""
        ...

    async def open_scoped_bucket(self, bucket_name: str) -> BlobStore:
        """A store on ``bucket_name`` whose requests use credentials scoped to that bucket,
        renewed before they expire (see :attr:`credential_times`).  Where the provider
        cannot scope credentials the store uses the admin's own, as :meth:`open_bucket`
        does; its signed URLs are made with the admin's rights either way."""
        ...

    async def temporary_credentials(
        self, bucket_name: str, *, read_only: bool = False
    ) -> IssuedCredentials:
        """Credentials for ``bucket_name`` alone that expire after
        :attr:`credential_times` ``.ttl`` (or the provider's floor)."""
        ...

    async def create_persistent_credentials(
        self, credentials_id: str, bucket_names: Sequence[str], *, read_only: bool = False
    ) -> PersistentGrant:
        """Long-lived credentials for ``bucket_names``, named after ``credentials_id``
        (unique).  Nothing is left behind at the provider if this fails."""
        ...

    async def detach_persistent_credentials(
        self, state: Mapping[str, Any], bucket_name: str
    ) -> Mapping[str, Any]:
        """Remove ``bucket_name`` from persistent credentials (given by their ``state``);
        returns the new state.  Removing the last bucket revokes them."""
        ...

    async def revoke_persistent_credentials(self, state: Mapping[str, Any]) -> None:
        """Revoke persistent credentials: afterwards the server refuses them.  Parts
        already gone (a deleted bucket, a removed user) are not an error."""
        ...

    async def set_public_access(self, bucket_name: str, public: bool) -> None:
        """Allow (``True``) or forbid anonymous reads and listing of ``bucket_name``."""
        ...

    async def close(self) -> None: ...
