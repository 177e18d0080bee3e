"""Performance benchmark: ``make bench`` (``python -m local.bench``).

Every figure is a ratio against a *floor measured in the same run*, so the noise of a shared machine
mostly cancels out. Timed figures take the median of several runs after a warm-up, floor and measured
runs interleaved. Each figure runs in its own subprocess (fresh interpreter, no state shared with the
others) that also reports its peak memory (``ru_maxrss``).

=====================  ========================================================  =================================
figure                 measured                                                  floor / target
=====================  ========================================================  =================================
``ingest_cpu``         ``impressions_webhook.lambda_handler`` CPU time for a      ``json.loads(gzip.decompress(b))``
                       gzipped 10,000-impression body (decode, validate, chunk,   of the same bytes; <= 3x
                       enqueue to an in-memory sender)
``profile_writes``     DynamoDB write requests per SQS batch (real                distinct (user, flag) pairs of
                       ``DynamoDBProfileStore`` on a counting fake client)        the batch; = 1.0
``processor_cpu``      ``impressions_processor.lambda_handler`` CPU time per      the ingest floor, per impression;
                       impression, store calls faked                              <= 3x
``cold_start.<fn>``    import time of each function's handler module in a        ``import boto3`` alone; <= 1.5x
                       fresh interpreter with Lambda's ``sys.path``: only boto3
                       and the layer's packages (see :class:`ProbeInterpreter`)
``cold_start.shared``  what every function imports after boto3, stage by stage    report only
                       (pydantic + config models, Powertools, event handler)
``router_cpu``         events/s through ``route_batch`` (plan validation,         ``json.loads`` of the same
                       test-user resolution, filters, 5 destinations)             batches; <= 4x
``split_requests``     HTTP requests the real ``DeliveryService`` makes for N     max(ceil(N / 5000), bytes / 1 MB);
                       Split events delivered together (fake HTTP client)         = 1.0, every body < 1 MB
``split_requests.lane``  the same N events as the router writes them (3 per       that floor summed per SQS batch
                       message), in SQS batches of the Split lane's               (a request cannot span two
                       ``BatchSize`` (template.yaml)                              invocations); = 1.0, < 1 MB
``local_e2e``          impressions/s from the HTTP POST to the profile being      report only
                       visible, on the local runner (``LocalBridge``, moto)
``layer_size``         unzipped size of the built SharedLayer (arm64)             <= 20 MB, no boto3/botocore
=====================  ========================================================  =================================

Usage::

    python -m local.bench                  # full run: table on stdout, report in build/bench.json
    python -m local.bench --smoke          # tiny inputs, a few seconds (part of `make test`)
    python -m local.bench --only ingest_cpu --only router_cpu
    python -m local.bench --figure ingest_cpu --result out.json   # one figure in this process (internal)

The exit status is 1 when a target is missed (0 in ``--smoke`` mode, where figures are not meaningful).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import hashlib
import importlib.util
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "layers" / "shared"
CONFIG_PATH = SHARED / "config" / "flagbridge.yaml"
PAYLOADS = ROOT / "events" / "payloads"
DEFAULT_OUTPUT = ROOT / "build" / "bench.json"
PYCACHE = ROOT / "build" / "bench-pycache"
LAMBDA_SITES = ROOT / "build" / "bench-lambda-site"
LAYER_DIR = ROOT / ".aws-sam" / "build" / "SharedLayer"
FUNCTIONS = (
    "impressions_webhook",
    "impressions_processor",
    "mparticle_ingest",
    "cdp_router",
    "destination_delivery",
    "profile_api",
)
WEBHOOK_TOKEN = "bench-webhook-token"
BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SQS_BATCH_SIZE = 10  # template.yaml: BatchSize of the impressions queue's event source
LAYER_LIMIT_BYTES = 20_000_000
SPLIT_MAX_EVENTS = 5000
SPLIT_MAX_BYTES = 1_000_000
CHILD_TIMEOUT_SECONDS = 240


# ---- sizes and results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """Input sizes and repetitions of one benchmark run."""

    impressions: int = 10_000
    users: int = 1_000
    flags: int = 10
    runs: int = 15
    warmup: int = 1
    router_batches: int = 2_000
    split_events: int = 12_345
    e2e_impressions: int = 2_000
    e2e_runs: int = 3
    cold_runs: int = 9


FULL = Sizes()
SMOKE = Sizes(
    impressions=120,
    users=15,
    flags=4,
    runs=2,
    warmup=0,
    router_batches=10,
    split_events=7,
    e2e_impressions=12,
    e2e_runs=1,
    cold_runs=1,
)


@dataclass
class Figure:
    """One line of the report."""

    name: str
    title: str
    measured: float | None
    floor: float | None
    ratio: float | None
    unit: str
    target: str
    passed: bool | None
    details: dict[str, Any]
    peak_rss_mb: float | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pass"] = data.pop("passed")
        return data


def at_most(ratio: float | None, limit: float) -> bool | None:
    return None if ratio is None else ratio <= limit


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


# ---- timing ------------------------------------------------------------------------------------------------


def paired_medians(
    floor: Callable[[], object],
    measured: Callable[[], object],
    runs: int,
    warmup: int,
    clock: Callable[[], float] = time.process_time,
) -> tuple[float, float, list[float], list[float]]:
    """Median seconds of ``floor`` and ``measured``, run alternately after ``warmup`` rounds of each."""
    for _ in range(warmup):
        floor()
        measured()
    floors: list[float] = []
    measures: list[float] = []
    for _ in range(runs):
        for fn, samples in ((floor, floors), (measured, measures)):
            gc.collect()
            started = clock()
            fn()
            samples.append(clock() - started)
    return statistics.median(floors), statistics.median(measures), floors, measures


def _ms(values: Sequence[float]) -> list[float]:
    return [round(v * 1000, 3) for v in values]


# ---- fixtures ----------------------------------------------------------------------------------------------


def bench_environment() -> None:
    """Environment of the in-process figures: packaged config, no AWS, Powertools as in Lambda."""
    os.environ.update(
        {
            "FLAGBRIDGE_CONFIG": str(CONFIG_PATH),
            "FLAGBRIDGE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "POWERTOOLS_SERVICE_NAME": "flagbridge",
            "POWERTOOLS_METRICS_NAMESPACE": "Flagbridge",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
    )
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    if str(SHARED) not in sys.path:
        sys.path.insert(0, str(SHARED))


class BenchContext:
    """The Lambda context attributes handlers and Powertools read."""

    function_name = "flagbridge-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:flagbridge-bench"
    aws_request_id = "bench-request"
    log_group_name = "/aws/lambda/flagbridge-bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_handler(function: str) -> ModuleType:
    """Import ``functions/<name>/<name>.py`` as Lambda does (module named after the file)."""
    path = ROOT / "functions" / function / f"{function}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{function}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_impressions(count: int, users: int, flags: int, seed: int = 7, key_prefix: str = "u") -> list[dict[str, Any]]:
    """Realistic Split webhook impressions: a few testers, anonymous keys, repeated (user, flag) pairs."""
    rng = random.Random(seed)
    labels = ("default rule", "in segment beta_users", "targeting rule matched", "default rule")
    items = []
    for index in range(count):
        user = rng.randrange(users)
        if user % 97 == 0:
            key = f"qa-bot-0{user % 2 + 1}"
        elif user % 5 == 0:
            key = f"anon-{key_prefix}{user:06x}"
        else:
            key = f"{key_prefix}-{user:06d}"
        flag = rng.randrange(flags)
        items.append(
            {
                "key": key,
                "split": f"flag_{flag:02d}",
                "environmentId": "env-prod-0001",
                "environmentName": "Production",
                "treatment": rng.choice(("on", "off", "v2")),
                "time": BASE_TIME_MS + index * 37,
                "bucketingKey": None,
                "label": rng.choice(labels),
                "machineName": f"web-{user % 8}",
                "machineIp": f"10.0.4.{user % 250}",
                "splitVersionNumber": 1_767_000_000_000 + flag,
                "sdk": "python",
                "sdkVersion": "10.5.1",
                "properties": '{"plan":"pro","seats":3}' if index % 10 == 0 else None,
            }
        )
    return items


def gzipped_body(items: list[dict[str, Any]]) -> bytes:
    return gzip.compress(json.dumps(items, separators=(",", ":")).encode(), compresslevel=6)


def webhook_event(body: bytes) -> dict[str, Any]:
    """An API Gateway event for Split's POST: gzip, token in the URL, no Content-Encoding header."""
    from local.apigw import http_api_event

    return http_api_event(
        method="POST",
        path="/split/impressions",
        route_key="POST /split/impressions",
        raw_query=f"token={WEBHOOK_TOKEN}",
        headers={"content-type": "application/json", "user-agent": "SplitSDK-bench"},
        body=body,
        request_id="bench-request-0001",
    )


