"""GET /profiles/{trafficType}/{key} on moto, after the processor has run on the sample batch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import load_event, load_handler


@pytest.fixture
def profile_api(aws: dict[str, Any], lambda_context: Any) -> Any:
    load_handler("impressions_processor").lambda_handler(load_event("sqs_impressions.json"), lambda_context)
    return load_handler("profile_api")


def test_profile_of_a_real_customer(profile_api, lambda_context) -> None:
    response = profile_api.lambda_handler(load_event("profile_api_get.json"), lambda_context)
    assert response["statusCode"] == 200
    profile = json.loads(response["body"])
    assert profile["trafficType"] == "user" and profile["key"] == "u-1001"
    assert profile["identityType"] == "customer_id"
    assert profile["testUser"] == {"isTestUser": False, "rule": None, "markedAt": None, "expiresAt": None}
    checkout = profile["flags"]["new_checkout"]
    assert checkout["treatment"] == "off"
    assert checkout["label"] == "default rule"
    assert checkout["version"] == 1767200000000
    assert checkout["environment"] == "Production"
    assert checkout["exposures"] == 2
    assert [h["treatment"] for h in checkout["history"]] == ["on", "off"]
    assert profile["flags"]["search_v2"]["treatment"] == "control"


def test_profile_of_a_tester_names_the_rule(profile_api, lambda_context) -> None:
    response = profile_api.lambda_handler(load_event("profile_api_tester.json"), lambda_context)
    profile = json.loads(response["body"])
    assert profile["testUser"]["isTestUser"] is True
    assert profile["testUser"]["rule"] == "qa-allowlist"


def test_unknown_user_is_404(profile_api, lambda_context) -> None:
    response = profile_api.lambda_handler(load_event("profile_api_unknown.json"), lambda_context)
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"] == "profile_not_found"


def test_missing_or_wrong_bearer_is_401(profile_api, lambda_context) -> None:
    assert profile_api.lambda_handler(load_event("profile_api_no_token.json"), lambda_context)["statusCode"] == 401
    event = load_event("profile_api_get.json")
    event["headers"]["authorization"] = "Bearer nope"
    response = profile_api.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"] == "unauthorized"


def test_serves_without_reading_the_configuration_file(profile_api, lambda_context, monkeypatch, tmp_path) -> None:
    """The profile API never reads the configuration (so it starts without pydantic, test_handler_init.py)."""
    from flagbridge import runtime
    from flagbridge.errors import ConfigError

    monkeypatch.setenv("FLAGBRIDGE_CONFIG", str(tmp_path / "missing.yaml"))
    runtime.reset()
    response = profile_api.lambda_handler(load_event("profile_api_get.json"), lambda_context)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["key"] == "u-1001"
    with pytest.raises(ConfigError, match=r"missing\.yaml"):  # the file really is missing: reading it would fail
        _ = runtime.settings().config
