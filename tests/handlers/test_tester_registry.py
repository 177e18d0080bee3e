"""The tester registry API on moto, driven by the sample events (``events/testers_*.json``).

The samples were made at ``FIXED_NOW`` (2026-01-01) with an expiry a week later, so the registry's clock is
pinned there; everything else (table, index, secret, transactions) is moto's.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from local.make_events import FIXED_NOW
from tests.conftest import TESTERS_TABLE, load_event, load_handler


@pytest.fixture
def testers_api(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    from flagbridge.testers import registry

    monkeypatch.setattr(registry, "_now", lambda: FIXED_NOW)
    return load_handler("tester_registry")


def _call(handler: Any, event: dict[str, Any], context: Any) -> tuple[int, dict[str, Any]]:
    response = handler.lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def _items(aws: dict[str, Any]) -> list[dict[str, Any]]:
    return aws["ddb"].scan(TableName=TESTERS_TABLE)["Items"]


def test_register_writes_the_registration_and_its_audit_entry(testers_api, aws, lambda_context) -> None:
    status, body = _call(testers_api, load_event("testers_put.json"), lambda_context)
    assert status == 200, body
    assert body["trafficType"] == "user" and body["key"] == "qa-run-7"
    assert body["expiresAt"] == "2026-01-08T00:00:00Z"
    assert body["registeredBy"] == "token:testers-api-token"
    assert body["reason"] == "checkout load test, ticket QA-142"
    items = {item["sk"]["S"].split("#")[0]: item for item in _items(aws)}
    assert set(items) == {"TESTER", "AUDIT"}
    assert items["TESTER"]["expires_at"] == {"N": "1767830400"}  # the TTL attribute, epoch seconds
    assert items["TESTER"]["listed"] == {"S": "TESTER"}
    audit = items["AUDIT"]
    assert audit["action"] == {"S": "register"}
    assert audit["actor"] == {"S": "token:testers-api-token"}
    assert audit["reason"] == {"S": "checkout load test, ticket QA-142"}
    assert audit["at"] == {"N": str(int(FIXED_NOW * 1000))}


def test_list_then_delete(testers_api, aws, lambda_context) -> None:
    assert _call(testers_api, load_event("testers_put.json"), lambda_context)[0] == 200
    status, listing = _call(testers_api, load_event("testers_list.json"), lambda_context)
    assert status == 200
    assert [(t["trafficType"], t["key"]) for t in listing["testers"]] == [("user", "qa-run-7")]
    assert listing["nextCursor"] is None

    status, body = _call(testers_api, load_event("testers_delete.json"), lambda_context)
    assert (status, body) == (200, {"trafficType": "user", "key": "qa-run-7", "removed": True})
    assert _call(testers_api, load_event("testers_list.json"), lambda_context)[1]["testers"] == []
    actions = sorted((i["action"]["S"], i["reason"]["S"]) for i in _items(aws) if "action" in i)
    assert actions == [("register", "checkout load test, ticket QA-142"), ("remove", "load test finished")]

    status, body = _call(testers_api, load_event("testers_delete.json"), lambda_context)
    assert (status, body["error"]) == (404, "tester_not_found")
    assert len(_items(aws)) == 2  # a removal that changed nothing is not audited


def test_pages(testers_api, lambda_context) -> None:
    for index in range(5):
        event = load_event("testers_put.json")
        event["pathParameters"]["key"] = f"qa-{index}"
        event["rawPath"] = event["rawPath"].rsplit("/", 1)[0] + f"/qa-{index}"
        assert _call(testers_api, event, lambda_context)[0] == 200
    keys: list[str] = []
    event = load_event("testers_list.json")
    while True:
        status, page = _call(testers_api, event, lambda_context)
        assert status == 200 and len(page["testers"]) <= 2
        keys += [t["key"] for t in page["testers"]]
        if page["nextCursor"] is None:
            break
        event = load_event("testers_list.json")
        event["queryStringParameters"]["cursor"] = page["nextCursor"]
    assert keys == [f"qa-{index}" for index in range(5)]


def test_refusals(testers_api, aws, lambda_context) -> None:
    status, body = _call(testers_api, load_event("testers_put_no_token.json"), lambda_context)
    assert (status, body["error"]) == (401, "unauthorized")
    status, body = _call(testers_api, load_event("testers_put_expired.json"), lambda_context)
    assert (status, body["error"]) == (400, "expired")
    assert _items(aws) == []


def test_named_tokens_name_the_caller(testers_api, aws, lambda_context, monkeypatch) -> None:
    import boto3

    from flagbridge import runtime

    arn = boto3.client("secretsmanager").create_secret(
        Name="flagbridge/testers-named", SecretString=json.dumps({"ci-pipeline": "tok-ci", "alice": "tok-alice"})
    )["ARN"]
    monkeypatch.setenv("TESTERS_API_TOKEN_SECRET", arn)
    runtime.reset()
    event = load_event("testers_put.json")
    event["headers"]["authorization"] = "Bearer tok-ci"
    status, body = _call(testers_api, event, lambda_context)
    assert (status, body["registeredBy"]) == (200, "token:ci-pipeline")
    event["headers"]["authorization"] = "Bearer local-testers-token"
    assert _call(testers_api, event, lambda_context)[0] == 401


def test_logs_hold_no_key(testers_api, lambda_context, caplog, capsys) -> None:
    caplog.set_level(logging.INFO)
    _call(testers_api, load_event("testers_put.json"), lambda_context)
    _call(testers_api, load_event("testers_delete.json"), lambda_context)
    logged = capsys.readouterr().out + caplog.text
    assert "tester registered" in logged and "tester removed" in logged
    assert "qa-run-7" not in logged
    assert "QA-142" not in logged  # the reason stays in the audit trail
