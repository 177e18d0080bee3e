"""Regenerate the API Gateway / SQS sample events in ``events/`` from ``events/payloads/``.

Run ``make events`` (``python -m local.make_events``) after changing a payload. The events are committed:
tests load them, the local runner replays them, and ``sam local invoke -e`` accepts them.
``tests/tools/test_make_events.py`` regenerates them into a temporary directory (``--output DIR``) and fails
when the committed files differ.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

from local.apigw import http_api_event, sqs_event

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
PAYLOADS = EVENTS / "payloads"
LOCAL_WEBHOOK_TOKEN = "local-webhook-token"
LOCAL_PROFILE_TOKEN = "local-profile-token"
LOCAL_TESTERS_TOKEN = "local-testers-token"
TESTER_EXPIRES_AT = "2026-01-08T00:00:00Z"  # a week after FIXED_NOW: handler tests run the registry at FIXED_NOW
LOCAL_MPARTICLE_KEY, LOCAL_MPARTICLE_SECRET = "local-mparticle-key", "local-mparticle-secret"
LOCAL_MPARTICLE_WEBHOOK_AUTH = "Bearer local-mparticle-webhook"
LOCAL_ORACLE_TOKEN = "local-oracle-token"
LANES = ("split", "analytics", "warehouse", "reporting", "audit")
MPARTICLE_BATCHES = (
    "mparticle_batch_test_user.json",
    "mparticle_batch_real_customer.json",
    "mparticle_batch_commerce.json",
    "mparticle_batch_plan_violation.json",
)
FIXED_NOW = 1767225700.0
SENT_AT_MS = int(FIXED_NOW * 1000)  # the samples' SQS timestamps: regenerating leaves them unchanged
SPLIT_HEADERS = {"Content-Type": "application/json", "User-Agent": "Split-Webhook/1.0", "Host": "bridge.example.com"}


def _write(output: Path, name: str, document: Any) -> None:
    (output / name).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def version_1_body(body: str) -> str:
    """A version 2 impressions-queue message as version 1 wrote it: records as objects, no ``fields``."""
    message = json.loads(body)
    fields = message.pop("fields")
    records = [dict(zip(fields, record, strict=True)) for record in message.pop("impressions")]
    header = json.dumps({**message, "v": 1}, separators=(",", ":"))
    return header[:-1] + ',"impressions":' + json.dumps(records, separators=(",", ":"), ensure_ascii=False) + "}"


def _impressions_event(body: bytes, query: str, headers: dict[str, str], request_id: str) -> dict[str, Any]:
    return http_api_event(
        method="POST",
        path="/split/impressions",
        route_key="POST /split/impressions",
        raw_query=query,
        headers={**SPLIT_HEADERS, **headers},
        body=body,
        request_id=request_id,
        now=FIXED_NOW,
    )


def _profile_event(traffic_type: str, key: str, token: str | None, request_id: str) -> dict[str, Any]:
    headers = {"Host": "bridge.example.com", "User-Agent": "curl/8.5.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http_api_event(
        method="GET",
        path=f"/profiles/{traffic_type}/{key}",
        route_key="GET /profiles/{trafficType}/{key}",
        headers=headers,
        path_parameters={"trafficType": traffic_type, "key": key},
        request_id=request_id,
        now=FIXED_NOW,
    )


def _testers_event(
    method: str, path: str, token: str | None, request_id: str, body: Any = None, query: str = ""
) -> dict[str, Any]:
    headers = {"Host": "bridge.example.com", "User-Agent": "curl/8.5.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    parameters = None
    route_key = f"{method} {path}"
    if path.count("/") == 3:
        _, _, traffic_type, key = path.split("/")
        parameters = {"trafficType": traffic_type, "key": key}
        route_key = f"{method} /testers/{{trafficType}}/{{key}}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    return http_api_event(
        method=method,
        path=path,
        route_key=route_key,
        raw_query=query,
        headers=headers,
        body=b"" if body is None else json.dumps(body).encode(),
        path_parameters=parameters,
        request_id=request_id,
        now=FIXED_NOW,
    )


def generate_testers(output: Path) -> None:
    """The tester registry's routes: register, refusals, remove, list."""
    registration = {"expiresAt": TESTER_EXPIRES_AT, "reason": "checkout load test, ticket QA-142"}
    token = LOCAL_TESTERS_TOKEN
    _write(output, "testers_put.json", _testers_event("PUT", "/testers/user/qa-run-7", token, "req-t-1", registration))
    _write(
        output,
        "testers_put_no_token.json",
        _testers_event("PUT", "/testers/user/qa-run-7", None, "req-t-2", registration),
    )
    expired = {"expiresAt": "2025-12-31T00:00:00Z", "reason": "too late"}
    _write(
        output, "testers_put_expired.json", _testers_event("PUT", "/testers/user/qa-run-7", token, "req-t-3", expired)
    )
    _write(
        output,
        "testers_delete.json",
        _testers_event("DELETE", "/testers/user/qa-run-7", token, "req-t-4", query="reason=load%20test%20finished"),
    )
    _write(output, "testers_list.json", _testers_event("GET", "/testers", token, "req-t-5", query="limit=2"))


