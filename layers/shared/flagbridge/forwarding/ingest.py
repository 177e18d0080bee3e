"""Ingest of mParticle batches (Events API ``/v2/events`` and ``/v2/bulkevents``, and the outbound webhook).

Each batch is checked structurally (:func:`flagbridge.cdp.batch.normalize_batch`) and enqueued, as
received, to the batches queue for the router; nothing is routed before it is durable. A single batch
that is malformed is refused with 400 and mParticle's ``errors`` body. In a bulk request the good
batches are accepted (202, as mParticle does when only some succeed) and the malformed ones are kept
in the quarantine with their errors, so nothing accepted is ever silently lost.

Two checks make hostile-but-parseable input a refusal rather than a failure further on: a document
nested deeper than :data:`MAX_NESTING_DEPTH` is refused as a whole (400, like JSON the parser cannot
nest), since serialising it again near the interpreter's recursion limit would fail; and a batch whose
strings hold a lone UTF-16 surrogate (a ``\\ud800`` escape: valid JSON, but not Unicode text that can be
stored or queued) is malformed. U+FFFE and U+FFFF, which SQS refuses raw, are enqueued escaped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from flagbridge.cdp.batch import BatchFormatError, normalize_batch
from flagbridge.errors import RequestError
from flagbridge.quarantine import Quarantine, QuarantineSource
from flagbridge.queues import MAX_MESSAGE_BYTES, MessageSender
from flagbridge.values import escape_pointer_token

IngestSource = Literal["events_api", "bulk_events_api", "webhook", "queue"]
MAX_BULK_BATCHES = 100
# mParticle batches nest about ten levels (batch > events > data > product_action > products > attributes).
MAX_NESTING_DEPTH = 64
LONE_SURROGATE = "a string holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape), which is not Unicode text"


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
    body = json.dumps(
        {"v": 1, "source": source, "request_id": request_id, "received_at": received_at, "batch": batch},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    if not body.isascii() and ("\ufffe" in body or "\uffff" in body):
        # SQS refuses these two characters raw; escaped is the same JSON
        body = body.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")
    return body


def nesting_depth_exceeds(document: Any, limit: int = MAX_NESTING_DEPTH) -> bool:
    """Whether arrays/objects in ``document`` nest deeper than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)] if isinstance(document, dict | list) else []
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


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
    if nesting_depth_exceeds(document, MAX_NESTING_DEPTH + int(bulk)):
        detail = f"the JSON document nests arrays/objects deeper than {MAX_NESTING_DEPTH} levels per batch"
        raise BatchRequestError(400, "invalid_json", detail, [detail])

    received_at = int(time.time() * 1000) if now_ms is None else now_ms
    result = BatchIngestResult(request_id=request_id, received=len(batches))
    bodies: list[str] = []
    rejected: list[dict[str, Any]] = []
    for index, batch in enumerate(batches):
        problem: BatchFormatError | None = None
        body, size = "", 0
        try:
            normalize_batch(batch)
            body = queue_envelope(batch, source, request_id, received_at)
            size = len(body.encode())
        except BatchFormatError as exc:
            problem = exc
        except UnicodeEncodeError:
            problem = BatchFormatError([f"{_lone_surrogate_path(batch)}: {LONE_SURROGATE}"])
        if problem is not None:
            if not bulk:
                raise BatchRequestError(
                    400, "invalid_batch", f"the batch is malformed: {'; '.join(problem.errors[:5])}", problem.errors
                ) from problem
            rejected.append({"index": index, "reason": "invalid_batch", "detail": problem.errors[:20], "item": batch})
            result.errors.append({"index": index, "code": "BAD_REQUEST", "message": "; ".join(problem.errors[:5])})
            continue
        if size > MAX_MESSAGE_BYTES:
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
            QuarantineSource.MPARTICLE_BATCHES,
            request_id,
            {
                "source": QuarantineSource.MPARTICLE_BATCHES,
                "ingest": source,
                "request_id": request_id,
                "received_at": received_at,
                "items": rejected,
            },
        )
        result.quarantined = len(rejected)
    return result


def _lone_surrogate_path(document: Any) -> str:
    """The JSON pointer of the first string (member name or value) holding a lone surrogate."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _is_unicode_text(value):
                return path or "<root>"
        elif isinstance(value, dict):
            for name, child in value.items():
                pointer = f"{path}/{escape_pointer_token(str(name))}"
                if not _is_unicode_text(str(name)):
                    return pointer
                stack.append((pointer, child))
        elif isinstance(value, list):
            stack.extend((f"{path}/{position}", child) for position, child in enumerate(value))
    return "<root>"


def _is_unicode_text(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
