"""Dead-letter queues: find them, peek at their messages, redrive them to their source.

``dlq list`` shows the approximate depth of each DLQ (impressions, batches, one per destination lane);
``dlq show`` peeks at messages without consuming them (reasons and sizes, bodies only with ``--show-bodies``);
``dlq redrive`` sends each message back to its source queue and deletes it from the DLQ only once that send
succeeded. Redriving is safe to repeat: impressions are deduplicated by fingerprint, deliveries by the
delivery ledger. Records a destination refused for good (written by the delivery function, already marked as
decided in the ledger) are left in place unless ``--release-ledger`` releases their ledger claims and sends
the original lane message again.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from flagbridge.forwarding.ledger import DynamoDBLedger
from flagbridge.queues import SqsSender
from flagbridge_ops.errors import CliError, UsageError
from flagbridge_ops.output import Progress, as_dict, compact_json, short
from flagbridge_ops.resources import Resources

STALE_RECEIVES = 3  # a scan stops after this many receives in a row brought nothing new
# What a missing or odd redrive policy raises; credential and connection errors are not among them (they stop
# the command with their own message instead of hiding every DLQ).
_NO_REDRIVE = (ClientError, KeyError, ValueError, IndexError)


@dataclass
class DeadLetterQueue:
    name: str
    url: str
    source_url: str


def queue_name(url: str) -> str:
    """The queue's name: the last part of its URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def redrive_target(sqs: Any, queue_url: str) -> str:
    """The URL of the DLQ named by ``queue_url``'s redrive policy, or "" when it has none."""
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
        arn = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
        _, _, _, _, account, name = arn.split(":", 5)
        return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])
    except _NO_REDRIVE:
        return ""


def dead_letter_source(sqs: Any, dlq_url: str) -> str:
    try:
        urls = sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get("queueUrls", [])
    except ClientError:
        return ""
    return str(urls[0]) if len(urls) == 1 else ""


def discover_dlqs(sqs: Any, resources: Resources) -> list[DeadLetterQueue]:
    """Every DLQ known from the environment/stack: impressions, batches, then each destination lane."""
    settings = resources.settings
    found: list[DeadLetterQueue] = []
    for name, source in (("impressions", settings.impressions_queue_url), ("batches", settings.batches_queue_url)):
        url = resources.dlqs.get(name) or (redrive_target(sqs, source) if source else "")
        if url:
            found.append(DeadLetterQueue(name, url, source or dead_letter_source(sqs, url)))
    for lane in sorted(set(settings.destination_dlqs) | set(settings.destination_queues)):
        source = settings.destination_queues.get(lane, "")
        url = settings.destination_dlqs.get(lane) or (redrive_target(sqs, source) if source else "")
        if url:
            found.append(DeadLetterQueue(lane, url, source or dead_letter_source(sqs, url)))
    return found


def select_dlq(
    sqs: Any, resources: Resources, *, name: str | None, queue_url: str | None, to: str | None = None
) -> DeadLetterQueue:
    """The DLQ named ``name`` (see ``dlq list``) or at ``queue_url``, redriving to ``to`` if given."""
    known = discover_dlqs(sqs, resources)
    if queue_url:
        match = next((q for q in known if q.url == queue_url), None)
        dlq = match or DeadLetterQueue(queue_name(queue_url), queue_url, "")
    elif name:
        dlq_or_none = next((q for q in known if name in (q.name, queue_name(q.url))), None)
        if dlq_or_none is None:
            names = ", ".join(q.name for q in known) or "none found"
            raise CliError(f"unknown DLQ {name!r} (known: {names}); or pass --queue-url")
        dlq = dlq_or_none
    else:
        raise UsageError("name a DLQ (see `flagbridge dlq list`) or pass --queue-url")
    if to:
        dlq.source_url = to
    elif not dlq.source_url:
        dlq.source_url = dead_letter_source(sqs, dlq.url)
    return dlq


