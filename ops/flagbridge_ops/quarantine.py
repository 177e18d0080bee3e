"""The quarantine bucket: which sources write to it, and listing its objects with their item reasons.

Every function that refuses an item for good writes it to the quarantine bucket under
``<source>/YYYY/MM/DD/<id>.json`` with a reason per item; ``quarantine list`` shows objects, item counts and
a reasons histogram. Replayed items move to ``replayed/<original key>`` (see :mod:`flagbridge_ops.replay`);
``decision-log/`` holds the router's decisions, not refused items.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

from flagbridge.forwarding.router_service import DECISION_LOG_SOURCE
from flagbridge.quarantine import QuarantineSource
from flagbridge_ops.errors import CliError
from flagbridge_ops.output import Progress

REPLAYED_PREFIX = "replayed/"
NOT_QUARANTINE = (REPLAYED_PREFIX.rstrip("/"), DECISION_LOG_SOURCE)
REPLAYABLE_SOURCES = tuple(QuarantineSource)


@dataclass
class QuarantineObject:
    key: str
    source: str
    day: date | None
    size: int


def _key_day(key: str) -> date | None:
    parts = key.split("/")
    try:
        return date(int(parts[1]), int(parts[2]), int(parts[3]))
    except (IndexError, ValueError):
        return None


def quarantine_sources(s3: Any, bucket: str) -> list[str]:
    """The source prefixes present in the bucket (``replayed/`` and ``decision-log/`` excluded)."""
    paginator = s3.get_paginator("list_objects_v2")
    sources: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Delimiter="/"):
        for prefix in page.get("CommonPrefixes", []):
            name = prefix["Prefix"].rstrip("/")
            if name not in NOT_QUARANTINE:
                sources.append(name)
    return sources


def list_quarantine(
    s3: Any, bucket: str, sources: Sequence[str] | None, since: date | None, keys: Sequence[str] | None = None
) -> list[QuarantineObject]:
    """Quarantine objects (never ``replayed/`` nor ``decision-log/``), oldest day first."""
    found: list[QuarantineObject] = []
    if keys:
        for key in keys:
            try:
                head = s3.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                raise CliError(f"no quarantine object {key!r}") from exc
            found.append(QuarantineObject(key, key.split("/", 1)[0], _key_day(key), int(head["ContentLength"])))
        return found
    paginator = s3.get_paginator("list_objects_v2")
    for source in sources or quarantine_sources(s3, bucket):
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{source}/"}
        if since is not None:
            params["StartAfter"] = f"{source}/{since:%Y/%m/%d}"
        for page in paginator.paginate(**params):
            for entry in page.get("Contents", []):
                day = _key_day(entry["Key"])
                if since is not None and day is not None and day < since:
                    continue
                found.append(QuarantineObject(entry["Key"], source, day, int(entry.get("Size", 0))))
    found.sort(key=lambda o: (o.day or date.min, o.key))
    return found


def load_documents(
    s3: Any, bucket: str, objects: Sequence[QuarantineObject], progress: Progress
) -> Iterator[tuple[QuarantineObject, dict[str, Any]]]:
    """Fetch the objects' documents (a few in parallel), in order."""

    def fetch(entry: QuarantineObject) -> dict[str, Any]:
        body = s3.get_object(Bucket=bucket, Key=entry.key)["Body"].read()
        try:
            document = json.loads(body)
        except ValueError as exc:  # UnicodeDecodeError included; left where it is, for the operator to look at
            raise CliError(
                f"quarantine object {entry.key!r} is not JSON ({exc}): look at it, move it aside, "
                "or leave it out with --source / --key"
            ) from exc
        return document if isinstance(document, dict) else {"items": []}

    with ThreadPoolExecutor(max_workers=8) as pool:
        for done, (entry, document) in enumerate(zip(objects, pool.map(fetch, objects), strict=True), start=1):
            yield entry, document
            progress.update(done)
    progress.close()


def item_reason(item: Any, document: Mapping[str, Any]) -> str:
    """``kind:reason`` of one quarantined item (the object's reason when the item has none)."""
    if not isinstance(item, dict):
        return str(document.get("reason") or "unknown")
    reason = str(item.get("reason") or document.get("reason") or "unknown")
    return f"{item['kind']}:{reason}" if item.get("kind") else reason
