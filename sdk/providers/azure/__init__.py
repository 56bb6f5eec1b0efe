"""Azure Blob Storage provider: the :mod:`sdk.providers.base` protocol on azure-storage-blob aio.

Modules, one concern each: :mod:`.errors` (translation into :mod:`sdk.errors`),
:mod:`.checks` (names, keys, metadata, ETags), :mod:`.auth` (accounts and clients),
:mod:`.reading` (ranged GETs), :mod:`.listing`, :mod:`.blocks` (multipart uploads),
:mod:`.store` (:class:`AzureStore`), :mod:`.admin` (:class:`AzureAdmin`, containers); access
control is :mod:`sdk.providers.azure.access`.

A provider bucket is a container.  Semantics follow the S3 provider so that the contract tests
run unchanged on both; where Azure differs the difference is absorbed here:

* ETags are returned without the quotes Azure puts around them.
* Multipart uploads are block blobs: each part is a staged block (``stage_block``) and
  :meth:`~AzureMultipartUpload.complete` commits the block list in part-number order.  Azure
  has no "abort": uncommitted blocks are garbage-collected by the service after 7 days, so
  :meth:`~AzureMultipartUpload.abort` only makes the upload unusable.  Nothing is visible
  before the commit, so a failed upload never leaves a blob behind.
* Azurite (the emulator) returns the common prefixes of a delimited listing page before the
  blobs of that page; every page is sorted here, which restores key order because each page is
  a contiguous range of the key space.
* Azurite rejects blob batches (``InvalidInput``); :meth:`AzureStore.delete_many` falls back
  to concurrent single deletes the first time a batch is refused and stays on that path.

* A long read is a series of ranged GETs (``download_blob(offset, length, etag=...,
  match_condition=IfNotModified)``) pinned to the first response's ETag, one request ahead of
  the consumer, instead of the SDK's ``chunks()``, which fetches its chunks strictly one
  after another and whose first response is as large as the largest chunk.  A broken
  request is retried at its own offset.  S3 streams one response and keeps serving the old
  version when the object is replaced mid-read; here such a read fails with
  :class:`~sdk.errors.PreconditionFailed` once it reaches the next request.

Errors are translated in one place (:func:`translate_error`) and transient failures are retried
by :mod:`sdk.retry`; the azure-core retry policy is switched off (``retry_total=0``) so that
retries are not multiplied by two layers.  One exception: the SDK's downloader retries a
broken response body up to three times (1 s apart) on its own and that cannot be turned off.
"""

from sdk.providers.azure.admin import AzureAdmin
from sdk.providers.azure.blocks import PUT_BLOCK_SIZE, AzureMultipartUpload
from sdk.providers.azure.checks import validate_container_name
from sdk.providers.azure.errors import translate_error
from sdk.providers.azure.store import AzureStore

__all__ = [
    "PUT_BLOCK_SIZE",
    "AzureAdmin",
    "AzureMultipartUpload",
    "AzureStore",
    "translate_error",
    "validate_container_name",
]
