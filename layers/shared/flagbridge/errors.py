"""Domain exceptions. Handlers map them to HTTP status codes or batch item failures.

Every exception flagbridge raises on purpose derives from :class:`FlagbridgeError` and ends in ``Error``. The
general ones are here; those that belong to one module live beside their code (``tests/tools/test_docs_drift.py``
keeps this list whole):

- outbound HTTP: ``TransportError`` (outbound);
- the bridge: ``NotFoundError`` (routing), ``BatchFormatError`` (cdp.batch), ``PlanDocumentError``
  (cdp.dataplan.model), ``BatchRequestError`` (forwarding.ingest), ``RetryableDeliveryError`` and
  ``PermanentDeliveryError`` (forwarding.destinations), ``UndeliverableMessageError`` and
  ``DeliveryInProgressError`` (forwarding.delivery), ``ConcurrentUpdateError`` (profiles.store);
- the tester registry: ``InvalidTesterError`` and ``RegistryUnavailableError`` (testers.registry);
- the oracle: ``LaneMessageError`` (oracle.counting), ``SegmentRequestError`` (oracle.split_admin),
  ``VerdictReadError`` (oracle.verdicts);
- traffic plans: ``TrafficError`` and its ``PlanError``, ``ModelError``, ``SafetyError`` (traffic.errors);
- test runs: ``ShardFinishedError``, ``ShardBusyError`` and ``ClaimLostError`` (runs.store),
  ``ShardMessageError`` (runs.shards).
"""

from __future__ import annotations


class FlagbridgeError(Exception):
    """Base class of every error raised on purpose by flagbridge."""


class ConfigError(FlagbridgeError):
    """The configuration file is missing or invalid; the message names the offending key."""


class RequestError(FlagbridgeError):
    """A client sent a request we refuse; carries the HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class EnqueueError(FlagbridgeError):
    """Accepted items could not be made durable; the sender must retry (5xx)."""


class StoreError(FlagbridgeError):
    """A store (DynamoDB, S3) failed after retries."""
