"""No PII in logs: capture everything the functions log during a full run and scan it for the inputs' PII.

The run: the webhook (Split's gzip sample, a payload of distinctive personal values, PII-laden hostile
requests and every case of every hostile corpus) -> the processor (the enqueued messages as an SQS event,
a redelivery, and poison messages full of PII) -> profile API reads. Powertools writes JSON logs (and EMF
metrics) to stdout; standard ``logging`` records (botocore, ...) are captured too. None of the keys,
emails, IPs, machine names, bucketing keys or properties values of the inputs may appear.
"""

from __future__ import annotations

import gzip
import json
import logging
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from local.apigw import sqs_event
from tests.conftest import PROFILE_TOKEN, WEBHOOK_TOKEN, FakeLambdaContext, drain_queue, load_event, load_handler
from tests.conftest import load_payload as load_sample_payload
from tests.hostile.support import CLIENT_IP, Case, Route, build_event, corpora

WEBHOOK = Route(handler="impressions_webhook", method="POST", path="/split/impressions")
PROFILES = Route(handler="profile_api", method="GET", path="/profiles/{trafficType}/{key}")
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:flagbridge-impressions-test"

CUSTOMER_KEY = "pii-user-7f3a@example.com"
ANONYMOUS_KEY = "anon-pii-5b2e"  # identity_mapping: anon-.* is the anonymous traffic type
TESTER_KEY = "qa-pii-tester-9c1d"  # test_users: qa-.* marks a tester
UNMAPPED_KEY = "pii-unmapped-6d0b@example.com"
INVALID_KEY = "pii-invalid-1e7c@example.com"
PROPERTIES = {"email": "pii-prop-3e9f@example.com", "phone": "+1-555-0199-7310", "name": "Pii Person Zq8w"}


def _impression(key: str, n: int, **changes: Any) -> dict[str, Any]:
    item = {
        "key": key,
        "split": "pii_checkout",
        "environmentId": "env-prod-0001",
        "environmentName": "Production",
        "treatment": "on",
        "time": 1767225600000 + n,
        "bucketingKey": f"pii-bucket-{n}-2a6c@example.com",
        "label": "default rule",
        "machineName": f"pii-host-{n}-4d8e.corp.example",
        "machineIp": f"10.99.88.{70 + n}",
        "splitVersionNumber": 1767000000000,
        "sdk": "python",
        "sdkVersion": "10.5.1",
        "properties": json.dumps(PROPERTIES),
    }
    item.update(changes)
    return item


PII_PAYLOAD = [
    _impression(CUSTOMER_KEY, 1),
    _impression(CUSTOMER_KEY, 2, treatment="off"),
    _impression(ANONYMOUS_KEY, 3),
    _impression(TESTER_KEY, 4),
    _impression(UNMAPPED_KEY, 5, environmentName="Development", environmentId="env-dev-0001"),
    _impression(INVALID_KEY, 6, time="yesterday"),
]


def pii_values() -> set[str]:
    """Every key, email, IP, machine name, bucketing key and properties value of every input."""
    values = {CLIENT_IP, WEBHOOK_TOKEN, PROFILE_TOKEN}
    for item in [*PII_PAYLOAD, *load_sample_payload("split_impressions.json")]:
        if not isinstance(item, dict):
            continue
        for name in ("key", "machineIp", "machineName", "bucketingKey"):
            if isinstance(item.get(name), str):
                values.add(item[name])
        if isinstance(item.get("properties"), str):
            try:
                properties = json.loads(item["properties"])
            except ValueError:
                properties = None
            if isinstance(properties, dict):
                values.update(str(value) for value in properties.values())
    return {value for value in values if value}


def _webhook_case(name: str, body: bytes, *, query: str = f"token={WEBHOOK_TOKEN}", **headers: str) -> Case:
    return Case(
        name=name,
        status=0,
        path=WEBHOOK.path,
        query=query,
        headers={"Content-Type": "application/json", **headers},
        body=body,
    )


def _profile_case(name: str, traffic_type: str, key: str, token: str = PROFILE_TOKEN) -> Case:
    return Case(
        name=name,
        status=0,
        path=f"/profiles/{traffic_type}/{quote(key, safe='')}",
        headers={"Authorization": f"Bearer {token}"},
    )


