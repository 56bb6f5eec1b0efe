"""Deleting many blobs of one container: blob batches, or single deletes where batches fail.

Azurite rejects blob batches (``InvalidInput``).  :class:`BatchDeleter` falls back to
concurrent single deletes the first time a batch is refused and stays on that path; keys
whose sub-request failed in an accepted batch are deleted singly, which retries transient
failures and reports any other with the error table.  Missing keys are ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from azure.storage.blob.aio import ContainerClient

from sdk.errors import TransientError
from sdk.providers.azure.errors import WIRE_ERRORS, translate_error
from sdk.retry import retry_transient

log = logging.getLogger(__name__)

#: Single deletes in flight when blob batches are not available.
_DELETE_CONCURRENCY: Final = 16
#: Most sub-requests Azure accepts in one blob batch.
BATCH_SIZE: Final = 256


class BatchDeleter:
    """Deletes keys of one container in batches of :data:`BATCH_SIZE`.

    ``delete_one(key)`` deletes one key, missing or not; ``what`` names the container in
    messages.
    """

    def __init__(
        self,
        container: ContainerClient,
        what: str,
        delete_one: Callable[[str], Awaitable[None]],
    ) -> None:
        self._container = container
        self._what = what
        self._delete_one = delete_one
        #: None: not tried yet; False: the service refused a batch, use single deletes.
        self.batch_supported: bool | None = None

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete ``keys``; missing keys are ignored."""
        for start in range(0, len(keys), BATCH_SIZE):
            batch = keys[start : start + BATCH_SIZE]
            left = batch
            if self.batch_supported is not False:
                left = await self._delete_batch(batch)
            if left:
                await self._delete_each(left)

    @retry_transient
    async def _delete_batch(self, keys: Sequence[str]) -> Sequence[str]:
        """One blob batch; returns the keys still to delete one by one."""
        try:
            parts = [
                part
                async for part in await self._container.delete_blobs(
                    *keys, delete_snapshots="include", raise_on_any_failure=False
                )
            ]
        except WIRE_ERRORS as e:
            err = translate_error(e, f"{self._what} batch delete")
            if isinstance(err, TransientError):
                raise err from e
            # Not supported here, or refused for these credentials: single deletes will
            # either work or report the real reason per key.
            self._refuse_batches(err)
            return keys
        failed = [p.status_code for p in parts if p.status_code not in (200, 202, 404)]
        if len(parts) != len(keys) or (failed and len(failed) == len(parts)):
            # Azurite answers every batch with one InvalidInput part per batch.
            self._refuse_batches(failed[0] if failed else "part count mismatch")
            return keys
        self.batch_supported = True
        return [
            key
            for key, part in zip(keys, parts, strict=True)
            if part.status_code not in (200, 202, 404)
        ]

    def _refuse_batches(self, why: object) -> None:
        if self.batch_supported is None:
            log.info("%s: blob batch refused (%s); deleting one by one", self._what, why)
        self.batch_supported = False

    async def _delete_each(self, keys: Sequence[str]) -> None:
        limit = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def one(key: str) -> None:
            async with limit:
                await self._delete_one(key)

        async with asyncio.TaskGroup() as tg:
            for key in keys:
                tg.create_task(one(key))
