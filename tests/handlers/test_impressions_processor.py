"""The impressions processor on moto: SQS event -> DynamoDB profiles, duplicates and partial failures."""

from __future__ import annotations

import copy
import json
from typing import Any
from unittest import mock

import pytest

from tests.conftest import (
    PROFILES_TABLE,
    load_event,
    load_handler,
    quarantine_objects,
    queued_records,
    with_records,
)


@pytest.fixture
def processor(aws: dict[str, Any]) -> Any:
    return load_handler("impressions_processor")


def _items(ddb: Any) -> dict[tuple[str, str], dict[str, Any]]:
    items = ddb.scan(TableName=PROFILES_TABLE, ConsistentRead=True)["Items"]
    return {(item["pk"]["S"], item["sk"]["S"]): item for item in items}


class WriteCounter:
    """Counts DynamoDB write requests the processor makes (botocore before-call hook)."""

    WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")

    def __init__(self, client: Any) -> None:
        self.count = 0
        client.meta.events.register("before-call.dynamodb.*", self._on_call)

    def _on_call(self, model: Any, **_: Any) -> None:
        if model.name in self.WRITES:
            self.count += 1


def _assert_sample_profiles(items: dict[tuple[str, str], dict[str, Any]]) -> None:
    checkout = items[("user#u-1001", "FLAG#new_checkout")]
    # newest impression (off, version 1767200000000) wins; the in-batch duplicate is not counted
    assert checkout["treatment"]["S"] == "off"
    assert checkout["version"]["N"] == "1767200000000"
    assert checkout["exposures"]["N"] == "2"
    assert checkout["first_seen"]["N"] == "1767225600123"
    assert checkout["last_seen"]["N"] == "1767225900456"
    assert len(checkout["assignments"]["L"]) == 2
    # test users marked with the rule that matched
    assert items[("user#qa-bot-01", "META")]["test_rule"]["S"] == "qa-allowlist"
    assert items[("user#u-2002", "META")]["test_rule"]["S"] == "targeted-by-whitelist"
    assert items[("user#u-3003", "META")]["test_rule"]["S"] == "internal-tester-flag"
    assert ("user#u-1001", "META") not in items
    assert ("anonymous#anon-9f2c", "FLAG#new_checkout") in items


def test_sample_batch_builds_profiles(processor, aws, lambda_context) -> None:
    event = load_event("sqs_impressions.json")
    assert {json.loads(record["body"])["v"] for record in event["Records"]} == {2}  # what the webhook writes
    response = processor.lambda_handler(event, lambda_context)
    assert response == {"batchItemFailures": []}
    _assert_sample_profiles(_items(aws["ddb"]))
    assert quarantine_objects(aws["s3"]) == {}


def test_version_1_messages_are_still_processed(processor, aws, lambda_context) -> None:
    # Messages the webhook wrote before version 2 (in flight during a deploy, or redriven from the DLQ).
    event = load_event("sqs_impressions_v1.json")
    messages = [json.loads(record["body"]) for record in event["Records"]]
    assert all(message["v"] == 1 and "fields" not in message for message in messages)
    assert all(type(record) is dict for message in messages for record in message["impressions"])
    v2 = load_event("sqs_impressions.json")
    assert [queued_records(m) for m in messages] == [queued_records(r["body"]) for r in v2["Records"]]

    assert processor.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    _assert_sample_profiles(_items(aws["ddb"]))
    assert quarantine_objects(aws["s3"]) == {}

    # The same impressions in version 2 are recognised as duplicates: the fingerprints do not depend on it.
    before = _items(aws["ddb"])
    counter = WriteCounter(processor.runtime.impressions_processor()._store._ddb)
    assert processor.lambda_handler(v2, lambda_context) == {"batchItemFailures": []}
    assert counter.count == 0
    assert _items(aws["ddb"]) == before


BROKEN_VERSION_2 = [
    pytest.param(
        lambda m: {**m, "fields": [m["fields"][1], m["fields"][0], *m["fields"][2:]]},
        "fields: Value error, must be [",
        id="order",
    ),
    pytest.param(lambda m: {**m, "fields": m["fields"][:-1]}, "fields: Value error, must be [", id="fewer-fields"),
    pytest.param(
        lambda m: {k: v for k, v in m.items() if k != "fields"}, "fields: Value error, required", id="no-fields"
    ),
    pytest.param(
        lambda m: {**m, "impressions": [m["impressions"][0][:-1], *m["impressions"][1:]]},
        "record 0 holds 11 values",
        id="short-record",
    ),
    pytest.param(
        lambda m: {**m, "impressions": [*m["impressions"][:2], [*m["impressions"][2], None]]},
        "record 2 holds 13 values",
        id="long-record",
    ),
    pytest.param(
        lambda m: {**m, "impressions": [dict(zip(m["fields"], m["impressions"][0], strict=True))]},
        "record 0 is an object",
        id="object-record",
    ),
    pytest.param(
        lambda m: {**m, "impressions": [[*m["impressions"][0][:3], "soon", *m["impressions"][0][4:]]]},
        "impressions.0.time: ",
        id="bad-time",
    ),
    pytest.param(lambda m: {**m, "v": 3}, "v: Value error, unknown message version 3", id="unknown-version"),
]


