"""What every layer's tests share: real servers on free loopback ports (SeaweedFS,
Azurite), their session fixtures, per-test buckets on every provider, and cluster
configurations pointing at them."""
