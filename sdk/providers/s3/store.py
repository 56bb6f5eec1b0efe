"""The S3 :class:`~sdk.providers.base.BlobStore`: one bucket, one client.

Streams are in :mod:`.reading`, listing in :mod:`.listing`, multipart uploads in
:mod:`.upload`, the clients in :mod:`.client`; this module ties them to one bucket.  Small
reads and writes take the direct client where the endpoint has one
(:mod:`sdk.providers.s3.direct`); anything it does not plainly succeed at is asked again
through botocore, whose error translation applies.  :meth:`S3Store.prepared_requests` offers
the same requests to a caller that does its own I/O (:mod:`sdk.providers.s3.prepared`).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from botocore.exceptions import ClientError

from sdk.errors import InvalidRequest, PreconditionFailed, ResourceNotFound
from sdk.providers.base import CopySettings, ObjectInfo, PrefixInfo, check_expiry
from sdk.providers.part_copy import copy_in_parts
from sdk.providers.s3.client import S3Client
from sdk.providers.s3.conventions import (
    DEFAULT_CONTENT_TYPE,
    S3_METADATA,
    as_utc,
    is_implicit_directory,
    lower_metadata,
    strip_etag,
)
from sdk.providers.s3.errors import error_code, error_status, translate, translated
from sdk.providers.s3.listing import list_entries
from sdk.providers.s3.prepared import S3PreparedRequests
from sdk.providers.s3.reading import BodyStream, no_chunks
from sdk.providers.s3.upload import S3Upload
from sdk.providers.s3.wire import plain_body, put_headers
from sdk.retry import retrying

#: S3's limit of keys per DeleteObjects request.
DELETE_BATCH = 1000
DELETE_CONCURRENCY = 4


class S3Store:
    """A :class:`~sdk.providers.base.BlobStore` on one S3 bucket."""

    metadata_rules = S3_METADATA

    def __init__(self, bucket_name: str) -> None:
        self.bucket_name = bucket_name
        self.client = S3Client()
        self.copy_settings = CopySettings()

    @classmethod
    async def open(
        cls,
        bucket_name: str,
        credentials: Mapping[str, str],
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> S3Store:
        """Open a store (and its connection pool) on ``bucket_name``."""
        store = cls(bucket_name)
        await store.client.open(credentials, endpoint_url, region)
        return store

    def _what(self, op: str, key: str) -> str:
        return f"{op} {self.bucket_name}/{key}"

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``."""
        what = self._what("head", key)
        r = await self.client.call(what, "head_object", Bucket=self.bucket_name, Key=key)
        if is_implicit_directory(key, r):
            raise ResourceNotFound(f"{what}: no such key (only keys under it)")
        return ObjectInfo(
            key=key,
            size=int(r["ContentLength"]),
            etag=strip_etag(r["ETag"]),
            modified_at=as_utc(r.get("LastModified")),
            metadata=lower_metadata(r.get("Metadata")),
            content_type=r.get("ContentType"),
        )

    # -- reading -----------------------------------------------------------------------------

    async def _get(
        self, key: str, offset: int, end: int | None, etag: str | None
    ) -> dict[str, Any] | None:
        """:meth:`_get_once`, retrying transient failures."""
        async for attempt in retrying():
            with attempt:
                return await self._get_once(key, offset, end, etag)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _get_once(
        self, key: str, offset: int, end: int | None, etag: str | None
    ) -> dict[str, Any] | None:
        """GET bytes ``offset``..``end`` (exclusive; ``None`` = to the end), or ``None`` when
        ``offset`` is at or past the end of the object."""
        params: dict[str, Any] = {"Bucket": self.bucket_name, "Key": key}
        if offset or end is not None:
            last = "" if end is None else str(end - 1)
            params["Range"] = f"bytes={offset}-{last}"
        if etag is not None:
            params["IfMatch"] = f'"{etag}"'
        what = self._what("read", key)
        try:
            resp = await self.client.call_once(what, "get_object", **params)
        except InvalidRequest as e:
            if error_code(e) == "InvalidRange" or error_status(e) == 416:
                return None
            raise
        if is_implicit_directory(key, resp):
            resp["Body"].close()
            raise ResourceNotFound(f"{what}: no such key (only keys under it)")
        return resp

    def read(
        self,
        key: str,
        offset: int = 0,
        length: int | None = None,
        *,
        etag: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream part of ``key``, pinned to the version it opened on
        (:mod:`sdk.providers.s3.reading`)."""
        if offset < 0 or (length is not None and length < 0):
            raise InvalidRequest(f"invalid range offset={offset} length={length}")
        return self._read(key, offset, None if length is None else offset + length, etag)

    @asynccontextmanager
    async def _read(
        self, key: str, offset: int, end: int | None, etag: str | None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        if end == offset:
            # S3 has no empty range; still fail as a read of a missing key would.
            await self._check_etag(key, etag)
            yield no_chunks()
            return
        resp = await self._get(key, offset, end, etag)
        if resp is None:
            yield no_chunks()
            return
        pinned = etag or strip_etag(resp["ETag"])
        stream = BodyStream(
            lambda at: self._get(key, at, end, pinned), self._what("read", key), offset, end, resp
        )
        try:
            yield stream.chunks()
        finally:
            stream.close()

    async def _check_etag(self, key: str, etag: str | None) -> None:
        info = await self.head(key)
        if etag is not None and info.etag != etag:
            raise PreconditionFailed(f"read {self.bucket_name}/{key}: no longer version {etag}")

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        """Up to ``length`` bytes at ``offset``, read in one request (retried whole)."""
        data = await self._read_range(key, offset, length, etag)
        return data if isinstance(data, bytes) else bytes(data)

    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview:
        """:meth:`read_range` without the copy of a directly received body into ``bytes``."""
        data = await self._read_range(key, offset, length, etag)
        return data if isinstance(data, memoryview) else memoryview(data)

    async def _read_range(
        self, key: str, offset: int, length: int, etag: str | None
    ) -> bytes | memoryview:
        if offset < 0 or length < 0:
            raise InvalidRequest(f"invalid range offset={offset} length={length}")
        if length == 0:
            await self._check_etag(key, etag)
            return b""
        what = self._what("read", key)
        if key:  # botocore refuses an empty key
            body = await self.client.try_direct(
                what,
                lambda d: d.get(self.bucket_name, key, offset, length, etag),
                lambda reply: plain_body(key, reply),
            )
            if body is not None:
                return body
            # Anything but a plain body (404, 412, 416, an implicit directory, a broken
            # connection ...) is asked again through botocore, whose translation gives the
            # right error.
        # One retry loop around request and body: a body cut short is fetched again whole.
        async for attempt in retrying():
            with attempt:
                resp = await self._get_once(key, offset, offset + length, etag)
                if resp is None:
                    return b""
                stream = resp["Body"]
                try:
                    with translated(what):
                        data: bytes = await stream.read()
                finally:
                    stream.close()
                return data
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def list(
        self, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | PrefixInfo]:
        """Keys under ``prefix``, paging through ``ListObjectsV2`` 1000 at a time."""
        return list_entries(self.client, self.bucket_name, prefix, delimiter)

    # -- writing -----------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> str:
        """Create or replace ``key`` in one PUT."""
        what = self._what("put", key)
        headers = put_headers(metadata, content_type)
        etag = await self.client.put_direct(what, self.bucket_name, key, data, headers)
        if etag is not None:
            return etag
        r = await self.client.call(
            what,
            "put_object",
            Bucket=self.bucket_name,
            Key=key,
            Body=data,
            Metadata=lower_metadata(metadata),
            ContentType=content_type or DEFAULT_CONTENT_TYPE,
        )
        return strip_etag(r["ETag"])

    def prepared_requests(self) -> S3PreparedRequests | None:
        """This store's small PUTs and ranged GETs as signed request bytes for a caller
        doing its own I/O (:class:`~sdk.providers.base.OffersPreparedRequests`), or ``None``
        where the direct client does not serve the endpoint (AWS, a proxy:
        :mod:`sdk.providers.s3.transport`).  Their credentials are
        the direct client's, so renewing ones keep renewing in one place."""
        direct = self.client.direct
        if direct is None:
            return None
        return S3PreparedRequests(
            self.bucket_name,
            direct.endpoint.url,
            direct.region,
            direct.credentials,
            connect_timeout=direct.connect_timeout,
            read_timeout=direct.read_timeout,
            transport=self.client.transport,
        )

    async def start_multipart(
        self,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> S3Upload:
        """Begin a multipart upload of ``key``."""
        r = await self.client.call(
            self._what("start upload of", key),
            "create_multipart_upload",
            Bucket=self.bucket_name,
            Key=key,
            Metadata=lower_metadata(metadata),
            ContentType=content_type or DEFAULT_CONTENT_TYPE,
        )
        return S3Upload(self, key, r["UploadId"])

    async def resume_multipart(
        self,
        key: str,
        upload_id: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> S3Upload:
        """The unfinished upload ``upload_id`` of ``key`` (S3 kept its metadata and content
        type from its start); no request is made."""
        return S3Upload(self, key, upload_id)

    async def copy(
        self,
        src_key: str,
        dst_key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> str:
        """Server-side copy: one CopyObject up to :attr:`copy_settings` ``.threshold``
        (at most 5 GiB, CopyObject's limit), else UploadPartCopy parts in parallel."""
        if metadata is None and size is not None and size <= self.copy_settings.threshold:
            try:
                return await self._copy_object(src_key, dst_key, {})
            except InvalidRequest:
                pass  # grown past what one request may copy since it was listed
        # The HEAD gives the size that picks the method, the content type a REPLACE or a
        # multipart upload must restate, and the version every request is pinned to.
        src = await self.head(src_key)
        if src.size > self.copy_settings.threshold:
            upload = await self.start_multipart(
                dst_key,
                metadata=src.metadata if metadata is None else metadata,
                content_type=src.content_type,
            )
            return await copy_in_parts(upload, src, self.copy_settings)
        params: dict[str, Any] = {"CopySourceIfMatch": f'"{src.etag}"'}
        if metadata is not None:
            # REPLACE would also reset the content type: carry the source's over.
            params.update(
                MetadataDirective="REPLACE",
                Metadata=lower_metadata(metadata),
                ContentType=src.content_type or DEFAULT_CONTENT_TYPE,
            )
        return await self._copy_object(src_key, dst_key, params)

    async def _copy_object(self, src_key: str, dst_key: str, params: dict[str, Any]) -> str:
        r = await self.client.call(
            f"copy {self.bucket_name}/{src_key} to {dst_key}",
            "copy_object",
            Bucket=self.bucket_name,
            Key=dst_key,
            CopySource={"Bucket": self.bucket_name, "Key": src_key},
            **params,
        )
        return strip_etag(r["CopyObjectResult"]["ETag"])

    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Delete ``key``.  S3 is silent about missing keys, so unless ``missing_ok`` a HEAD
        first makes it raise :class:`~sdk.errors.ResourceNotFound`."""
        if not missing_ok:
            await self.head(key)
        await self.client.call(
            self._what("delete", key), "delete_object", Bucket=self.bucket_name, Key=key
        )

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` with DeleteObjects, 1000 per request, a few requests at once."""
        slots = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def batch(chunk: Sequence[str]) -> None:
            async with slots:
                r = await self.client.call(
                    f"delete {len(chunk)} keys from {self.bucket_name}",
                    "delete_objects",
                    Bucket=self.bucket_name,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            for err in r.get("Errors") or ():
                if err.get("Code") == "NoSuchKey":
                    continue
                exc = ClientError(
                    {"Error": err, "ResponseMetadata": r.get("ResponseMetadata", {})},
                    "DeleteObjects",
                )
                translated_error = translate(exc, self._what("delete", err.get("Key", "?")))
                assert translated_error is not None
                raise translated_error

        try:
            async with asyncio.TaskGroup() as tg:
                for start in range(0, len(keys), DELETE_BATCH):
                    tg.create_task(batch(keys[start : start + DELETE_BATCH]))
        except BaseExceptionGroup as group:
            first = group.exceptions[0]  # an sdk error: raise it, not the group
            raise first from first.__cause__

    async def sign_url(self, key: str, expires_in_seconds: int) -> str:
        """A presigned GET URL (SigV4, so at most 7 days)."""
        check_expiry(expires_in_seconds)
        if self.client.client is None:
            raise RuntimeError("S3 client is closed")
        with translated(self._what("sign", key)):
            url: str = await self.client.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket_name, "Key": key},
                ExpiresIn=expires_in_seconds,
            )
        return url

    async def pending_uploads(self, prefix: str = "") -> builtins.list[str]:
        """Keys of multipart uploads in progress (not part of the protocol; for tests and
        clean-up)."""
        keys: builtins.list[str] = []
        params: dict[str, Any] = {"Bucket": self.bucket_name, "Prefix": prefix}
        while True:
            r = await self.client.call(
                f"list uploads in {self.bucket_name}", "list_multipart_uploads", **params
            )
            keys += [u["Key"] for u in r.get("Uploads") or ()]
            if not r.get("IsTruncated"):
                return sorted(keys)
            params.update(KeyMarker=r["NextKeyMarker"], UploadIdMarker=r["NextUploadIdMarker"])

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.close()


__all__ = ["DELETE_BATCH", "DELETE_CONCURRENCY", "S3Store"]
