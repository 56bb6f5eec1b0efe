"""The Azure :class:`~sdk.providers.base.BlobStore`: one container, one connection pool.

Reading is in :mod:`.reading`, listing in :mod:`.listing`, block uploads in :mod:`.blocks`,
deleting many keys in :mod:`.deleting`; this module ties them to one container and adds
writes, copies, single deletes and signed URLs.  Every blob client comes from the store's one
service client, so they all share its connection pool.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from azure.core import MatchConditions
from azure.storage.blob import BlobSasPermissions, ContentSettings, generate_blob_sas
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

from sdk.errors import InvalidRequest, PreconditionFailed, ResourceNotFound, TransientError
from sdk.providers.azure.blocks import PUT_BLOCK_SIZE, AzureMultipartUpload, put_blocks
from sdk.providers.azure.checks import (
    AZURE_METADATA,
    check_key,
    check_metadata,
    check_range,
    quote_etag,
    strip_etag,
)
from sdk.providers.azure.deleting import BatchDeleter
from sdk.providers.azure.errors import error_code, translated
from sdk.providers.azure.listing import LIST_PAGE_SIZE, ContainerListing
from sdk.providers.azure.reading import FIRST_READ, Fetched, fetch, no_chunks
from sdk.providers.azure.reading import chunks as read_chunks
from sdk.providers.base import CopySettings, ObjectInfo, PrefixInfo
from sdk.providers.part_copy import copy_in_parts
from sdk.retry import retry_transient

#: Blob clients kept per store for reuse.
_BLOB_CLIENTS: Final = 256
#: Signed URLs: the reference limits them to 1 s .. 7 days.
_MIN_SIGN_SECONDS: Final = 1
_MAX_SIGN_SECONDS: Final = 7 * 24 * 3600


class AzureStore:
    """:class:`~sdk.providers.base.BlobStore` on one Azure container.

    Owns one :class:`BlobServiceClient` (and so one connection pool) for its lifetime; every
    blob client is derived from it and shares the pool.
    """

    metadata_rules = AZURE_METADATA

    def __init__(
        self,
        service: BlobServiceClient,
        bucket_name: str,
        *,
        account_key: str | None = None,
        list_page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        self.bucket_name = bucket_name
        self._service = service
        self._container: ContainerClient = service.get_container_client(bucket_name)
        self._account_key = account_key
        self._blobs: collections.OrderedDict[str, BlobClient] = collections.OrderedDict()
        self._listing = ContainerListing(self._container, self._what, page_size=list_page_size)
        self._deleter = BatchDeleter(
            self._container, self._what(), lambda key: self.delete(key, missing_ok=True)
        )
        self.copy_settings = CopySettings()

    def __repr__(self) -> str:
        return f"AzureStore({self._service.url.split('?', 1)[0]!r}, {self.bucket_name!r})"

    def _blob(self, key: str) -> BlobClient:
        # Building a BlobClient (URL parsing, a pipeline of policies) costs about 1 ms of
        # CPU, as much as a small GET from Azurite; the block cache reads one key many times.
        client = self._blobs.get(key)
        if client is None:
            client = self._blobs[key] = self._container.get_blob_client(key)
            if len(self._blobs) > _BLOB_CLIENTS:
                self._blobs.popitem(last=False)
        else:
            self._blobs.move_to_end(key)
        return client

    def _what(self, key: str = "") -> str:
        return f"azure:{self.bucket_name}/{key}"

    # -- reading --------------------------------------------------------------------------------

    @retry_transient
    async def head(self, key: str) -> ObjectInfo:
        """Size, ETag, times, user metadata (lower-case names) and content type of ``key``."""
        with translated(self._what(key)):
            props = await self._blob(key).get_blob_properties()
        return ObjectInfo(
            key=key,
            size=props.size,
            etag=strip_etag(props.etag),
            modified_at=props.last_modified,
            created_at=props.creation_time,
            metadata={k.lower(): v for k, v in (props.metadata or {}).items()},
            content_type=props.content_settings.content_type,
        )

    def read(
        self,
        key: str,
        offset: int = 0,
        length: int | None = None,
        *,
        etag: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream ``length`` bytes (to the end when ``None``) of ``key`` from ``offset``.

        The first request is made on entering the context, so a missing key or a changed
        ETag fails there.  The rest arrives as ranged GETs pinned to the first response's
        ETag (a read never mixes two versions: a blob replaced mid-read fails it with
        :class:`~sdk.errors.PreconditionFailed`), each retried on its own, so a dropped
        connection resumes at the offset it broke at.
        """
        check_range(offset, length)
        return self._read(key, offset, length, etag)

    @asynccontextmanager
    async def _read(
        self, key: str, offset: int, length: int | None, etag: str | None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        if length == 0:
            await self._check_version(key, etag)
            chunks = no_chunks()
        else:
            first_len = FIRST_READ if length is None else min(FIRST_READ, length)
            first = await self._fetch(key, offset, first_len, etag)
            stop = first.total if length is None else min(first.total, offset + length)
            pinned = first.etag
            chunks = read_chunks(
                lambda pos, n: self._fetch(key, pos, n, pinned),
                first.data,
                offset + len(first.data),
                stop,
            )
        try:
            yield chunks
        finally:
            await chunks.aclose()

    def _copy_source_url(self, blob: BlobClient) -> str:
        """The URL Copy Blob reads the source from (a scoped store adds its current SAS:
        :mod:`sdk.providers.azure.access`)."""
        return str(blob.url)

    async def _check_version(self, key: str, etag: str | None) -> None:
        # An empty read still fails on a missing or replaced key, as a GET would.
        info = await self.head(key)
        if etag is not None and info.etag != strip_etag(etag):
            raise PreconditionFailed(f"{self._what(key)}: ETag is {info.etag}, not {etag}")

    @retry_transient
    async def _fetch(self, key: str, offset: int, length: int, etag: str | None) -> Fetched:
        """One ranged GET of ``length`` bytes at ``offset`` (fewer at the end of the blob)."""
        return await fetch(self._blob(key), self._what(key), offset, length, etag)

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        """Up to ``length`` bytes at ``offset`` (short only at the end), in one request up to
        8 MiB; a failure retries the whole range."""
        check_range(offset, length)
        if length == 0:
            await self._check_version(key, etag)
            return b""
        return (await self._fetch(key, offset, length, etag)).data

    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview:
        """:meth:`read_range` as a view (the Azure client hands out ``bytes`` already)."""
        return memoryview(await self.read_range(key, offset, length, etag=etag))

    # -- listing --------------------------------------------------------------------------------

    def list(
        self, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | PrefixInfo]:
        """Every key starting with ``prefix`` in key order, one listing page at a time.

        A transient failure retries the page it happened on, not the whole listing.
        """
        return self._listing.entries(prefix, delimiter=delimiter)

    async def _probe(self) -> bool:
        """Whether the container holds any blob (one listing request of one entry)."""
        return await self._listing.any()

    # -- writing --------------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> str:
        """Create or replace ``key``; return the new ETag.

        Up to :data:`PUT_BLOCK_SIZE` this is one Put Blob request.  Larger data is staged
        in blocks of that size (:func:`.blocks.put_blocks`) and committed, which is just
        as atomic; the blocks are staged here rather than by the SDK's ``upload_blob`` so
        every block blobfs stages has the same id format (Azure refuses a block whose id
        length differs from the blob's other uncommitted blocks).
        """
        check_key(key)
        meta = check_metadata(metadata)
        if len(data) <= PUT_BLOCK_SIZE:
            return await self._put_single(key, data, meta, content_type)
        upload = AzureMultipartUpload(
            self._blob(key), key, self._what(key), metadata=meta, content_type=content_type
        )
        return await put_blocks(upload, data)

    @retry_transient
    async def _put_single(
        self, key: str, data: bytes, metadata: dict[str, str], content_type: str | None
    ) -> str:
        settings = ContentSettings(content_type=content_type) if content_type else None
        with translated(self._what(key)):
            result = await self._blob(key).upload_blob(
                data,
                length=len(data),
                overwrite=True,
                metadata=metadata or None,
                content_settings=settings,
            )
        return strip_etag(result.get("etag"))

    async def start_multipart(
        self,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> AzureMultipartUpload:
        """An upload of ``key`` from staged blocks; no request is made until the first part."""
        check_key(key)
        return self._upload(key, metadata=check_metadata(metadata), content_type=content_type)

    async def resume_multipart(
        self,
        key: str,
        upload_id: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> AzureMultipartUpload:
        """The unfinished upload ``upload_id`` of ``key``: its uncommitted blocks, committed
        with ``metadata`` and ``content_type`` (those it was started with); no request."""
        check_key(key)
        meta = check_metadata(metadata)
        return self._upload(key, metadata=meta, content_type=content_type, upload_id=upload_id)

    def _upload(
        self,
        key: str,
        *,
        metadata: Mapping[str, str],
        content_type: str | None,
        upload_id: str | None = None,
    ) -> AzureMultipartUpload:
        return AzureMultipartUpload(
            self._blob(key),
            key,
            self._what(key),
            metadata=metadata,
            content_type=content_type,
            source_url=self._part_source_url,
            upload_id=upload_id,
        )

    async def copy(
        self,
        src_key: str,
        dst_key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> str:
        """Server-side copy; ``metadata`` replaces the source's when given.  Returns ETag.

        Up to :attr:`copy_settings` ``.threshold`` one Copy Blob; above it Put Block From URL
        parts in parallel, committed as a block list (each request bounded by the part
        size, where one Copy Blob of a huge blob may stay ``pending`` for long).  Both are
        pinned to the source's ETag.
        """
        check_key(dst_key)
        meta = None if metadata is None else check_metadata(metadata)
        if meta is None and size is not None and size <= self.copy_settings.threshold:
            return await self._copy_blob(src_key, None, dst_key, None)
        src = await self.head(src_key)
        if src.size > self.copy_settings.threshold and self._part_source_url(src_key):
            upload = self._upload(
                dst_key,
                metadata=src.metadata if meta is None else meta,
                content_type=src.content_type,
            )
            return await copy_in_parts(upload, src, self.copy_settings)
        return await self._copy_blob(src_key, src.etag, dst_key, meta)

    @retry_transient
    async def _copy_blob(
        self, src_key: str, version: str | None, dst_key: str, meta: dict[str, str] | None
    ) -> str:
        """One Copy Blob (of ETag ``version`` when given); waits while it is ``pending``."""
        dst = self._blob(dst_key)
        what = f"{self._what(src_key)} -> {dst_key}"
        pinned: dict[str, Any] = {}
        if version is not None:
            pinned = {
                "source_etag": quote_etag(version),
                "source_match_condition": MatchConditions.IfNotModified,
            }
        with translated(what):
            # The URL carries the SAS token when the store holds one, which is what lets
            # the service read the source on our behalf.
            result = await dst.start_copy_from_url(
                self._copy_source_url(self._blob(src_key)), metadata=meta or None, **pinned
            )
            status = result.get("copy_status")
            etag: object = result.get("etag")
            copy_id = result.get("copy_id")
            delay = 0.05
            while status == "pending":
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                props = await dst.get_blob_properties()
                if props.copy.id != copy_id:
                    break  # replaced by someone else's write; theirs wins, as on S3
                status, etag = props.copy.status, props.etag
            if status in ("failed", "aborted"):
                raise TransientError(f"{what}: copy {status}")
            if meta is not None and not meta:
                # Copy Blob keeps the source's metadata when given none; clear it explicitly.
                cleared = await dst.set_blob_metadata({})
                etag = cleared.get("etag")
        return strip_etag(etag)

    def _part_source_url(self, key: str) -> str | None:
        """The URL Put Block From URL reads ``key`` from: unlike Copy Blob, it needs the
        source authorised in the URL even within one account, so a blob SAS (read, 1 h)
        made with the account key, or the SAS a store opened with one carries in its URLs;
        ``None`` when neither exists (then copies are one Copy Blob).  A scoped store
        appends its current container SAS instead (:mod:`sdk.providers.azure.access`)."""
        account = self._container.account_name
        if not self._account_key or not account:
            url = str(self._blob(key).url)
            return url if "?" in url else None
        return self._read_sas_url(
            key, account, self._account_key, datetime.now(UTC) + timedelta(hours=1)
        )

    def _read_sas_url(self, key: str, account: str, account_key: str, expiry: datetime) -> str:
        """``key``'s URL with a blob SAS that allows reading it until ``expiry``."""
        sas = generate_blob_sas(
            account_name=account,
            container_name=self.bucket_name,
            blob_name=key,
            account_key=account_key,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
        )
        return f"{self._blob(key).url.split('?', 1)[0]}?{sas}"

    # -- deleting -------------------------------------------------------------------------------

    @retry_transient
    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Delete ``key`` (and its snapshots); a missing key raises unless ``missing_ok``.

        A missing container is always an error.
        """
        try:
            with translated(self._what(key)):
                await self._blob(key).delete_blob(delete_snapshots="include")
        except ResourceNotFound as e:
            if missing_ok and error_code(e.__cause__ or e) == "BlobNotFound":
                return
            raise

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete keys in batches of 256 (:mod:`.deleting`); missing keys are ignored."""
        await self._deleter.delete_many(keys)

    # -- signing --------------------------------------------------------------------------------

    async def sign_url(self, key: str, expires_in_seconds: int) -> str:
        """A blob SAS URL allowing an anonymous GET of ``key`` for ``expires_in_seconds``.

        Signing needs the account key: a store opened with only a SAS token cannot sign.
        """
        if not _MIN_SIGN_SECONDS <= expires_in_seconds <= _MAX_SIGN_SECONDS:
            raise InvalidRequest(
                f"signed URL expiry must be between {_MIN_SIGN_SECONDS} s and 7 days, "
                f"got {expires_in_seconds} s"
            )
        account = self._container.account_name
        if not self._account_key or not account:
            raise InvalidRequest(
                f"{self._what(key)}: signing a URL needs the storage account key; this bucket "
                "was opened with a SAS token only"
            )
        # The SAS carries expiry in whole seconds; rounding up keeps a 1 s URL usable.
        expiry = datetime.now(UTC).replace(microsecond=0) + timedelta(
            seconds=expires_in_seconds + 1
        )
        return self._read_sas_url(key, account, self._account_key, expiry)

    async def close(self) -> None:
        """Close the connection pool.  The store must not be used afterwards."""
        await self._service.close()