def _basic(key: str, secret: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def _mparticle_event(path: str, body: bytes, authorization: str | None, request_id: str) -> dict[str, Any]:
    headers = {
        "Host": "bridge.example.com",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "mParticle Python client/0.16.0",
    }
    if authorization is not None:
        headers["Authorization"] = authorization
    return http_api_event(
        method="POST",
        path=path,
        route_key=f"POST {path}",
        headers=headers,
        body=body,
        request_id=request_id,
        now=FIXED_NOW,
    )


def generate_mparticle(output: Path) -> None:
    from flagbridge.forwarding.ingest import queue_envelope

    batches = [json.loads((PAYLOADS / name).read_text(encoding="utf-8")) for name in MPARTICLE_BATCHES]
    basic = _basic(LOCAL_MPARTICLE_KEY, LOCAL_MPARTICLE_SECRET)
    for name, batch in zip(MPARTICLE_BATCHES, batches, strict=True):
        short = name.removeprefix("mparticle_batch_").removesuffix(".json")
        body = json.dumps(batch).encode()
        _write(
            output,
            f"mparticle_events_{short}.json",
            _mparticle_event("/mparticle/v2/events", body, basic, f"req-mp-{short}"),
        )
    bulk = json.dumps(batches).encode()
    _write(
        output, "mparticle_bulkevents.json", _mparticle_event("/mparticle/v2/bulkevents", bulk, basic, "req-mp-bulk")
    )
    single = json.dumps(batches[0]).encode()
    _write(
        output, "mparticle_events_no_auth.json", _mparticle_event("/mparticle/v2/events", single, None, "req-mp-noauth")
    )
    _write(
        output,
        "mparticle_events_bad_auth.json",
        _mparticle_event("/mparticle/v2/events", single, _basic(LOCAL_MPARTICLE_KEY, "wrong"), "req-mp-badauth"),
    )
    _write(
        output,
        "mparticle_events_malformed.json",
        _mparticle_event(
            "/mparticle/v2/events",
            b'{"events": [{"event_type": "custom_event", "data": {}}]}',
            basic,
            "req-mp-malformed",
        ),
    )
    webhook_body = (PAYLOADS / "mparticle_webhook_batch.json").read_bytes()
    _write(
        output,
        "mparticle_webhook.json",
        _mparticle_event("/mparticle/webhook", webhook_body, LOCAL_MPARTICLE_WEBHOOK_AUTH, "req-mp-webhook"),
    )
    # What the router consumes: the ingest envelope, and a raw batch sent straight to the queue.
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:flagbridge-dev-batches"
    messages = [
        (
            f"b7a1c3e0-0000-4000-8000-00000000000{i}",
            queue_envelope(batch, "events_api", f"req-mp-{i}", 1767225700000),
            1,
        )
        for i, batch in enumerate(batches)
    ]
    messages.append(("b7a1c3e0-0000-4000-8000-0000000000ff", webhook_body.decode(), 1))
    _write(output, "sqs_batches.json", sqs_event(queue_arn, messages, sent_at_ms=SENT_AT_MS))

    # What the delivery function consumes: the router's output for those batches, per destination lane.
    from flagbridge.config import load_config
    from flagbridge.forwarding.router_service import RouterService
    from flagbridge.quarantine import InMemoryQuarantine
    from flagbridge.queues import InMemorySender, QueueRecord

    config = load_config(ROOT / "layers" / "shared" / "config" / "flagbridge.yaml", environ={})
    lanes: dict[str, InMemorySender] = {}
    router = RouterService(
        config,
        lambda users: {},
        lambda name: lanes.setdefault(name, InMemorySender()),
        InMemoryQuarantine(),
        clock_ms=lambda: int(FIXED_NOW * 1000),
    )
    router.process([QueueRecord(message_id, body) for message_id, body, _ in messages])
    for name, sender in sorted(lanes.items()):
        lane_arn = f"arn:aws:sqs:us-east-1:123456789012:flagbridge-dev-{name}-destination"
        lane_messages = [(f"d3f0a9e1-{name}-{i:04d}", body, 1) for i, body in enumerate(sender.bodies)]
        _write(output, f"sqs_destination_{name}.json", sqs_event(lane_arn, lane_messages, sent_at_ms=SENT_AT_MS))

    # A Split-lane batch as its event source hands it over (many small messages at once): ten testers' batches,
    # alternately the tester and the commerce sample, and one message for a destination no longer configured.
    tester_batches = []
    for i in range(10):
        batch = json.loads(
            json.dumps(
                batches[
                    MPARTICLE_BATCHES.index(
                        "mparticle_batch_commerce.json" if i % 2 else "mparticle_batch_test_user.json"
                    )
                ]
            )
        )
        batch["source_request_id"] = f"req-split-batch-{i:04d}"
        batch["user_identities"] = {"customer_id": f"qa-bot-{10 + i}"}
        for j, event in enumerate(batch["events"]):
            event["data"]["source_message_id"] = f"msg-split-batch-{i:04d}-{j}"
        tester_batches.append(
            QueueRecord(f"split-batch-{i}", queue_envelope(batch, "events_api", f"req-split-{i}", 1767225700000))
        )
    split_lanes: dict[str, InMemorySender] = {}
    RouterService(
        config,
        lambda users: {},
        lambda name: split_lanes.setdefault(name, InMemorySender()),
        InMemoryQuarantine(),
        clock_ms=lambda: int(FIXED_NOW * 1000),
    ).process(tester_batches)
    split_messages = [(f"d3f0a9e1-split-batch-{i:04d}", body, 1) for i, body in enumerate(split_lanes["split"].bodies)]
    retired = (
        '{"v":1,"destination":"retired-lane","type":"split","batch_key":"srid:req-retired-0001","split_events":[]}'
    )
    split_messages.insert(5, ("d3f0a9e1-split-batch-unknown", retired, 1))
    split_arn = "arn:aws:sqs:us-east-1:123456789012:flagbridge-dev-split-destination"
    _write(output, "sqs_destination_split_batch.json", sqs_event(split_arn, split_messages, sent_at_ms=SENT_AT_MS))


def _oracle_api_event(path: str, route_key: str, token: str | None, request_id: str, **params: str) -> dict[str, Any]:
    headers = {"Host": "bridge.example.com", "User-Agent": "curl/8.5.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http_api_event(
        method="GET",
        path=path,
        route_key=route_key,
        headers=headers,
        path_parameters=params or None,
        request_id=request_id,
        now=FIXED_NOW,
    )


def _test_request_batch(index: int, key: str, status: int, latency_ms: int) -> dict[str, Any]:
    """A traffic-plan result as the generator reports it: a ``flagbridge_test_request`` custom event."""
    at = int(FIXED_NOW * 1000) - 60_000 + index * 1000
    return {
        "environment": "production",
        "source_request_id": f"req-oracle-{index:04d}",
        "timestamp_unixtime_ms": at,
        "user_identities": {"customer_id": key},
        "events": [
            {
                "event_type": "custom_event",
                "data": {
                    "event_name": "flagbridge_test_request",
                    "custom_event_type": "other",
                    "source_message_id": f"msg-oracle-{index:04d}",
                    "timestamp_unixtime_ms": at,
                    "custom_attributes": {
                        "run_id": "run-0001",
                        "case_id": f"case-{index:04d}",
                        "route": "/checkout",
                        "method": "POST",
                        "status": status,
                        "latency_ms": latency_ms,
                    },
                },
            }
        ],
    }


def generate_oracle(output: Path) -> None:
    """The oracle's triggers: its lane (routed testers' results), its schedule, and its API routes."""
    from flagbridge.config import load_config
    from flagbridge.forwarding.ingest import queue_envelope
    from flagbridge.forwarding.router_service import RouterService
    from flagbridge.quarantine import InMemoryQuarantine
    from flagbridge.queues import InMemorySender, QueueRecord

    config = load_config(ROOT / "layers" / "shared" / "config" / "flagbridge.yaml", environ={})
    lanes: dict[str, InMemorySender] = {}
    router = RouterService(
        config,
        lambda users: {},
        lambda name: lanes.setdefault(name, InMemorySender()),
        InMemoryQuarantine(),
        clock_ms=lambda: int(FIXED_NOW * 1000),
    )
    # Two testers (qa-bot-01 and qa-bot-02 are on the allowlist) and a customer whose events never reach the lane;
    # one result has no latency (counted as invalid by the latency metric).
    results = [
        ("qa-bot-01", 200, 120),
        ("qa-bot-01", 503, 950),
        ("qa-bot-02", 200, 80),
        ("qa-bot-02", 500, 1400),
        ("u-1001", 200, 90),
        ("qa-bot-01", 200, 110),
    ]
    batches = [_test_request_batch(i, key, status, latency) for i, (key, status, latency) in enumerate(results)]
    del batches[5]["events"][0]["data"]["custom_attributes"]["latency_ms"]
    records = [
        QueueRecord(f"oracle-{i}", queue_envelope(batch, "events_api", f"req-oracle-{i}", 1767225700000))
        for i, batch in enumerate(batches)
    ]
    router.process(records)
    oracle_arn = "arn:aws:sqs:us-east-1:123456789012:flagbridge-dev-oracle-destination"
    oracle_messages = [(f"0a1c0000-oracle-{i:04d}", body, 1) for i, body in enumerate(lanes["oracle"].bodies)]
    _write(output, "sqs_oracle_lane.json", sqs_event(oracle_arn, oracle_messages, sent_at_ms=SENT_AT_MS))
    _write(
        output,
        "oracle_schedule.json",
        {
            "version": "0",
            "id": "5e0c0e7a-0000-4000-8000-000000000001",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-01-01T00:01:40Z",
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/flagbridge-dev-oracle-evaluator-EveryMinute"],
            "detail": {},
        },
    )
    _write(output, "oracle_api_list.json", _oracle_api_event("/tests", "GET /tests", LOCAL_ORACLE_TOKEN, "req-o-1"))
    _write(
        output,
        "oracle_api_get.json",
        _oracle_api_event("/tests/new-checkout-health", "GET /tests/{name}", LOCAL_ORACLE_TOKEN, "req-o-2",
                          name="new-checkout-health"),
    )  # fmt: skip
    _write(
        output,
        "oracle_api_unknown.json",
        _oracle_api_event("/tests/nope", "GET /tests/{name}", LOCAL_ORACLE_TOKEN, "req-o-3", name="nope"),
    )
    _write(
        output,
        "oracle_api_report.json",
        _oracle_api_event("/tests/new-checkout-health/report", "GET /tests/{name}/report", LOCAL_ORACLE_TOKEN,
                          "req-o-5", name="new-checkout-health"),
    )  # fmt: skip
    _write(output, "oracle_api_no_token.json", _oracle_api_event("/tests", "GET /tests", None, "req-o-4"))
    _write(output, "tester_segment_schedule.json", _segment_schedule({}))
    _write(output, "tester_segment_dry_run.json", _segment_schedule({"dry_run": True}))


def _segment_schedule(extra: dict[str, Any]) -> dict[str, Any]:
    """The tester segments' reconcile as EventBridge Scheduler delivers it (``dry_run``: the manual form)."""
    return {
        "version": "0",
        "id": "5e0c0e7a-0000-4000-8000-000000000002",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-01-01T00:05:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/flagbridge-dev-tester-segment-reconcile"],
        "detail": {},
        **extra,
    }


def generate(output: Path = EVENTS) -> None:
    """Write every sample event into ``output`` (``events/`` by default)."""
    output.mkdir(parents=True, exist_ok=True)
    from flagbridge.config import load_config
    from flagbridge.impressions.ingest import ingest_impressions
    from flagbridge.quarantine import InMemoryQuarantine
    from flagbridge.queues import InMemorySender

    impressions_text = (PAYLOADS / "split_impressions.json").read_text(encoding="utf-8")
    impressions = json.loads(impressions_text)
    compact = json.dumps(impressions, separators=(",", ":")).encode()
    gzipped = gzip.compress(compact, mtime=0)

    # As Split sends it: gzipped, token in the URL, and (as the docs allow) no Content-Encoding header.
    _write(
        output,
        "split_impressions_gzip.json",
        _impressions_event(gzipped, f"token={LOCAL_WEBHOOK_TOKEN}", {}, "req-gzip-1"),
    )
    _write(
        output,
        "split_impressions_gzip_encoded.json",
        _impressions_event(gzipped, f"token={LOCAL_WEBHOOK_TOKEN}", {"Content-Encoding": "gzip"}, "req-gzip-header-1"),
    )
    _write(
        output,
        "split_impressions_plain.json",
        _impressions_event(compact, "", {"X-Flagbridge-Token": LOCAL_WEBHOOK_TOKEN}, "req-plain-1"),
    )
    _write(
        output,
        "split_impressions_bad_token.json",
        _impressions_event(gzipped, "token=wrong-token", {}, "req-bad-token"),
    )
    _write(output, "split_impressions_no_token.json", _impressions_event(gzipped, "", {}, "req-no-token"))
    _write(
        output,
        "split_impressions_not_array.json",
        _impressions_event(b'{"key": "u-1"}', f"token={LOCAL_WEBHOOK_TOKEN}", {}, "req-not-array"),
    )
    _write(
        output,
        "split_impressions_malformed.json",
        _impressions_event(b'[{"key": "u-1",', f"token={LOCAL_WEBHOOK_TOKEN}", {}, "req-malformed"),
    )

    # The SQS message the webhook enqueues for this payload, as the processor receives it.
    config = load_config(ROOT / "layers" / "shared" / "config" / "flagbridge.yaml")
    sender = InMemorySender()
    ingest_impressions(
        impressions,
        request_id="req-gzip-1",
        config=config,
        sender=sender,
        quarantine=InMemoryQuarantine(),
        now_ms=int(FIXED_NOW * 1000),
    )
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:flagbridge-impressions"
    messages = [(f"0d5f3c2a-0000-4000-8000-00000000000{i}", body, 1) for i, body in enumerate(sender.bodies)]
    _write(output, "sqs_impressions.json", sqs_event(queue_arn, messages, sent_at_ms=SENT_AT_MS))
    # The same impressions as the webhook wrote them before version 2: the processor still reads them.
    v1_messages = [
        (f"0d5f3c2a-0000-4000-8001-00000000000{i}", version_1_body(body), 1) for i, body in enumerate(sender.bodies)
    ]
    _write(output, "sqs_impressions_v1.json", sqs_event(queue_arn, v1_messages, sent_at_ms=SENT_AT_MS))
    _write(
        output,
        "sqs_impressions_poison.json",
        sqs_event(queue_arn, [("poison-0001", "this is not json", 1)], sent_at_ms=SENT_AT_MS),
    )

    _write(output, "profile_api_get.json", _profile_event("user", "u-1001", LOCAL_PROFILE_TOKEN, "req-profile-1"))
    _write(output, "profile_api_tester.json", _profile_event("user", "qa-bot-01", LOCAL_PROFILE_TOKEN, "req-profile-2"))
    _write(output, "profile_api_unknown.json", _profile_event("user", "nobody", LOCAL_PROFILE_TOKEN, "req-profile-3"))
    _write(output, "profile_api_no_token.json", _profile_event("user", "u-1001", None, "req-profile-4"))

    generate_mparticle(output)
    generate_runs(output)
    generate_testers(output)
    generate_oracle(output)

    # `sam local invoke --env-vars events/env.json`: local values only, never real secrets.
    shared = {
        "POWERTOOLS_SERVICE_NAME": "flagbridge",
        "POWERTOOLS_METRICS_NAMESPACE": "Flagbridge",
        "FLAGBRIDGE_CONFIG": "/opt/config/flagbridge.json",
    }
    _write(
        output,
        "env.json",
        {
            "ImpressionsWebhookFunction": {
                **shared,
                "IMPRESSIONS_QUEUE_URL": "http://localhost:5000/123456789012/flagbridge-impressions",
                "QUARANTINE_BUCKET": "flagbridge-quarantine-local",
                "WEBHOOK_TOKEN_SECRET": "",
                "FLAGBRIDGE_WEBHOOK_TOKEN": LOCAL_WEBHOOK_TOKEN,
            },
            "ImpressionsProcessorFunction": {
                **shared,
                "PROFILES_TABLE": "flagbridge-profiles",
                "TESTERS_TABLE": "flagbridge-testers",
                "QUARANTINE_BUCKET": "flagbridge-quarantine-local",
            },
            "MParticleIngestFunction": {
                **shared,
                "BATCHES_QUEUE_URL": "http://localhost:5000/123456789012/flagbridge-dev-batches",
                "QUARANTINE_BUCKET": "flagbridge-quarantine-local",
                "FLAGBRIDGE_MPARTICLE_CREDENTIALS": f"{LOCAL_MPARTICLE_KEY}:{LOCAL_MPARTICLE_SECRET}",
                "FLAGBRIDGE_MPARTICLE_WEBHOOK_AUTH": LOCAL_MPARTICLE_WEBHOOK_AUTH,
            },
            "CdpRouterFunction": {
                **shared,
                "PROFILES_TABLE": "flagbridge-profiles",
                "TESTERS_TABLE": "flagbridge-testers",
                "QUARANTINE_BUCKET": "flagbridge-quarantine-local",
                "DESTINATION_QUEUES": json.dumps(
                    {
                        name: f"http://localhost:5000/123456789012/flagbridge-dev-{name}-destination"
                        for name in (*LANES, "oracle")
                    }
                ),
            },
            "DestinationDeliveryFunction": {
                **shared,
                "DELIVERY_LEDGER_TABLE": "flagbridge-delivery-ledger",
                "QUARANTINE_BUCKET": "flagbridge-quarantine-local",
                "DESTINATION_DLQS": json.dumps(
                    {
                        name: f"http://localhost:5000/123456789012/flagbridge-dev-{name}-destination-dlq"
                        for name in LANES
                    }
                ),
                "SPLIT_EVENTS_URL": "http://host.docker.internal:3001/api",
                "ANALYTICS_WEBHOOK_URL": "http://host.docker.internal:3001/analytics",
            },
            "TrafficRunsFunction": {
                **shared,
                "RUNS_TABLE": "flagbridge-dev-traffic-runs",
                "SHARD_QUEUE_URL": "http://localhost:5000/123456789012/flagbridge-dev-traffic-shards",
                "MANIFEST_BUCKET": "flagbridge-manifests-local",
                "TRAFFIC_PARALLELISM": "10",
                "TRAFFIC_API_TOKEN_SECRET": "",
                "FLAGBRIDGE_TRAFFIC_API_TOKEN": LOCAL_TRAFFIC_TOKEN,
            },
            "TrafficWorkerFunction": {
                **shared,
                "RUNS_TABLE": "flagbridge-dev-traffic-runs",
                "SHARD_QUEUE_URL": "http://localhost:5000/123456789012/flagbridge-dev-traffic-shards",
                "MANIFEST_BUCKET": "flagbridge-manifests-local",
                "QUARANTINE_BUCKET": "flagbridge-quarantine-local",
                "TRAFFIC_STOP_PARAMETER": "/flagbridge/dev/traffic/stop",
                "TRAFFIC_RESULTS_URL": "http://host.docker.internal:3000/mparticle/v2",
                "TRAFFIC_RUN_TAG_KEY_SECRET": "flagbridge/dev/traffic-run-tag-key",
                "FLAGBRIDGE_MPARTICLE_CREDENTIALS": f"{LOCAL_MPARTICLE_KEY}:{LOCAL_MPARTICLE_SECRET}",
            },
            "ProfileApiFunction": {
                **shared,
                "PROFILES_TABLE": "flagbridge-profiles",
                "PROFILE_API_TOKEN_SECRET": "",
                "FLAGBRIDGE_PROFILE_API_TOKEN": LOCAL_PROFILE_TOKEN,
            },
            "TesterRegistryFunction": {
                **shared,
                "TESTERS_TABLE": "flagbridge-testers",
                "TESTERS_API_TOKEN_SECRET": "",
                "FLAGBRIDGE_TESTERS_API_TOKEN": LOCAL_TESTERS_TOKEN,
            },
            "OracleCounterFunction": {
                **shared,
                "ORACLE_COUNTERS_TABLE": "flagbridge-dev-oracle-counters",
                "PROFILES_TABLE": "flagbridge-profiles",
                "QUARANTINE_BUCKET": "flagbridge-quarantine-local",
            },
            "OracleEvaluatorFunction": {
                **shared,
                "ORACLE_COUNTERS_TABLE": "flagbridge-dev-oracle-counters",
                "ORACLE_VERDICTS_TABLE": "flagbridge-dev-oracle-verdicts",
                "ORACLE_ALARM_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:flagbridge-dev-alarms",
                "ORACLE_EVENT_BUS_NAME": "flagbridge-dev-oracle",
                "SPLIT_ADMIN_API_URL": "http://host.docker.internal:3001/internal/api/v2",
                "SPLIT_ADMIN_API_KEY_SECRET": "flagbridge/dev/split-admin-api-key",
            },
            "TesterSegmentReconcileFunction": {
                **shared,
                "TESTERS_TABLE": "flagbridge-testers",
                "SPLIT_ADMIN_API_URL": "http://host.docker.internal:3001/internal/api/v2",
                "SPLIT_ADMIN_API_KEY_SECRET": "flagbridge/dev/split-admin-api-key",
            },
            "OracleApiFunction": {
                **shared,
                "ORACLE_VERDICTS_TABLE": "flagbridge-dev-oracle-verdicts",
                "ORACLE_API_TOKEN_SECRET": "",
                "FLAGBRIDGE_ORACLE_API_TOKEN": LOCAL_ORACLE_TOKEN,
            },
        },
    )


LOCAL_TRAFFIC_TOKEN = "local-traffic-token"
SAMPLE_MODEL = """name: checkout
requests:
  - name: checkout
    method: POST
    url: http://localhost/checkout
    headers: {Content-Type: application/json}
    body: {user: "{{tester.key}}", sku: "{{choice:A1,B2,C3}}"}
"""
SAMPLE_PLAN = """name: checkout-robustness
body:
  - pointer: /sku
    probability: 10%
    attack_set: Values
attack_sets:
  Values: ["", "0", "<script>"]
"""


def _runs_event(method: str, path: str, body: Any, token: str | None, request_id: str) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Host": "bridge.example.com"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http_api_event(
        method=method,
        path=path,
        route_key="POST /runs" if method == "POST" else "GET /runs/{id}",
        headers=headers,
        body=b"" if body is None else json.dumps(body, indent=1).encode(),
        path_parameters={"id": path.rsplit("/", 1)[1]} if method == "GET" else None,
        request_id=request_id,
        now=FIXED_NOW,
    )


