"""Block uploads: a multipart upload is a block blob assembled from staged blocks.

Each part is a staged block (``stage_block``, or ``stage_block_from_url`` for a part copied
server-side from a range of another blob: Put Block From URL, used by
:meth:`AzureStore.copy` for large blobs) and :meth:`~AzureMultipartUpload.complete` commits
the block list in part-number order.  Azure has no "abort": uncommitted blocks are
garbage-collected by the service after 7 days, so :meth:`~AzureMultipartUpload.abort` only
makes the upload unusable.  Nothing is visible before the commit, so a failed upload never
leaves a blob behind.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Mapping
from typing import Final, Literal

from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import BlobClient

from sdk.errors import InvalidRequest, ResourceNotFound
from sdk.providers.azure.auth import REQUEST_SIZE
from sdk.providers.azure.checks import quote_etag, strip_etag
from sdk.providers.azure.errors import translated
from sdk.providers.base import MIN_PART_SIZE, StoredPart
from sdk.retry import retry_transient

#: Largest :meth:`AzureStore.put` sent as one request, and its block size above that.
PUT_BLOCK_SIZE: Final = REQUEST_SIZE
#: Blocks staged concurrently by :meth:`AzureStore.put` when the data is larger than one block.
_PUT_CONCURRENCY: Final = 4
#: Same limits as S3 multipart uploads, for parity (Azure itself allows 50,000 blocks).
_MAX_PART_NUMBER: Final = 10_000


class AzureMultipartUpload:
    """A block blob assembled from staged blocks (see the module docstring).

    :meth:`AzureStore.start_multipart` makes one; ``what`` names the blob in errors.
    """

    def __init__(
        self,
        blob: BlobClient,
        key: str,
        what: str,
        *,
        metadata: Mapping[str, str] | None,
        content_type: str | None,
        source_url: Callable[[str], str | None] | None = None,
        upload_id: str | None = None,
    ) -> None:
        """``upload_id``: take up that upload again (its blocks' ids begin with it)."""
        self.key = key
        #: The URL (with a read SAS) the service reads a part copy's source blob from.
        self._source_url = source_url
        self._blob = blob
        self._what = what
        self._metadata = dict(metadata) if metadata else None
        self._content_type = content_type
        # Block ids name this upload too: uncommitted blocks belong to the blob, so two
        # uploads of one key must not overwrite each other's parts.  Fixed width because
        # Azure requires the uncommitted block ids of a blob to have one length.
        self.upload_id = upload_id or uuid.uuid4().hex
        if len(self.upload_id) != 32:
            raise InvalidRequest(f"{what}: not an upload id of this store: {self.upload_id!r}")
        self._parts: dict[int, int] = {}  # part number -> size
        self._state: Literal["open", "completed", "aborted"] = "open"

    def _block_id(self, part_number: int) -> str:
        # 48 characters before encoding, like the ids of the SDK's own upload_blob, so a
        # blob left with uncommitted blocks by either can still be written by the other.
        return base64.b64encode(f"{self.upload_id}-{part_number:015d}".encode()).decode()

    def _check_open(self) -> None:
        if self._state != "open":
            # As S3's NoSuchUpload.
            raise ResourceNotFound(f"{self._what}: multipart upload was {self._state}")

    @retry_transient
    async def upload_part(self, part_number: int, data: bytes) -> None:
        """Stage part ``part_number`` (1..10000); re-uploading a number replaces that part."""
        self._check_open()
        if not 1 <= part_number <= _MAX_PART_NUMBER:
            raise InvalidRequest(f"{self._what}: part number {part_number} not in 1..10000")
        with translated(f"{self._what} part {part_number}"):
            await self._blob.stage_block(self._block_id(part_number), data, length=len(data))
        self._parts[part_number] = len(data)

    @retry_transient
    async def stored_parts(self) -> dict[int, StoredPart]:
        """The blocks of this upload the blob holds uncommitted (sizes only: Azure tells no
        checksum of a block); :class:`~sdk.errors.ResourceNotFound` if there are none (the
        upload was committed, or the service dropped them: after 7 days, or when the blob was
        written otherwise)."""
        self._check_open()
        prefix = f"{self.upload_id}-"
        parts: dict[int, StoredPart] = {}
        try:
            with translated(f"{self._what}: list blocks"):
                _, uncommitted = await self._blob.get_block_list("uncommitted")
        except ResourceNotFound:
            uncommitted = []  # no blob, not even an uncommitted one
        for block in uncommitted:
            try:
                name = base64.b64decode(block.id, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                continue  # another writer's block
            number = name.removeprefix(prefix)
            if number != name and number.isdigit():
                parts[int(number)] = StoredPart(int(number), int(block.size))
        if not parts:
            raise ResourceNotFound(f"{self._what}: upload {self.upload_id} holds no blocks")
        return parts

    def keep_part(self, part: StoredPart) -> None:
        """Commit the stored block ``part`` with the rest."""
        self._check_open()
        self._parts[part.number] = part.size

    @retry_transient
    async def copy_part(
        self, part_number: int, src_key: str, offset: int, length: int, *, etag: str
    ) -> None:
        """Stage part ``part_number`` as ``length`` bytes at ``offset`` of version ``etag``
        of ``src_key``, read by the service (Put Block From URL)."""
        self._check_open()
        if not 1 <= part_number <= _MAX_PART_NUMBER:
            raise InvalidRequest(f"{self._what}: part number {part_number} not in 1..10000")
        url = self._source_url(src_key) if self._source_url is not None else None
        if url is None:
            raise InvalidRequest(f"{self._what}: this store cannot authorise a copy source")
        with translated(f"{self._what} part {part_number} from {src_key}"):
            # Put Block From URL has no keyword for a source condition in the SDK; the
            # header pins the part to the version the copy began with.
            await self._blob.stage_block_from_url(
                self._block_id(part_number),
                url,
                source_offset=offset,
                source_length=length,
                headers={"x-ms-source-if-match": quote_etag(etag)},
            )
        self._parts[part_number] = length

    async def complete(self) -> str:
        """Commit the staged parts in part-number order; return the new ETag."""
        self._check_open()
        numbers = sorted(self._parts)
        if not numbers:
            raise InvalidRequest(f"{self._what}: multipart upload has no parts")
        small = [n for n in numbers[:-1] if self._parts[n] < MIN_PART_SIZE]
        if small:
            # S3 refuses this (EntityTooSmall); refuse it here too so both behave alike.
            raise InvalidRequest(
                f"{self._what}: part {small[0]} is {self._parts[small[0]]} bytes; every part but "
                f"the last must be at least {MIN_PART_SIZE} bytes"
            )
        etag = await self._commit([BlobBlock(block_id=self._block_id(n)) for n in numbers])
        self._state = "completed"
        return etag

    @retry_transient
    async def _commit(self, blocks: list[BlobBlock]) -> str:
        settings = ContentSettings(content_type=self._content_type) if self._content_type else None
        with translated(self._what):
            result = await self._blob.commit_block_list(
                blocks, metadata=self._metadata, content_settings=settings
            )
        return strip_etag(result.get("etag"))

    async def abort(self) -> None:
        """Give up the upload.  Best effort: Azure cannot drop staged blocks on request; it
        discards uncommitted blocks after 7 days (or at the blob's next commit or Put Blob).

        Nothing was committed, so no blob appears; further parts and :meth:`complete` fail.
        Safe to call more than once and after :meth:`complete` (then it does nothing).
        """
        if self._state == "open":
            self._state = "aborted"
            self._parts.clear()


async def put_blocks(upload: AzureMultipartUpload, data: bytes) -> str:
    """Stage ``data`` through ``upload`` in :data:`PUT_BLOCK_SIZE` blocks (``_PUT_CONCURRENCY``
    in flight) and commit them; return the new ETag.  Any failure aborts the upload."""
    view = memoryview(data)
    limit = asyncio.Semaphore(_PUT_CONCURRENCY)

    async def stage(number: int, start: int) -> None:
        async with limit:
            await upload.upload_part(number, bytes(view[start : start + PUT_BLOCK_SIZE]))

    try:
        async with asyncio.TaskGroup() as tg:
            for number, start in enumerate(range(0, len(data), PUT_BLOCK_SIZE), 1):
                tg.create_task(stage(number, start))
        return await upload.complete()
    except BaseException:
        await upload.abort()
        raise