def queued_bodies(items: list[dict[str, Any]]) -> list[str]:
    """The SQS message bodies the webhook enqueues for ``items``."""
    from flagbridge.impressions.ingest import ingest_impressions
    from flagbridge.quarantine import InMemoryQuarantine
    from flagbridge.queues import InMemorySender
    from flagbridge.settings import get_settings

    sender = InMemorySender()
    ingest_impressions(
        items,
        request_id="bench-request-0001",
        config=get_settings().config,
        sender=sender,
        quarantine=InMemoryQuarantine(),
        now_ms=BASE_TIME_MS,
    )
    return sender.bodies


def sqs_batches(bodies: list[str]) -> list[dict[str, Any]]:
    """SQS events of at most 10 records, as the event source mapping delivers them."""
    from local.apigw import sqs_event

    arn = "arn:aws:sqs:us-east-1:123456789012:flagbridge-impressions"
    return [
        sqs_event(
            arn, [(f"msg-{start + i:05d}", body, 1) for i, body in enumerate(bodies[start : start + SQS_BATCH_SIZE])]
        )
        for start in range(0, len(bodies), SQS_BATCH_SIZE)
    ]


class NullProfileStore:
    """ProfileStore whose calls cost nothing: nothing stored, every write succeeds."""

    def load(self, pairs: Sequence[tuple[str, str]], users: Sequence[str]) -> tuple[dict[Any, Any], dict[str, Any]]:
        return {}, {}

    def save(self, state: Any, mark: Any = None) -> Any:
        return state

    def save_mark(self, user_id: str, mark: Any) -> None:
        return None

    def read_profile(self, user_id: str) -> None:
        return None


class _ConditionalCheckFailed(Exception):
    pass


class _TransactionCanceled(Exception):
    def __init__(self, reasons: list[dict[str, str]]) -> None:
        super().__init__("transaction cancelled")
        self.response = {"CancellationReasons": reasons}


