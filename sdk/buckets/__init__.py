"""The Buckets API (``client.buckets``): :class:`Buckets` and the parts it delegates to.

:mod:`.api` (the API surface), :mod:`.resolution` (names and URIs to records and stores),
:mod:`.lifecycle` (provider bucket and record together), :mod:`.blobs` (blob operations),
:mod:`.usage` (disk usage), :mod:`.access` (credentials and public access).
"""

from sdk.buckets.api import Buckets
from sdk.buckets.lifecycle import provider_bucket_name

__all__ = ["Buckets", "provider_bucket_name"]
