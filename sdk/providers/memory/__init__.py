"""An in-memory provider with the semantics of the real ones, for fast unit tests.

:class:`MemoryAdmin` and :class:`MemoryStore` implement :class:`~sdk.providers.base.ProviderAdmin`
and :class:`~sdk.providers.base.BlobStore` the way S3 behaves, as checked by
``tests/sdk/test_store_contract.py``, which runs the same tests against this store, SeaweedFS and
Azurite.  Modules: :mod:`.admin` (buckets), :mod:`.store` (objects), :mod:`.upload`
(multipart uploads), :mod:`.bucket` (a bucket's contents), :mod:`.checks` (what S3 refuses),
:mod:`.faults` (fault injection).

Faults are injected per store, to test code that must survive a server going away::

    store.fail_next("put", TransientError("boom"))   # the next put raises
    store.fail_next("upload_part", times=2)          # the next two parts fail (TransientError)
    store.go_offline()                                # every operation fails until go_online()
    store.hook = my_async_hook                        # awaited before every operation
"""

from sdk.providers.memory.admin import MemoryAdmin
from sdk.providers.memory.faults import Hook, Op
from sdk.providers.memory.store import MemoryStore
from sdk.providers.memory.upload import MemoryUpload

__all__ = ["Hook", "MemoryAdmin", "MemoryStore", "MemoryUpload", "Op"]
