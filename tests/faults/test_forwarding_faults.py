"""Faults on the CDP path (mParticle ingest -> batches queue -> router -> destination lanes -> delivery), on moto.

Batches go in through the real ingest handler (Events API, bulk and outbound webhook routes), the router and
the delivery function consume their queues through :class:`tests.faults.SqsDriver` (failed records are fed
again), Split is the local Split-compatible receiver (scripted 429/500/slow/dropped answers) and the
analytics webhook a second receiver, so a Split outage does not script the analytics answers. After the
faults clear: Split received each event exactly once, and each batch reached analytics and reporting once.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

import flagbridge.forwarding.ledger
import flagbridge.quarantine
import flagbridge.queues
from flagbridge import runtime
from local.apigw import http_api_event
from local.receivers import Receiver, ScriptedResponse
from tests.conftest import drain_queue, load_handler
from tests.faults import Crash, SqsDriver, client_error, fail_calls, inject, no_sleep
from tests.handlers.conftest import LANES, cdp_aws, receiver  # noqa: F401 - fixtures used by this module

NOW_MS = 1767225700000
BASIC = "Basic " + base64.b64encode(b"local-mparticle-key:local-mparticle-secret").decode()
ROUTES = {
    "events": ("/mparticle/v2/events", BASIC),
    "bulk": ("/mparticle/v2/bulkevents", BASIC),
    "webhook": ("/mparticle/webhook", "Bearer local-mparticle-webhook"),
}
EVENT_NAMES = ["checkout_started", "checkout_completed", "plan_selected"]
LATER = 1_000  # seconds: past any ledger claim staleness window


def custom_event(name: str, message_id: str, timestamp: int) -> dict[str, Any]:
    return {
        "event_type": "custom_event",
        "data": {
            "event_name": name,
            "custom_event_type": "transaction",
            "source_message_id": message_id,
            "timestamp_unixtime_ms": timestamp,
        },
    }


def batch_of_tester(n: int) -> dict[str, Any]:
    """A tester's batch (``is_test_user``): its events go to Split (and audit), nowhere else."""
    return {
        "environment": "production",
        "source_request_id": f"fault-tester-req-{n}",
        "user_identities": {"customer_id": f"fault-tester-{n}"},
        "user_attributes": {"is_test_user": True},
        "events": [
            custom_event(name, f"t{n}-m{i}", NOW_MS - 60_000 + n * 10 + i) for i, name in enumerate(EVENT_NAMES)
        ],
    }


def batch_of_customer(n: int) -> dict[str, Any]:
    """A real customer's batch: analytics, warehouse, reporting (checkout_* events) and audit, not Split."""
    return {
        "environment": "production",
        "source_request_id": f"fault-customer-req-{n}",
        "user_identities": {"customer_id": f"fault-customer-{n}"},
        "events": [
            custom_event(name, f"c{n}-m{i}", NOW_MS - 50_000 + n * 10 + i) for i, name in enumerate(EVENT_NAMES)
        ],
    }


def split_identity(event: dict[str, Any]) -> tuple[str, str, int, str]:
    return (event["eventTypeId"], event["key"], event["timestamp"], event["properties"]["mp.message_id"])


def expected_split(batches: list[dict[str, Any]]) -> Counter[tuple[str, str, int, str]]:
    """Each distinct tester event once (distinct batches by ``source_request_id``)."""
    distinct = {b["source_request_id"]: b for b in batches if b.get("user_attributes", {}).get("is_test_user")}
    return Counter(
        (
            e["data"]["event_name"],
            b["user_identities"]["customer_id"],
            e["data"]["timestamp_unixtime_ms"],
            e["data"]["source_message_id"],
        )
        for b in distinct.values()
        for e in b["events"]
    )


def expected_customers(batches: list[dict[str, Any]]) -> Counter[str]:
    return Counter({b["source_request_id"] for b in batches if not b.get("user_attributes")})


