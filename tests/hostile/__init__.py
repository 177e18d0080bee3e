"""Hostile-input tests: per-route corpora of bad requests, conservation properties, and a PII scan of the logs."""
