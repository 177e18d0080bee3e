"""The local runner's SQS poller batches like a Lambda event source mapping: BatchSize over 10, window, 6 MB; idle,
it waits on the embedded moto's queue in the process instead of long-polling it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from local.resources import SqsSource
from local.runner import LAMBDA_PAYLOAD_BYTES, SqsPoller
from local.runner.sqs import embedded_queue_waiter


@pytest.fixture
def sqs() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        import boto3

        yield boto3.client("sqs", region_name="us-east-1")


def poller(sqs: Any, batch_size: int, window: int) -> tuple[SqsPoller, str]:
    url = sqs.create_queue(QueueName=f"lane-{batch_size}-{window}")["QueueUrl"]
    source = SqsSource("Fn", "Lane", f"arn:aws:sqs:us-east-1:123456789012:lane-{batch_size}-{window}", batch_size, True)
    source = SqsSource(**{**source.__dict__, "batching_window_seconds": window})
    invoked: list[dict[str, Any]] = []

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        invoked.append(event)
        return {"batchItemFailures": []}

    bridge = SimpleNamespace(region="us-east-1", retry_seconds=0, invoke=invoke, invoked=invoked)
    return SqsPoller(bridge, source, url), url  # type: ignore[arg-type]


def send(sqs: Any, url: str, count: int, size: int = 10) -> None:
    per_call = max(1, min(10, 1_000_000 // size))  # SendMessageBatch: 10 entries, 1 MiB in all
    for start in range(0, count, per_call):
        entries = [
            {"Id": str(i), "MessageBody": f"{start + i:06d}".ljust(size, "x")}
            for i in range(min(per_call, count - start))
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_a_batch_size_over_ten_gathers_several_receives(sqs: Any) -> None:
    lane, url = poller(sqs, batch_size=25, window=5)
    send(sqs, url, 37)
    first = lane.receive(sqs)
    assert len(first) == 25 and len({m["MessageId"] for m in first}) == 25
    assert len(lane.receive(sqs)) == 12  # the rest: the queue has nothing more, no waiting out the window

    # and the whole batch goes to one invocation, every message deleted
    lane.deliver(sqs, first)
    (event,) = lane.bridge.invoked  # type: ignore[attr-defined]
    assert len(event["Records"]) == 25


def test_without_a_window_a_batch_is_one_receive(sqs: Any) -> None:
    lane, url = poller(sqs, batch_size=10, window=0)
    send(sqs, url, 15)
    assert len(lane.receive(sqs)) == 10


def test_a_batch_stops_under_lambdas_payload_limit_and_leaves_the_rest_visible(sqs: Any) -> None:
    lane, url = poller(sqs, batch_size=1000, window=5)
    send(sqs, url, 30, size=250_000)
    batch = lane.receive(sqs)
    assert 20 <= len(batch) < 30
    assert sum(len(m["Body"]) for m in batch) <= LAMBDA_PAYLOAD_BYTES
    assert visible(sqs, url) == 30 - len(batch)


def test_an_idle_poller_waits_in_the_process_and_a_message_sent_wakes_it(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="idle-lane")["QueueUrl"]
    waiter = embedded_queue_waiter(url, "us-east-1")
    assert waiter is not None
    assert waiter(0.01) is False  # empty: the poller makes no ReceiveMessage call
    woken: list[bool] = []
    waiting = threading.Thread(target=lambda: woken.append(waiter(600)))
    waiting.start()
    sqs.send_message(QueueUrl=url, MessageBody="wake")
    waiting.join(120)  # a deadline far below the wait's own 600 s: only the send can have ended it
    assert not waiting.is_alive() and woken == [True]
    assert waiter(600) is True  # visible already: no wait at all
    [message] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=300)["Messages"]
    assert waiter(0.01) is False  # in flight, not visible: nothing to receive
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    assert waiter(0.01) is True  # visible again (a retry): received as before
    gone = embedded_queue_waiter(url.replace("idle-lane", "no-such-lane"), "us-east-1")
    assert gone is not None and gone(0.01) is True  # no such queue here: the poller long-polls as without a wait
