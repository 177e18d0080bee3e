"""Quarantine replay: re-run quarantined items with the *current* configuration.

Split impressions go through the webhook's ingest again, mParticle batches (malformed ones, and batches the
data plan blocked) back onto the batches queue, processor messages onto the impressions queue, undeliverable
lane messages onto their lane. Before a blocked batch is replayed its ``batch_id`` and
``context.data_plan.block_metadata`` are removed (as mParticle advises), event timestamps are kept, and only the
events the plan blocked are replayed (the others were delivered already) under the stable
``source_request_id`` ``replay:<original batch key>``, so running the replay twice never delivers twice.
A dry run routes the batches in process (plan, testers, filters of the current configuration, in-memory
senders) and reports per destination what would be sent. Replayed items move to ``replayed/<original key>``;
items that still fail stay where they are and nothing new is written for them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from flagbridge.cdp.batch import BatchFormatError, normalize_batch
from flagbridge.errors import RequestError
from flagbridge.forwarding.ingest import queue_envelope
from flagbridge.forwarding.router_service import RouterService
from flagbridge.impressions.ingest import ingest_impressions
from flagbridge.impressions.models import ImpressionMessage
from flagbridge.profiles.store import DynamoDBProfileStore
from flagbridge.quarantine import InMemoryQuarantine, QuarantineSource
from flagbridge.queues import MAX_MESSAGE_BYTES, InMemorySender, QueueRecord, SqsSender
from flagbridge_ops.errors import CliError
from flagbridge_ops.output import Progress, as_dict, as_list, compact_json, histogram_text, short
from flagbridge_ops.quarantine import REPLAYED_PREFIX, QuarantineObject, item_reason, load_documents
from flagbridge_ops.resources import Clients, Resources

REPLAY_SOURCE = "replay"


def without_block_metadata(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch without ``context.data_plan.block_metadata`` (and the containers that only held it)."""
    doc = dict(batch)
    context = doc.get("context")
    if isinstance(context, dict):
        context = dict(context)
        plan = context.get("data_plan")
        if isinstance(plan, dict) and "block_metadata" in plan:
            plan = {k: v for k, v in plan.items() if k != "block_metadata"}
            if plan:
                context["data_plan"] = plan
            else:
                context.pop("data_plan")
        if context:
            doc["context"] = context
        else:
            doc.pop("context")
    return doc


def original_batch_key(batch: Mapping[str, Any]) -> str | None:
    try:
        return normalize_batch(dict(batch)).dedup_key
    except BatchFormatError:
        return None


def replay_batch(
    batch: Mapping[str, Any], original_key: str, event_indexes: Sequence[int] | None, delivered_before: bool
) -> dict[str, Any]:
    """The batch to enqueue again: no ``batch_id`` nor ``block_metadata``, timestamps kept.

    ``event_indexes`` keeps only those events (None: all). The ``source_request_id`` is kept when nothing of
    the batch was delivered before (nothing in the ledger under its key), else it becomes
    ``replay:<original batch key>``; either way the batch key is the same on every replay.
    """
    doc = without_block_metadata(batch)
    doc.pop("batch_id", None)
    if event_indexes is not None:
        events = doc.get("events") or []
        doc["events"] = [events[i] for i in event_indexes]
    srid = doc.get("source_request_id")
    if delivered_before or not (isinstance(srid, str) and srid):
        doc["source_request_id"] = f"replay:{original_key}"
    return doc


def blocked_event_indexes(original: Mapping[str, Any], batch_key: str, block_metadata: Mapping[str, Any]) -> list[int]:
    """Indexes of the events ``block_metadata.blocked_event_ids`` names (ids as the router computed them)."""
    normalised = normalize_batch(dict(original))
    normalised._dedup_key = batch_key  # the event ids without their own id hash the batch key the router used
    blocked = {str(i) for i in block_metadata.get("blocked_event_ids") or []}
    return [e.index for e in normalised.events if e.event_id in blocked or e.message_id in blocked]


