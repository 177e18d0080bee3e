"""The quarantine: where accepted-but-unusable data is kept, with its reason, instead of being dropped.

One S3 object per request or batch: ``{source}/{yyyy}/{mm}/{dd}/{id}.json`` holding the reason of each
item and the item exactly as received. The bucket is encrypted and TLS-only (template.yaml).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from flagbridge.errors import StoreError


class QuarantineSource(StrEnum):
    """Who kept an item: the first part of its object key. Stored objects and the operator CLI depend on the values."""

    SPLIT_IMPRESSIONS = "split-impressions"
    """The impressions webhook: impressions of an accepted request that cannot be used."""
    IMPRESSIONS_PROCESSOR = "impressions-processor"
    """The impressions processor: queue messages it can never read."""
    MPARTICLE_BATCHES = "mparticle-batches"
    """The mParticle ingest: batches of an accepted request that cannot be used."""
    CDP_ROUTER = "cdp-router"
    """The CDP router: batches it can never route."""
    DESTINATION_DELIVERY = "destination-delivery"
    """Destination delivery: destination-queue messages it can never deliver."""
    ORACLE_COUNTER = "oracle-counter"
    """The oracle's counter: oracle-lane messages it can never read."""
    TRAFFIC_SHARDS = "traffic-shards"
    """The test-run worker: shard messages it can never send (garbage, unknown run, a range not the run's)."""


class Quarantine(Protocol):
    """Keeps rejected items with reasons; raises StoreError if it cannot."""

    def put(self, source: str, object_id: str, document: dict[str, Any]) -> str: ...


def put_message(
    quarantine: Quarantine,
    source: str,
    message_id: str,
    *,
    reason: str,
    detail: str,
    item: Any,
    object_id: str | None = None,
) -> str:
    """Keep one queue message that can never be processed, in the same document shape as other rejections."""
    return quarantine.put(
        source,
        object_id or message_id,
        {
            "source": source,
            "message_id": message_id,
            "reason": reason,
            "detail": detail,
            "items": [{"index": 0, "reason": reason, "detail": detail, "item": item}],
        },
    )


def quarantine_key(source: str, object_id: str, now: float | None = None) -> str:
    """The S3 key of a quarantine object (partitioned by day for lifecycle rules and browsing)."""
    day = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    return f"{source}/{day:%Y/%m/%d}/{object_id}.json"


class S3Quarantine:
    """Quarantine in an S3 bucket."""

    def __init__(self, s3_client: Any, bucket: str, attempts: int = 3) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._attempts = attempts

    def put(self, source: str, object_id: str, document: dict[str, Any]) -> str:
        key = quarantine_key(source, object_id)
        body = json.dumps(document, separators=(",", ":"), default=str).encode()
        for attempt in range(self._attempts):
            try:
                self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")
                return key
            except Exception as exc:
                if attempt == self._attempts - 1:
                    raise StoreError(f"quarantine write failed ({type(exc).__name__})") from exc
                time.sleep(0.05 * (2**attempt))
        raise AssertionError("unreachable")


class InMemoryQuarantine:
    """Quarantine kept in a dict (tests and benchmarks)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}

    def put(self, source: str, object_id: str, document: dict[str, Any]) -> str:
        key = quarantine_key(source, object_id)
        self.objects[key] = document
        return key
