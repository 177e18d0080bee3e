"""Inspect and redrive the dead-letter queues, and replay the quarantine, from the command line.

``python -m local.replay [options] dlq list|show|redrive`` and ``... quarantine list|replay``.

Resources come from the same environment variables the functions read (``IMPRESSIONS_QUEUE_URL``,
``BATCHES_QUEUE_URL``, ``DESTINATION_QUEUES`` / ``DESTINATION_DLQS`` JSON maps, ``QUARANTINE_BUCKET``,
``PROFILES_TABLE``, ``DELIVERY_LEDGER_TABLE``, ``FLAGBRIDGE_CONFIG``), from a deployed stack's outputs
(``--stack NAME``) or from flags (flags win over the stack, the stack over the environment). boto3 honours
``AWS_ENDPOINT_URL``, so the same commands work against the local runner's moto server.

Dead-letter queues
    ``dlq list`` shows the approximate depth of each DLQ (impressions, batches, one per destination lane);
    ``dlq show`` peeks at messages without consuming them (reasons and sizes, bodies only with
    ``--show-bodies``); ``dlq redrive`` sends each message back to its source queue and deletes it from the
    DLQ only once that send succeeded. Redriving is safe to repeat: impressions are deduplicated by
    fingerprint, deliveries by the delivery ledger. Records a destination refused for good (written by the
    delivery function, already marked as decided in the ledger) are left in place unless
    ``--release-ledger`` releases their ledger claims and sends the original lane message again.

Quarantine
    ``quarantine list`` shows objects with item counts and a reasons histogram; ``quarantine replay``
    re-runs the items with the *current* configuration: Split impressions through the webhook's ingest,
    mParticle batches (malformed ones, and batches the data plan blocked) back onto the batches queue,
    processor messages onto the impressions queue, undeliverable lane messages onto their lane. Before a
    blocked batch is replayed its ``batch_id`` and ``context.data_plan.block_metadata`` are removed (as
    mParticle advises), event timestamps are kept, and only the events the plan blocked are replayed (the
    others were delivered already) under the stable ``source_request_id`` ``replay:<original batch key>``,
    so running the replay twice never delivers twice. ``--dry-run`` routes the batches in process (plan,
    testers, filters of the current configuration, in-memory senders) and prints per destination what
    would be sent. Replayed items move to ``replayed/<original key>``; items that still fail stay where
    they are and nothing new is written for them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

# Run as ``python -m local.replay`` from the repository: the shared package lives in the layer directory.
_SHARED = str(Path(__file__).resolve().parent.parent / "layers" / "shared")
if _SHARED not in sys.path:
    sys.path.insert(0, _SHARED)

from flagbridge.cdp.batch import BatchFormatError, normalize_batch  # noqa: E402
from flagbridge.config import BridgeConfig  # noqa: E402
from flagbridge.errors import FlagbridgeError, RequestError  # noqa: E402
from flagbridge.forwarding.ingest import QUARANTINE_SOURCE as BATCHES_SOURCE  # noqa: E402
from flagbridge.forwarding.ingest import queue_envelope  # noqa: E402
from flagbridge.forwarding.ledger import DynamoDBLedger  # noqa: E402
from flagbridge.forwarding.router_service import DECISION_LOG_SOURCE, RouterService  # noqa: E402
from flagbridge.forwarding.router_service import QUARANTINE_SOURCE as ROUTER_SOURCE  # noqa: E402
from flagbridge.impressions.ingest import QUARANTINE_SOURCE as IMPRESSIONS_SOURCE  # noqa: E402
from flagbridge.impressions.ingest import ingest_impressions  # noqa: E402
from flagbridge.impressions.models import ImpressionMessage  # noqa: E402
from flagbridge.profiles.processor import QUARANTINE_SOURCE as PROCESSOR_SOURCE  # noqa: E402
from flagbridge.profiles.store import DynamoDBProfileStore  # noqa: E402
from flagbridge.quarantine import InMemoryQuarantine  # noqa: E402
from flagbridge.queues import (  # noqa: E402
    MAX_MESSAGE_BYTES,
    InMemorySender,
    QueueRecord,
    SqsSender,
)
from flagbridge.settings import Settings  # noqa: E402

DELIVERY_SOURCE = "destination-delivery"
REPLAYED_PREFIX = "replayed/"
NOT_QUARANTINE = (REPLAYED_PREFIX.rstrip("/"), DECISION_LOG_SOURCE)
REPLAYABLE_SOURCES = (IMPRESSIONS_SOURCE, BATCHES_SOURCE, ROUTER_SOURCE, PROCESSOR_SOURCE, DELIVERY_SOURCE)
REPLAY_SOURCE = "replay"
SUMMARY_TEXT_MAX = 160
STALE_RECEIVES = 3  # a scan stops after this many receives in a row brought nothing new
_LANE_OUTPUT = re.compile(r"^(?P<lane>[A-Z][A-Za-z0-9]*)Destination(?P<dlq>DeadLetter)?QueueUrl$")
_STACK_OUTPUTS = {
    "ImpressionsQueueUrl": "IMPRESSIONS_QUEUE_URL",
    "BatchesQueueUrl": "BATCHES_QUEUE_URL",
    "QuarantineBucketName": "QUARANTINE_BUCKET",
    "ProfilesTableName": "PROFILES_TABLE",
    "DeliveryLedgerTableName": "DELIVERY_LEDGER_TABLE",
}


class CliError(FlagbridgeError):
    """A problem the user can fix (missing resource, bad argument); printed without a traceback."""


# --------------------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------------------


@dataclass
class Resources:
    """Where everything is: the functions' settings plus the DLQs of the impressions and batches queues."""

    settings: Settings
    dlqs: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> BridgeConfig:
        return self.settings.config

    def require_bucket(self) -> str:
        if not self.settings.quarantine_bucket:
            raise CliError("no quarantine bucket: set QUARANTINE_BUCKET, --bucket or --stack")
        return self.settings.quarantine_bucket