class CountingDynamoDB:
    """The DynamoDB client calls ``DynamoDBProfileStore`` makes, kept in a dict and counted per operation."""

    WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")

    class exceptions:  # mirrors botocore's client.exceptions
        ConditionalCheckFailedException = _ConditionalCheckFailed
        TransactionCanceledException = _TransactionCanceled

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: dict[str, int] = {}
        # The processor writes from several threads; an unlocked += would lose counts under load.
        self._lock = threading.Lock()

    def _count(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1

    @property
    def write_requests(self) -> int:
        return sum(self.calls.get(name, 0) for name in self.WRITES)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self._count("batch_get_item")
        responses: dict[str, list[dict[str, Any]]] = {}
        for table, request in RequestItems.items():
            found = [self.items.get((key["pk"]["S"], key["sk"]["S"])) for key in request["Keys"]]
            responses[table] = [item for item in found if item is not None]
        return {"Responses": responses, "UnprocessedKeys": {}}

    def _check(self, put: dict[str, Any]) -> bool:
        item = put["Item"]
        current = self.items.get((item["pk"]["S"], item["sk"]["S"]))
        condition = put.get("ConditionExpression")
        if condition == "attribute_not_exists(pk)":
            return current is None
        if condition == "rev = :rev":
            return current is not None and current["rev"] == put["ExpressionAttributeValues"][":rev"]
        return True

    def put_item(self, **put: Any) -> dict[str, Any]:
        self._count("put_item")
        with self._lock:  # a conditional write is atomic in DynamoDB
            if not self._check(put):
                raise _ConditionalCheckFailed()
            item = put["Item"]
            self.items[(item["pk"]["S"], item["sk"]["S"])] = item
        return {}

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self._count("transact_write_items")
        puts = [entry["Put"] for entry in TransactItems]
        with self._lock:
            if not all(self._check(put) for put in puts):
                raise _TransactionCanceled([{"Code": "ConditionalCheckFailed"}])
            for put in puts:
                item = put["Item"]
                self.items[(item["pk"]["S"], item["sk"]["S"])] = item
        return {}


def replace_runtime(**adapters: Callable[..., Any]) -> None:
    """Point ``flagbridge.runtime``'s adapter factories at in-memory fakes."""
    from flagbridge import runtime

    runtime.reset()
    for name, factory in adapters.items():
        setattr(runtime, name, factory)


def mparticle_batches(count: int, now_ms: int) -> list[str]:
    """``count`` JSON mParticle batches made from ``events/payloads/mparticle_*.json`` with unique ids."""
    samples = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(PAYLOADS.glob("mparticle_*.json"))]
    batches = []
    for index in range(count):
        document = json.loads(json.dumps(samples[index % len(samples)]))
        for field in ("source_request_id", "batch_id"):
            if field in document:
                document[field] = f"bench-{index:06d}"
        identities = document.get("user_identities")
        if (
            isinstance(identities, dict)
            and "customer_id" in identities
            and not identities["customer_id"].startswith("qa")
        ):
            identities["customer_id"] = f"u-{index:06d}"
        if "timestamp_unixtime_ms" in document:
            document["timestamp_unixtime_ms"] = now_ms - 60_000
        for number, event in enumerate(document.get("events", [])):
            data = event.get("data", {})
            if "source_message_id" in data:
                data["source_message_id"] = f"bench-{index:06d}-{number}"
            if "timestamp_unixtime_ms" in data:
                data["timestamp_unixtime_ms"] = now_ms - 60_000 + number
        batches.append(json.dumps(document, separators=(",", ":")))
    return batches


# ---- figures -------------------------------------------------------------------------------------------------


def figure_ingest_cpu(sizes: Sizes) -> list[Figure]:
    """Webhook handler CPU time for one gzipped body, against gunzip + json.loads of the same bytes."""
    bench_environment()
    from flagbridge.quarantine import InMemoryQuarantine
    from flagbridge.queues import InMemorySender

    sender, quarantine = InMemorySender(), InMemoryQuarantine()
    replace_runtime(
        impressions_sender=lambda: sender, quarantine=lambda: quarantine, webhook_token=lambda: WEBHOOK_TOKEN
    )
    handler = load_handler("impressions_webhook")
    items = make_impressions(sizes.impressions, sizes.users, sizes.flags)
    body = gzipped_body(items)
    event = webhook_event(body)
    context = BenchContext()

    def floor() -> None:
        json.loads(gzip.decompress(body))

    def measured() -> None:
        sender.bodies.clear()
        response = handler.lambda_handler(event, context)
        if response["statusCode"] != 200:
            raise RuntimeError(f"the webhook answered {response['statusCode']}: {response.get('body')}")

    floor_s, measured_s, floors, measures = paired_medians(floor, measured, sizes.runs, sizes.warmup)
    summary = json.loads(handler.lambda_handler(event, context)["body"])
    if summary["accepted"] != len(items):
        raise RuntimeError(f"the webhook accepted {summary['accepted']} of {len(items)} impressions")
    ratio = measured_s / floor_s
    return [
        Figure(
            "ingest_cpu",
            "ingest CPU (webhook, 10k gzipped)" if sizes == FULL else "ingest CPU (webhook)",
            round(measured_s * 1000, 2),
            round(floor_s * 1000, 2),
            round(ratio, 2),
            "ms",
            "<= 3x",
            at_most(ratio, 3.0),
            {
                "impressions": len(items),
                "gzipped_bytes": len(body),
                "json_bytes": len(gzip.decompress(body)),
                "messages": len(sender.bodies),
                "floor_runs_ms": _ms(floors),
                "measured_runs_ms": _ms(measures),
            },
        )
    ]


def figure_processor_cpu(sizes: Sizes) -> list[Figure]:
    """Processor handler CPU time per impression (store faked), against the ingest floor per impression."""
    bench_environment()
    from flagbridge.quarantine import InMemoryQuarantine

    quarantine = InMemoryQuarantine()
    store = NullProfileStore()
    replace_runtime(profile_store=lambda: store, quarantine=lambda: quarantine)
    handler = load_handler("impressions_processor")
    items = make_impressions(sizes.impressions, sizes.users, sizes.flags)
    body = gzipped_body(items)
    events = sqs_batches(queued_bodies(items))
    context = BenchContext()

    def floor() -> None:
        json.loads(gzip.decompress(body))

    def measured() -> None:
        for event in events:
            response = handler.lambda_handler(event, context)
            if response["batchItemFailures"]:
                raise RuntimeError(f"the processor failed records: {response['batchItemFailures']}")

    floor_s, measured_s, floors, measures = paired_medians(floor, measured, sizes.runs, sizes.warmup)
    per_floor = floor_s / len(items)
    per_measured = measured_s / len(items)
    ratio = per_measured / per_floor
    return [
        Figure(
            "processor_cpu",
            "processor CPU per impression",
            round(per_measured * 1e6, 2),
            round(per_floor * 1e6, 2),
            round(ratio, 2),
            "µs/impression",
            "<= 3x",
            at_most(ratio, 3.0),
            {
                "impressions": len(items),
                "sqs_batches": len(events),
                "messages": sum(len(event["Records"]) for event in events),
                "floor_runs_ms": _ms(floors),
                "measured_runs_ms": _ms(measures),
            },
        )
    ]


