"""Split impressions: the webhook ingest and the per-user exposure profiles it feeds."""
