"""Tests of the read caches."""
