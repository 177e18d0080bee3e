"""Test runs in AWS: a traffic plan sent at scale by Lambda's own scale-out.

- :mod:`.spec` — the run request (``POST /runs``, the schedule), validated with the traffic package's own
  parsers and safety checks (the CLI's), and the :class:`~.spec.RunSpec` every worker regenerates cases from.
- :mod:`.shards` — a run split into shards (case ranges with the run's seed) and the shard queue messages.
- :mod:`.store` — the runs table (run records, per-shard claims and progress) and the manifest bucket,
  each with an in-memory twin.
- :mod:`.stop` — the stop switch: the stack's SSM parameter, then the oracle's FAIL of a metric the run feeds.
- :mod:`.service` — starting a run (record, register the tester pool, enqueue shards) and its status.
- :mod:`.worker` — sending one shard exactly once in effect (claim, progress, resume, manifest).

docs/runs.md explains the design, the guarantees and the arithmetic of 10,000 requests/s.
"""
