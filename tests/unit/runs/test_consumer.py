"""The shard queue's consumer: what goes to the quarantine, what is handed back to the queue and when."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flagbridge.quarantine import InMemoryQuarantine
from flagbridge.queues import InMemoryVisibility, SqsVisibility
from flagbridge.runs.consumer import RETRY_AFTER_FAILURE_SECONDS, ShardConsumer
from flagbridge.runs.shards import ShardMessageError
from flagbridge.runs.worker import ShardResult


class Worker:
    """A shard worker answering each body from a table: a result, or an exception to raise."""

    def __init__(self, answers: dict[str, ShardResult | Exception]) -> None:
        self.answers = answers

    def process(self, body: str, remaining_ms: Callable[[], int]) -> ShardResult:
        answer = self.answers[body]
        if isinstance(answer, Exception):
            raise answer
        return answer


def record(message_id: str, body: Any, receipt_handle: str | None = None) -> dict[str, Any]:
    found = {"messageId": message_id, "body": body}
    return found if receipt_handle is None else {**found, "receiptHandle": receipt_handle}


def consumer(
    answers: dict[str, ShardResult | Exception], visibility: InMemoryVisibility | None = None
) -> tuple[ShardConsumer, InMemoryQuarantine]:
    kept = InMemoryQuarantine()
    worker = Worker(answers)
    return ShardConsumer(lambda: worker, lambda: kept, visibility), kept


def test_a_shard_message_that_can_never_be_sent_is_quarantined_with_its_reason_and_acknowledged() -> None:
    visibility = InMemoryVisibility()
    shards, kept = consumer({"{": ShardMessageError("not_json", "Expecting value")}, visibility)
    batch = shards.process([record("m1", "{", "h1")], lambda: 60_000)
    assert batch.batch_response() == {"batchItemFailures": []} and visibility.changes == []
    assert [(r.outcome, r.detail) for r in batch.results] == [("quarantined", "not_json")]
    [document] = kept.objects.values()
    assert (document["source"], document["message_id"], document["reason"]) == ("traffic-shards", "m1", "not_json")
    assert document["items"][0]["item"] == "{"


def test_a_body_over_100_kb_is_quarantined_without_its_body() -> None:
    body = "x" * 100_000
    shards, kept = consumer({body: ShardMessageError("not_json", "Expecting value")})
    shards.process([record("big", body)], lambda: 60_000)
    [document] = kept.objects.values()
    assert document["items"][0]["item"] == "<not kept: over 100 kB>"


def test_a_shard_that_must_wait_comes_back_when_it_can_go_on() -> None:
    visibility = InMemoryVisibility()
    busy = ShardResult("busy", "r", 0, detail="claimed by another worker", retry_in_seconds=42)
    done = ShardResult("done", "r", 1, sent=10)
    shards, _ = consumer(
        {"busy": busy, "done": done, "long": ShardResult("released", retry_in_seconds=5000)}, visibility
    )
    batch = shards.process(
        [record("m1", "busy", "h1"), record("m2", "done", "h2"), record("m3", "long", "h3")], lambda: 60_000
    )
    assert batch.failed_message_ids == ["m1", "m3"] and [r.outcome for r in batch.results] == [
        "busy",
        "done",
        "released",
    ]
    assert visibility.changes == [("h1", 42), ("h3", 900)]  # SQS's longest visibility timeout


def test_a_failure_comes_back_in_seconds_and_is_reported() -> None:
    visibility = InMemoryVisibility()
    shards, kept = consumer({"boom": RuntimeError("the table is gone")}, visibility)
    batch = shards.process([record("m1", "boom", "h1"), record("m2", "boom")], lambda: 60_000)
    assert batch.failed_message_ids == ["m1", "m2"] and batch.results == [] and kept.objects == {}
    assert [str(error) for error in batch.errors] == ["the table is gone"] * 2
    assert visibility.changes == [("h1", RETRY_AFTER_FAILURE_SECONDS)]  # no receipt handle: nothing to change


@pytest.mark.parametrize("broken", ["worker", "quarantine"])
def test_a_collaborator_that_cannot_be_built_fails_its_record_only(broken: str) -> None:
    def unbuildable() -> Any:
        raise LookupError(f"no {broken}")

    kept = InMemoryQuarantine()
    worker = Worker({"{": ShardMessageError("not_json", "Expecting value")})
    shards = ShardConsumer(
        unbuildable if broken == "worker" else lambda: worker,
        unbuildable if broken == "quarantine" else lambda: kept,
        None,  # no shard queue: a record handed back comes back after the queue's visibility timeout
    )
    batch = shards.process([record("m1", "{", "h1")], lambda: 60_000)
    assert batch.failed_message_ids == ["m1"] and [str(e) for e in batch.errors] == [f"no {broken}"]


class FlakySqs:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.calls: list[dict[str, Any]] = []

    def change_message_visibility(self, **request: Any) -> None:
        self.calls.append(request)
        if self.fail:
            raise ConnectionError("sqs unreachable")


@pytest.mark.parametrize("fail", [False, True])
def test_sqs_visibility_is_best_effort_within_the_limits_of_sqs(fail: bool) -> None:
    sqs = FlakySqs(fail)
    visibility = SqsVisibility(sqs, "https://sqs/q")
    visibility.retry_in("h1", -3)
    visibility.retry_in("h2", 1200)
    assert sqs.calls == [
        {"QueueUrl": "https://sqs/q", "ReceiptHandle": "h1", "VisibilityTimeout": 0},
        {"QueueUrl": "https://sqs/q", "ReceiptHandle": "h2", "VisibilityTimeout": 900},
    ]