class Bridge:
    """The CDP path's three functions on moto, fed by hand."""

    def __init__(self, aws: dict[str, Any], split: Receiver, analytics: Receiver, context: Any) -> None:
        self.aws = aws
        self.split = split
        self.analytics = analytics
        self.context = context
        self.ingest = load_handler("mparticle_ingest")
        self.router = load_handler("cdp_router")
        self.router.runtime.cdp_router()._clock_ms = lambda: NOW_MS  # the batches' events are from NOW_MS
        self.delivery = load_handler("destination_delivery")
        sqs = aws["sqs"]
        self.batches = SqsDriver(sqs, aws["batches_url"], self.router.lambda_handler, context)
        self.lanes = {lane: SqsDriver(sqs, aws["lanes"][lane], self.delivery.lambda_handler, context) for lane in LANES}
        self.sent: list[dict[str, Any]] = []
        self.reported: list[dict[str, Any]] = []
        self.requests = 0

    def post(self, route: str, document: Any) -> dict[str, Any]:
        path, authorization = ROUTES[route]
        self.requests += 1
        event = http_api_event(
            method="POST",
            path=path,
            route_key=f"POST {path}",
            headers={"Content-Type": "application/json", "Authorization": authorization},
            body=json.dumps(document).encode(),
            request_id=f"fault-request-{self.requests}",
        )
        response = self.ingest.lambda_handler(event, self.context)
        if response["statusCode"] == 202:
            self.sent.extend(document if isinstance(document, list) else [document])
        return response

    def route(self) -> int:
        return self.batches.round()

    def deliver(self, *lanes: str) -> dict[str, int]:
        """One round on each lane: records that failed there (to be redelivered)."""
        return {lane: self.lanes[lane].round() for lane in lanes or LANES}

    def settle(self, max_rounds: int = 6) -> None:
        self.batches.drain(max_rounds)
        for lane in LANES:
            self.lanes[lane].drain(max_rounds)

    def split_events(self) -> Counter[tuple[str, str, int, str]]:
        return Counter(split_identity(event) for event in self.split.split_events)

    def analytics_batches(self) -> Counter[str]:
        return Counter(batch["source_request_id"] for batch in self.analytics.webhooks.get("/analytics", []))

    def reporting_batches(self) -> Counter[str]:
        self.reported += [json.loads(m["Body"]) for m in drain_queue(self.aws["sqs"], self.aws["reporting_url"])]
        return Counter(batch["source_request_id"] for batch in self.reported)

    def assert_exactly_once(self) -> None:
        assert self.split_events() == expected_split(self.sent)
        assert self.analytics_batches() == expected_customers(self.sent)
        assert self.reporting_batches() == expected_customers(self.sent)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Instant retries everywhere; the delivery retry policy's delays are recorded."""
    delays: list[float] = []

    def fast_policy(self: Any, **_: Any) -> None:
        self.attempts, self.base_seconds, self.cap_seconds, self.budget_seconds = 4, 0.01, 0.05, 5.0
        self.sleep, self.rng = delays.append, None

    for module in (flagbridge.queues, flagbridge.quarantine, flagbridge.forwarding.ledger):
        no_sleep(module, monkeypatch)
    with mock.patch("flagbridge.forwarding.destinations.RetryPolicy.__init__", fast_policy):
        yield delays


@pytest.fixture
def bridge(
    cdp_aws: dict[str, Any],  # noqa: F811
    receiver: Receiver,  # noqa: F811
    sleeps: list[float],
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Bridge]:
    from flagbridge import runtime

    analytics = Receiver().start()
    monkeypatch.setenv("ANALYTICS_WEBHOOK_URL", f"{analytics.url}/analytics")
    runtime.reset()
    yield Bridge(cdp_aws, receiver, analytics, lambda_context)
    analytics.stop()


def test_the_same_batches_ingested_and_delivered_twice_have_one_effect(bridge: Bridge) -> None:
    # Given batches sent twice: the Events API and then bulk (mParticle retrying), and the webhook
    assert bridge.post("events", batch_of_tester(0))["statusCode"] == 202
    assert bridge.post("events", batch_of_customer(0))["statusCode"] == 202
    bulk = [batch_of_tester(1), batch_of_customer(1), batch_of_tester(0), batch_of_customer(0)]
    assert bridge.post("bulk", bulk)["statusCode"] == 202
    assert bridge.post("webhook", batch_of_customer(1))["statusCode"] == 202

    # When the router gets every message twice (SQS at-least-once), and so does every destination lane
    records = bridge.batches.receive()
    assert len(records) == 7
    assert bridge.batches.invoke(records) == []
    assert bridge.batches.invoke(records) == []
    for lane in LANES:
        lane_records = bridge.lanes[lane].receive()
        assert bridge.lanes[lane].invoke(lane_records) == [], lane
        assert bridge.lanes[lane].invoke(lane_records[::-1]) == [], lane

    # Then Split received each tester event once, and analytics and reporting each customer batch once
    assert sum(expected_split(bridge.sent).values()) == 6
    bridge.assert_exactly_once()


