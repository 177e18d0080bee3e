"""Destination delivery on moto with a local Split-compatible receiver: exactly once, retries, DLQ.

``events/sqs_destination_split_batch.json`` is a Split-lane batch as the router writes it: ten tester batches'
lane messages (2 or 3 Split events each, 25 in all) and one message for a destination that is not configured.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from flagbridge import runtime
from local.receivers import ScriptedResponse, split_event_problems
from tests.conftest import ROOT, drain_queue, load_event, load_handler, quarantine_objects


@pytest.fixture
def delivery(cdp_aws: dict[str, Any]) -> Any:
    module = load_handler("destination_delivery")
    fast = mock.patch("flagbridge.forwarding.destinations.RetryPolicy.__init__", _fast_policy_init)
    fast.start()
    yield module
    fast.stop()


def _fast_policy_init(self: Any, **_: Any) -> None:
    self.attempts, self.base_seconds, self.cap_seconds, self.budget_seconds = 4, 0.01, 0.05, 5.0
    self.sleep, self.rng = (lambda seconds: None), None


def test_split_events_arrive_once_and_valid(delivery, cdp_aws, receiver, lambda_context) -> None:
    event = load_event("sqs_destination_split.json")
    assert delivery.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    expected = sum(len(json.loads(r["body"])["split_events"]) for r in event["Records"])
    assert len(receiver.split_events) == expected == 5
    assert all(split_event_problems(e) == [] for e in receiver.split_events)
    assert receiver.requests[0].headers["authorization"] == "Bearer local-split-sdk-key"

    # redelivery of the same messages (and a replay under new message ids) sends nothing again
    replay = copy.deepcopy(event)
    for record in replay["Records"]:
        record["messageId"] += "-replayed"
    delivery.lambda_handler(event, lambda_context)
    delivery.lambda_handler(replay, lambda_context)
    assert len(receiver.split_events) == 5


def test_429_with_retry_after_then_success(delivery, cdp_aws, receiver, lambda_context) -> None:
    receiver.fail_next(ScriptedResponse(status=429, headers={"Retry-After": "0"}), ScriptedResponse(status=503))
    event = load_event("sqs_destination_split.json")
    assert delivery.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert len(receiver.split_events) == 5


def test_split_down_fails_the_record_and_a_later_retry_sends_once(delivery, cdp_aws, receiver, lambda_context) -> None:
    receiver.fail_next(*[ScriptedResponse(status=500) for _ in range(4)])
    event = load_event("sqs_destination_split.json")
    first = event["Records"][0]
    response = delivery.lambda_handler({"Records": [first]}, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": first["messageId"]}]}
    assert receiver.split_events == []
    # SQS redelivers after the visibility timeout: the released claims are sent exactly once
    assert delivery.lambda_handler({"Records": [first]}, lambda_context) == {"batchItemFailures": []}
    assert len(receiver.split_events) == len(json.loads(first["body"])["split_events"])


def test_non_retryable_4xx_goes_to_the_lane_dlq_with_the_response(delivery, cdp_aws, receiver, lambda_context) -> None:
    receiver.fail_next(ScriptedResponse(status=400, body='{"error":"unknown traffic type"}'))
    event = load_event("sqs_destination_split.json")
    first = event["Records"][0]
    assert delivery.lambda_handler({"Records": [first]}, lambda_context) == {"batchItemFailures": []}
    (dead,) = drain_queue(cdp_aws["sqs"], cdp_aws["dlqs"]["split"])
    record = json.loads(dead["Body"])
    assert record["status"] == 400 and "unknown traffic type" in record["response"]
    assert record["events"]


def test_webhook_and_aws_sinks_receive_the_filtered_batches(delivery, cdp_aws, receiver, lambda_context) -> None:
    for lane in ("analytics", "reporting", "warehouse", "audit"):
        event = load_event(f"sqs_destination_{lane}.json")
        assert delivery.lambda_handler(event, lambda_context) == {"batchItemFailures": []}, lane
    analytics = receiver.webhooks["/analytics"]
    assert {json.dumps(b).count("qa-") for b in analytics} == {0}
    assert len(drain_queue(cdp_aws["sqs"], cdp_aws["reporting_url"])) == len(
        load_event("sqs_destination_reporting.json")["Records"]
    )
    # a second delivery of the same webhook messages is skipped by the ledger
    delivery.lambda_handler(load_event("sqs_destination_analytics.json"), lambda_context)
    assert len(receiver.webhooks["/analytics"]) == len(analytics)


def test_one_destination_down_does_not_hold_the_others(delivery, cdp_aws, receiver, lambda_context) -> None:
    # Given Split is down (every HTTP answer is 503)
    receiver.fail_next(*[ScriptedResponse(status=503) for _ in range(100)])
    split = load_event("sqs_destination_split.json")
    failed = delivery.lambda_handler(split, lambda_context)["batchItemFailures"]
    assert len(failed) == len(split["Records"])
    # Then the other lanes, consumed from their own queues, still deliver
    assert delivery.lambda_handler(load_event("sqs_destination_reporting.json"), lambda_context) == {
        "batchItemFailures": []
    }
    assert delivery.lambda_handler(load_event("sqs_destination_audit.json"), lambda_context) == {
        "batchItemFailures": []
    }
    assert drain_queue(cdp_aws["sqs"], cdp_aws["reporting_url"])
    assert receiver.split_events == []


# ---- a batch of Split messages: one request for all of them ------------------------------------------------------

BATCH = "sqs_destination_split_batch.json"
UNKNOWN = "d3f0a9e1-split-batch-unknown"


def split_records(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch's records for the configured Split destination (not the undeliverable one)."""
    return [record for record in event["Records"] if json.loads(record["body"])["destination"] == "split"]