def stack_environment(cloudformation: Any, stack: str) -> tuple[dict[str, str], dict[str, str]]:
    """Environment variables (and the impressions/batches DLQ URLs) from a deployed stack's outputs."""
    try:
        outputs = cloudformation.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    except Exception as exc:
        raise CliError(f"cannot read the outputs of stack {stack!r} ({type(exc).__name__})") from exc
    env: dict[str, str] = {}
    lanes: dict[str, str] = {}
    lane_dlqs: dict[str, str] = {}
    dlqs: dict[str, str] = {}
    for output in outputs:
        key, value = output.get("OutputKey", ""), output.get("OutputValue", "")
        if key in _STACK_OUTPUTS:
            env[_STACK_OUTPUTS[key]] = value
        elif key == "ImpressionsDeadLetterQueueUrl":
            dlqs["impressions"] = value
        elif key == "BatchesDeadLetterQueueUrl":
            dlqs["batches"] = value
        elif match := _LANE_OUTPUT.match(key):
            lane = match["lane"][0].lower() + match["lane"][1:]
            (lane_dlqs if match["dlq"] else lanes)[lane] = value
    if lanes:
        env["DESTINATION_QUEUES"] = json.dumps(lanes)
    if lane_dlqs:
        env["DESTINATION_DLQS"] = json.dumps(lane_dlqs)
    return env, dlqs


def resolve_resources(args: argparse.Namespace, environ: Mapping[str, str], clients: Clients) -> Resources:
    env = dict(environ)
    dlqs: dict[str, str] = {}
    if args.stack:
        stack_env, dlqs = stack_environment(clients.get("cloudformation"), args.stack)
        env.update(stack_env)
    for flag, name in (
        ("config", "FLAGBRIDGE_CONFIG"),
        ("bucket", "QUARANTINE_BUCKET"),
        ("impressions_queue_url", "IMPRESSIONS_QUEUE_URL"),
        ("batches_queue_url", "BATCHES_QUEUE_URL"),
    ):
        value = getattr(args, flag, None)
        if value:
            env[name] = value
    return Resources(Settings.from_environ(env), dlqs)