def test_split_429_500_and_a_dropped_connection_are_retried_within_the_invocation(
    bridge: Bridge, sleeps: list[float]
) -> None:
    bridge.post("bulk", [batch_of_tester(n) for n in range(3)])
    bridge.route()

    # When Split answers 429 with Retry-After, then 500, then drops the connection, then accepts
    bridge.split.fail_next(
        ScriptedResponse(status=429, headers={"Retry-After": "1"}),
        ScriptedResponse(status=500),
        ScriptedResponse(drop_connection=True),
    )
    assert bridge.deliver("split") == {"split": 0}

    # Then the first retry waited as Split asked, and every event arrived once, in the one request that carries
    # the events of the batch's three lane messages
    assert sleeps[0] == 1.0 and len(sleeps) == 3
    statuses = [r.status for r in bridge.split.requests]  # the dropped request got no answer
    assert statuses == [429, 500, 202], statuses
    bridge.assert_exactly_once()


def test_slow_split_answers_past_the_read_timeout_are_retried(bridge: Bridge, monkeypatch: pytest.MonkeyPatch) -> None:
    from flagbridge.outbound import Outbound

    impatient = Outbound(connect_timeout=1.0, read_timeout=0.2)
    monkeypatch.setattr(runtime, "http_client", lambda: impatient)
    bridge.post("events", batch_of_tester(0))
    bridge.route()

    # When Split takes longer than the read timeout twice
    bridge.split.fail_next(
        ScriptedResponse(status=503, delay_seconds=0.5), ScriptedResponse(status=503, delay_seconds=0.5)
    )
    assert bridge.deliver("split") == {"split": 0}

    # Then the client gave up on both and the third attempt delivered every event once
    bridge.assert_exactly_once()


def test_split_down_for_long_holds_only_its_own_lane(bridge: Bridge) -> None:
    # Given Split answers 503 to everything for a long time
    bridge.split.fail_next(*[ScriptedResponse(status=503) for _ in range(1000)])

    # When batches keep arriving and every lane is consumed, round after round
    for wave in range(3):
        bridge.post("bulk", [batch_of_tester(wave), batch_of_customer(wave)])
        bridge.post("webhook", batch_of_customer(10 + wave))
        assert bridge.route() == 0
        failed = bridge.deliver()
        # Then the Split lane's messages fail (all of them, every round) while the others deliver at once
        assert failed == {"split": wave + 1, "analytics": 0, "warehouse": 0, "reporting": 0, "audit": 0}
        assert bridge.analytics_batches() == expected_customers(bridge.sent)
        assert bridge.reporting_batches() == expected_customers(bridge.sent)
        assert bridge.split.split_events == []
    assert bridge.lanes["split"].deliveries == 1 + 2 + 3

    # When Split recovers, the redelivered messages send each event once
    bridge.split.script.clear()
    bridge.settle()
    bridge.assert_exactly_once()
    assert sum(bridge.split_events().values()) == 9


def test_a_lane_refusing_sends_fails_the_router_record_and_rerouting_doubles_nothing(bridge: Bridge) -> None:
    bridge.post("bulk", [batch_of_customer(n) for n in range(4)] + [batch_of_tester(0)])
    sqs = bridge.router.runtime.destination_sender("reporting")._sqs
    reporting = bridge.aws["lanes"]["reporting"]

    # When the reporting lane's queue refuses every attempt (4) of the first two router sends to it
    def plan(number: int, kwargs: dict[str, Any]) -> Exception | None:
        return client_error("InternalError", "SendMessageBatch", 500) if kwargs["QueueUrl"] == reporting else None

    refusing = {"count": 0}

    def limited(number: int, kwargs: dict[str, Any]) -> Exception | None:
        error = plan(number, kwargs)
        if error is not None and refusing["count"] < 8:
            refusing["count"] += 1
            return error
        return None

    with inject(sqs, "send_message_batch", limited):
        failed_first = bridge.route()
    # Then those two batches were not acknowledged (their analytics/warehouse messages had gone out)
    assert failed_first == 2

    # When SQS redelivers them and the router routes them again, the duplicates are absorbed downstream
    bridge.settle()
    assert len(bridge.analytics.requests) == 4
    bridge.assert_exactly_once()