@pytest.mark.parametrize(("change", "named"), BROKEN_VERSION_2)
def test_a_broken_version_2_message_is_quarantined_with_the_reason(
    processor, aws, lambda_context, change: Any, named: str
) -> None:
    event = load_event("sqs_impressions.json")
    record = event["Records"][0]
    broken = change(json.loads(record["body"]))
    record["body"] = json.dumps(broken)
    assert processor.lambda_handler({"Records": [record]}, lambda_context) == {"batchItemFailures": []}

    (document,) = quarantine_objects(aws["s3"]).values()
    assert document["reason"] == "invalid_message"
    assert named in document["detail"], document["detail"]
    assert document["items"][0]["item"] == broken  # kept as received
    assert _items(aws["ddb"]) == {}


def test_redelivery_changes_nothing(processor, aws, lambda_context) -> None:
    event = load_event("sqs_impressions.json")
    processor.lambda_handler(event, lambda_context)
    before = _items(aws["ddb"])

    counter = WriteCounter(processor.runtime.impressions_processor()._store._ddb)
    redelivered = copy.deepcopy(event)
    redelivered["Records"][0]["messageId"] = "redelivered-1"
    assert processor.lambda_handler(redelivered, lambda_context) == {"batchItemFailures": []}

    assert _items(aws["ddb"]) == before
    assert counter.count == 0


def test_out_of_order_older_impression_does_not_overwrite(processor, aws, lambda_context) -> None:
    event = load_event("sqs_impressions.json")
    message = json.loads(event["Records"][0]["body"])
    newest = [i for i in queued_records(message) if i["key"] == "u-1001" and i["treatment"] == "off"]
    older = [i for i in queued_records(message) if i["key"] == "u-1001" and i["flag"] == "new_checkout"][:1]

    def deliver(impressions: list[dict[str, Any]], message_id: str) -> None:
        record = copy.deepcopy(event["Records"][0])
        record["messageId"] = message_id
        record["body"] = with_records(message, impressions)
        assert processor.lambda_handler({"Records": [record]}, lambda_context) == {"batchItemFailures": []}

    deliver(newest, "m-new")
    deliver(older, "m-old")
    item = _items(aws["ddb"])[("user#u-1001", "FLAG#new_checkout")]
    assert item["treatment"]["S"] == "off"
    assert item["exposures"]["N"] == "2"
    assert item["first_seen"]["N"] == str(older[0]["time"])


def test_writes_never_exceed_distinct_user_flag_pairs(processor, aws, lambda_context) -> None:
    event = load_event("sqs_impressions.json")
    impressions = queued_records(event["Records"][0]["body"])
    pairs = {(i["traffic_type"], i["key"], i["flag"]) for i in impressions}
    counter = WriteCounter(processor.runtime.impressions_processor()._store._ddb)
    processor.lambda_handler(event, lambda_context)
    assert counter.count == len(pairs)


def test_poison_message_is_quarantined_not_retried(processor, aws, lambda_context) -> None:
    response = processor.lambda_handler(load_event("sqs_impressions_poison.json"), lambda_context)
    assert response == {"batchItemFailures": []}
    (document,) = quarantine_objects(aws["s3"]).values()
    assert document["reason"] == "invalid_message"
    assert document["items"][0]["item"] == "this is not json"


def test_failed_write_reports_only_contributing_messages(processor, aws, lambda_context) -> None:
    event = load_event("sqs_impressions.json")
    message = json.loads(event["Records"][0]["body"])
    records = []
    impressions = queued_records(message)
    for index, impression in enumerate(impressions[:3]):
        record = copy.deepcopy(event["Records"][0])
        record["messageId"] = f"m-{index}"
        record["body"] = with_records(message, [impression])
        records.append(record)
    store = processor.runtime.impressions_processor()._store
    real_put = store._ddb.put_item
    failing_key = impressions[2]["key"], impressions[2]["flag"]

    def put_item(**kwargs: Any) -> Any:
        item = kwargs["Item"]
        if (item["key"]["S"], item["flag"]["S"]) == failing_key:
            raise store._ddb.exceptions.ProvisionedThroughputExceededException(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem"
            )
        return real_put(**kwargs)

    with mock.patch.object(store._ddb, "put_item", side_effect=put_item):
        response = processor.lambda_handler({"Records": records}, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}

    # the redelivery succeeds and nothing is counted twice
    assert processor.lambda_handler({"Records": records}, lambda_context) == {"batchItemFailures": []}
    items = _items(aws["ddb"])
    assert sum(int(i["exposures"]["N"]) for k, i in items.items() if k[1].startswith("FLAG#")) == 3
