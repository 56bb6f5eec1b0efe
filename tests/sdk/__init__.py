"""Tests of the sdk: every provider against real servers (SeaweedFS, Azurite) and the
in-memory store."""
