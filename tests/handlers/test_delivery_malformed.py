"""A lane message missing what the router always writes is kept in the quarantine with the reason, never lost.

The delivery ledger keys a non-Split message by its ``batch_key``: two messages without one shared the ledger id
``<lane>#None``, so the second was acknowledged as a duplicate and dropped without a trace. A message without its
``batch`` failed on every receive until SQS moved it to the lane DLQ, which keeps no reason; a Split message without
``split_events`` was acknowledged with nothing sent. Driven by the ``events/sqs_destination_analytics.json`` (a
webhook lane) and ``sqs_destination_split.json`` samples, altered one field at a time.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.conftest import load_event, quarantine_objects
from tests.handlers.test_destination_delivery import delivery as delivery  # a fixture


def analytics_records(drop: str) -> list[dict[str, Any]]:
    """Two distinct messages of the sample, each without ``drop``."""
    records = []
    for number, record in enumerate(load_event("sqs_destination_analytics.json")["Records"][:1] * 2):
        message = json.loads(record["body"])
        message.pop(drop)
        message.get("batch", {})["source_request_id"] = f"req-malformed-{number}"
        records.append({**copy.deepcopy(record), "messageId": f"malformed-{number}", "body": json.dumps(message)})
    return records


def kept(cdp_aws: dict[str, Any]) -> dict[str, Any]:
    objects = quarantine_objects(cdp_aws["s3"]).items()
    return {doc["message_id"]: doc for key, doc in objects if key.startswith("destination-delivery/")}


def test_messages_without_a_batch_key_are_quarantined_not_taken_for_duplicates(
    delivery: Any, cdp_aws: dict[str, Any], receiver: Any, lambda_context: Any
) -> None:
    records = analytics_records("batch_key")
    assert delivery.lambda_handler({"Records": records}, lambda_context) == {"batchItemFailures": []}
    assert receiver.webhooks.get("/analytics", []) == []
    quarantined = kept(cdp_aws)
    assert set(quarantined) == {"malformed-0", "malformed-1"}
    assert all("batch_key" in doc["detail"] for doc in quarantined.values())


def test_a_message_without_its_batch_is_quarantined_not_retried_into_the_dlq(
    delivery: Any, cdp_aws: dict[str, Any], receiver: Any, lambda_context: Any
) -> None:
    [record, _] = analytics_records("batch")
    assert delivery.lambda_handler({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert "batch" in kept(cdp_aws)["malformed-0"]["detail"]


def test_a_split_message_without_its_events_is_quarantined_not_acknowledged_as_sent(
    delivery: Any, cdp_aws: dict[str, Any], receiver: Any, lambda_context: Any
) -> None:
    record = load_event("sqs_destination_split.json")["Records"][0]
    message = json.loads(record["body"])
    del message["split_events"]
    event = {"Records": [{**record, "messageId": "no-events", "body": json.dumps(message)}]}
    assert delivery.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert receiver.split_events == []
    assert "split_events" in kept(cdp_aws)["no-events"]["detail"]


def test_a_message_whose_batch_is_not_an_object_is_quarantined_not_sent(
    delivery: Any, cdp_aws: dict[str, Any], receiver: Any, lambda_context: Any
) -> None:
    records = []
    for number, batch in enumerate([None, [], "batch"]):
        record = load_event("sqs_destination_analytics.json")["Records"][0]
        message = json.loads(record["body"])
        message["batch"] = batch
        message["batch_key"] = f"not-an-object-{number}"
        records.append({**record, "messageId": f"not-an-object-{number}", "body": json.dumps(message)})
    assert delivery.lambda_handler({"Records": records}, lambda_context) == {"batchItemFailures": []}
    assert receiver.webhooks.get("/analytics", []) == []
    quarantined = kept(cdp_aws)
    assert set(quarantined) == {"not-an-object-0", "not-an-object-1", "not-an-object-2"}
    assert all("not a JSON object" in doc["detail"] for doc in quarantined.values())