def test_throttled_ledger_and_mark_lookups_are_retried_without_doubling(bridge: Bridge) -> None:
    bridge.post("bulk", [batch_of_tester(n) for n in range(3)] + [batch_of_customer(n) for n in range(3)])
    ddb = bridge.router.runtime.aws_client("dynamodb")
    throttled = fail_calls({0, 1}, lambda: client_error("ProvisionedThroughputExceededException", "Any"))
    internal = fail_calls({0, 2}, lambda: client_error("InternalServerError", "BatchWriteItem", 500))

    # When the router's profile-mark reads are throttled, then the ledger's claims, then its sent marks
    with inject(ddb, "batch_get_item", throttled):
        bridge.batches.drain()
    assert bridge.batches.crashes == 2
    with inject(ddb, "transact_write_items", throttled) as claims, inject(ddb, "batch_write_item", internal) as marks:
        bridge.settle()

    # Then the failed records were redelivered, and every event and batch arrived once
    assert claims.failures == 2 and marks.failures == 2
    bridge.assert_exactly_once()


def test_sqs_refusing_the_batches_queue_makes_ingest_answer_503_and_the_retry_counts_once(bridge: Bridge) -> None:
    sqs = bridge.ingest.runtime.batches_sender()._sqs
    refusing = fail_calls(range(4), lambda: client_error("ServiceUnavailable", "SendMessageBatch", 503))

    # When SQS refuses every attempt to enqueue an accepted batch
    with inject(sqs, "send_message_batch", refusing):
        response = bridge.post("webhook", batch_of_tester(0))

    # Then mParticle is asked to retry (5xx), and its retry is routed and delivered once
    assert response["statusCode"] == 503 and json.loads(response["body"])["error"] == "unavailable"
    assert bridge.sent == []
    assert bridge.post("webhook", batch_of_tester(0))["statusCode"] == 202
    assert bridge.post("webhook", batch_of_tester(0))["statusCode"] == 202  # and a duplicate retry
    bridge.settle()
    bridge.assert_exactly_once()


@pytest.mark.parametrize("lane", ["split", "analytics"])
def test_a_delivery_dying_after_its_claim_is_retried_until_delivered(
    bridge: Bridge, lane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge.post("bulk", [batch_of_tester(0), batch_of_customer(0)])
    bridge.route()
    http = runtime.http_client()
    real_post = http.post

    # When the function dies (Lambda timeout) while its first request is in flight, after claiming in the ledger
    calls = {"count": 0}

    def dying(url: str, body: bytes, headers: Any) -> Any:
        calls["count"] += 1
        if calls["count"] == 1:
            raise Crash()
        return real_post(url, body, headers)

    monkeypatch.setattr(http, "post", dying)
    assert bridge.deliver(lane) == {lane: 1}

    # Then a redelivery while the dead invocation's claim is fresh is not acknowledged as a duplicate ...
    assert bridge.deliver(lane) == {lane: 1}
    assert bridge.split.split_events == [] and bridge.analytics.webhooks == {}

    # ... and once the claim is stale (the dead invocation is certainly gone), the next one delivers, once
    no_sleep(flagbridge.forwarding.ledger, monkeypatch, offset=lambda: LATER)
    bridge.settle()
    bridge.assert_exactly_once()


@pytest.mark.parametrize("sends_before_crash", [0, 7])
def test_a_router_dying_mid_batch_is_rerouted_without_doubling(bridge: Bridge, sends_before_crash: int) -> None:
    bridge.post("bulk", [batch_of_tester(n) for n in range(2)] + [batch_of_customer(n) for n in range(3)])
    sqs = bridge.router.runtime.destination_sender("audit")._sqs

    # When the router dies after some of the batch's lane messages went out
    crash = fail_calls({sends_before_crash}, Crash)
    with inject(sqs, "send_message_batch", crash):
        bridge.batches.drain()

    # Then SQS redelivered the whole batch, and the lane messages sent twice are delivered once
    assert bridge.batches.crashes == 1
    bridge.settle()
    bridge.assert_exactly_once()
