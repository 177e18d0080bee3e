"""Durable hand-off to SQS: pack JSON records into messages and messages into batch sends.

SQS limits (standard queues): a message body is at most 256 KiB, a ``SendMessageBatch`` holds at most
10 entries and 256 KiB in total. Records are serialised once and packed greedily in order.
"""

from __future__ import annotations

import contextlib
import json
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Protocol

from flagbridge.errors import EnqueueError

SQS_MAX_BATCH_ENTRIES = 10
SQS_MAX_PAYLOAD_BYTES = 262_144
# Headroom for the envelope around the records and for attribute overhead.
MAX_MESSAGE_BYTES = 250_000
SQS_MAX_VISIBILITY_SECONDS = 900


@dataclass(frozen=True)
class QueueRecord:
    """The parts of an SQS record the queue consumers use."""

    message_id: str
    body: str


def queue_records(event: Mapping[str, Any]) -> list[QueueRecord]:
    """The records of an SQS event source mapping event."""
    return [QueueRecord(record["messageId"], record["body"]) for record in event.get("Records", [])]


def batch_item_failures(message_ids: Iterable[str]) -> dict[str, Any]:
    """The partial batch response (``ReportBatchItemFailures``) naming the messages to redeliver."""
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in message_ids]}


class MessageSender(Protocol):
    """Sends message bodies durably; raises EnqueueError when any could not be sent."""

    def send_bodies(self, bodies: Sequence[str]) -> None: ...


def pack_records(
    records: Iterable[str], envelope_prefix: str, envelope_suffix: str, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> list[str]:
    """Join already-serialised JSON ``records`` into message bodies ``prefix + [r1,r2,...] + suffix``.

    Greedily in order: each message takes as many of the next records as fit in ``max_message_bytes``
    (UTF-8). A record larger than a whole message cannot be packed and raises ValueError (callers validate
    item sizes before, so this is a programming error).
    """
    records = records if isinstance(records, list) else list(records)
    if not records:
        return []
    limit = max_message_bytes - len(envelope_prefix.encode()) - len(envelope_suffix.encode()) - 2
    sizes = list(map(len, records)) if all(map(str.isascii, records)) else [len(record.encode()) for record in records]
    if max(sizes) + 1 > limit:
        size = next(size + 1 for size in sizes if size + 1 > limit)
        raise ValueError(f"a record of {size} bytes does not fit in one message")
    # the bytes of records[:i] with their separators: sums[i] + i (computed only where the bisection looks)
    sums = list(accumulate(sizes, initial=0))
    bodies: list[str] = []
    start = 0
    while start < len(records):
        bound = sums[start] + start + limit
        stop = bisect_right(range(len(sums)), bound, start + 1, key=lambda i: sums[i] + i) - 1
        bodies.append(f"{envelope_prefix}[{','.join(records[start:stop])}]{envelope_suffix}")
        start = stop
    return bodies


def envelope_parts(header: dict[str, Any], records_field: str) -> tuple[str, str]:
    """Split ``{**header, records_field: [...]}`` into the text before and after the records array."""
    marker = "\u0000RECORDS\u0000"
    text = json.dumps({**header, records_field: marker}, separators=(",", ":"))
    quoted = json.dumps(marker)
    prefix, suffix = text.split(quoted, 1)
    return prefix, suffix


class SqsSender:
    """MessageSender over an SQS queue, retrying entries SQS reports as failed."""

    def __init__(self, sqs_client: Any, queue_url: str, attempts: int = 4, backoff_seconds: float = 0.05) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._attempts = attempts
        self._backoff = backoff_seconds

    def send_bodies(self, bodies: Sequence[str]) -> None:
        for batch in _batches(bodies):
            self._send_batch(batch)

    def _send_batch(self, batch: list[str]) -> None:
        pending = {str(index): body for index, body in enumerate(batch)}
        last_error = "unknown"
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(self._backoff * (2 ** (attempt - 1)))
            try:
                response = self._sqs.send_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[{"Id": entry_id, "MessageBody": body} for entry_id, body in pending.items()],
                )
            except Exception as exc:  # botocore ClientError, connection errors: retry, then give up
                last_error = type(exc).__name__
                continue
            failed = {entry["Id"] for entry in response.get("Failed", [])}
            pending = {entry_id: body for entry_id, body in pending.items() if entry_id in failed}
            if not pending:
                return
            last_error = ",".join(sorted({entry.get("Code", "?") for entry in response.get("Failed", [])}))
        raise EnqueueError(f"{len(pending)} message(s) could not be enqueued ({last_error})")

    def send_delayed(self, body: str, delay_seconds: int) -> None:
        """One message, visible after ``delay_seconds`` (SQS ``DelaySeconds``, 0-900); EnqueueError if it fails."""
        last_error = "unknown"
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(self._backoff * (2 ** (attempt - 1)))
            try:
                self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=body, DelaySeconds=delay_seconds)
            except Exception as exc:  # botocore ClientError, connection errors: retry, then give up
                last_error = type(exc).__name__
                continue
            return
        raise EnqueueError(f"a delayed message could not be enqueued ({last_error})")


def _batches(bodies: Sequence[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    size = 0
    for body in bodies:
        body_size = len(body.encode())
        if batch and (len(batch) == SQS_MAX_BATCH_ENTRIES or size + body_size > SQS_MAX_PAYLOAD_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(body)
        size += body_size
    if batch:
        yield batch


class InMemorySender:
    """MessageSender that keeps bodies in a list (tests and benchmarks)."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send_bodies(self, bodies: Sequence[str]) -> None:
        self.bodies.extend(bodies)


class Visibility(Protocol):
    """Hands a received message back to its queue, visible again in ``seconds`` (best effort: never raises)."""

    def retry_in(self, receipt_handle: str, seconds: int) -> None: ...


def _visibility_seconds(seconds: int) -> int:
    return max(0, min(seconds, SQS_MAX_VISIBILITY_SECONDS))


class SqsVisibility:
    """Visibility over an SQS queue (``ChangeMessageVisibility``)."""

    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url

    def retry_in(self, receipt_handle: str, seconds: int) -> None:
        with contextlib.suppress(Exception):  # at worst it comes back after the queue's visibility timeout
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=_visibility_seconds(seconds)
            )


class InMemoryVisibility:
    """Visibility that keeps ``(receipt handle, seconds)`` in a list (tests and benchmarks)."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, int]] = []

    def retry_in(self, receipt_handle: str, seconds: int) -> None:
        self.changes.append((receipt_handle, _visibility_seconds(seconds)))
