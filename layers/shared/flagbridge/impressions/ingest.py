"""Ingest of one Split impressions webhook request: validate each item, map it, enqueue, quarantine.

Every item ends up in exactly one place: enqueued for the profile processor, or in the quarantine with
its reason. Nothing is acknowledged (200) before both are durable; if either fails the caller replies
5xx so that Split retries (it retries once, 300 ms later; duplicates are harmless downstream).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from flagbridge.config import BridgeConfig
from flagbridge.errors import RequestError
from flagbridge.impressions.models import SplitImpression, queued_record
from flagbridge.quarantine import Quarantine
from flagbridge.queues import MessageSender, envelope_parts, pack_records

QUARANTINE_SOURCE = "split-impressions"


@dataclass
class IngestResult:
    """What happened to a request's items (the webhook's JSON reply)."""

    request_id: str
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    messages: int = 0
    quarantine_key: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "requestId": self.request_id,
            "received": self.received,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
        }
        if self.reasons:
            body["quarantineReasons"] = self.reasons
        return body


def describe_validation_error(exc: ValidationError) -> str:
    """A short reason naming the fields, e.g. ``time: Input should be a valid integer``."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        location = ".".join(str(part) for part in error["loc"]) or "item"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def ingest_impressions(
    document: Any,
    *,
    request_id: str,
    config: BridgeConfig,
    sender: MessageSender,
    quarantine: Quarantine,
    now_ms: int | None = None,
) -> IngestResult:
    """Validate, map and durably store every impression of a decoded webhook body.

    Raises RequestError (400/413) for a body that is not an impression array, and EnqueueError or
    StoreError when durability could not be reached.
    """
    if not isinstance(document, list):
        raise RequestError(
            400, "not_an_array", f"the body must be a JSON array of impressions, got {type(document).__name__}"
        )
    limit = config.limits.max_impressions_per_request
    if len(document) > limit:
        raise RequestError(413, "too_many_impressions", f"{len(document)} impressions exceed the limit of {limit}")
    received_at = int(time.time() * 1000) if now_ms is None else now_ms
    result = IngestResult(request_id=request_id, received=len(document))
    mapping = config.identity_mapping
    records: list[str] = []
    rejected: list[dict[str, Any]] = []
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    validate = SplitImpression.model_validate
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            rejected.append(_rejection(index, "not_an_object", f"item is a {type(item).__name__}", item))
            continue
        try:
            impression = validate(item)
        except ValidationError as exc:
            rejected.append(_rejection(index, "invalid_impression", describe_validation_error(exc), item))
            continue
        target = mapping.resolve(impression.environmentName, impression.environmentId, impression.key)
        if target is None:
            detail = f"no identity_mapping entry for environment {impression.environmentName!r}"
            rejected.append(_rejection(index, "unmapped_environment", detail, item))
            continue
        record = dumps(queued_record(impression, target.traffic_type, target.identity_type))
        if "\ufffe" in record or "\uffff" in record:  # SQS refuses these two characters raw; escaped is the same JSON
            record = record.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")
        records.append(record)

    if records:
        prefix, suffix = envelope_parts(
            {"v": 1, "source": "split-webhook", "request_id": request_id, "received_at": received_at}, "impressions"
        )
        bodies = pack_records(records, prefix, suffix)
        sender.send_bodies(bodies)
        result.messages = len(bodies)
        result.accepted = len(records)
    if rejected:
        for rejection in rejected:
            result.reasons[rejection["reason"]] = result.reasons.get(rejection["reason"], 0) + 1
        result.quarantine_key = quarantine.put(
            QUARANTINE_SOURCE,
            request_id,
            {
                "source": QUARANTINE_SOURCE,
                "request_id": request_id,
                "received_at": received_at,
                "items": rejected,
            },
        )
        result.quarantined = len(rejected)
    return result


def _rejection(index: int, reason: str, detail: str, item: Any) -> dict[str, Any]:
    return {"index": index, "reason": reason, "detail": detail, "item": item}