class Clients:
    """boto3 clients, created on first use (endpoint and region from the usual AWS variables)."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def get(self, service: str) -> Any:
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=16)
            # boto3's default session: its endpoint and model data are loaded once per process.
            self._clients[service] = boto3.client(service, config=config)  # type: ignore[call-overload]
        return self._clients[service]


# --------------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------------


class Progress:
    """``label: n/total`` on stderr, at most every ``interval`` seconds, and once at the end."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None, interval: float = 0.5) -> None:
        self._label = label
        self._total = total
        self._stream = stream
        self._interval = interval
        self._last = 0.0
        self._done = 0
        self._shown = -1
        self._tty = bool(stream is not None and stream.isatty())

    def update(self, done: int) -> None:
        self._done = done
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._write(end="\r" if self._tty else "\n")

    def close(self) -> None:
        if self._shown != self._done or self._tty:
            self._write(end="\n")

    def _write(self, end: str) -> None:
        if self._stream is None:
            return
        total = "?" if self._total is None else str(self._total)
        self._stream.write(f"{self._label}: {self._done}/{total}{end}")
        self._stream.flush()
        self._shown = self._done


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain left-aligned text table."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)


def histogram_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{reason}={number}" for reason, number in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _short(value: Any, limit: int = SUMMARY_TEXT_MAX) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dumps(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --------------------------------------------------------------------------------------------------
# Dead-letter queues
# --------------------------------------------------------------------------------------------------


@dataclass
class DeadLetterQueue:
    name: str
    url: str
    source_url: str


def _queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def redrive_target(sqs: Any, queue_url: str) -> str:
    """The URL of the DLQ named by ``queue_url``'s redrive policy, or "" when it has none."""
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
        arn = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
        _, _, _, _, account, name = arn.split(":", 5)
        return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])
    except Exception:
        return ""


def dead_letter_source(sqs: Any, dlq_url: str) -> str:
    try:
        urls = sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get("queueUrls", [])
    except Exception:
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


def select_dlq(sqs: Any, resources: Resources, args: argparse.Namespace) -> DeadLetterQueue:
    known = discover_dlqs(sqs, resources)
    if args.queue_url:
        match = next((q for q in known if q.url == args.queue_url), None)
        dlq = match or DeadLetterQueue(_queue_name(args.queue_url), args.queue_url, "")
    elif args.name:
        dlq_or_none = next((q for q in known if args.name in (q.name, _queue_name(q.url))), None)
        if dlq_or_none is None:
            names = ", ".join(q.name for q in known) or "none found"
            raise CliError(f"unknown DLQ {args.name!r} (known: {names}); or pass --queue-url")
        dlq = dlq_or_none
    else:
        raise CliError("name a DLQ (see `dlq list`) or pass --queue-url")
    if getattr(args, "to", None):
        dlq.source_url = args.to
    elif not dlq.source_url:
        dlq.source_url = dead_letter_source(sqs, dlq.url)
    return dlq


