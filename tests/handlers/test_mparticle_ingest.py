"""The mParticle-compatible ingest routes on moto, driven by events/ files."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest

from tests.conftest import drain_queue, load_event, load_handler, quarantine_objects


@pytest.fixture
def ingest(cdp_aws: dict[str, Any]) -> Any:
    return load_handler("mparticle_ingest")


def _queued(cdp_aws: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in drain_queue(cdp_aws["sqs"], cdp_aws["batches_url"])]


@pytest.mark.parametrize(
    "name", ["mparticle_events_test_user.json", "mparticle_events_real_customer.json", "mparticle_webhook.json"]
)
def test_accepted_batches_are_enqueued_as_received(ingest, cdp_aws, lambda_context, name) -> None:
    event = load_event(name)
    response = ingest.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 202
    (queued,) = _queued(cdp_aws)
    assert queued["batch"] == json.loads(event["body"])
    assert queued["source"] == ("webhook" if "webhook" in name else "events_api")


def test_bulk_accepts_up_to_100_batches(ingest, cdp_aws, lambda_context) -> None:
    response = ingest.lambda_handler(load_event("mparticle_bulkevents.json"), lambda_context)
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["accepted"] == 4
    assert len(_queued(cdp_aws)) == 4


def test_bulk_with_a_malformed_batch_accepts_the_rest_and_quarantines_it(ingest, cdp_aws, lambda_context) -> None:
    event = load_event("mparticle_bulkevents.json")
    batches = json.loads(event["body"])
    batches.append({"events": [{"event_type": "custom_event", "data": {}}]})
    event["body"] = json.dumps(batches)
    response = ingest.lambda_handler(event, lambda_context)
    body = json.loads(response["body"])
    assert response["statusCode"] == 202
    assert (body["accepted"], body["quarantined"]) == (4, 1)
    assert body["errors"][0]["index"] == 4
    (document,) = quarantine_objects(cdp_aws["s3"]).values()
    assert document["items"][0]["item"] == batches[4]
    assert any("event_name" in detail for detail in document["items"][0]["detail"])


def test_bulk_quarantines_only_the_batch_whose_plan_version_int_refuses(ingest, cdp_aws, lambda_context) -> None:
    event = load_event("mparticle_bulkevents.json")
    batches = json.loads(event["body"])
    batches.insert(1, {**batches[0], "context": {"data_plan": {"plan_id": "p", "plan_version": "\u00b2"}}})
    event["body"] = json.dumps(batches)
    response = ingest.lambda_handler(event, lambda_context)
    body = json.loads(response["body"])
    assert response["statusCode"] == 202
    assert (body["accepted"], body["quarantined"]) == (4, 1)
    assert body["errors"] == [
        {"index": 1, "code": "BAD_REQUEST", "message": "/context/data_plan/plan_version: must be an integer"}
    ]
    assert len(_queued(cdp_aws)) == 4


def test_one_batch_whose_plan_version_int_refuses_is_a_400_naming_it(ingest, cdp_aws, lambda_context) -> None:
    event = load_event("mparticle_events_test_user.json")
    document = json.loads(event["body"])
    document["context"] = {"data_plan": {"plan_id": "p", "plan_version": "\u00b2"}}
    event["body"] = json.dumps(document)
    response = ingest.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 400
    assert "/context/data_plan/plan_version" in json.loads(response["body"])["message"]
    assert _queued(cdp_aws) == []


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("mparticle_events_no_auth.json", 401),
        ("mparticle_events_bad_auth.json", 403),
        ("mparticle_events_malformed.json", 400),
    ],
)
def test_refusals_follow_mparticle(ingest, cdp_aws, lambda_context, name, status) -> None:
    response = ingest.lambda_handler(load_event(name), lambda_context)
    assert response["statusCode"] == status
    body = json.loads(response["body"])
    assert body["errors"] and body["errors"][0]["code"] and body["message"]
    assert _queued(cdp_aws) == []


def test_webhook_needs_the_configured_authorization(ingest, cdp_aws, lambda_context) -> None:
    event = load_event("mparticle_webhook.json")
    event["headers"]["authorization"] = "Bearer nope"
    assert ingest.lambda_handler(event, lambda_context)["statusCode"] == 403
    del event["headers"]["authorization"]
    assert ingest.lambda_handler(event, lambda_context)["statusCode"] == 401


def test_request_over_256_kb_is_413(ingest, cdp_aws, lambda_context) -> None:
    event = load_event("mparticle_events_test_user.json")
    batch = json.loads(event["body"])
    batch["user_attributes"]["padding"] = "x" * 300_000
    event["body"] = json.dumps(batch)
    response = ingest.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 413


def test_a_gzipped_bulk_request_may_decompress_to_four_times_the_request_limit(ingest, cdp_aws, lambda_context) -> None:
    event = load_event("mparticle_bulkevents.json")
    batches = json.loads(event["body"])
    for batch in batches:
        batch.setdefault("user_attributes", {})["padding"] = "x" * 150_000
    body = json.dumps(batches).encode()
    assert 256 * 1024 < len(body) < 4 * 256 * 1024
    event["body"] = base64.b64encode(gzip.compress(body)).decode()
    event["isBase64Encoded"] = True
    event["headers"]["content-encoding"] = "gzip"
    response = ingest.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 202, response["body"]
    assert [queued["batch"] for queued in _queued(cdp_aws)] == batches
