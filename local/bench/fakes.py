"""Inputs and in-memory fakes of the in-process figures: impressions, SQS and API Gateway events, mParticle
batches and Split lane messages, counting DynamoDB and HTTP clients, a Lambda context."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import random
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from local.bench.timing import CONFIG_PATH, ROOT

PAYLOADS = ROOT / "events" / "payloads"
WEBHOOK_TOKEN = "bench-webhook-token"
BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SQS_BATCH_SIZE = 10  # template.yaml: BatchSize of the impressions queue's event source


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


class CountingHttp:
    """HttpClient that accepts every POST (202) and remembers the body sizes."""

    def __init__(self) -> None:
        self.bodies: list[int] = []

    def post(self, url: str, body: bytes, headers: Any) -> Any:
        from flagbridge.outbound import Response

        self.bodies.append(len(body))
        return Response(202, {}, "")


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
    from flagbridge.cdp.testers import TesterResolver
    from flagbridge.forwarding.router_service import destination_message
    from flagbridge.settings import get_settings

    config = get_settings().config
    assert config.cdp is not None
    resolver = TesterResolver(config.test_users)
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
