"""Where the trio daemon meets the asyncio sdk: the sdk's loop in a thread of its own and a
trio-callable view of a :class:`~sdk.providers.base.BlobStore`.  Nothing above this package
calls the sdk's coroutines directly."""
