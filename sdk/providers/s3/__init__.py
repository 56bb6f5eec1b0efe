"""Amazon S3 and S3-compatible stores (SeaweedFS, MinIO, Ceph ...): the
:mod:`sdk.providers.base` protocol on aioboto3.

Modules, one concern each: :mod:`.errors` (translation into :mod:`sdk.errors`),
:mod:`.conventions` (ETags, metadata, content types, implicit directories), :mod:`.client`
(sessions and clients), :mod:`.wire` (direct requests and replies as bytes, no I/O),
:mod:`.sigv4` (signing them), :mod:`.direct` (the asyncio direct client), :mod:`.prepared`
(requests for a caller doing its own I/O), :mod:`.reading`, :mod:`.listing`, :mod:`.upload`
(multipart uploads), :mod:`.store` (:class:`S3Store`), :mod:`.admin` (:class:`S3Admin`,
buckets, public access); access control is :mod:`.access` (STS, scoped stores) and
:mod:`.iam` (IAM users) over the clients of :mod:`.services`, with the documents of
:mod:`.policies`.

Differences between servers smoothed over here (found against SeaweedFS 4.x; the contract
tests in ``tests/sdk/test_store_contract.py`` pin them down):

* SeaweedFS deletes a bucket that still holds objects; :meth:`S3Admin.delete_bucket` checks
  that it is empty first, so :class:`~sdk.errors.NotEmpty` is raised as on AWS.
* SeaweedFS returns the ETag of ``CopyObject`` without quotes and aborting an upload twice
  succeeds, where AWS quotes ETags and answers ``NoSuchUpload``; ETags are always unquoted
  here and abort tolerates ``NoSuchUpload``.
* SeaweedFS orders a delimited listing by the directory name, so ``a/`` comes before ``a-``;
  :mod:`.listing` restores S3's order.  Undelimited listings keep the server's order.
* SeaweedFS answers HEAD and GET of ``dir/`` when keys exist under ``dir/`` (or existed once)
  though no object ``dir/`` was written; that is reported as
  :class:`~sdk.errors.ResourceNotFound`, as S3 does.  It also drops the user metadata of a
  ``dir/`` marker object (not smoothed over: a test records it).
* SeaweedFS supports UploadPartCopy with ``CopySourceRange`` and ``CopySourceIfMatch``
  (copies in parts, :mod:`sdk.providers.part_copy`; the contract tests replace the source
  between two parts and see the server refuse the second), and CopyObject keeps the source's
  ETag as AWS does.  It cannot CopyObject a ``dir/`` marker (``NoSuchKey``; its folders are
  not objects), and it keeps a folder listed as a common prefix after its last key is
  deleted, until its ``dir/`` key is deleted too; callers that rename directories allow for
  both.
* SeaweedFS sniffs a content type when none is sent; an explicit
  ``application/octet-stream`` is always sent so every provider reports the same.

The classes below are imported on first use: :mod:`.sigv4` alone is imported by processes
that must not load botocore (the embedded server's readiness probe, :mod:`sdk.local_server`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdk.providers.s3.admin import S3Admin
    from sdk.providers.s3.errors import translate
    from sdk.providers.s3.prepared import S3PreparedRequests
    from sdk.providers.s3.store import S3Store
    from sdk.providers.s3.upload import S3Upload

__all__ = ["S3Admin", "S3PreparedRequests", "S3Store", "S3Upload", "translate"]


def __getattr__(name: str) -> object:
    """The names of :data:`__all__`, imported when first asked for."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from sdk.providers.s3.admin import S3Admin
    from sdk.providers.s3.errors import translate
    from sdk.providers.s3.prepared import S3PreparedRequests
    from sdk.providers.s3.store import S3Store
    from sdk.providers.s3.upload import S3Upload

    exports: dict[str, object] = {
        "S3Admin": S3Admin,
        "S3PreparedRequests": S3PreparedRequests,
        "S3Store": S3Store,
        "S3Upload": S3Upload,
        "translate": translate,
    }
    return exports[name]
