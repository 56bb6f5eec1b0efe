"""Tests of the write path below the core: staging and crash recovery."""