def queue_depth(sqs: Any, url: str) -> dict[str, int]:
    """Approximate numbers of messages waiting, in flight and delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {
        "messages": int(attributes.get(names[0], 0)),
        "in_flight": int(attributes.get(names[1], 0)),
        "delayed": int(attributes.get(names[2], 0)),
    }


def describe_body(body: str) -> dict[str, Any]:
    """What a DLQ message is and why it is there, without its personal data."""
    summary: dict[str, Any] = {"bytes": len(body.encode())}
    try:
        doc = json.loads(body)
    except ValueError:
        return {**summary, "kind": "not_json"}
    if not isinstance(doc, dict):
        return {**summary, "kind": type(doc).__name__}
    return {**summary, **_describe_document(doc)}


def _describe_document(doc: dict[str, Any]) -> dict[str, Any]:
    if "message" in doc and "reason" in doc and "destination" in doc:
        return _refused_delivery(doc)
    if "destination" in doc and ("split_events" in doc or "batch" in doc):
        return _lane_message(doc)
    if "impressions" in doc:
        return {
            "kind": "impressions",
            "request_id": doc.get("request_id"),
            "chunk": doc.get("chunk", 0),
            "impressions": len(doc.get("impressions") or []),
        }
    raw: Any = doc.get("batch") if "batch" in doc and "v" in doc else doc
    if isinstance(raw, dict) and ("events" in raw or "user_identities" in raw):
        return _batch(doc, raw)
    return {"kind": "unknown", "fields": sorted(doc)[:10]}


def _refused_delivery(doc: dict[str, Any]) -> dict[str, Any]:
    """A record the delivery function wrote after a destination refused its message for good."""
    message = as_dict(doc.get("message"))
    return {
        "kind": "refused_delivery",
        "destination": doc.get("destination"),
        "reason": doc.get("reason"),
        "status": doc.get("status"),
        "response": short(doc.get("response") or "", 120),
        "batch_key": doc.get("batch_key"),
        "events": len(doc.get("events") or message.get("split_events") or []),
    }


def _lane_message(doc: dict[str, Any]) -> dict[str, Any]:
    batch = as_dict(doc.get("batch"))
    return {
        "kind": "lane_message",
        "destination": doc.get("destination"),
        "type": doc.get("type"),
        "batch_key": doc.get("batch_key"),
        "events": len(doc.get("split_events") or batch.get("events") or []),
    }


def _batch(doc: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """A CDP batch, as the ingest wrapped it (``raw`` inside ``doc``) or as it arrived (``raw`` is ``doc``)."""
    return {
        "kind": "batch",
        "ingest": doc.get("source") if raw is not doc else "raw",
        "request_id": doc.get("request_id"),
        "source_request_id": raw.get("source_request_id"),
        "batch_id": raw.get("batch_id"),
        "events": len(raw.get("events") or []),
    }


@dataclass
class RedriveStep:
    """What to do with one DLQ message: send ``body`` to ``target`` (after releasing ledger ids), or skip."""

    target: str = ""
    body: str = ""
    ledger_ids: list[str] = field(default_factory=list)
    skip: str = ""


def plan_redrive(body: str, dlq: DeadLetterQueue, resources: Resources, release_ledger: bool) -> RedriveStep:
    info = describe_body(body)
    if info["kind"] != "refused_delivery":
        if not dlq.source_url:
            return RedriveStep(skip="no source queue known (pass --to)")
        return RedriveStep(dlq.source_url, body)
    # Written by the delivery function after a permanent refusal: the ledger already marks it decided,
    # so sending the record (or its message) back as is would be deduplicated away.
    if not release_ledger:
        return RedriveStep(skip=f"refused by the destination ({info['reason']}); needs --release-ledger")
    record = json.loads(body)
    message = record["message"]
    destination = str(record["destination"])
    target = resources.settings.destination_queues.get(destination) or dlq.source_url
    if not target:
        return RedriveStep(skip=f"no lane queue known for destination {destination!r}")
    if message.get("type") == "split":
        refused = record.get("events")
        events = [e for e in message.get("split_events", []) if not refused or e.get("body") in refused]
        message = {**message, "split_events": events}
        ids = [f"{destination}#{e['dedup_id']}" for e in events]
    else:
        ids = [f"{destination}#{message.get('batch_key')}"]
    return RedriveStep(target, compact_json(message), ids)


def _receive(sqs: Any, url: str, count: int, visibility: int, wait: int) -> list[dict[str, Any]]:
    response = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=max(1, min(10, count)),
        VisibilityTimeout=visibility,
        WaitTimeSeconds=wait,
        AttributeNames=["All"],
    )
    return list(response.get("Messages", []))


def _make_visible(sqs: Any, url: str, handles: Iterable[str]) -> None:
    pending = list(handles)
    for start in range(0, len(pending), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(pending[start : start + 10])
        ]
        with contextlib.suppress(Exception):  # best effort: they reappear when the timeout expires anyway
            sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def peek(sqs: Any, dlq: DeadLetterQueue, limit: int, visibility: int, wait: int) -> list[dict[str, Any]]:
    """Receive up to ``limit`` messages without deleting them, then make them visible again."""
    seen: dict[str, dict[str, Any]] = {}
    stale = 0
    try:
        while len(seen) < limit and stale < STALE_RECEIVES:
            batch = _receive(sqs, dlq.url, limit - len(seen), visibility, wait)
            if not batch:
                break
            stale = 0 if any(m["MessageId"] not in seen for m in batch) else stale + 1
            for message in batch:
                seen[message["MessageId"]] = message
    finally:
        _make_visible(sqs, dlq.url, (m["ReceiptHandle"] for m in seen.values()))
    return list(seen.values())[:limit]


def message_summary(message: dict[str, Any], show_body: bool) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    sent = attributes.get("SentTimestamp")
    summary: dict[str, Any] = {
        "message_id": message["MessageId"],
        "sent_at": datetime.fromtimestamp(int(sent) / 1000, tz=UTC).isoformat() if sent else None,
        "receives": int(attributes.get("ApproximateReceiveCount", 0)),
        **describe_body(message["Body"]),
    }
    if show_body:
        summary["body"] = message["Body"]
    return summary


def redrive(
    sqs: Any,
    dlq: DeadLetterQueue,
    resources: Resources,
    *,
    dry_run: bool,
    limit: int | None,
    visibility: int,
    wait: int,
    release_ledger: bool,
    ledger: DynamoDBLedger | None,
    progress: Progress,
) -> dict[str, Any]:
    """Move messages from ``dlq`` to their source queue; delete each only after its send succeeded."""
    tally = _Redriven()
    stale = 0  # receives that only returned messages seen already (held ones whose visibility expired)
    try:
        while (limit is None or len(tally.seen) < limit) and stale < STALE_RECEIVES:
            want = 10 if limit is None else limit - len(tally.seen)
            batch = _receive(sqs, dlq.url, want, visibility, wait)
            if not batch:
                break
            fresh = tally.fresh(batch)
            stale = 0 if fresh else stale + 1
            by_target = tally.plan(fresh, lambda body: plan_redrive(body, dlq, resources, release_ledger), dry_run)
            for target, steps in by_target.items():
                _send_steps(sqs, dlq.url, target, steps, ledger, tally)
            progress.update(len(tally.seen))
    finally:
        _make_visible(sqs, dlq.url, tally.held.values())
        progress.close()
    return {
        "dlq": dlq.name,
        "dlq_url": dlq.url,
        "source_url": dlq.source_url,
        "dry_run": dry_run,
        "seen": len(tally.seen),
        "moved": 0 if dry_run else sum(tally.moved.values()),
        "would_move": sum(tally.moved.values()) if dry_run else 0,
        "targets": dict(tally.moved),
        "skipped": dict(tally.skipped),
        "errors": tally.errors,
    }


@dataclass
class _Redriven:
    """A redrive so far: the messages seen, held in the DLQ, moved (or would be) and skipped, and the errors."""

    seen: set[str] = field(default_factory=set)
    held: dict[str, str] = field(default_factory=dict)  # id -> latest receipt handle (made visible at the end)
    moved: Counter[str] = field(default_factory=Counter)  # by target queue name
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    errors: list[str] = field(default_factory=list)

    def hold(self, message: dict[str, Any]) -> None:
        self.held[message["MessageId"]] = message["ReceiptHandle"]

    def fresh(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages of ``batch`` not seen before; those held get their new receipt handle."""
        fresh = [m for m in batch if m["MessageId"] not in self.seen]
        for message in batch:
            if message["MessageId"] in self.held:
                self.hold(message)
        return fresh

    def plan(
        self, fresh: list[dict[str, Any]], step_for: Callable[[str], RedriveStep], dry_run: bool
    ) -> dict[str, list[tuple[dict[str, Any], RedriveStep]]]:
        """The messages to send, by target queue; skipped ones (and all of a dry run) are counted and held."""
        by_target: dict[str, list[tuple[dict[str, Any], RedriveStep]]] = {}
        for message in fresh:
            self.seen.add(message["MessageId"])
            step = step_for(message["Body"])
            if step.skip:
                self.skipped[step.skip] += 1
                self.hold(message)
            elif dry_run:
                self.moved[queue_name(step.target)] += 1
                self.hold(message)
            else:
                by_target.setdefault(step.target, []).append((message, step))
        return by_target