def queue_depth(sqs: Any, url: str) -> dict[str, int]:
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
    if "message" in doc and "reason" in doc and "destination" in doc:
        message = _dict(doc.get("message"))
        return {
            **summary,
            "kind": "refused_delivery",
            "destination": doc.get("destination"),
            "reason": doc.get("reason"),
            "status": doc.get("status"),
            "response": _short(doc.get("response") or "", 120),
            "batch_key": doc.get("batch_key"),
            "events": len(doc.get("events") or message.get("split_events") or []),
        }
    if "destination" in doc and ("split_events" in doc or "batch" in doc):
        batch = _dict(doc.get("batch"))
        return {
            **summary,
            "kind": "lane_message",
            "destination": doc.get("destination"),
            "type": doc.get("type"),
            "batch_key": doc.get("batch_key"),
            "events": len(doc.get("split_events") or batch.get("events") or []),
        }
    if "impressions" in doc:
        return {
            **summary,
            "kind": "impressions",
            "request_id": doc.get("request_id"),
            "chunk": doc.get("chunk", 0),
            "impressions": len(doc.get("impressions") or []),
        }
    raw: Any = doc.get("batch") if "batch" in doc and "v" in doc else doc
    if isinstance(raw, dict) and ("events" in raw or "user_identities" in raw):
        return {
            **summary,
            "kind": "batch",
            "ingest": doc.get("source") if raw is not doc else "raw",
            "request_id": doc.get("request_id"),
            "source_request_id": raw.get("source_request_id"),
            "batch_id": raw.get("batch_id"),
            "events": len(raw.get("events") or []),
        }
    return {**summary, "kind": "unknown", "fields": sorted(doc)[:10]}


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
    return RedriveStep(target, _dumps(message), ids)


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
    seen: set[str] = set()
    held: dict[str, str] = {}  # messages left in the DLQ: id -> latest receipt handle (made visible at the end)
    moved: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    errors: list[str] = []
    stale = 0  # receives that only returned messages seen already (held ones whose visibility expired)
    try:
        while (limit is None or len(seen) < limit) and stale < STALE_RECEIVES:
            want = 10 if limit is None else limit - len(seen)
            batch = _receive(sqs, dlq.url, want, visibility, wait)
            if not batch:
                break
            fresh = [m for m in batch if m["MessageId"] not in seen]
            for message in batch:
                if message["MessageId"] in held:
                    held[message["MessageId"]] = message["ReceiptHandle"]
            stale = 0 if fresh else stale + 1
            by_target: dict[str, list[tuple[dict[str, Any], RedriveStep]]] = {}
            for message in fresh:
                seen.add(message["MessageId"])
                step = plan_redrive(message["Body"], dlq, resources, release_ledger)
                if step.skip:
                    skipped[step.skip] += 1
                    held[message["MessageId"]] = message["ReceiptHandle"]
                elif dry_run:
                    moved[_queue_name(step.target)] += 1
                    held[message["MessageId"]] = message["ReceiptHandle"]
                else:
                    by_target.setdefault(step.target, []).append((message, step))
            for target, steps in by_target.items():
                try:
                    ids = [i for _, step in steps for i in step.ledger_ids]
                    if ids:
                        if ledger is None:
                            raise CliError("releasing ledger claims needs the delivery ledger table")
                        ledger.release(ids)
                    SqsSender(sqs, target).send_bodies([step.body for _, step in steps])
                except Exception as exc:
                    errors.append(f"send to {_queue_name(target)} failed: {exc}")
                    for message, _ in steps:
                        held[message["MessageId"]] = message["ReceiptHandle"]
                    continue
                _delete(sqs, dlq.url, [m for m, _ in steps], errors)
                moved[_queue_name(target)] += len(steps)
            progress.update(len(seen))
    finally:
        _make_visible(sqs, dlq.url, held.values())
        progress.close()
    return {
        "dlq": dlq.name,
        "dlq_url": dlq.url,
        "source_url": dlq.source_url,
        "dry_run": dry_run,
        "seen": len(seen),
        "moved": 0 if dry_run else sum(moved.values()),
        "would_move": sum(moved.values()) if dry_run else 0,
        "targets": dict(moved),
        "skipped": dict(skipped),
        "errors": errors,
    }


def _delete(sqs: Any, url: str, messages: list[dict[str, Any]], errors: list[str]) -> None:
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        response = sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
        )
        for failure in response.get("Failed", []):
            # Already sent: it will be redriven again later and deduplicated downstream.
            errors.append(f"delete of {chunk[int(failure['Id'])]['MessageId']} failed: {failure.get('Code')}")


