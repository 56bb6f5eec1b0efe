"""The write path below the core: staging files on local disk, their streaming and
whole-file uploads, the sidecars that make them recoverable, and crash recovery at mount
time.  A write that returned success is on the staging disk; a close that returned success
is in the bucket."""