def sent_events(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [event["body"] for event in json.loads(record["body"])["split_events"]]


def split_requests(receiver: Any) -> list[Any]:
    return [request for request in receiver.requests if request.path.endswith("/events/bulk")]


def test_a_batch_of_lane_messages_is_one_split_request(delivery, cdp_aws, receiver, lambda_context) -> None:
    event = load_event(BATCH)
    assert delivery.lambda_handler(event, lambda_context) == {"batchItemFailures": []}

    # Then Split got one request with every event of the ten messages, in order, each valid
    (request,) = split_requests(receiver)
    expected = [body for record in split_records(event) for body in sent_events(record)]
    assert len(expected) == 25 and request.body == expected
    assert all(split_event_problems(e) == [] for e in receiver.split_events)
    # and the message for an unconfigured destination is kept in the quarantine with the reason
    (kept,) = [doc for key, doc in quarantine_objects(cdp_aws["s3"]).items() if key.startswith("destination-delivery/")]
    assert (kept["message_id"], kept["reason"]) == (UNKNOWN, "undeliverable")
    assert "'retired-lane' is not configured" in kept["detail"]

    # A redelivery of the whole batch sends nothing again
    assert delivery.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert len(split_requests(receiver)) == 1 and len(receiver.split_events) == 25


def test_a_refused_request_gives_each_message_its_own_dlq_record(delivery, cdp_aws, receiver, lambda_context) -> None:
    receiver.fail_next(ScriptedResponse(status=400, body='{"error":"unknown traffic type"}'))
    event = load_event(BATCH)
    assert delivery.lambda_handler(event, lambda_context) == {"batchItemFailures": []}

    dead = [json.loads(m["Body"]) for m in drain_queue(cdp_aws["sqs"], cdp_aws["dlqs"]["split"])]
    records = split_records(event)
    assert sorted(d["batch_key"] for d in dead) == sorted(json.loads(r["body"])["batch_key"] for r in records)
    by_key = {d["batch_key"]: d for d in dead}
    for record in records:
        message = json.loads(record["body"])
        refused = by_key[message["batch_key"]]
        assert (refused["reason"], refused["status"], refused["destination"]) == ("split.refused", 400, "split")
        assert "unknown traffic type" in refused["response"]
        assert refused["message"] == message and refused["events"] == sent_events(record)
    # decided: a redelivery neither sends them nor parks them again
    assert delivery.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert len(split_requests(receiver)) == 1 and receiver.split_events == []
    assert drain_queue(cdp_aws["sqs"], cdp_aws["dlqs"]["split"]) == []


@pytest.fixture
def small_requests(cdp_aws: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped configuration with at most 10 events per Split request."""
    from flagbridge import runtime

    document = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    (split,) = [d for d in document["cdp"]["destinations"] if d["name"] == "split"]
    split["options"]["max_events_per_request"] = 10
    path = tmp_path / "flagbridge.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    monkeypatch.setenv("FLAGBRIDGE_CONFIG", str(path))
    runtime.reset()


def test_split_failing_midway_retries_exactly_the_messages_with_unsent_events(
    delivery, cdp_aws, receiver, lambda_context, small_requests, monkeypatch
) -> None:
    event = load_event(BATCH)
    records = split_records(event)
    sizes = [len(sent_events(record)) for record in records]  # 2, 3, 2, 3, 2, 3, 2, 3, 2, 3
    # Requests of <= 10 events: messages 0-3 | 4-7 | 8-9 (a message cut across requests: tests/unit/test_delivery.py)
    http = runtime.http_client()
    real_post = http.post
    calls = {"count": 0}

    def second_request_fails(url: str, body: bytes, headers: Any) -> Any:
        calls["count"] += 1
        if calls["count"] > 1 and calls["count"] <= 5:  # the second request and its 3 retries
            from flagbridge.outbound import Response as HttpResponse

            return HttpResponse(503, {}, "")
        return real_post(url, body, headers)

    monkeypatch.setattr(http, "post", second_request_fails)
    response = delivery.lambda_handler(event, lambda_context)

    # Then the messages whose events all went in the first request are acknowledged; the others are retried
    failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    assert failed == [record["messageId"] for record in records[4:]]
    assert len(receiver.split_events) == sum(sizes[:4]) == 10

    # When SQS redelivers the whole batch, the unsent events are sent, and none of the others again
    monkeypatch.setattr(http, "post", real_post)
    assert delivery.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    expected = [body for record in records for body in sent_events(record)]
    assert receiver.split_events == expected
    assert [len(r.body) for r in split_requests(receiver) if r.status == 202] == [10, 10, 5]


def test_a_message_whose_event_is_claimed_by_an_unfinished_delivery_waits(
    delivery, cdp_aws, receiver, lambda_context
) -> None:
    event = load_event(BATCH)
    records = split_records(event)
    held = json.loads(records[1]["body"])["split_events"][0]["dedup_id"]
    ledger = delivery.runtime.delivery_service()._ledger
    ledger.claim([f"split#{held}"])  # another invocation is delivering it

    response = delivery.lambda_handler(event, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": records[1]["messageId"]}]}
    assert len(receiver.split_events) == 24  # all but the held one, in one request

    ledger.mark_sent([f"split#{held}"])  # the other invocation finishes
    assert delivery.lambda_handler({"Records": [records[1]]}, lambda_context) == {"batchItemFailures": []}
    assert len(receiver.split_events) == 24 and len(split_requests(receiver)) == 1
