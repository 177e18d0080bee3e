"""The router on moto: batches queue event -> destination lanes, quarantine and decision log."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import drain_queue, load_event, load_handler, quarantine_objects

NOW_MS = 1767225700000


@pytest.fixture
def router(cdp_aws: dict[str, Any]) -> Any:
    module = load_handler("cdp_router")
    module.runtime.cdp_router()._clock_ms = lambda: NOW_MS  # the sample events are from 2026-01-01
    return module


def _lane(cdp_aws: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in drain_queue(cdp_aws["sqs"], cdp_aws["lanes"][name])]


def test_testers_go_to_split_only_and_customers_to_business_destinations(router, cdp_aws, lambda_context) -> None:
    response = router.lambda_handler(load_event("sqs_batches.json"), lambda_context)
    assert response == {"batchItemFailures": []}

    split = _lane(cdp_aws, "split")
    split_users = {e["body"]["key"] for m in split for e in m["split_events"]}
    assert split_users == {"qa-bot-01", "qa-bot-02"}
    commerce = [e for m in split for e in m["split_events"] if e["body"]["eventTypeId"] == "commerce_purchase"]
    assert len(commerce) == 3  # one Split event per product
    assert all(e["body"]["value"] == 129.5 for e in commerce)

    for business in ("analytics", "warehouse", "reporting"):
        users = {
            identity
            for m in _lane(cdp_aws, business)
            for identity in json.dumps(m["batch"]["user_identities"]).split('"')
            if identity.startswith(("qa-", "u-"))
        }
        assert not any(user.startswith("qa-") for user in users), business
    audit = _lane(cdp_aws, "audit")
    # audit takes everyone, testers included; the plan-violation batch lost all its events to the plan
    assert len(audit) == 4


def test_plan_violation_is_quarantined_with_block_metadata(router, cdp_aws, lambda_context) -> None:
    router.lambda_handler(load_event("sqs_batches.json"), lambda_context)
    documents = quarantine_objects(cdp_aws["s3"])
    blocked = [
        item
        for key, document in documents.items()
        if key.startswith("cdp-router/")
        for item in document["items"]
        if item["kind"] == "plan_blocked"
    ]
    violation = next(item for item in blocked if "req-violation-0001" in json.dumps(item["item"]))
    metadata = violation["item"]["batch"]["context"]["data_plan"]["block_metadata"]
    assert metadata["blocked_event_ids"]
    decision_logs = [d for k, d in documents.items() if k.startswith("decision-log/")]
    assert len(decision_logs) == 5
    reasons = {d["reason"] for log in decision_logs for d in log["decisions"]}
    assert (
        "sent" in reasons
        and any(r.startswith("plan.") for r in reasons)
        and any(r.startswith("filter.") for r in reasons)
    )


def test_a_raw_batch_on_the_queue_is_routed_and_garbage_is_quarantined(router, cdp_aws, lambda_context) -> None:
    event = load_event("sqs_batches.json")
    raw = event["Records"][-1]  # the mParticle webhook format sent straight to the queue
    garbage = {**raw, "messageId": "garbage-1", "body": "{not json"}
    response = router.lambda_handler({"Records": [raw, garbage]}, lambda_context)
    assert response == {"batchItemFailures": []}
    assert len(_lane(cdp_aws, "analytics")) == 1
    assert any(k.startswith("cdp-router/") and "message-garbage-1" in k for k in quarantine_objects(cdp_aws["s3"]))


def test_profile_mark_from_the_impression_feed_makes_a_tester(router, cdp_aws, lambda_context) -> None:
    # Given u-3003 was marked as tester by the impression feed (internal_tester flag served "on")
    load_handler("impressions_processor").lambda_handler(load_event("sqs_impressions.json"), lambda_context)
    event = load_event("sqs_batches.json")
    webhook_batch = event["Records"][-1]
    router.lambda_handler({"Records": [webhook_batch]}, lambda_context)
    # Then their events go to Split and not to analytics
    assert _lane(cdp_aws, "analytics") == []
    assert {e["body"]["key"] for m in _lane(cdp_aws, "split") for e in m["split_events"]} == {"u-3003"}