# --------------------------------------------------------------------------------------------------
# Quarantine: listing
# --------------------------------------------------------------------------------------------------


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
            except Exception as exc:
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
        document = json.loads(body)
        return document if isinstance(document, dict) else {"items": []}

    with ThreadPoolExecutor(max_workers=8) as pool:
        for done, (entry, document) in enumerate(zip(objects, pool.map(fetch, objects), strict=True), start=1):
            yield entry, document
            progress.update(done)
    progress.close()


def item_reason(item: Any, document: Mapping[str, Any]) -> str:
    if not isinstance(item, dict):
        return str(document.get("reason") or "unknown")
    reason = str(item.get("reason") or document.get("reason") or "unknown")
    return f"{item['kind']}:{reason}" if item.get("kind") else reason


# --------------------------------------------------------------------------------------------------
# Quarantine: replay
# --------------------------------------------------------------------------------------------------


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
        items = _list(document.get("items"))
        plan = ObjectPlan()
        if source == IMPRESSIONS_SOURCE:
            self._plan_impressions(key, document, items, plan)
            return plan
        for position, item in enumerate(items):
            outcome = ItemOutcome(
                key, position, item.get("index") if isinstance(item, dict) else position, source, "", "still_failing"
            )
            outcome.reason = item_reason(item, document)
            payload = item.get("item") if isinstance(item, dict) else None
            if source in (BATCHES_SOURCE, ROUTER_SOURCE):
                self._plan_batch_item(key, document, item if isinstance(item, dict) else {}, payload, outcome, plan)
            elif source == PROCESSOR_SOURCE:
                self._plan_processor_item(payload, outcome, plan)
            elif source == DELIVERY_SOURCE:
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
                key, position, item.get("index") if isinstance(item, dict) else position, IMPRESSIONS_SOURCE, "", ""
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
        context = _dict(batch.get("context"))
        plan_tag = _dict(context.get("data_plan"))
        metadata = _dict(plan_tag.get("block_metadata"))
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
            if doc.get("source") == ROUTER_SOURCE
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
            outcome.detail = _short(str(exc.errors(include_url=False, include_input=False)[:2]))
            return
        outcome.status, outcome.target = "replayed", "impressions"
        self.impressions += len(message.impressions)
        plan.sends.append(Send("impressions", self._settings.impressions_queue_url, _dumps(payload)))

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
        body = payload if isinstance(payload, str) else _dumps(payload)
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
    s3.put_object(Bucket=bucket, Key=target, Body=_dumps(record).encode(), ContentType="application/json")
    if remaining:
        kept = {**document, "items": remaining}
        s3.put_object(Bucket=bucket, Key=key, Body=_dumps(kept).encode(), ContentType="application/json")
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
                _send(sqs, plan.sends)
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
    statuses = Counter(o.status for o in outcomes)
    return {
        "dry_run": dry_run,
        "objects": len(objects),
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


def _send(sqs: Any, sends: Sequence[Send]) -> None:
    by_url: dict[str, list[str]] = {}
    for send in sends:
        if not send.url:
            variable = {"impressions": "IMPRESSIONS_QUEUE_URL", "batches": "BATCHES_QUEUE_URL"}.get(send.queue, "")
            raise CliError(f"no {send.queue} queue URL ({variable or 'DESTINATION_QUEUES'}, or --stack)")
        by_url.setdefault(send.url, []).append(send.body)
    for url, bodies in by_url.items():
        SqsSender(sqs, url).send_bodies(bodies)


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


def _since(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local.replay",
        description="Inspect and redrive flagbridge's dead-letter queues; replay its quarantine.",
    )
    parser.add_argument("--stack", help="read queue URLs, bucket and tables from this CloudFormation stack's outputs")
    parser.add_argument("--config", help="configuration file (default: FLAGBRIDGE_CONFIG, else the packaged one)")
    parser.add_argument("--bucket", help="quarantine bucket (default: QUARANTINE_BUCKET)")
    parser.add_argument("--impressions-queue-url", help="default: IMPRESSIONS_QUEUE_URL")
    parser.add_argument("--batches-queue-url", help="default: BATCHES_QUEUE_URL")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    groups = parser.add_subparsers(dest="group", required=True)

    dlq = groups.add_parser("dlq", help="dead-letter queues").add_subparsers(dest="command", required=True)
    dlq.add_parser("list", help="approximate depth of every DLQ")
    for name, text in (("show", "peek at messages (not consumed)"), ("redrive", "move messages back to the source")):
        command = dlq.add_parser(name, help=text)
        command.add_argument("name", nargs="?", help="impressions, batches or a destination lane (see `dlq list`)")
        command.add_argument("--queue-url", help="the DLQ's URL instead of a name")
        command.add_argument("--limit", type=int, default=10 if name == "show" else None, help="at most N messages")
        command.add_argument("--wait-seconds", type=int, default=1, help="SQS long-poll wait per receive (0-20)")
        command.add_argument(
            "--visibility-timeout", type=int, default=60, help="seconds a received message stays hidden meanwhile"
        )
        if name == "show":
            command.add_argument("--show-bodies", action="store_true", help="print full bodies (personal data!)")
        else:
            command.add_argument("--dry-run", action="store_true", help="count what would move; move nothing")
            command.add_argument("--to", help="send to this queue URL instead of the DLQ's source queue")
            command.add_argument(
                "--release-ledger",
                action="store_true",
                help="also resend records a destination refused (releases their delivery-ledger claims)",
            )

    quarantine = groups.add_parser("quarantine", help="the quarantine bucket").add_subparsers(
        dest="command", required=True
    )
    for name, text in (("list", "objects, item counts and reasons"), ("replay", "re-run items with today's config")):
        command = quarantine.add_parser(name, help=text)
        command.add_argument("--source", action="append", help="only this source prefix (repeatable)")
        command.add_argument("--since", type=_since, help="only objects from this day on (YYYY-MM-DD)")
        command.add_argument("--key", action="append", help="only this object key (repeatable)")
        if name == "replay":
            command.add_argument("--dry-run", action="store_true", help="route in process and report; send nothing")
            command.add_argument("--keep", action="store_true", help="leave replayed objects in place")
            command.add_argument(
                "--whole-batch",
                action="store_true",
                help="replay every event of a blocked batch, not only the blocked ones (may duplicate)",
            )
    return parser


def cmd_dlq_list(clients: Clients, resources: Resources, args: argparse.Namespace, out: TextIO) -> dict[str, Any]:
    sqs = clients.get("sqs")
    rows: list[dict[str, Any]] = []
    for dlq in discover_dlqs(sqs, resources):
        rows.append({"name": dlq.name, "url": dlq.url, "source_url": dlq.source_url, **queue_depth(sqs, dlq.url)})
    if not args.json:
        if not rows:
            out.write("no DLQ found (set the queue variables, or pass --stack)\n")
        else:
            out.write(
                table(
                    [
                        (r["name"], r["messages"], r["in_flight"], r["delayed"], _queue_name(r["source_url"]) or "?")
                        for r in rows
                    ],
                    ("dlq", "messages", "in flight", "delayed", "redrives to"),
                )
                + "\n"
            )
    return {"dlqs": rows}


def cmd_dlq_show(clients: Clients, resources: Resources, args: argparse.Namespace, out: TextIO) -> dict[str, Any]:
    sqs = clients.get("sqs")
    dlq = select_dlq(sqs, resources, args)
    messages = [
        message_summary(m, args.show_bodies)
        for m in peek(sqs, dlq, args.limit, args.visibility_timeout, args.wait_seconds)
    ]
    if not args.json:
        out.write(f"{dlq.name} ({dlq.url}): {len(messages)} message(s) shown, none consumed\n")
        skip = {"message_id", "sent_at", "receives", "bytes", "kind", "body"}
        rows = [
            (
                m["message_id"],
                m["sent_at"] or "",
                m["receives"],
                m["bytes"],
                m["kind"],
                " ".join(f"{k}={_short(v, 60)}" for k, v in m.items() if k not in skip and v not in (None, "")),
            )
            for m in messages
        ]
        out.write(table(rows, ("message id", "sent", "receives", "bytes", "kind", "details")) + "\n")
        for m in messages:
            if "body" in m:
                out.write(f"\n{m['message_id']}:\n{m['body']}\n")
    return {"dlq": dlq.name, "url": dlq.url, "messages": messages}


def cmd_dlq_redrive(clients: Clients, resources: Resources, args: argparse.Namespace, out: TextIO) -> dict[str, Any]:
    sqs = clients.get("sqs")
    dlq = select_dlq(sqs, resources, args)
    total = queue_depth(sqs, dlq.url)["messages"]
    if args.limit is not None:
        total = min(total, args.limit)
    ledger_table = resources.settings.delivery_ledger_table
    if args.release_ledger and not ledger_table:
        raise CliError("--release-ledger needs the delivery ledger table: set DELIVERY_LEDGER_TABLE or --stack")
    ledger = DynamoDBLedger(clients.get("dynamodb"), ledger_table) if args.release_ledger else None
    progress = Progress(f"redrive {dlq.name}", total, None if args.no_progress else sys.stderr)
    result = redrive(
        sqs,
        dlq,
        resources,
        dry_run=args.dry_run,
        limit=args.limit,
        visibility=args.visibility_timeout,
        wait=args.wait_seconds,
        release_ledger=args.release_ledger,
        ledger=ledger,
        progress=progress,
    )
    if not args.json:
        verb, number = ("would move", result["would_move"]) if args.dry_run else ("moved", result["moved"])
        targets = ", ".join(f"{n} to {q}" for q, n in result["targets"].items()) or "nothing"
        out.write(f"{dlq.name}: {result['seen']} message(s) seen, {verb} {number} ({targets})\n")
        for reason, number in result["skipped"].items():
            out.write(f"  left in the DLQ: {number}: {reason}\n")
        for error in result["errors"]:
            out.write(f"  error: {error}\n")
    return result


def cmd_quarantine_list(
    clients: Clients, resources: Resources, args: argparse.Namespace, out: TextIO
) -> dict[str, Any]:
    s3 = clients.get("s3")
    bucket = resources.require_bucket()
    objects = list_quarantine(s3, bucket, args.source, args.since, args.key)
    progress = Progress("quarantine", len(objects), None if args.no_progress else sys.stderr)
    rows: list[dict[str, Any]] = []
    overall: Counter[str] = Counter()
    for entry, document in load_documents(s3, bucket, objects, progress):
        items = _list(document.get("items"))
        reasons = Counter(item_reason(item, document) for item in items)
        overall.update(reasons)
        rows.append(
            {"key": entry.key, "source": entry.source, "bytes": entry.size, "items": len(items), "reasons": reasons}
        )
    if not args.json:
        if rows:
            out.write(
                table(
                    [(r["key"], r["items"], r["bytes"], histogram_text(r["reasons"])) for r in rows],
                    ("key", "items", "bytes", "reasons"),
                )
                + "\n\n"
            )
        out.write(f"{len(rows)} object(s), {sum(r['items'] for r in rows)} item(s)\n")
        if overall:
            out.write(table(sorted(overall.items(), key=lambda kv: (-kv[1], kv[0])), ("reason", "items")) + "\n")
    return {
        "bucket": bucket,
        "objects": [{**r, "reasons": dict(r["reasons"])} for r in rows],
        "reasons": dict(overall),
    }


def cmd_quarantine_replay(
    clients: Clients, resources: Resources, args: argparse.Namespace, out: TextIO
) -> dict[str, Any]:
    bucket = resources.require_bucket()
    sources = args.source or list(REPLAYABLE_SOURCES)
    objects = list_quarantine(clients.get("s3"), bucket, sources, args.since, args.key)
    progress = Progress("replay", len(objects), None if args.no_progress else sys.stderr)
    result = replay_quarantine(
        clients,
        resources,
        objects,
        dry_run=args.dry_run,
        keep=args.keep,
        whole_batch=args.whole_batch,
        progress=progress,
    )
    if not args.json:
        out.write(_replay_text(result))
    return result


def _replay_text(result: dict[str, Any]) -> str:
    dry = result["dry_run"]
    verb = "would replay" if dry else "replayed"
    lines = [
        ("Quarantine replay (dry run: nothing sent, nothing moved)" if dry else "Quarantine replay"),
        f"{result['objects']} object(s), {result['items']} item(s): {verb} {result['replayed']}, "
        f"still failing {result['still_failing']}, not replayable {result['not_replayable']}",
    ]
    if result["by_source"]:
        lines += [
            "",
            table(
                [
                    (s, c.get("replayed", 0), c.get("still_failing", 0), c.get("not_replayable", 0))
                    for s, c in result["by_source"].items()
                ],
                ("source", verb, "still failing", "not replayable"),
            ),
        ]
    if result["destinations"]:
        lines += [
            "",
            "Per destination, routed in process with the current configuration"
            + (" (what the router would send)" if dry else " (what the router will send)"),
            table(
                [
                    (n, d["messages"], d["events"], histogram_text(d["reasons"]))
                    for n, d in result["destinations"].items()
                ],
                ("destination", "messages", "events", "decisions"),
            ),
        ]
    if result["queued"]:
        queued = ", ".join(f"{n} to {q}" for q, n in sorted(result["queued"].items()))
        lines += ["", f"Queue messages {'that would be sent' if dry else 'sent'}: {queued}"]
        if result["impressions"]:
            lines.append(f"Impressions {'to re-enqueue' if dry else 're-enqueued'}: {result['impressions']}")
    if result["objects_moved"]:
        lines.append(
            "Objects recorded under replayed/: " + ", ".join(f"{n} {how}" for how, n in result["objects_moved"].items())
        )
    if result["kept"]:
        lines += [
            "",
            "Left in the quarantine",
            table(
                [(k["key"], k["index"], k["reason"], k["status"], k["detail"]) for k in result["kept"]],
                ("key", "index", "reason", "status", "why"),
            ),
        ]
    lines += [f"error: {error}" for error in result["errors"]]
    return "\n".join(lines) + "\n"


COMMANDS: dict[tuple[str, str], Callable[[Clients, Resources, argparse.Namespace, TextIO], dict[str, Any]]] = {
    ("dlq", "list"): cmd_dlq_list,
    ("dlq", "show"): cmd_dlq_show,
    ("dlq", "redrive"): cmd_dlq_redrive,
    ("quarantine", "list"): cmd_quarantine_list,
    ("quarantine", "replay"): cmd_quarantine_replay,
}


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    clients: Clients | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed or with errors, 2 usage)."""
    args = build_parser().parse_args(argv)
    stream = out or sys.stdout
    clients = clients or Clients()
    try:
        resources = resolve_resources(args, os.environ if environ is None else environ, clients)
        result = COMMANDS[(args.group, args.command)](clients, resources, args, stream)
    except FlagbridgeError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except (BotoCoreError, ClientError) as exc:
        sys.stderr.write(f"AWS error: {exc}\n")
        return 1
    if args.json:
        stream.write(json.dumps(result, indent=2, default=str, ensure_ascii=False) + "\n")
    return 1 if result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
