"""Tests of the bridge between trio and the asyncio sdk, and of the trio-side HTTP client."""