@dataclass
class ItemOutcome:
    key: str
    position: int
    index: Any
    source: str
    reason: str
    status: str  # replayed | still_failing | not_replayable
    detail: str = ""
    target: str = ""


@dataclass
class Send:
    queue: str  # impressions | batches | lane:<destination>
    url: str
    body: str


@dataclass
class ObjectPlan:
    outcomes: list[ItemOutcome] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)


@dataclass
class DestinationTally:
    messages: int = 0
    events: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class Replayer:
    """Decides, per quarantine object, what replaying its items means with the current configuration."""

    def __init__(
        self,
        resources: Resources,
        *,
        whole_batch: bool,
        lookup_marks: Callable[[Iterable[str]], dict[str, Any]],
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self._resources = resources
        self._settings = resources.settings
        self._config = resources.config
        self._whole_batch = whole_batch
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._lanes: dict[str, InMemorySender] = {}
        self._routed = InMemoryQuarantine()
        self._router: RouterService | None = None
        if self._config.cdp is not None:
            self._router = RouterService(
                self._config, lookup_marks, self._lane_sender, self._routed, clock_ms=self._clock_ms
            )
        self.destinations: dict[str, DestinationTally] = {}
        self.queued: Counter[str] = Counter()  # messages per target queue
        self.impressions = 0

    def _lane_sender(self, destination: str) -> InMemorySender:
        return self._lanes.setdefault(destination, InMemorySender())

    # One object ---------------------------------------------------------------------------------

    def plan(self, key: str, source: str, document: dict[str, Any]) -> ObjectPlan:
        items = as_list(document.get("items"))
        plan = ObjectPlan()
        if source == QuarantineSource.SPLIT_IMPRESSIONS:
            self._plan_impressions(key, document, items, plan)
            return plan
        for position, item in enumerate(items):
            outcome = ItemOutcome(
                key, position, item.get("index") if isinstance(item, dict) else position, source, "", "still_failing"
            )
            outcome.reason = item_reason(item, document)
            payload = item.get("item") if isinstance(item, dict) else None
            if source in (QuarantineSource.MPARTICLE_BATCHES, QuarantineSource.CDP_ROUTER):
                self._plan_batch_item(key, document, item if isinstance(item, dict) else {}, payload, outcome, plan)
            elif source == QuarantineSource.IMPRESSIONS_PROCESSOR:
                self._plan_processor_item(payload, outcome, plan)
            elif source == QuarantineSource.DESTINATION_DELIVERY:
                self._plan_delivery_item(payload, outcome, plan)
            else:
                outcome.status, outcome.detail = "not_replayable", f"unknown quarantine source {source!r}"
            plan.outcomes.append(outcome)
        return plan

    def _plan_impressions(self, key: str, document: dict[str, Any], items: list[Any], plan: ObjectPlan) -> None:
        originals = [item.get("item") if isinstance(item, dict) else None for item in items]
        received_at = document.get("received_at")
        sender = InMemorySender()
        still = InMemoryQuarantine()
        failed: dict[int, tuple[str, str]] = {}
        try:
            ingest_impressions(
                originals,
                request_id=f"replay:{document.get('request_id') or key}",
                config=self._config,
                sender=sender,
                quarantine=still,
                now_ms=received_at if isinstance(received_at, int) else None,
            )
        except RequestError as exc:
            failed = dict.fromkeys(range(len(items)), (exc.code, exc.message))
        for rejected in still.objects.values():
            for item in rejected["items"]:
                failed[item["index"]] = (item["reason"], str(item["detail"]))
        for position, item in enumerate(items):
            outcome = ItemOutcome(
                key,
                position,
                item.get("index") if isinstance(item, dict) else position,
                QuarantineSource.SPLIT_IMPRESSIONS,
                "",
                "",
            )
            outcome.reason = item_reason(item, document)
            if position in failed:
                outcome.status, outcome.detail = "still_failing", f"{failed[position][0]}: {failed[position][1]}"
            else:
                outcome.status, outcome.target = "replayed", "impressions"
            plan.outcomes.append(outcome)
        if sender.bodies:
            url = self._settings.impressions_queue_url
            plan.sends.extend(Send("impressions", url, body) for body in sender.bodies)
            self.impressions += sum(o.status == "replayed" for o in plan.outcomes)

    def _plan_batch_item(
        self,
        key: str,
        document: dict[str, Any],
        item: dict[str, Any],
        payload: Any,
        outcome: ItemOutcome,
        plan: ObjectPlan,
    ) -> None:
        kind = item.get("kind")
        if kind == "split_rejected":
            outcome.status = "not_replayable"
            outcome.detail = "the quarantine keeps the Split event, not its batch: resend the batch from its source"
            return
        if self._router is None:
            outcome.status, outcome.detail = "not_replayable", "the configuration has no 'cdp' section"
            return
        if kind == "plan_blocked":
            prepared = self._prepare_blocked(document, item, payload, outcome)
        else:  # a malformed batch (ingest or router): replayable once it is well formed
            is_envelope = isinstance(payload, dict) and "batch" in payload and "v" in payload
            raw = payload["batch"] if is_envelope else payload
            if not isinstance(raw, dict):
                outcome.detail = "not a JSON object"
                return
            try:
                key_before = normalize_batch(raw).dedup_key
            except BatchFormatError as exc:
                outcome.detail = "still malformed: " + "; ".join(exc.errors[:3])
                return
            prepared = replay_batch(raw, key_before, None, delivered_before=False)
        if prepared is None:
            return
        body = queue_envelope(prepared, REPLAY_SOURCE, f"replay:{key}#{outcome.position}", self._clock_ms())
        if len(body.encode()) > MAX_MESSAGE_BYTES:
            outcome.detail = f"the batch is larger than {MAX_MESSAGE_BYTES} bytes"
            return
        verdict = self._route(body)
        if verdict is not None:
            outcome.detail = verdict
            return
        outcome.status, outcome.target = "replayed", "batches"
        plan.sends.append(Send("batches", self._settings.batches_queue_url, body))

    def _prepare_blocked(
        self, document: dict[str, Any], item: dict[str, Any], payload: Any, outcome: ItemOutcome
    ) -> dict[str, Any] | None:
        batch = payload.get("batch") if isinstance(payload, dict) else None
        if not isinstance(batch, dict):
            outcome.status, outcome.detail = "not_replayable", "no batch in the quarantine record"
            return None
        context = as_dict(batch.get("context"))
        plan_tag = as_dict(context.get("data_plan"))
        metadata = as_dict(plan_tag.get("block_metadata"))
        original = without_block_metadata(batch)
        original_key = document.get("batch_key") or original_batch_key(original)
        if not isinstance(original_key, str):
            outcome.detail = "the quarantined batch is malformed"
            return None
        events = original.get("events") or []
        batch_dropped = item.get("reason") not in (None, "plan.blocked")
        if batch_dropped or self._whole_batch:
            indexes = None
            delivered_before = not batch_dropped  # --whole-batch of a partly delivered batch: a new key
        else:
            try:
                indexes = blocked_event_indexes(original, original_key, metadata)
            except BatchFormatError:
                outcome.detail = "the quarantined batch is malformed"
                return None
            if not indexes:
                outcome.status = "not_replayable"
                outcome.detail = "only attributes were removed and the events were delivered (--whole-batch resends)"
                return None
            delivered_before = len(indexes) < len(events)
            if not delivered_before:
                indexes = None
        return replay_batch(original, original_key, indexes, delivered_before)

    def _route(self, body: str) -> str | None:
        """Route the replayed batch in process; returns why it would stay quarantined, or None."""
        assert self._router is not None
        self._lanes.clear()
        self._routed.objects.clear()
        result = self._router.process([QueueRecord("replay", body)])
        if result.failed_message_ids:
            return "the router failed on this batch"
        blocked = [
            entry
            for doc in self._routed.objects.values()
            if doc.get("source") == QuarantineSource.CDP_ROUTER
            for entry in doc.get("items", [])
            if entry.get("kind") == "plan_blocked"
        ]
        decided = [reason for reasons in result.counts.values() for reason in reasons]
        if blocked and all(reason.startswith("plan.") for reason in decided):
            # every destination sees the same plan decisions: show one destination's, per event
            per_event = next(iter(result.counts.values()), None) or Counter(b["reason"] for b in blocked)
            return "still blocked by the plan: " + histogram_text(per_event)
        for destination, reasons in result.counts.items():
            tally = self.destinations.setdefault(destination, DestinationTally())
            tally.reasons.update(reasons)
        for destination, sender in self._lanes.items():
            tally = self.destinations.setdefault(destination, DestinationTally())
            for lane_body in sender.bodies:
                message = json.loads(lane_body)
                tally.messages += 1
                tally.events += len(message.get("split_events") or (message.get("batch") or {}).get("events") or [])
        return None

    def _plan_processor_item(self, payload: Any, outcome: ItemOutcome, plan: ObjectPlan) -> None:
        if not isinstance(payload, dict):
            outcome.detail = "not a JSON object"
            return
        try:
            message = ImpressionMessage.model_validate(payload)
        except ValidationError as exc:
            outcome.detail = short(str(exc.errors(include_url=False, include_input=False)[:2]))
            return
        outcome.status, outcome.target = "replayed", "impressions"
        self.impressions += len(message.impressions)
        plan.sends.append(Send("impressions", self._settings.impressions_queue_url, compact_json(payload)))

    def _plan_delivery_item(self, payload: Any, outcome: ItemOutcome, plan: ObjectPlan) -> None:
        try:
            message = json.loads(payload) if isinstance(payload, str) else payload
            destination = str(message["destination"])
        except (ValueError, KeyError, TypeError):
            outcome.detail = "not a destination message"
            return
        configured = {d.name for d in self._config.cdp.destinations} if self._config.cdp else set()
        url = self._settings.destination_queues.get(destination, "")
        if destination not in configured:
            outcome.detail = f"destination {destination!r} is still not configured"
            return
        if not url:
            outcome.detail = f"no lane queue for {destination!r} in DESTINATION_QUEUES"
            return
        outcome.status, outcome.target = "replayed", f"lane:{destination}"
        tally = self.destinations.setdefault(destination, DestinationTally())
        tally.messages += 1
        body = payload if isinstance(payload, str) else compact_json(payload)
        plan.sends.append(Send(f"lane:{destination}", url, body))


def record_replay(s3: Any, bucket: str, key: str, document: dict[str, Any], replayed: set[int], now: datetime) -> str:
    """Move the replayed items to ``replayed/<key>``; keep the others (if any) under ``key``."""
    items = document.get("items") or []
    done = [item for position, item in enumerate(items) if position in replayed]
    remaining = [item for position, item in enumerate(items) if position not in replayed]
    target = REPLAYED_PREFIX + key
    record = {**document, "items": done, "replayed_at": [now.isoformat()]}
    try:
        previous = json.loads(s3.get_object(Bucket=bucket, Key=target)["Body"].read())
        record["items"] = list(previous.get("items") or []) + done
        record["replayed_at"] = list(previous.get("replayed_at") or []) + record["replayed_at"]
    except s3.exceptions.NoSuchKey:
        pass
    s3.put_object(Bucket=bucket, Key=target, Body=compact_json(record).encode(), ContentType="application/json")
    if remaining:
        kept = {**document, "items": remaining}
        s3.put_object(Bucket=bucket, Key=key, Body=compact_json(kept).encode(), ContentType="application/json")
        return "partly moved"
    s3.delete_object(Bucket=bucket, Key=key)
    return "moved"


def replay_quarantine(
    clients: Clients,
    resources: Resources,
    objects: Sequence[QuarantineObject],
    *,
    dry_run: bool,
    keep: bool,
    whole_batch: bool,
    progress: Progress,
) -> dict[str, Any]:
    """Replay the objects' items (or only plan it, ``dry_run``); returns the report ``--json`` prints."""
    s3, sqs = clients.get("s3"), clients.get("sqs")
    bucket = resources.require_bucket()
    table_name = resources.settings.profiles_table
    lookup: Callable[[Iterable[str]], dict[str, Any]] = (
        DynamoDBProfileStore(clients.get("dynamodb"), table_name).load_marks if table_name else (lambda users: {})
    )
    replayer = Replayer(resources, whole_batch=whole_batch, lookup_marks=lookup)
    outcomes: list[ItemOutcome] = []
    moves: Counter[str] = Counter()
    errors: list[str] = []
    for entry, document in load_documents(s3, bucket, objects, progress):
        plan = replayer.plan(entry.key, entry.source, document)
        if not dry_run and plan.sends:
            try:
                send_all(sqs, plan.sends)
            except Exception as exc:
                errors.append(f"{entry.key}: {exc}")
                for outcome in plan.outcomes:
                    if outcome.status == "replayed":
                        outcome.status, outcome.detail = "still_failing", f"send failed: {exc}"
                outcomes.extend(plan.outcomes)
                continue
        outcomes.extend(plan.outcomes)
        replayed = {o.position for o in plan.outcomes if o.status == "replayed"}
        if replayed:
            for send in plan.sends:
                replayer.queued[send.queue] += 1
            if not dry_run and not keep:
                moves[record_replay(s3, bucket, entry.key, document, replayed, datetime.now(tz=UTC))] += 1
    return _report(replayer, outcomes, objects=len(objects), dry_run=dry_run, moves=moves, errors=errors)


def _report(
    replayer: Replayer,
    outcomes: list[ItemOutcome],
    *,
    objects: int,
    dry_run: bool,
    moves: Counter[str],
    errors: list[str],
) -> dict[str, Any]:
    """The report of a replay: counts by status and source, what was queued, and each item kept."""
    statuses = Counter(o.status for o in outcomes)
    return {
        "dry_run": dry_run,
        "objects": objects,
        "items": len(outcomes),
        "replayed": statuses.get("replayed", 0),
        "still_failing": statuses.get("still_failing", 0),
        "not_replayable": statuses.get("not_replayable", 0),
        "by_source": {
            source: dict(Counter(o.status for o in outcomes if o.source == source))
            for source in sorted({o.source for o in outcomes})
        },
        "queued": dict(replayer.queued),
        "impressions": replayer.impressions,
        "destinations": {
            name: {"messages": t.messages, "events": t.events, "reasons": dict(t.reasons)}
            for name, t in sorted(replayer.destinations.items())
        },
        "objects_moved": dict(moves),
        "kept": [
            {"key": o.key, "index": o.index, "reason": o.reason, "status": o.status, "detail": o.detail}
            for o in outcomes
            if o.status != "replayed"
        ],
        "errors": errors,
    }


def send_all(sqs: Any, sends: Sequence[Send]) -> None:
    """Send the bodies to their queues (batched per queue); a missing queue URL stops before anything is sent."""
    by_url: dict[str, list[str]] = {}
    for send in sends:
        if not send.url:
            variable = {"impressions": "IMPRESSIONS_QUEUE_URL", "batches": "BATCHES_QUEUE_URL"}.get(send.queue, "")
            raise CliError(f"no {send.queue} queue URL ({variable or 'DESTINATION_QUEUES'}, or --stack)")
        by_url.setdefault(send.url, []).append(send.body)
    for url, bodies in by_url.items():
        SqsSender(sqs, url).send_bodies(bodies)
