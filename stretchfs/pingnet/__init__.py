"""The ping net: UDP probes, majority votes in Redis, the `Peers` availability API."""