def _send_steps(
    sqs: Any,
    dlq_url: str,
    target: str,
    steps: list[tuple[dict[str, Any], RedriveStep]],
    ledger: DynamoDBLedger | None,
    tally: _Redriven,
) -> None:
    """Release the steps' ledger claims and send them to ``target``, then delete them from the DLQ (else hold them)."""
    try:
        ids = [i for _, step in steps for i in step.ledger_ids]
        if ids:
            if ledger is None:
                raise CliError("releasing ledger claims needs the delivery ledger table")
            ledger.release(ids)
        SqsSender(sqs, target).send_bodies([step.body for _, step in steps])
    except Exception as exc:
        tally.errors.append(f"send to {queue_name(target)} failed: {exc}")
        for message, _ in steps:
            tally.hold(message)
        return
    _delete(sqs, dlq_url, [m for m, _ in steps], tally.errors)
    tally.moved[queue_name(target)] += len(steps)


def _delete(sqs: Any, url: str, messages: list[dict[str, Any]], errors: list[str]) -> None:
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        response = sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
        )
        for failure in response.get("Failed", []):
            # Already sent: it will be redriven again later and deduplicated downstream.
            errors.append(f"delete of {chunk[int(failure['Id'])]['MessageId']} failed: {failure.get('Code')}")