def figure_profile_writes(sizes: Sizes) -> list[Figure]:
    """DynamoDB write requests per SQS batch, against the batch's distinct (user, flag) pairs."""
    bench_environment()
    from flagbridge.profiles.store import DynamoDBProfileStore
    from flagbridge.quarantine import InMemoryQuarantine

    client = CountingDynamoDB()
    quarantine = InMemoryQuarantine()
    store = DynamoDBProfileStore(client, "flagbridge-profiles")
    replace_runtime(profile_store=lambda: store, quarantine=lambda: quarantine)
    handler = load_handler("impressions_processor")
    items = make_impressions(sizes.impressions, sizes.users, sizes.flags)
    events = sqs_batches(queued_bodies(items))
    context = BenchContext()
    per_batch: list[dict[str, Any]] = []
    for event in events:
        pairs: set[tuple[str, str]] = set()
        for record in event["Records"]:
            message = json.loads(record["body"])
            key, flag, traffic_type = (message["fields"].index(name) for name in ("key", "flag", "traffic_type"))
            for impression in message["impressions"]:
                pairs.add((f"{impression[traffic_type]}#{impression[key]}", impression[flag]))
        before = dict(client.calls)
        writes_before = client.write_requests
        response = handler.lambda_handler(event, context)
        if response["batchItemFailures"]:
            raise RuntimeError(f"the processor failed records: {response['batchItemFailures']}")
        calls = {name: count - before.get(name, 0) for name, count in client.calls.items()}
        per_batch.append({"pairs": len(pairs), "writes": client.write_requests - writes_before, "calls": calls})
    # A redelivery of the same batches is recognised as duplicates: no write at all.
    writes_before = client.write_requests
    for event in events:
        handler.lambda_handler(event, context)
    redelivery_writes = client.write_requests - writes_before
    writes = sum(int(batch["writes"]) for batch in per_batch)
    pairs_total = sum(int(batch["pairs"]) for batch in per_batch)
    ratio = writes / pairs_total
    return [
        Figure(
            "profile_writes",
            "profile writes per SQS batch",
            round(writes / len(per_batch), 1),
            round(pairs_total / len(per_batch), 1),
            round(ratio, 3),
            "writes/batch",
            "= 1.0",
            ratio == 1.0 and redelivery_writes == 0,
            {
                "impressions": len(items),
                "batches": per_batch,
                "redelivery_writes": redelivery_writes,
            },
        )
    ]


def figure_router_cpu(sizes: Sizes) -> list[Figure]:
    """Events/s through route_batch for the configured destinations, against json.loads of the batches."""
    bench_environment()
    from flagbridge.cdp.router import route_batch
    from flagbridge.cdp.testusers import TestUserResolver
    from flagbridge.settings import get_settings

    config = get_settings().config
    assert config.cdp is not None
    cdp = config.cdp
    resolver = TestUserResolver(config.test_users)
    now_ms = int(time.time() * 1000)
    texts = mparticle_batches(sizes.router_batches, now_ms)
    documents: list[Any] = []
    events = sum(len(json.loads(text).get("events", [])) for text in texts)
    marked: set[tuple[str, str]] = set()
    counts: dict[str, int] = {}

    def floor() -> None:
        documents[:] = [json.loads(text) for text in texts]  # also the input of the next measured run

    def measured() -> None:
        for document in documents:
            result = route_batch(document, cdp, marked, now_ms, resolver)
            for name, payload in result.payloads.items():
                counts[name] = counts.get(name, 0) + len(payload.event_indexes)

    floor_s, measured_s, floors, measures = paired_medians(floor, measured, sizes.runs, sizes.warmup)
    floor_eps = events / floor_s
    measured_eps = events / measured_s
    ratio = floor_eps / measured_eps
    return [
        Figure(
            "router_cpu",
            f"router CPU ({len(cdp.compiled_destinations)} destinations)",
            round(measured_eps),
            round(floor_eps),
            round(ratio, 2),
            "events/s",
            "<= 4x",
            at_most(ratio, 4.0),
            {
                "batches": len(texts),
                "events": events,
                "destinations": [d.name for d in cdp.compiled_destinations],
                "events_sent_per_destination_all_runs": counts,
                "floor_runs_ms": _ms(floors),
                "measured_runs_ms": _ms(measures),
            },
        )
    ]


class CountingHttp:
    """HttpClient that accepts every POST (202) and remembers the body sizes."""

    def __init__(self) -> None:
        self.bodies: list[int] = []

    def post(self, url: str, body: bytes, headers: Any) -> Any:
        from flagbridge.forwarding.destinations import HttpResponse

        self.bodies.append(len(body))
        return HttpResponse(202, {}, "")


class AcceptingLedger:
    """Ledger where every id is new."""

    def claim(self, ids: Sequence[str]) -> list[str]:
        return list(ids)

    def pending(self, ids: Sequence[str]) -> list[str]:
        return []

    def mark_sent(self, ids: Sequence[str]) -> None:
        return None

    def release(self, ids: Sequence[str]) -> None:
        return None


def split_event_messages(count: int, per_message: int, now_ms: int) -> list[str]:
    """Destination-queue messages carrying ``count`` Split events, ``per_message`` each, as the router writes them."""
    from flagbridge.cdp.router import route_batch
    from flagbridge.cdp.testusers import TestUserResolver
    from flagbridge.forwarding.router_service import destination_message
    from flagbridge.settings import get_settings

    config = get_settings().config
    assert config.cdp is not None
    resolver = TestUserResolver(config.test_users)
    templates: list[dict[str, Any]] = []
    for text in mparticle_batches(10, now_ms):
        result = route_batch(json.loads(text), config.cdp, set(), now_ms, resolver)
        if "split" in result.payloads:
            templates.extend(destination_message(result, "split")["split_events"])
    if not templates:
        raise RuntimeError("the sample batches produce no Split event")
    messages = []
    for start in range(0, count, per_message):
        events = []
        for index in range(start, min(count, start + per_message)):
            template = templates[index % len(templates)]
            body = {**template["body"], "key": f"qa-bot-{index:06d}", "timestamp": now_ms - index}
            events.append({**template, "body": body, "dedup_id": f"bench-{index:08d}", "message_id": f"m-{index}"})
        header = {"v": 1, "destination": "split", "type": "split", "batch_key": f"bench-{start}", "test_user": True}
        messages.append(json.dumps({**header, "split_events": events}))
    return messages