def _pii_hostile_requests() -> list[Case]:
    body = json.dumps(PII_PAYLOAD).encode()
    return [
        _webhook_case("pii-wrong-token", body, query="token=wrong"),
        _webhook_case("pii-token-is-an-email", body, query=f"token={quote(CUSTOMER_KEY)}"),
        _webhook_case("pii-malformed", body[: len(body) // 2]),
        _webhook_case("pii-not-an-array", json.dumps(PII_PAYLOAD[0]).encode()),
        _webhook_case("pii-invalid-utf8", body[:-2] + b"\xff]"),
        _webhook_case("pii-content-type", body, **{"Content-Type": f"text/{CUSTOMER_KEY}"}),
        _webhook_case("pii-content-encoding", body, **{"Content-Encoding": CUSTOMER_KEY}),
        _webhook_case("pii-corrupt-gzip", gzip.compress(body)[:-30]),
    ]


class _CurrentStdout:
    """Writes to whatever ``sys.stdout`` is at the time (capsys replaces it after fixtures may run)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def captured_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> Callable[[], str]:
    """Everything logged from now on: Powertools' JSON lines (its handler sent to the capsys-captured
    stdout, where EMF metrics are printed too), stderr, and standard ``logging`` records with their extras."""
    from flagbridge.observability import logger

    monkeypatch.setattr(logger.registered_handler, "stream", _CurrentStdout())
    caplog.set_level(logging.INFO)

    def read() -> str:
        out, err = capsys.readouterr()
        records = [json.dumps(vars(record), default=str) for record in caplog.records]
        return "\n".join([out, err, caplog.text, *records])

    return read


def test_a_full_run_logs_no_pii(shared_aws: dict[str, Any], captured_logs: Callable[[], str]) -> None:
    aws = shared_aws
    context = FakeLambdaContext()
    webhook = load_handler("impressions_webhook")
    processor = load_handler("impressions_processor")
    profile_api = load_handler("profile_api")

    # Given Split's sample delivery and a payload full of personal data, both as Split sends them (gzip)
    sample = webhook.lambda_handler(load_event("split_impressions_gzip.json"), context)
    assert sample["statusCode"] == 200
    pii_case = _webhook_case("pii-payload", gzip.compress(json.dumps(PII_PAYLOAD).encode()))
    accepted = webhook.lambda_handler(build_event(WEBHOOK, pii_case), context)
    assert accepted["statusCode"] == 200
    assert json.loads(accepted["body"])["quarantined"] == 2

    # and hostile requests carrying the same data, then every case of every hostile corpus
    for case in _pii_hostile_requests():
        assert webhook.lambda_handler(build_event(WEBHOOK, case), context)["statusCode"] >= 400, case.name
    messages = drain_queue(aws["sqs"], aws["queue_url"])
    assert messages
    for corpus in corpora():
        handler = load_handler(corpus.ROUTE.handler)
        for case in corpus.CASES:
            handler.lambda_handler(build_event(corpus.ROUTE, case), context)
    drain_queue(aws["sqs"], aws["queue_url"])

    # When the processor applies the enqueued impressions (twice: a redelivery) and poison messages
    records = [(message["MessageId"], message["Body"], 1) for message in messages]
    assert processor.lambda_handler(sqs_event(QUEUE_ARN, records), context) == {"batchItemFailures": []}
    assert processor.lambda_handler(sqs_event(QUEUE_ARN, records), context) == {"batchItemFailures": []}
    poison = [
        ("pii-poison-1", f"not json {CUSTOMER_KEY} 10.99.88.71", 1),
        ("pii-poison-2", json.dumps({"impressions": [{"key": CUSTOMER_KEY, "machineIp": "10.99.88.72"}]}), 1),
    ]
    assert processor.lambda_handler(sqs_event(QUEUE_ARN, poison), context) == {"batchItemFailures": []}

    # and the profiles are read (found, tester, anonymous, unknown, refused)
    reads = [
        (_profile_case("pii-read-customer", "user", CUSTOMER_KEY), 200),
        (_profile_case("pii-read-tester", "user", TESTER_KEY), 200),
        (_profile_case("pii-read-anonymous", "anonymous", ANONYMOUS_KEY), 200),
        (_profile_case("pii-read-unmapped", "user", UNMAPPED_KEY), 404),
        (_profile_case("pii-read-wrong-token", "user", CUSTOMER_KEY, token="wrong"), 401),
    ]
    for case, status in reads:
        response = profile_api.lambda_handler(build_event(PROFILES, case), context)
        assert response["statusCode"] == status, (case.name, response["body"][:300])

    # Then the logs of the whole run carry none of the inputs' personal data
    logs = captured_logs()
    for expected in ('"message":"impressions ingested"', '"message":"request refused"', '"ImpressionsAccepted"'):
        assert expected in logs, f"the run did not log {expected!r}: is the capture working?"
    assert leaks(logs) == [], f"personal data in the logs: {leaks(logs)}"


def test_an_unexpected_error_is_logged_without_the_data_in_its_message(
    shared_aws: dict[str, Any], captured_logs: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a failure whose message quotes the input (as codec and validation errors do)
    webhook = load_handler("impressions_webhook")

    def failing_ingest(data: bytes, **_: Any) -> Any:
        document = json.loads(data)
        raise ValueError(f"cannot handle {document[0]['key']} from {document[0]['machineIp']}")

    # the handler's ingest, as runtime.impressions_ingest binds it at each request
    monkeypatch.setattr("flagbridge.impressions.ingest.ingest_body", failing_ingest)

    # When the webhook hits it
    case = _webhook_case("pii-unexpected", json.dumps(PII_PAYLOAD).encode())
    response = webhook.lambda_handler(build_event(WEBHOOK, case), FakeLambdaContext())

    # Then a generic 500, and a log that says what and where, but not the message
    assert response["statusCode"] == 500
    assert json.loads(response["body"])["error"] == "internal_error"
    logs = captured_logs()
    assert '"error_type":"ValueError"' in logs and "failing_ingest" in logs
    assert leaks(logs) == [], f"personal data in the logs: {leaks(logs)}"


def leaks(logs: str) -> list[str]:
    """The inputs' personal values found in ``logs`` (as is, URL-encoded or JSON-escaped)."""
    return sorted(
        value
        for value in pii_values()
        if value in logs or quote(value, safe="") in logs or json.dumps(value)[1:-1] in logs
    )
