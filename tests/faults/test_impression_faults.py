"""Faults on the impressions path (webhook -> impressions queue -> processor -> profiles), on moto.

Each test sends impressions through the real webhook handler, injects faults at one boundary (DynamoDB
throttling and errors, a processor dying mid-batch, SQS refusing sends while the webhook acknowledges,
the quarantine bucket down), lets SQS redeliver what failed, and checks that once the faults clear every
profile holds each distinct impression exactly once, with the newest treatment current.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from typing import Any
from unittest import mock

import pytest

import flagbridge.profiles.store
import flagbridge.quarantine
import flagbridge.queues
from local.apigw import http_api_event
from tests.conftest import PROFILES_TABLE, WEBHOOK_TOKEN, load_handler, quarantine_objects
from tests.faults import Crash, SqsDriver, client_error, fail_calls, inject, no_sleep

BASE_TIME = 1767225600000
USERS = [f"fault-user-{n}" for n in range(6)] + ["qa-fault-tester", "anon-fault-7"]
FLAGS = ["checkout_v2", "pricing_page", "internal_tester"]
TREATMENTS = ["on", "off", "v1"]


def impression(user: str, flag: str, n: int, **changes: Any) -> dict[str, Any]:
    item = {
        "key": user,
        "split": flag,
        "environmentId": "env-prod-0001",
        "environmentName": "Production",
        "treatment": TREATMENTS[n % len(TREATMENTS)],
        "time": BASE_TIME + n * 1000,
        "bucketingKey": None,
        "label": "default rule",
        "machineName": "web-1",
        "machineIp": "10.0.0.1",
        "splitVersionNumber": 1767000000000,
        "sdk": "python",
        "sdkVersion": "10.5.1",
        "properties": None,
    }
    item.update(changes)
    return item


def impressions(count: int, start: int = 0) -> list[dict[str, Any]]:
    """``count`` distinct impressions spread over every (user, flag), each with its own time."""
    pairs = [(user, flag) for user in USERS for flag in FLAGS]
    return [impression(*pairs[n % len(pairs)], start + n) for n in range(count)]


def user_id(key: str) -> str:
    return f"anonymous#{key}" if key.startswith("anon-") else f"user#{key}"


def expected_profiles(sent: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, str]]:
    """(user id, flag) -> (distinct impressions, treatment of the newest) for everything sent."""
    distinct = {(i["key"], i["split"], i["time"], i["treatment"]): i for i in sent}
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for item in distinct.values():
        by_pair[(user_id(item["key"]), item["split"])].append(item)
    return {pair: (len(items), max(items, key=lambda i: i["time"])["treatment"]) for pair, items in by_pair.items()}


class Pipeline:
    """Split's webhook -> the webhook handler -> impressions queue -> the processor handler, on moto."""

    def __init__(self, aws: dict[str, Any], context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        for module in (flagbridge.queues, flagbridge.quarantine, flagbridge.profiles.store):
            no_sleep(module, monkeypatch)
        self.aws = aws
        self.context = context
        self.webhook = load_handler("impressions_webhook")
        self.processor = load_handler("impressions_processor")
        self.queue = SqsDriver(aws["sqs"], aws["queue_url"], self.processor.lambda_handler, context)
        self.requests = 0

    @property
    def ddb(self) -> Any:
        return self.processor.runtime.impressions_processor()._store._ddb

    def post(self, items: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
        """POST ``items`` as Split does (gzip, token in the query); returns the Lambda response."""
        self.requests += 1
        event = http_api_event(
            method="POST",
            path="/split/impressions",
            route_key="POST /split/impressions",
            raw_query=f"token={WEBHOOK_TOKEN}",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            body=gzip.compress(json.dumps(items).encode(), mtime=0),
            request_id=request_id or f"fault-request-{self.requests}",
        )
        return self.webhook.lambda_handler(event, self.context)

    def send(self, items: list[dict[str, Any]]) -> None:
        """POST until 200, as Split retries a failed delivery."""
        for _ in range(5):
            if self.post(items)["statusCode"] == 200:
                return
        raise AssertionError("the webhook never accepted the request")

    def profiles(self) -> dict[tuple[str, str], tuple[int, str]]:
        items = self.aws["ddb"].scan(TableName=PROFILES_TABLE, ConsistentRead=True)["Items"]
        return {
            (item["pk"]["S"], item["flag"]["S"]): (int(item["exposures"]["N"]), item["treatment"]["S"])
            for item in items
            if item["sk"]["S"].startswith("FLAG#")
        }

    def marks(self) -> dict[str, str]:
        items = self.aws["ddb"].scan(TableName=PROFILES_TABLE, ConsistentRead=True)["Items"]
        return {item["pk"]["S"]: item["test_rule"]["S"] for item in items if item["sk"]["S"] == "META"}


@pytest.fixture
def pipeline(aws: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    return Pipeline(aws, lambda_context, monkeypatch)


def throttled(operation: str) -> Any:
    return lambda: client_error("ProvisionedThroughputExceededException", operation)


def test_throttled_reads_fail_the_invocation_and_the_redelivery_counts_once(pipeline: Pipeline) -> None:
    # Given two webhook deliveries of distinct impressions on the queue
    sent = impressions(60)
    pipeline.send(sent[:30])
    pipeline.send(sent[30:])

    # When DynamoDB throttles the first three bulk reads (after botocore's own retries)
    with inject(pipeline.ddb, "batch_get_item", fail_calls({0, 1, 2}, throttled("BatchGetItem"))) as faults:
        rounds = pipeline.queue.drain()

    # Then the invocations failed and were redelivered until the reads succeeded, and every impression counts once
    assert faults.failures == 3 and rounds >= 1
    assert pipeline.profiles() == expected_profiles(sent)


def test_transient_write_errors_fail_only_their_messages(pipeline: Pipeline) -> None:
    sent = impressions(72)
    for start in range(0, len(sent), 8):  # nine requests: nine messages in one SQS batch
        pipeline.send(sent[start : start + 8])

    # When some conditional writes fail with throttling or an internal error
    def plan(number: int, _kwargs: dict[str, Any]) -> Exception | None:
        if number == 1:
            return client_error("InternalServerError", "PutItem", 500)
        if number == 3:
            return client_error("ProvisionedThroughputExceededException", "PutItem")
        return None

    with inject(pipeline.ddb, "put_item", plan) as faults:
        first_failed = pipeline.queue.round()
        pipeline.queue.drain()

    # Then only the messages of the failed pairs were redelivered, and nothing counts twice
    assert faults.failures > 0
    assert 0 < first_failed < 9
    assert pipeline.profiles() == expected_profiles(sent)


def test_throttled_tester_mark_transactions_recover(pipeline: Pipeline) -> None:
    # Given a tester (qa- key) and a user served internal_tester "on", whose first writes carry their marks
    sent = [impression("qa-fault-tester", "checkout_v2", n) for n in range(5)]
    sent += [impression("fault-user-9", "internal_tester", 10, treatment="on")]
    sent += [impression("fault-user-9", "checkout_v2", 11 + n) for n in range(3)]
    pipeline.send(sent)

    # When the transactions writing state and mark are throttled twice
    failing = fail_calls({0, 1}, throttled("TransactWriteItems"))
    with inject(pipeline.ddb, "transact_write_items", failing) as faults:
        pipeline.queue.drain()

    # Then profiles and marks are written once each
    assert faults.failures == 2
    assert pipeline.profiles() == expected_profiles(sent)
    assert pipeline.marks() == {"user#qa-fault-tester": "qa-key-prefix", "user#fault-user-9": "internal-tester-flag"}


@pytest.mark.parametrize("writes_before_crash", [0, 17])
def test_a_processor_dying_mid_batch_is_redelivered_without_double_counting(
    pipeline: Pipeline, writes_before_crash: int
) -> None:
    sent = impressions(96)
    for start in range(0, len(sent), 12):
        pipeline.send(sent[start : start + 12])

    # When the process dies after some profile writes of the batch were made
    def plan(number: int, _kwargs: dict[str, Any]) -> BaseException | None:
        return Crash() if number == writes_before_crash else None

    with inject(pipeline.ddb, "put_item", plan):
        pipeline.queue.drain()

    # Then SQS redelivered the whole batch and the writes already made recognised their impressions
    assert pipeline.queue.crashes == 1
    assert pipeline.profiles() == expected_profiles(sent)


def test_sqs_refusing_sends_makes_the_webhook_answer_503_and_splits_retry_counts_once(pipeline: Pipeline) -> None:
    # Given a request large enough for two SQS messages (two SendMessageBatch calls): 2,500 impressions are
    # about 355 KB of version 2 records
    sent = impressions(2500)
    sqs = pipeline.webhook.runtime.impressions_sender()._sqs

    # When SQS takes the first message, then refuses every attempt at the second
    refused = fail_calls(range(1, 5), lambda: client_error("InternalError", "SendMessageBatch", 500))
    with inject(sqs, "send_message_batch", refused) as faults:
        response = pipeline.post(sent)

    # Then the webhook asks Split to retry (503, JSON), although part of the request is already queued
    assert response["statusCode"] == 503, response
    assert json.loads(response["body"])["error"] == "unavailable"
    assert faults.calls == 5

    # When Split retries the same body, and SQS recovered
    retried = pipeline.post(sent)
    assert retried["statusCode"] == 200

    # Then the message queued twice (first attempt and retry) counts once
    pipeline.queue.drain()
    assert pipeline.queue.deliveries == 3
    assert pipeline.profiles() == expected_profiles(sent)


def test_transient_sqs_errors_are_retried_within_the_webhook(pipeline: Pipeline) -> None:
    sent = impressions(40)
    sqs = pipeline.webhook.runtime.impressions_sender()._sqs
    real = sqs.send_message_batch
    calls: list[int] = []

    # SendMessageBatch fails outright once, then reports the entry failed once, then takes it
    def flaky(**kwargs: Any) -> Any:
        calls.append(len(kwargs["Entries"]))
        if len(calls) == 1:
            raise client_error("ServiceUnavailable", "SendMessageBatch", 503)
        if len(calls) == 2:
            entry = kwargs["Entries"][0]
            return {"Successful": [], "Failed": [{"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"}]}
        return real(**kwargs)

    with mock.patch.object(sqs, "send_message_batch", side_effect=flaky):
        response = pipeline.post(sent)
    assert response["statusCode"] == 200
    assert calls == [1, 1, 1]

    pipeline.queue.drain()
    assert pipeline.queue.deliveries == 1
    assert pipeline.profiles() == expected_profiles(sent)


def test_the_same_webhook_body_and_the_same_sqs_message_twice_have_no_second_effect(pipeline: Pipeline) -> None:
    sent = impressions(48)
    # Split re-posts a body we did accept (its request timed out on its side)
    assert pipeline.post(sent)["statusCode"] == 200
    assert pipeline.post(sent)["statusCode"] == 200
    records = pipeline.queue.receive()
    assert len(records) == 2

    # The same SQS message is delivered twice in one batch, then again in a later invocation
    assert pipeline.queue.invoke(records + records[:1]) == []
    before = pipeline.profiles()
    with inject(pipeline.ddb, "put_item", lambda n, kw: None) as writes:
        assert pipeline.queue.invoke(records) == []
    assert writes.calls == 0
    assert pipeline.profiles() == before == expected_profiles(sent)


def test_the_quarantine_down_makes_the_webhook_503_and_the_processor_retry(pipeline: Pipeline) -> None:
    sent = impressions(20)
    invalid = [{"key": 1}, "garbage", impression("fault-user-1", "checkout_v2", 99, environmentName="Nowhere")]
    s3 = pipeline.webhook.runtime.quarantine()._s3
    down = fail_calls(range(3), lambda: client_error("ServiceUnavailable", "PutObject", 503))

    # When S3 refuses every attempt to keep the invalid items, the valid ones being already queued
    with inject(s3, "put_object", down):
        response = pipeline.post(sent + invalid)
    assert response["statusCode"] == 503, response

    # Then Split's retry is accepted, the invalid items are kept once, and the valid ones count once
    retried = pipeline.post(sent + invalid)
    assert retried["statusCode"] == 200
    assert json.loads(retried["body"])["quarantined"] == 3

    # And a poison message, while S3 is down, is redelivered rather than lost, then quarantined once
    pipeline.aws["sqs"].send_message(QueueUrl=pipeline.aws["queue_url"], MessageBody="{not json")
    with inject(s3, "put_object", fail_calls(range(3), lambda: client_error("SlowDown", "PutObject", 503))):
        pipeline.queue.drain()
    assert pipeline.profiles() == expected_profiles(sent)
    sources = sorted(key.split("/", 1)[0] for key in quarantine_objects(pipeline.aws["s3"]))
    assert sources == ["impressions-processor", "split-impressions"], sources