def split_lane_batch_size() -> int:
    """``BatchSize`` of the Split lane's event source in template.yaml."""
    from local.cfn_yaml import load_template

    queue = {"Fn::GetAtt": ["SplitDestinationQueue", "Arn"]}
    for definition in load_template(ROOT / "template.yaml")["Resources"].values():
        for event in (definition.get("Properties") or {}).get("Events", {}).values():
            properties = event.get("Properties") or {}
            if event.get("Type") == "SQS" and properties.get("Queue") == queue:
                return int(properties.get("BatchSize", 10))
    raise RuntimeError("template.yaml has no SQS event source on SplitDestinationQueue")


def no_sink(destination: Any) -> Any:
    raise RuntimeError(f"no sink for {destination.name} in this benchmark")


def figure_split_requests(sizes: Sizes) -> list[Figure]:
    """HTTP requests for N Split events in the router's small lane messages, in SQS batches of the Split lane."""
    bench_environment()
    from flagbridge.forwarding.delivery import DeliveryService
    from flagbridge.forwarding.destinations import RetryPolicy, SplitEventsClient
    from flagbridge.queues import InMemorySender, QueueRecord
    from flagbridge.settings import get_settings

    config = get_settings().config
    assert config.cdp is not None
    now_ms = int(time.time() * 1000)

    def event_sizes(message: str) -> tuple[int, int]:
        """The message's events, and the bytes they take in a request body (each event and its comma)."""
        events = json.loads(message)["split_events"]
        size = sum(len(json.dumps(e["body"], separators=(",", ":"), ensure_ascii=False).encode()) + 1 for e in events)
        return len(events), size

    def lane_batches(messages: list[str], batch_size: int) -> list[list[str]]:
        """As the event source mapping invokes: at most ``batch_size`` messages and 6 MB of payload per batch."""
        batches: list[list[str]] = [[]]
        payload = 0
        for message in messages:
            size = len(message.encode()) + 1024  # the record's ids and attributes around the body
            if batches[-1] and (len(batches[-1]) == batch_size or payload + size > 6 * 1024 * 1024):
                batches.append([])
                payload = 0
            batches[-1].append(message)
            payload += size
        return batches

    def floor_of(events: int, total_bytes: int) -> int:
        return max(math.ceil(events / SPLIT_MAX_EVENTS), math.ceil((total_bytes + 1) / SPLIT_MAX_BYTES))

    def deliver(batches: list[list[str]]) -> CountingHttp:
        http = CountingHttp()
        dead_letters = InMemorySender()
        service = DeliveryService(
            config.cdp,
            AcceptingLedger(),
            lambda d: SplitEventsClient(http, "https://events.split.invalid/api", lambda: "sdk-key", RetryPolicy()),
            no_sink,
            lambda name: dead_letters,
        )
        for batch in batches:
            outcome = service.deliver_batch([QueueRecord(f"m-{i}", body) for i, body in enumerate(batch)])
            if outcome.failed_message_ids():
                raise RuntimeError(f"{len(outcome.failed_message_ids())} messages failed")
        if dead_letters.bodies:
            raise RuntimeError(f"{len(dead_letters.bodies)} Split deliveries were dead-lettered")
        return http

    n = sizes.split_events
    # 1. The figure: N events delivered together (one destination message), against ceil(N / 5000).
    (single,) = split_event_messages(n, n, now_ms)
    _, single_bytes = event_sizes(single)
    single_http = deliver([[single]])
    single_floor = floor_of(n, single_bytes)
    # 2. As in production: the router writes one small message per mParticle batch, and the Split lane's event
    # source hands the function batches of at most BatchSize messages; requests cannot span two invocations.
    per_message = 3
    batch_size = split_lane_batch_size()
    messages = split_event_messages(n, per_message, now_ms)
    batches = lane_batches(messages, batch_size)
    sizes_by_message = {message: event_sizes(message) for message in messages}
    total_bytes = sum(size for _, size in sizes_by_message.values())
    per_batch_floor = sum(
        floor_of(sum(sizes_by_message[m][0] for m in batch), sum(sizes_by_message[m][1] for m in batch))
        for batch in batches
    )
    lane_http = deliver(batches)
    lane_requests = len(lane_http.bodies)
    small = split_event_messages(30, 3, now_ms)  # an SQS batch of 10 messages of 3 events each
    small_http = deliver([small])
    return [
        Figure(
            "split_requests",
            f"Split requests ({n} events)",
            len(single_http.bodies),
            single_floor,
            round(len(single_http.bodies) / single_floor, 3),
            "requests",
            "= 1.0, < 1 MB",
            len(single_http.bodies) == single_floor and all(size < SPLIT_MAX_BYTES for size in single_http.bodies),
            {"events": n, "event_bytes": single_bytes, "body_bytes": single_http.bodies},
        ),
        Figure(
            "split_requests.lane",
            f"Split requests ({n} events in {len(messages)} lane messages)",
            lane_requests,
            per_batch_floor,
            round(lane_requests / per_batch_floor, 3),
            "requests",
            "= 1.0 per SQS batch, < 1 MB",
            lane_requests == per_batch_floor and all(size < SPLIT_MAX_BYTES for size in lane_http.bodies),
            {
                "events": n,
                "event_bytes": total_bytes,
                "body_bytes": lane_http.bodies,
                "messages": len(messages),
                "events_per_message": per_message,
                "sqs_batch_size": batch_size,
                "sqs_batches": len(batches),
                "floor_if_all_events_were_one_batch": floor_of(n, total_bytes),
                "sqs_batch_of_10_messages_x_3_events_requests": len(small_http.bodies),
            },
        ),
    ]


