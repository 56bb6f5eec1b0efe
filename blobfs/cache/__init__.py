"""What the read path keeps: the in-memory block cache (:mod:`~blobfs.cache.blocks`), the
on-disk cache below it (:mod:`~blobfs.cache.disk`) and the read-ahead policy
(:mod:`~blobfs.cache.readahead`).  Every block is keyed by (key, ETag, index), so a changed
object is never served from here."""
