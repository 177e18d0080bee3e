"""Destination delivery on moto with a local Split-compatible receiver: exactly once, retries, DLQ."""

from __future__ import annotations

import copy
import json
from typing import Any
from unittest import mock

import pytest

from local.receivers import ScriptedResponse, split_event_problems
from tests.conftest import drain_queue, load_event, load_handler


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
