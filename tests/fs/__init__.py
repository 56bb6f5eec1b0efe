"""Tests of the file system core, driven without the kernel over the in-memory store."""
