"""The router consumer: batches queue -> plan, testers, filters -> per-destination queues.

For each SQS batch: decode every message (our ingest envelope, or a raw mParticle batch sent straight
to the queue), look up profile tester marks and the tester registry for all identities at once (one
bulk read each per SQS batch), route each batch with
:func:`flagbridge.cdp.router.route_batch`, then make the outcome durable: one message per destination
on that destination's own queue (so a slow or failing destination never holds up another), blocked or
unsendable data in the quarantine with its reasons, and the decision log (every event x destination,
sent or dropped and why) in the quarantine bucket under ``decision-log/``. Counts go to metrics.

A message is acknowledged only when all of that is written; otherwise it is reported as a batch item
failure and redelivered. Re-routing a batch is harmless: destination deliveries are deduplicated by
the delivery ledger on (destination, batch key) and Split events on their event ids.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flagbridge.cdp.batch import Batch, BatchFormatError, normalize_batch
from flagbridge.cdp.router import RoutingResult, route_batch
from flagbridge.cdp.testers import TesterResolver, profile_lookup_keys
from flagbridge.config import BridgeConfig
from flagbridge.errors import ConfigError
from flagbridge.profiles.model import TestMark
from flagbridge.quarantine import Quarantine, QuarantineSource, put_message
from flagbridge.queues import MessageSender, QueueRecord, batch_item_failures
from flagbridge.testers.registry import REGISTRY_RULE, RegistryLookup

DECISION_LOG_SOURCE = "decision-log"

MarkLookup = Callable[[Iterable[str]], dict[str, TestMark]]


@dataclass
class RouterResult:
    failed_message_ids: list[str] = field(default_factory=list)
    batches: int = 0
    quarantined_messages: int = 0
    destination_messages: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def batch_response(self) -> dict[str, Any]:
        return batch_item_failures(self.failed_message_ids)

    def add_counts(self, counts: dict[str, dict[str, int]]) -> None:
        for destination, reasons in counts.items():
            mine = self.counts.setdefault(destination, {})
            for reason, number in reasons.items():
                mine[reason] = mine.get(reason, 0) + number


def destination_message(result: RoutingResult, destination: str) -> dict[str, Any]:
    """The body of a destination-queue message for one routed batch."""
    payload = result.payloads[destination]
    message: dict[str, Any] = {
        "v": 1,
        "destination": destination,
        "type": payload.type,
        "batch_key": result.batch_key,
        "test_user": result.tester.is_tester,
    }
    if payload.type == "split":
        message["split_events"] = [
            {
                "body": event.body,
                "dedup_id": event.dedup_id,
                "message_id": event.message_id,
                "event_index": event.event_index,
                "product_index": event.product_index,
            }
            for event in payload.split_events
        ]
    else:
        message["batch"] = payload.batch
    return message


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def destination_body(routed: RoutingResult, destination: str, serialised: dict[int, str]) -> str:
    """:func:`destination_message` as JSON text; a batch document several destinations share is serialised once.

    ``serialised`` maps ``id(document)`` to its JSON for one routing result (the router gives destinations that
    send the same events the same document).
    """
    payload = routed.payloads[destination]
    document = payload.batch
    if document is None:
        return _compact(destination_message(routed, destination))
    text = serialised.get(id(document))
    if text is None:
        text = serialised[id(document)] = _compact(document)
    message = destination_message(routed, destination)
    del message["batch"]  # the last member: spliced back in as text
    return f'{_compact(message)[:-1]},"batch":{text}}}'


def _object_id(batch_key: str) -> str:
    return hashlib.sha256(batch_key.encode()).hexdigest()[:32]


class RouterService:
    """Routes queued mParticle batches to destination queues."""

    def __init__(
        self,
        config: BridgeConfig,
        lookup_marks: MarkLookup,
        destination_sender: Callable[[str], MessageSender],
        quarantine: Quarantine,
        clock_ms: Callable[[], int] | None = None,
        lookup_registered: RegistryLookup | None = None,
    ) -> None:
        if config.cdp is None:
            raise ConfigError("the configuration has no 'cdp' section: nothing to route")
        self._config = config
        self._cdp = config.cdp
        self._resolver = TesterResolver(config.test_users)
        self._lookup_marks = lookup_marks
        self._lookup_registered = lookup_registered
        self._uses_marks = any(rule.type == "profile_mark" for rule in config.test_users.rules)
        self._destination_sender = destination_sender
        self._quarantine = quarantine
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        # identity type -> the traffic types whose profiles hold keys of that identity type
        self._traffic_types: dict[str, list[str]] = {}
        for mapping in config.identity_mapping.split_environments:
            types = self._traffic_types.setdefault(mapping.identity_type, [])
            if mapping.traffic_type not in types:
                types.append(mapping.traffic_type)

    def process(self, records: Sequence[QueueRecord]) -> RouterResult:
        result = RouterResult()
        decoded: list[tuple[QueueRecord, Batch, dict[str, Any]]] = []
        for record in records:
            try:
                item = self._decode(record, result)
            except Exception:
                result.failed_message_ids.append(record.message_id)
                continue
            if item is not None:
                decoded.append((record, *item))
        if not decoded:
            return result
        marked, registered = self._testers([batch for _, batch, _ in decoded])
        now_ms = self._clock_ms()
        for record, batch, meta in decoded:
            try:
                routed = route_batch(batch, self._cdp, marked, now_ms, self._resolver, registered)
                self._persist(routed, meta, result)
            except Exception:
                result.failed_message_ids.append(record.message_id)
                continue
            result.batches += 1
            result.add_counts(routed.counts)
        return result

    def _testers(self, batches: list[Batch]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """The identities of the SQS batch with a profile mark, and those the tester registry holds.

        One bulk read each for all the batch's identities (mapped to profile user ids through the identity
        mapping), never one per event. Marks that came from the registry are left to the registry itself, so
        removing a tester takes effect at once on this side.
        """
        if not self._uses_marks and self._lookup_registered is None:
            return set(), set()
        by_user: dict[str, tuple[str, str]] = {}
        for identity_type, value in profile_lookup_keys(batches):
            for traffic_type in self._traffic_types.get(identity_type, ()):
                by_user[f"{traffic_type}#{value}"] = (identity_type, value)
        if not by_user:
            return set(), set()
        marked: set[tuple[str, str]] = set()
        if self._uses_marks:
            marks = self._lookup_marks(by_user)
            marked = {by_user[user] for user, mark in marks.items() if mark.rule != REGISTRY_RULE}
        registered: set[tuple[str, str]] = set()
        if self._lookup_registered is not None:
            registered = {by_user[user] for user in self._lookup_registered(by_user)}
        return marked, registered

    def _decode(self, record: QueueRecord, result: RouterResult) -> tuple[Batch, dict[str, Any]] | None:
        reason, detail = "", ""
        try:
            document = json.loads(record.body)
        except ValueError as exc:
            document, reason, detail = record.body, "invalid_json", str(exc)
        meta: dict[str, Any] = {"message_id": record.message_id}
        if not reason:
            if isinstance(document, dict) and "batch" in document and "v" in document:
                meta.update({k: document.get(k) for k in ("source", "request_id", "received_at")})
                raw = document["batch"]
            else:
                meta["source"] = "queue"
                raw = document
            try:
                return normalize_batch(raw), meta
            except BatchFormatError as exc:
                reason, detail = "invalid_batch", "; ".join(exc.errors[:20])
        put_message(
            self._quarantine,
            QuarantineSource.CDP_ROUTER,
            record.message_id,
            reason=reason,
            detail=detail,
            item=document,
            object_id=f"message-{record.message_id}",
        )
        result.quarantined_messages += 1
        return None

    def _persist(self, routed: RoutingResult, meta: dict[str, Any], result: RouterResult) -> None:
        serialised: dict[int, str] = {}
        for destination in routed.payloads:
            body = destination_body(routed, destination, serialised)
            self._destination_sender(destination).send_bodies([body])
            result.destination_messages[destination] = result.destination_messages.get(destination, 0) + 1
        object_id = _object_id(routed.batch_key)
        if routed.quarantine:
            self._quarantine.put(
                QuarantineSource.CDP_ROUTER,
                object_id,
                {
                    "source": QuarantineSource.CDP_ROUTER,
                    "batch_key": routed.batch_key,
                    "ingest": meta,
                    "items": [
                        {
                            "index": index,
                            "kind": q.kind,
                            "reason": q.reason,
                            "destination": q.destination,
                            "item": q.payload,
                        }
                        for index, q in enumerate(routed.quarantine)
                    ],
                },
            )
        self._quarantine.put(
            DECISION_LOG_SOURCE,
            object_id,
            {
                "batch_key": routed.batch_key,
                "ingest": meta,
                "test_user": {"is_test_user": routed.tester.is_tester, "rule": routed.tester.rule},
                "decisions": [
                    {
                        "destination": d.destination,
                        "event_index": d.event_index,
                        "message_id": d.message_id,
                        "sent": d.sent,
                        "reason": d.reason,
                    }
                    for d in routed.decisions
                ],
                "counts": routed.counts,
            },
        )
