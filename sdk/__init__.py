"""blobfs sdk: the Buckets API over S3 and Azure Blob Storage, for asyncio."""