def figure_local_e2e(sizes: Sizes) -> list[Figure]:
    """Impressions/s from the HTTP POST to the last profile visible, on the in-process local runner."""
    from urllib.parse import quote

    os.environ["FLAGBRIDGE_LOCAL_RETRY_SECONDS"] = "1"
    from local.runner import LocalBridge

    bridge = LocalBridge(port=0)
    bridge.start()
    try:
        webhook_token = bridge.secret_value("WebhookTokenSecret") or ""
        profile_token = bridge.secret_value("ProfileApiTokenSecret") or ""
        rates, elapsed_runs, visible = [], [], []
        for run in range(sizes.e2e_runs):
            items = make_impressions(
                sizes.e2e_impressions, max(2, sizes.e2e_impressions // 10), sizes.flags, seed=run, key_prefix=f"e{run}"
            )
            last = items[-1]
            body = gzipped_body(items)
            started = time.perf_counter()
            status, reply = bridge.request(
                "POST",
                f"/split/impressions?token={quote(webhook_token, safe='')}",
                body,
                {"Content-Type": "application/json"},
            )
            if status != 200:
                raise RuntimeError(f"the webhook answered {status}: {reply}")
            if not bridge.wait_idle(timeout=180, interval=0.05):
                raise RuntimeError("the local runner did not become idle")
            traffic_type = "anonymous" if last["key"].startswith("anon-") else "user"
            status, profile = bridge.request(
                "GET",
                f"/profiles/{traffic_type}/{quote(last['key'], safe='')}",
                headers={"Authorization": f"Bearer {profile_token}"},
            )
            elapsed = time.perf_counter() - started
            visible.append(status == 200 and last["split"] in json.dumps(profile))
            elapsed_runs.append(elapsed)
            rates.append(len(items) / elapsed)
    finally:
        bridge.stop()
    rate = statistics.median(rates)
    return [
        Figure(
            "local_e2e",
            "local end to end",
            round(rate, 1),
            None,
            None,
            "impressions/s",
            "report",
            all(visible) if visible else None,
            {
                "impressions_per_run": sizes.e2e_impressions,
                "runs_seconds": [round(value, 3) for value in elapsed_runs],
                "profile_visible": visible,
                "startup_seconds": round(bridge.startup_seconds, 2),
            },
        )
    ]


def _elf_machine(path: Path) -> str:
    header = path.read_bytes()[:20]
    machine = int.from_bytes(header[18:20], "little")
    return {0xB7: "aarch64", 0x3E: "x86_64"}.get(machine, hex(machine))


def build_layer() -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    sam = Path(sys.executable).parent / "sam"
    subprocess.run([str(sam), "build", "--parallel", "SharedLayer"], cwd=ROOT, env=env, check=True, stdout=sys.stderr)


def figure_layer_size(sizes: Sizes, build: bool = False) -> list[Figure]:
    """Unzipped size of the built SharedLayer; boto3/botocore must not be in it (the runtime has them)."""
    if build:
        build_layer()
    python_dir = LAYER_DIR / "python"
    if not python_dir.is_dir():
        return [
            Figure(
                "layer_size",
                "layer size (unzipped)",
                None,
                None,
                None,
                "MB",
                "<= 20 MB",
                None,
                {"skipped": f"{LAYER_DIR.relative_to(ROOT)} not built (run `make build` or `make bench`)"},
            )
        ]
    total = 0
    per_package: dict[str, int] = {}
    for path in LAYER_DIR.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            total += size
            relative = path.relative_to(LAYER_DIR).parts
            top = relative[1] if relative[0] == "python" and len(relative) > 1 else relative[0]
            per_package[top] = per_package.get(top, 0) + size
    forbidden = sorted(name for name in per_package if name.split("-")[0] in ("boto3", "botocore", "s3transfer"))
    native = sorted(python_dir.rglob("_pydantic_core*.so"))
    largest = dict(sorted(per_package.items(), key=lambda kv: -kv[1])[:8])
    megabytes = total / 1_000_000
    return [
        Figure(
            "layer_size",
            "layer size (unzipped)",
            round(megabytes, 2),
            None,
            None,
            "MB",
            "<= 20 MB, no boto3",
            total <= LAYER_LIMIT_BYTES and not forbidden,
            {
                "bytes": total,
                "forbidden_packages": forbidden,
                "architecture": _elf_machine(native[0]) if native else "unknown",
                "largest_bytes": largest,
            },
        )
    ]


# ---- cold start (many fresh interpreters) --------------------------------------------------------------------

# CPU time (user + system, file reads included): on a shared machine wall time also counts the moments
# another process had the CPU, which moved single runs by 50%.
_IMPORT_PROBE = """
import gc, importlib, json, resource, time
seconds = []
for index, module in enumerate({modules!r}):
    if index and {collector_off_after_first!r}:
        gc.disable()  # as the handlers import (flagbridge.runtime.init_complete)
    started = time.process_time()
    importlib.import_module(module)
    seconds.append(time.process_time() - started)
print("BENCH " + json.dumps({{"seconds": seconds, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""
# What every function imports besides its own code, in import order (each stage timed after the previous
# ones, in one fresh interpreter, the collector off after boto3 as in the handlers): where the cold-start
# time over ``import boto3`` goes.
SHARED_IMPORT_STAGES = (
    ("boto3", "boto3"),
    ("pydantic and the configuration models", "flagbridge.settings"),
    ("Powertools Logger, Metrics and Tracer (X-Ray SDK)", "flagbridge.observability"),
    ("Powertools event handler (HTTP functions)", "aws_lambda_powertools.event_handler"),
)


@dataclass(frozen=True)
class ProbeInterpreter:
    """The interpreter and third-party packages the cold-start probes import with.

    ``site`` holds only what Lambda provides: boto3 and its dependencies (the runtime's) and the layer's
    requirements. The development virtualenv is not used: it also holds moto, the SAM CLI and their
    dependencies (awscrt, pyOpenSSL), which botocore imports when they are installed; that would add about
    70 ms to ``import boto3`` that Lambda never pays, and flatter every ratio. ``site`` None (smoke runs):
    the bench's own environment, which needs no install.
    """

    executable: str
    version: str
    site: Path | None

    def python_path(self, *entries: Path) -> list[str]:
        return [str(entry) for entry in entries] + ([str(self.site)] if self.site else [])


def _interpreter_version(executable: str) -> str:
    completed = subprocess.run(
        [executable, "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return completed.stdout.strip()


def runtime_boto3_requirement() -> str:
    """boto3 as pinned for development (the functions are tested against it)."""
    for line in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("boto3=="):
            return line.strip()
    return "boto3"


def lambda_site(version: str) -> Path:
    """``build/bench-lambda-site/<python>-<hash>``: boto3 and the layer's requirements for this host, installed once."""
    requirements = SHARED / "requirements.txt"
    boto3 = runtime_boto3_requirement()
    key = hashlib.sha256((boto3 + "\n" + requirements.read_text(encoding="utf-8")).encode()).hexdigest()[:12]
    site = LAMBDA_SITES / f"{version}-{key}"
    if site.is_dir():
        return site
    machine = platform.machine()
    platforms = [f"manylinux2014_{machine}", f"manylinux_2_28_{machine}", f"manylinux_2_34_{machine}"]
    LAMBDA_SITES.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="installing-", dir=LAMBDA_SITES))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    command += ["--no-warn-conflicts", "--target", str(staging), "--python-version", version, "--implementation", "cp"]
    command += ["--only-binary=:all:"] + [option for tag in platforms for option in ("--platform", tag)]
    command += [boto3, "-r", str(requirements)]
    subprocess.run(command, check=True, timeout=600)
    staging.rename(site)
    return site