def generate_runs(output: Path) -> None:
    """Test runs: the run API (start, status, no token), the schedule's input and shard messages."""
    import yaml

    request = {  # the plan and model as JSON objects: the stack reads no YAML text (docs/runs.md)
        "plan": yaml.safe_load(SAMPLE_PLAN),
        "model": yaml.safe_load(SAMPLE_MODEL),
        "requests": 40,
        "rate": 400,
        "target": "http://127.0.0.1:8080",
        "seed": 42,
        "run_id": "run-sample-1",
        "testers": ["qa-bot-01", "qa-bot-02"],
    }
    _write(output, "traffic_runs_start.json", _runs_event("POST", "/runs", request, LOCAL_TRAFFIC_TOKEN, "req-run-1"))
    _write(
        output,
        "traffic_runs_status.json",
        _runs_event("GET", "/runs/run-sample-1", None, LOCAL_TRAFFIC_TOKEN, "req-run-2"),
    )
    _write(output, "traffic_runs_no_token.json", _runs_event("GET", "/runs/run-sample-1", None, None, "req-run-3"))
    schedule = {
        "plan_key": "plans/scheduled/plan.json",
        "model_key": "plans/scheduled/model.json",
        "requests": 20,
        "rate": 200,
        "target": "http://127.0.0.1:8080",
        "testers": ["qa-bot-01"],
    }
    _write(output, "traffic_runs_schedule.json", {"schedule": schedule})
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:flagbridge-dev-traffic-shards"
    shard = {"v": 1, "run_id": "run-sample-1", "shard": 0, "first": 0, "count": 10, "seed": 42}
    _write(
        output,
        "sqs_traffic_shard.json",
        sqs_event(queue_arn, [("shard-0001", json.dumps(shard, separators=(",", ":")), 1)], sent_at_ms=SENT_AT_MS),
    )
    _write(
        output,
        "sqs_traffic_shard_garbage.json",
        sqs_event(queue_arn, [("shard-garbage-0001", "{not a shard", 1)], sent_at_ms=SENT_AT_MS),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.make_events", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=EVENTS, help="directory to write to (default: events/)")
    args = parser.parse_args(argv)
    generate(args.output)
    print(f"events written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
