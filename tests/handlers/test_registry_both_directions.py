"""A registered tester on moto, through the handlers and the sample events: the router sends the user's events to
Split only, the processor marks the profile until the registration expires, and then both treat them as a
customer again. The registry adds one ``BatchGetItem`` per SQS batch to each consumer, never one per event.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from flagbridge.testers import registry as registry_module
from local.make_events import FIXED_NOW
from tests.conftest import TESTERS_TABLE, drain_queue, load_event, load_handler

NOW_MS = 1767225700000  # the sample events are from 2026-01-01
CUSTOMER = "u-1001"  # a real customer in sqs_batches.json and sqs_impressions.json


class Clock:
    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    from flagbridge.profiles import store

    pinned = Clock()
    monkeypatch.setattr(registry_module, "_now", pinned)
    monkeypatch.setattr(store, "_now_ms", lambda: int(pinned.now * 1000))
    return pinned


@pytest.fixture
def testers_requests() -> Counter[str]:
    """DynamoDB requests per table: counted on the runtime's client (what the handlers use)."""
    from flagbridge import runtime

    counts: Counter[str] = Counter()

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        for table in params.get("RequestItems", {}):
            counts[f"{model.name}:{table}"] += 1

    runtime.aws_client("dynamodb").meta.events.register("before-parameter-build.dynamodb.BatchGetItem", count)
    return counts


def _register(clock: Clock, key: str, seconds: float) -> None:
    from flagbridge import runtime

    runtime.tester_registry().register("user", key, clock.now + seconds, "handler test", "test:handlers")


def _users(cdp_aws: dict[str, Any], lane: str) -> set[str]:
    messages = [json.loads(m["Body"]) for m in drain_queue(cdp_aws["sqs"], cdp_aws["lanes"][lane])]
    if lane == "split":
        return {e["body"]["key"] for m in messages for e in m["split_events"]}
    return {str(m["batch"]["user_identities"]) for m in messages}


@pytest.fixture
def router(cdp_aws: dict[str, Any], clock: Clock) -> Any:
    module = load_handler("cdp_router")
    module.runtime.cdp_router()._clock_ms = lambda: NOW_MS
    return module


def test_the_router_sends_a_registered_customer_to_split_until_expiry(
    router, cdp_aws, clock, testers_requests, lambda_context
) -> None:
    # Given u-1001 registered for an hour
    _register(clock, CUSTOMER, 3600)

    # When the sample SQS batch (5 messages, 3 customers and 2 testers) is routed
    assert router.lambda_handler(load_event("sqs_batches.json"), lambda_context) == {"batchItemFailures": []}

    # Then u-1001's events went to Split and not to analytics
    assert _users(cdp_aws, "split") == {"qa-bot-01", "qa-bot-02", CUSTOMER}
    assert not any(CUSTOMER in users for users in _users(cdp_aws, "analytics"))
    # with one registry read for the whole SQS batch
    assert testers_requests[f"BatchGetItem:{TESTERS_TABLE}"] == 1
    for url in cdp_aws["lanes"].values():
        drain_queue(cdp_aws["sqs"], url)

    # When the registration has expired (TTL has not deleted it yet) and the batch comes again
    clock.now += 3601
    event = load_event("sqs_batches.json")
    for record in event["Records"]:
        record["messageId"] += "-again"
    assert router.lambda_handler(event, lambda_context) == {"batchItemFailures": []}

    # Then u-1001 is a customer again
    assert _users(cdp_aws, "split") == {"qa-bot-01", "qa-bot-02"}
    assert any(CUSTOMER in users for users in _users(cdp_aws, "analytics"))
    assert testers_requests[f"BatchGetItem:{TESTERS_TABLE}"] == 2


def test_removing_a_tester_takes_effect_at_once_even_with_a_profile_mark(router, cdp_aws, clock, lambda_context):
    from flagbridge import runtime

    # Given u-1001 registered, their impressions processed (profile marked by the registry), then removed
    _register(clock, CUSTOMER, 3600)
    processor = load_handler("impressions_processor")
    assert processor.lambda_handler(load_event("sqs_impressions.json"), lambda_context) == {"batchItemFailures": []}
    mark = runtime.profile_store().load_marks([f"user#{CUSTOMER}"])[f"user#{CUSTOMER}"]
    assert mark.rule == "tester-registry"
    assert runtime.tester_registry().remove("user", CUSTOMER, "test:handlers", "done")

    # When the batch is routed
    assert router.lambda_handler(load_event("sqs_batches.json"), lambda_context) == {"batchItemFailures": []}

    # Then the registry's own mark did not keep them a tester (the profile_mark rule ignores registry marks)
    assert CUSTOMER not in _users(cdp_aws, "split")


def test_the_processor_marks_a_registered_users_profile_until_expiry(
    aws, clock, testers_requests, lambda_context
) -> None:
    processor = load_handler("impressions_processor")
    profile_api = load_handler("profile_api")
    _register(clock, CUSTOMER, 600)

    # When the sample impressions (users u-1001, qa-bot-01, ...) are processed
    assert processor.lambda_handler(load_event("sqs_impressions.json"), lambda_context) == {"batchItemFailures": []}

    # Then u-1001's profile is a tester's, until the registration's expiry
    profile = json.loads(profile_api.lambda_handler(load_event("profile_api_get.json"), lambda_context)["body"])
    assert profile["testUser"] == {
        "isTestUser": True,
        "rule": "tester-registry",
        "markedAt": profile["testUser"]["markedAt"],
        "expiresAt": int((FIXED_NOW + 600) * 1000),
    }
    # a configured rule's mark is permanent and wins over the registry
    tester = json.loads(profile_api.lambda_handler(load_event("profile_api_tester.json"), lambda_context)["body"])
    assert (tester["testUser"]["rule"], tester["testUser"]["expiresAt"]) == ("qa-allowlist", None)
    assert testers_requests[f"BatchGetItem:{TESTERS_TABLE}"] == 1  # one registry read for the SQS batch

    # When the registration is extended, the next impressions move the mark's expiry with it
    _register(clock, CUSTOMER, 1200)
    event = load_event("sqs_impressions.json")
    event["Records"][0]["messageId"] += "-later"
    assert processor.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    profile = json.loads(profile_api.lambda_handler(load_event("profile_api_get.json"), lambda_context)["body"])
    assert profile["testUser"]["expiresAt"] == int((FIXED_NOW + 1200) * 1000)

    # When it has expired, the profile is a customer's again (the mark reads as none)
    clock.now += 1201
    profile = json.loads(profile_api.lambda_handler(load_event("profile_api_get.json"), lambda_context)["body"])
    assert profile["testUser"] == {"isTestUser": False, "rule": None, "markedAt": None, "expiresAt": None}