def probe_interpreter(smoke: bool) -> ProbeInterpreter:
    """The probes' interpreter: ``FLAGBRIDGE_BENCH_PYTHON`` (e.g. a python3.13, as in Lambda), else this one."""
    if smoke:
        return ProbeInterpreter(sys.executable, _interpreter_version(sys.executable), None)
    # Outside the virtualenv (its site-packages would be on sys.path); -S keeps even the base one off it.
    executable = os.environ.get("FLAGBRIDGE_BENCH_PYTHON") or str(getattr(sys, "_base_executable", sys.executable))
    version = _interpreter_version(executable)
    return ProbeInterpreter(executable, version, lambda_site(version))


def lambda_environment(function: str | None, interpreter: ProbeInterpreter | None = None) -> dict[str, str]:
    """A Lambda-like environment: the function dir and the layer on sys.path, tracing on, no bytecode in the repo."""
    task_root = ROOT / "functions" / (function or "impressions_webhook")
    entries = [task_root, SHARED] if function else []
    paths = interpreter.python_path(*entries) if interpreter else [str(entry) for entry in entries]
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": f"flagbridge-{function or 'floor'}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "flagbridge",
        "POWERTOOLS_METRICS_NAMESPACE": "Flagbridge",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "FLAGBRIDGE_CONFIG": str(CONFIG_PATH),
    }


def time_imports(
    modules: Sequence[str],
    function: str | None,
    interpreter: ProbeInterpreter,
    collector_off_after_first: bool = False,
) -> tuple[list[float], int]:
    """CPU seconds to import each of ``modules`` in turn in a fresh interpreter, and its peak RSS (KiB)."""
    no_site = [] if interpreter.site is None else ["-S"]
    completed = subprocess.run(
        [
            interpreter.executable,
            *no_site,
            "-c",
            _IMPORT_PROBE.format(modules=list(modules), collector_off_after_first=collector_off_after_first),
        ],
        cwd=str(ROOT / "functions" / function) if function else str(ROOT),
        env=lambda_environment(function, interpreter),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("BENCH ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"importing {', '.join(modules)} failed:\n{completed.stderr[-2000:]}")
    probe = json.loads(lines[-1][len("BENCH ") :])
    return [float(seconds) for seconds in probe["seconds"]], int(probe["rss_kb"])


def time_import(module: str, function: str | None, interpreter: ProbeInterpreter) -> tuple[float, int]:
    """Seconds to import ``module`` in a fresh interpreter, and that interpreter's peak RSS (KiB)."""
    (seconds,), kib = time_imports([module], function, interpreter)
    return seconds, kib


def figure_cold_start(sizes: Sizes) -> list[Figure]:
    """Import time of every handler module in fresh interpreters, against ``import boto3`` alone."""
    PYCACHE.mkdir(parents=True, exist_ok=True)
    interpreter = probe_interpreter(smoke=sizes == SMOKE)
    floors: list[float] = []
    floor_rss: list[int] = []
    samples: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
    rss: dict[str, list[int]] = {name: [] for name in FUNCTIONS}
    stage_samples: list[list[float]] = []
    stage_rss: list[int] = []
    for round_number in range(sizes.warmup + sizes.cold_runs):  # round 0 compiles bytecode into build/
        for function in FUNCTIONS:  # a floor next to every function: the machine's pace changes within a round
            floor_seconds, floor_kib = time_import("boto3", None, interpreter)
            seconds, kib = time_import(function, function, interpreter)
            if round_number >= sizes.warmup:
                floors.append(floor_seconds)
                floor_rss.append(floor_kib)
                samples[function].append(seconds)
                rss[function].append(kib)
        modules = [module for _, module in SHARED_IMPORT_STAGES]
        stages, kib = time_imports(modules, "impressions_processor", interpreter, collector_off_after_first=True)
        if round_number >= sizes.warmup:
            stage_samples.append(stages)
            stage_rss.append(kib)
    floor_s = statistics.median(floors)
    figures = [_shared_imports_figure(stage_samples)]
    figures[0].peak_rss_mb = round(max(stage_rss) / 1024, 1)
    for function in FUNCTIONS:
        measured_s = statistics.median(samples[function])
        ratio = measured_s / floor_s
        figure = Figure(
            f"cold_start.{function}",
            f"cold start {function}",
            round(measured_s * 1000, 1),
            round(floor_s * 1000, 1),
            round(ratio, 2),
            "ms",
            "<= 1.5x",
            at_most(ratio, 1.5),
            {
                "runs_ms": _ms(samples[function]),
                "floor_runs_ms": _ms(floors),
                "floor_peak_rss_mb": round(max(floor_rss) / 1024, 1),
                "python": interpreter.version,
                "packages": "boto3 + layer requirements" if interpreter.site else "development virtualenv",
            },
        )
        figure.peak_rss_mb = round(max(rss[function]) / 1024, 1)
        figures.append(figure)
    return figures


def _shared_imports_figure(stage_samples: list[list[float]]) -> Figure:
    """Report only: the median time of each shared import stage, and their sum against ``import boto3``."""
    medians = [statistics.median(column) for column in zip(*stage_samples, strict=True)]
    boto3_s, others = medians[0], medians[1:]
    return Figure(
        "cold_start.shared",
        "cold start: shared imports after boto3",
        round(sum(others) * 1000, 1),
        round(boto3_s * 1000, 1),
        round(sum(others) / boto3_s, 2),
        "ms",
        "report",
        None,
        {
            "stages_ms": {
                title: round(seconds * 1000, 1)
                for (title, _), seconds in zip(SHARED_IMPORT_STAGES, medians, strict=True)
            }
        },
    )


FIGURES: dict[str, Callable[[Sizes], list[Figure]]] = {
    "ingest_cpu": figure_ingest_cpu,
    "profile_writes": figure_profile_writes,
    "processor_cpu": figure_processor_cpu,
    "cold_start": figure_cold_start,
    "router_cpu": figure_router_cpu,
    "split_requests": figure_split_requests,
    "local_e2e": figure_local_e2e,
    "layer_size": figure_layer_size,
}


# ---- orchestration -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """Silence file descriptor 1 (Powertools logs and metrics print there); the report is written to a file."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_figure_here(name: str, sizes: Sizes, build_layer_first: bool) -> list[dict[str, Any]]:
    """Compute one figure in this process (the child side of :func:`run_figure`)."""
    with stdout_to_devnull():
        build = build_layer_first and name == "layer_size"
        figures = figure_layer_size(sizes, build=True) if build else FIGURES[name](sizes)
    peak = peak_rss_mb()
    for figure in figures:
        if figure.peak_rss_mb is None:
            figure.peak_rss_mb = peak
    return [figure.as_dict() for figure in figures]


def run_figure(name: str, smoke: bool, build_layer_first: bool) -> list[dict[str, Any]]:
    """Compute one figure in a fresh subprocess; a failure becomes a figure with an ``error``."""
    with tempfile.TemporaryDirectory() as scratch:
        result_path = Path(scratch) / "result.json"
        command = [sys.executable, "-m", "local.bench", "--figure", name, "--result", str(result_path)]
        if smoke:
            command.append("--smoke")
        if build_layer_first:
            command.append("--build-layer")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(SHARED)])}
        started = time.perf_counter()
        try:
            completed = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS
            )
            error = None if completed.returncode == 0 else completed.stderr[-3000:] or f"exit {completed.returncode}"
        except subprocess.TimeoutExpired:
            error = f"timed out after {CHILD_TIMEOUT_SECONDS} s"
        seconds = round(time.perf_counter() - started, 1)
        if error is None and result_path.exists():
            figures: list[dict[str, Any]] = json.loads(result_path.read_text())
            for figure in figures:
                figure["seconds"] = seconds
            return figures
    failed = Figure(name, name, None, None, None, "", "", False, {"error": error or "no result"}).as_dict()
    failed["seconds"] = seconds
    return [failed]


