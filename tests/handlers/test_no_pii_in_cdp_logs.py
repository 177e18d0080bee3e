"""No PII in logs on the CDP path: mParticle ingest -> router -> delivery, all logs captured and scanned.

Identities, emails, IPs and attribute values of the batches must never appear in what the functions log
(Powertools JSON logs and EMF metrics on stdout, standard logging records), including for refused
requests and failed deliveries.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from local.apigw import http_api_event, sqs_event
from local.receivers import ScriptedResponse
from tests.conftest import drain_queue, load_handler

PII = {
    "customer": "pii-cust-4c7d@example.com",
    "tester": "qa-pii-bot-8e21",
    "email": "pii-mail-2f9a@example.com",
    "ip": "203.0.113.77",
    "attribute": "Pii Street 42 Zq7",
    "phone": "+1-555-0142-9981",
}


def _batch(customer: str, tester: bool, n: int) -> dict[str, Any]:
    return {
        "environment": "production",
        "source_request_id": f"pii-req-{n}",
        "ip": PII["ip"],
        "user_identities": {"customer_id": customer, "email": PII["email"], "mobile_number": PII["phone"]},
        "user_attributes": {"is_test_user": tester, "$address": PII["attribute"]},
        "events": [
            {
                "event_type": "custom_event",
                "data": {
                    "event_name": "checkout_started",
                    "custom_event_type": "transaction",
                    "source_message_id": f"pii-msg-{n}",
                    "custom_attributes": {"street": PII["attribute"], "contact": PII["email"]},
                },
            }
        ],
    }


def _post(handler: Any, context: Any, path: str, body: bytes, authorization: str | None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "X-Forwarded-For": PII["ip"]}
    if authorization:
        headers["Authorization"] = authorization
    event = http_api_event(
        method="POST", path=path, route_key=f"POST {path}", headers=headers, body=body, source_ip=PII["ip"]
    )
    return handler.lambda_handler(event, context)


def test_cdp_path_logs_no_personal_data(cdp_aws, receiver, lambda_context, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ingest = load_handler("mparticle_ingest")
    router = load_handler("cdp_router")
    delivery = load_handler("destination_delivery")
    basic = "Basic " + base64.b64encode(b"local-mparticle-key:local-mparticle-secret").decode()

    batches = [_batch(PII["customer"], False, 1), _batch(PII["tester"], True, 2)]
    assert (
        _post(ingest, lambda_context, "/mparticle/v2/bulkevents", json.dumps(batches).encode(), basic)["statusCode"]
        == 202
    )
    # refusals that echo nothing personal
    bad = json.dumps({**batches[0], "events": [{"event_type": "custom_event", "data": {"event_name": PII["email"]}}]})
    assert _post(ingest, lambda_context, "/mparticle/v2/events", bad.encode(), basic)["statusCode"] == 400
    assert _post(ingest, lambda_context, "/mparticle/v2/events", bad.encode(), "Basic " + PII["email"])[
        "statusCode"
    ] in (401, 403)

    queued = drain_queue(cdp_aws["sqs"], cdp_aws["batches_url"])
    router.lambda_handler(
        sqs_event("arn:aws:sqs:us-east-1:123456789012:b", [(m["MessageId"], m["Body"], 1) for m in queued]),
        lambda_context,
    )
    receiver.fail_next(ScriptedResponse(status=400, body=json.dumps({"error": f"bad key {PII['tester']}"})))
    for lane, url in cdp_aws["lanes"].items():
        messages = drain_queue(cdp_aws["sqs"], url)
        if messages:
            delivery.lambda_handler(
                sqs_event(
                    f"arn:aws:sqs:us-east-1:123456789012:{lane}", [(m["MessageId"], m["Body"], 1) for m in messages]
                ),
                lambda_context,
            )

    captured = capsys.readouterr()
    logged = captured.out + captured.err + "\n".join(record.getMessage() for record in caplog.records)
    assert "checkout_started" in json.dumps(receiver.snapshot())  # the run really delivered
    leaks = {name: value for name, value in PII.items() if value in logged}
    assert not leaks, f"personal data in logs: {sorted(leaks)}"


@pytest.mark.parametrize("value", list(PII.values()))
def test_scanner_would_see_a_leak(value: str) -> None:
    # Guard against a scan that cannot fail: the same check on text that contains the value flags it.
    assert value in f'{{"message": "oops {value}"}}'
