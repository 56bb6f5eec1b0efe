"""Multipart uploads on S3: parts sent directly where the endpoint allows, server-side part
copies, a completion that survives a lost reply, and uploads taken up again by their id
(ListParts tells what they hold).

SeaweedFS lets an upload be aborted twice where AWS answers ``NoSuchUpload``; abort
tolerates ``NoSuchUpload``, so both behave alike.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from sdk.errors import InvalidRequest, ResourceNotFound, TransientError
from sdk.providers.base import MAX_PARTS, ObjectInfo, StoredPart
from sdk.providers.s3.client import S3Client
from sdk.providers.s3.conventions import multipart_etag, strip_etag
from sdk.providers.s3.errors import error_code, translated
from sdk.retry import retrying

#: An ETag that is a plain MD5 (what S3 gives a part unless KMS encrypted it).
_MD5 = re.compile(r"[0-9a-f]{32}")


class UploadTarget(Protocol):
    """What an upload needs of its store (an :class:`~sdk.providers.s3.store.S3Store`)."""

    @property
    def bucket_name(self) -> str: ...

    @property
    def client(self) -> S3Client: ...

    async def head(self, key: str) -> ObjectInfo: ...


class S3Upload:
    """A multipart upload on S3; parts may be sent concurrently."""

    def __init__(self, store: UploadTarget, key: str, upload_id: str) -> None:
        self.key = key
        self.upload_id = upload_id
        self._store = store
        self._parts: dict[int, str] = {}
        self._what = f"upload {store.bucket_name}/{key}"

    async def upload_part(self, part_number: int, data: bytes) -> None:
        """Upload one part; sending a number again replaces that part."""
        if not 1 <= part_number <= MAX_PARTS:
            raise InvalidRequest(f"part number {part_number} outside 1..{MAX_PARTS}")
        what = f"{self._what} part {part_number}"
        query = (("partNumber", str(part_number)), ("uploadId", self.upload_id))
        client, bucket = self._store.client, self._store.bucket_name
        etag = await client.put_direct(what, bucket, self.key, data, {}, query)
        if etag is not None:
            self._parts[part_number] = etag
            return
        r = await client.call(
            what,
            "upload_part",
            Bucket=bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=part_number,
            Body=data,
        )
        self._parts[part_number] = strip_etag(r["ETag"])

    async def stored_parts(self) -> dict[int, StoredPart]:
        """The parts S3 holds (ListParts, 1000 a page); a part's ETag is the MD5 of its
        bytes unless the server encrypted it with KMS (then ``md5`` is ``None``)."""
        parts: dict[int, StoredPart] = {}
        params: dict[str, Any] = {
            "Bucket": self._store.bucket_name,
            "Key": self.key,
            "UploadId": self.upload_id,
        }
        while True:
            r = await self._store.client.call(f"{self._what}: list parts", "list_parts", **params)
            for part in r.get("Parts") or ():
                tag = strip_etag(part["ETag"])
                md5 = tag if _MD5.fullmatch(tag) else None
                number = int(part["PartNumber"])
                parts[number] = StoredPart(number, int(part["Size"]), md5, tag)
            if not r.get("IsTruncated"):
                return parts
            params["PartNumberMarker"] = r["NextPartNumberMarker"]

    def keep_part(self, part: StoredPart) -> None:
        """Complete with ``part`` as S3 holds it."""
        if part.tag is None:
            raise InvalidRequest(f"{self._what}: part {part.number} has no ETag")
        self._parts[part.number] = part.tag

    async def copy_part(
        self, part_number: int, src_key: str, offset: int, length: int, *, etag: str
    ) -> None:
        """Make one part a server-side copy of a range of ``src_key`` (UploadPartCopy)."""
        if not 1 <= part_number <= MAX_PARTS:
            raise InvalidRequest(f"part number {part_number} outside 1..{MAX_PARTS}")
        if length < 1:
            raise InvalidRequest(f"{self._what}: empty copy range")
        r = await self._store.client.call(
            f"{self._what} part {part_number} from {src_key}",
            "upload_part_copy",
            Bucket=self._store.bucket_name,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=part_number,
            CopySource={"Bucket": self._store.bucket_name, "Key": src_key},
            CopySourceRange=f"bytes={offset}-{offset + length - 1}",
            CopySourceIfMatch=f'"{etag}"',
        )
        self._parts[part_number] = strip_etag(r["CopyPartResult"]["ETag"])

    async def complete(self) -> str:
        """Assemble the parts; return the object's ETag."""
        if not self._parts:
            raise InvalidRequest(f"{self._what}: no parts were uploaded")
        numbers = sorted(self._parts)
        parts = [{"PartNumber": n, "ETag": f'"{self._parts[n]}"'} for n in numbers]
        failed_once = False
        async for attempt in retrying():
            with attempt:
                try:
                    with translated(f"{self._what}: complete"):
                        r = await self._store.client.client.complete_multipart_upload(
                            Bucket=self._store.bucket_name,
                            Key=self.key,
                            UploadId=self.upload_id,
                            MultipartUpload={"Parts": parts},
                        )
                except TransientError:
                    failed_once = True
                    raise
                except ResourceNotFound as e:
                    # A retry after a reply lost in transit: the upload may have completed.
                    if failed_once and error_code(e) == "NoSuchUpload":
                        expected = multipart_etag([self._parts[n] for n in numbers])
                        if (await self._store.head(self.key)).etag == expected:
                            return expected
                    raise
                return strip_etag(r["ETag"])
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def abort(self) -> None:
        """Abort the upload; an upload that is already gone counts as aborted."""
        try:
            await self._store.client.call(
                f"{self._what}: abort",
                "abort_multipart_upload",
                Bucket=self._store.bucket_name,
                Key=self.key,
                UploadId=self.upload_id,
            )
        except ResourceNotFound as e:
            if error_code(e) != "NoSuchUpload":
                raise


__all__ = ["S3Upload", "UploadTarget"]
