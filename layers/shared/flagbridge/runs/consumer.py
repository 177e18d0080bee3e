"""The shard queue's consumer: each record of an SQS batch to the worker, to the quarantine, or back to the queue.

:class:`ShardConsumer` is what the worker function runs (one shard per invocation: the event source's batch size
is 1, but every record of a batch is handled the same way):

- a shard message that can never be sent (:class:`~flagbridge.runs.shards.ShardMessageError`: not JSON, unknown
  run, a range that is not the run's) is kept in the quarantine with its reason and acknowledged;
- a shard another worker holds, one handed back before the invocation times out, or any failure (the worker
  releases its claim first) is reported for redelivery after its visibility is set to when it can go on, so it
  comes back in seconds, not after the queue's visibility timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flagbridge.quarantine import Quarantine, QuarantineSource, put_message
from flagbridge.queues import Visibility, batch_item_failures
from flagbridge.runs.shards import ShardMessageError
from flagbridge.runs.worker import ShardResult, ShardWorker

RETRY_AFTER_FAILURE_SECONDS = 5
MAX_KEPT_BODY = 100_000
"""A quarantined shard message longer than this is recorded without its body."""


@dataclass
class ShardBatch:
    """What the consumer did with an SQS batch: each processed shard's result, each failure, what comes back."""

    results: list[ShardResult] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    failed_message_ids: list[str] = field(default_factory=list)

    def batch_response(self) -> dict[str, Any]:
        return batch_item_failures(self.failed_message_ids)


class ShardConsumer:
    """Runs the shard worker over an SQS batch; quarantines what can never be sent, hands back what must wait.

    ``worker`` and ``quarantine`` are factories, called per record: one that cannot be built fails that record
    (handed back, retried in seconds) rather than the whole invocation. ``visibility`` None: a record handed back
    comes back after the queue's visibility timeout.
    """

    def __init__(
        self,
        worker: Callable[[], ShardWorker],
        quarantine: Callable[[], Quarantine],
        visibility: Visibility | None,
    ) -> None:
        self._worker = worker
        self._quarantine = quarantine
        self._visibility = visibility

    def process(self, records: Iterable[Mapping[str, Any]], remaining_ms: Callable[[], int]) -> ShardBatch:
        batch = ShardBatch()
        for record in records:
            try:
                result = self._one(record, remaining_ms)
            except Exception as exc:
                batch.errors.append(exc)
                self._hand_back(record, RETRY_AFTER_FAILURE_SECONDS)
                batch.failed_message_ids.append(record["messageId"])
                continue
            batch.results.append(result)
            if not result.acknowledged:
                self._hand_back(record, result.retry_in_seconds or 0)
                batch.failed_message_ids.append(record["messageId"])
        return batch

    def _one(self, record: Mapping[str, Any], remaining_ms: Callable[[], int]) -> ShardResult:
        body = record.get("body")
        try:
            return self._worker().process(str(body), remaining_ms)
        except ShardMessageError as exc:
            put_message(
                self._quarantine(),
                QuarantineSource.TRAFFIC_SHARDS,
                str(record.get("messageId", "")),
                reason=exc.reason,
                detail=exc.detail,
                item=body if isinstance(body, str) and len(body) < MAX_KEPT_BODY else "<not kept: over 100 kB>",
            )
            return ShardResult("quarantined", detail=exc.reason)

    def _hand_back(self, record: Mapping[str, Any], seconds: int) -> None:
        receipt_handle = record.get("receiptHandle")
        if self._visibility is not None and receipt_handle:
            self._visibility.retry_in(str(receipt_handle), seconds)
