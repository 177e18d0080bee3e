"""Ingest of mParticle batches (Events API ``/v2/events`` and ``/v2/bulkevents``, and the outbound webhook).

Each batch is checked structurally (:func:`flagbridge.cdp.batch.normalize_batch`) and enqueued, as
received, to the batches queue for the router; nothing is routed before it is durable. A single batch
that is malformed is refused with 400 and mParticle's ``errors`` body. In a bulk request the good
batches are accepted (202, as mParticle does when only some succeed) and the malformed ones are kept
in the quarantine with their errors, so nothing accepted is ever silently lost.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from flagbridge.cdp.batch import BatchFormatError, normalize_batch
from flagbridge.errors import RequestError
from flagbridge.quarantine import Quarantine
from flagbridge.queues import MAX_MESSAGE_BYTES, MessageSender

IngestSource = Literal["events_api", "bulk_events_api", "webhook", "queue"]
QUARANTINE_SOURCE = "mparticle-batches"
MAX_BULK_BATCHES = 100


class BatchRequestError(RequestError):
    """A refused mParticle request; the body carries mParticle's ``errors`` list too."""

    def __init__(self, status: int, code: str, message: str, errors: list[str]) -> None:
        super().__init__(status, code, message)
        self.errors = errors


@dataclass
class BatchIngestResult:
    request_id: str
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "requestId": self.request_id,
            "received": self.received,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


def queue_envelope(batch: dict[str, Any], source: str, request_id: str, received_at: int) -> str:
    """The body of a batches-queue message: the batch exactly as received plus where it came from."""
    return json.dumps(
        {"v": 1, "source": source, "request_id": request_id, "received_at": received_at, "batch": batch},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def ingest_batches(
    document: Any,
    *,
    bulk: bool,
    source: IngestSource,
    request_id: str,
    sender: MessageSender,
    quarantine: Quarantine,
    now_ms: int | None = None,
) -> BatchIngestResult:
    """Check and durably enqueue one batch (``bulk=False``) or an array of up to 100 batches."""
    if bulk:
        if not isinstance(document, list):
            raise BatchRequestError(400, "not_an_array", "bulkevents takes a JSON array of batches", [])
        if len(document) > MAX_BULK_BATCHES:
            raise BatchRequestError(
                413, "too_many_batches", f"{len(document)} batches exceed the limit of {MAX_BULK_BATCHES}", []
            )
        batches = document
    else:
        if not isinstance(document, dict):
            raise BatchRequestError(400, "not_an_object", "the body must be one batch (a JSON object)", [])
        batches = [document]

    received_at = int(time.time() * 1000) if now_ms is None else now_ms
    result = BatchIngestResult(request_id=request_id, received=len(batches))
    bodies: list[str] = []
    rejected: list[dict[str, Any]] = []
    for index, batch in enumerate(batches):
        try:
            normalize_batch(batch)
        except BatchFormatError as exc:
            if not bulk:
                raise BatchRequestError(
                    400, "invalid_batch", f"the batch is malformed: {'; '.join(exc.errors[:5])}", exc.errors
                ) from exc
            rejected.append({"index": index, "reason": "invalid_batch", "detail": exc.errors[:20], "item": batch})
            result.errors.append({"index": index, "code": "BAD_REQUEST", "message": "; ".join(exc.errors[:5])})
            continue
        body = queue_envelope(batch, source, request_id, received_at)
        if len(body.encode()) > MAX_MESSAGE_BYTES:
            detail = f"the batch is larger than {MAX_MESSAGE_BYTES} bytes; split it (mParticle advises <= 128 KB)"
            if not bulk:
                raise BatchRequestError(413, "batch_too_large", detail, [detail])
            rejected.append({"index": index, "reason": "batch_too_large", "detail": detail, "item": batch})
            result.errors.append({"index": index, "code": "BATCH_TOO_LARGE", "message": detail})
            continue
        bodies.append(body)
    if bodies:
        sender.send_bodies(bodies)
        result.accepted = len(bodies)
    if rejected:
        quarantine.put(
            QUARANTINE_SOURCE,
            request_id,
            {
                "source": QUARANTINE_SOURCE,
                "ingest": source,
                "request_id": request_id,
                "received_at": received_at,
                "items": rejected,
            },
        )
        result.quarantined = len(rejected)
    return result
