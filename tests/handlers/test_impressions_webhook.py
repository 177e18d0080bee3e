"""POST /split/impressions: the handler on moto with the sample API Gateway events."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any
from unittest import mock

import pytest

from tests.conftest import drain_queue, load_event, load_handler, load_payload, quarantine_objects, queued_records


@pytest.fixture
def webhook(aws: dict[str, Any]) -> Any:
    return load_handler("impressions_webhook")


def _body(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])


def _queued_impressions(aws: dict[str, Any]) -> list[dict[str, Any]]:
    impressions = []
    for message in drain_queue(aws["sqs"], aws["queue_url"]):
        impressions.extend(queued_records(message["Body"]))
    return impressions


def test_gzipped_body_without_content_encoding_is_accepted(webhook: Any, aws: dict[str, Any], lambda_context) -> None:
    # Given Split's real delivery: gzip body, token in the URL, no Content-Encoding header
    event = load_event("split_impressions_gzip.json")
    assert "content-encoding" not in event["headers"] and event["isBase64Encoded"]

    response = webhook.lambda_handler(event, lambda_context)

    # Then: exactly 200, valid ones queued, invalid ones quarantined with reasons
    assert response["statusCode"] == 200
    body = _body(response)
    assert body == {
        "requestId": "req-gzip-1",
        "received": 12,
        "accepted": 9,
        "quarantined": 3,
        "quarantineReasons": {"invalid_impression": 2, "unmapped_environment": 1},
    }
    queued = _queued_impressions(aws)
    assert len(queued) == 9
    assert all("machineIp" not in item and "machine_ip" not in item for item in queued)
    assert {item["traffic_type"] for item in queued if item["key"] == "anon-9f2c"} == {"anonymous"}

    (document,) = quarantine_objects(aws["s3"]).values()
    reasons = {item["item"]["key"]: (item["reason"], item["detail"]) for item in document["items"]}
    assert reasons["u-5005"][0] == "invalid_impression" and "time" in reasons["u-5005"][1]
    assert reasons["u-6006"][0] == "invalid_impression" and "split" in reasons["u-6006"][1]
    assert reasons["u-7007"][0] == "unmapped_environment"
    # the original item is kept untouched
    original = load_payload("split_impressions.json")
    assert document["items"][0]["item"] == original[document["items"][0]["index"]]


def test_content_encoding_header_and_plain_body_with_header_token(webhook, aws, lambda_context) -> None:
    for name in ("split_impressions_gzip_encoded.json", "split_impressions_plain.json"):
        response = webhook.lambda_handler(load_event(name), lambda_context)
        assert response["statusCode"] == 200, name
        assert _body(response)["accepted"] == 9
    assert len(_queued_impressions(aws)) == 18


@pytest.mark.parametrize(
    ("event_name", "status", "code"),
    [
        ("split_impressions_bad_token.json", 401, "unauthorized"),
        ("split_impressions_no_token.json", 401, "unauthorized"),
        ("split_impressions_not_array.json", 400, "not_an_array"),
        ("split_impressions_malformed.json", 400, "invalid_json"),
    ],
)
def test_refusals_are_json_errors_and_enqueue_nothing(webhook, aws, lambda_context, event_name, status, code) -> None:
    response = webhook.lambda_handler(load_event(event_name), lambda_context)
    assert response["statusCode"] == status
    assert _body(response)["error"] == code
    assert _body(response)["message"]
    assert _queued_impressions(aws) == []


def test_wrong_content_type_is_415(webhook, aws, lambda_context) -> None:
    event = load_event("split_impressions_plain.json")
    event["headers"]["content-type"] = "application/x-www-form-urlencoded"
    response = webhook.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 415
    assert _body(response)["error"] == "unsupported_media_type"


def test_gzip_bomb_is_413(webhook, aws, lambda_context) -> None:
    event = load_event("split_impressions_gzip.json")
    bomb = gzip.compress(b"[" + b" " * (70 * 1024 * 1024) + b"]")
    event["body"] = base64.b64encode(bomb).decode()
    response = webhook.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 413
    assert _body(response)["error"] == "payload_too_large"


def test_enqueue_failure_replies_5xx_so_split_retries(webhook, aws, lambda_context) -> None:
    from flagbridge import runtime

    sender = runtime.impressions_sender()
    with mock.patch.object(sender._sqs, "send_message_batch", side_effect=RuntimeError("SQS down")):
        response = webhook.lambda_handler(load_event("split_impressions_gzip.json"), lambda_context)
    assert response["statusCode"] == 503
    assert _body(response)["error"] == "unavailable"


def test_sqs_partial_failures_are_retried(webhook, aws, lambda_context) -> None:
    from flagbridge import runtime

    sender = runtime.impressions_sender()
    real = sender._sqs.send_message_batch
    calls = {"n": 0}

    def flaky(**kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:  # first attempt: SQS reports every entry failed
            return {"Successful": [], "Failed": [{"Id": e["Id"], "Code": "InternalError"} for e in kwargs["Entries"]]}
        return real(**kwargs)

    with mock.patch.object(sender._sqs, "send_message_batch", side_effect=flaky):
        response = webhook.lambda_handler(load_event("split_impressions_gzip.json"), lambda_context)
    assert response["statusCode"] == 200
    assert len(_queued_impressions(aws)) == 9


def test_ten_thousand_impressions_fit_sqs_limits(webhook, aws, lambda_context) -> None:
    impressions = [
        {
            "key": f"user-{i % 500}",
            "split": f"flag_{i // 500}",
            "environmentId": "env-prod-0001",
            "environmentName": "Production",
            "treatment": "on" if i % 2 else "off",
            "time": 1767225600000 + i,
            "label": "default rule",
            "splitVersionNumber": 1767000000000,
            "machineIp": "10.0.0.1",
            "machineName": "web-1",
            "sdk": "python",
            "sdkVersion": "10.5.1",
            "bucketingKey": None,
            "properties": None,
        }
        for i in range(10_000)
    ]
    event = load_event("split_impressions_gzip.json")
    event["body"] = base64.b64encode(gzip.compress(json.dumps(impressions).encode())).decode()
    response = webhook.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 200
    assert _body(response)["accepted"] == 10_000
    messages = drain_queue(aws["sqs"], aws["queue_url"])
    assert len(messages) > 1
    assert all(len(m["Body"].encode()) <= 262_144 for m in messages)
    keys = [(i["key"], i["flag"], i["time"]) for m in messages for i in queued_records(m["Body"])]
    assert len(keys) == len(set(keys)) == 10_000
