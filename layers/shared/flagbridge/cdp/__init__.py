"""The CDP -> destinations direction of flagbridge, as a pure domain (no AWS, no HTTP, no I/O).

Modules, in pipeline order:

- :mod:`flagbridge.cdp.batch`: normalise and structurally validate an mParticle batch
  (Events API inbound format, official Python SDK wire shape, outbound webhook format).
- :mod:`flagbridge.cdp.dataplan`: mParticle-compatible data plan validation and blocking.
- :mod:`flagbridge.cdp.testusers`: is the batch's user a tester?
- :mod:`flagbridge.cdp.filters`: declarative per-destination filters.
- :mod:`flagbridge.cdp.split_events`: map mParticle events to Split events and enforce Split's limits.
- :mod:`flagbridge.cdp.split_requests`: chunk Split events into bulk requests; retry backoff.
- :mod:`flagbridge.cdp.config`: the ``cdp`` section of the configuration (:class:`CdpConfig`).
- :mod:`flagbridge.cdp.router`: the orchestration, ``route_batch``.
"""