def layer_needs_build() -> bool:
    """The layer is missing or older than what it is built from."""
    marker = LAYER_DIR / "python"
    if not marker.is_dir():
        return True
    built = marker.stat().st_mtime
    sources = [SHARED / "requirements.txt", SHARED / "Makefile"]
    return any(source.stat().st_mtime > built for source in sources)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(figures: list[dict[str, Any]]) -> str:
    """The report as a Markdown table (what the README's performance section shows)."""
    header = ["figure", "measured", "floor", "ratio", "target", "pass", "peak RSS MB"]
    rows = [header, ["---"] * len(header)]
    for figure in figures:
        passed = {True: "yes", False: "**no**", None: "-"}[figure["pass"]]
        if figure["details"].get("error"):
            passed = "error"
        unit = f" {figure['unit']}" if figure["measured"] is not None and figure["unit"] else ""
        rows.append(
            [
                figure["title"],
                _format(figure["measured"]) + unit,
                _format(figure["floor"]) + (unit if figure["floor"] is not None else ""),
                _format(figure["ratio"]) + ("x" if figure["ratio"] is not None else ""),
                figure["target"],
                passed,
                _format(figure["peak_rss_mb"]),
            ]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def run(names: Sequence[str], smoke: bool, output: Path, build: bool | None = None) -> dict[str, Any]:
    """Run the figures (each in its own subprocess), write the JSON report, return it."""
    started = time.perf_counter()
    sizes = SMOKE if smoke else FULL
    build_first = (not smoke and layer_needs_build()) if build is None else build
    figures: list[dict[str, Any]] = []
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        figures.extend(run_figure(name, smoke, build_first and name == "layer_size"))
    report = {
        "smoke": smoke,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "sizes": asdict(sizes),
        "seconds": round(time.perf_counter() - started, 1),
        "all_pass": all(f["pass"] is not False for f in figures),
        "figures": figures,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one run each (checks the benchmark runs)")
    parser.add_argument("--only", action="append", choices=sorted(FIGURES), help="run only these figures")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON report (default build/bench.json)")
    parser.add_argument("--build-layer", action="store_true", help="run `sam build SharedLayer` before measuring it")
    parser.add_argument("--figure", choices=sorted(FIGURES), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.figure:  # child process: one figure, result to a file
        sizes = SMOKE if args.smoke else FULL
        figures = run_figure_here(args.figure, sizes, args.build_layer)
        assert args.result is not None
        args.result.write_text(json.dumps(figures), encoding="utf-8")
        return 0
    names = args.only or list(FIGURES)
    report = run(names, args.smoke, args.output, True if args.build_layer else None)
    print(table(report["figures"]))
    print(f"\n{len(report['figures'])} figures in {report['seconds']} s; report: {args.output}")
    return 0 if report["all_pass"] or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
