"""SQS event source mappings: one poller thread per queue, batches as Lambda forms them, partial batch
responses and retries."""

from __future__ import annotations

import base64
import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from local.apigw import sqs_event
from local.resources import SqsSource
from local.runner.invoke import log

if TYPE_CHECKING:
    from local.runner.bridge import LocalBridge

SQS_MAX_RECEIVE = 10  # messages one ReceiveMessage call returns at most
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024  # an event source mapping cuts a batch there
RECORD_OVERHEAD_BYTES = 1024  # a record's ids, attributes and JSON punctuation around its body
# An idle poller waits this long in the process at a time, as long as its long poll: a message sent wakes it at
# once, one visible again (a retry, a delay) is seen within it, as moto's long poll sees it.
IDLE_WAIT_SECONDS = 1


class SqsPoller(threading.Thread):
    """Polls one queue and invokes one function with its messages, like a Lambda event source mapping."""

    def __init__(self, bridge: LocalBridge, source: SqsSource, queue_url: str) -> None:
        super().__init__(name=f"sqs-{source.function}-{source.event_name}", daemon=True)
        self.bridge = bridge
        self.source = source
        self.queue_url = queue_url
        self.stopping = threading.Event()

    def run(self) -> None:
        sqs = self.bridge.client("sqs")
        visible = embedded_queue_waiter(self.queue_url, self.bridge.region) if self.bridge.embedded_moto else None
        while not self.stopping.is_set():
            if visible is not None and not visible(IDLE_WAIT_SECONDS):
                continue
            try:
                messages = self.receive(sqs)
            except Exception as exc:
                if self.stopping.is_set():
                    return
                log(f"{self.name}: ReceiveMessage failed ({type(exc).__name__}: {exc}); retrying")
                self.stopping.wait(1)
                continue
            if messages:
                with self.bridge.in_flight():
                    self.deliver(sqs, messages)

    def _receive(self, sqs: Any, count: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(count, SQS_MAX_RECEIVE)),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def receive(self, sqs: Any) -> list[dict[str, Any]]:
        """One batch: up to ``BatchSize`` messages gathered within the batching window, under 6 MB of payload.

        ReceiveMessage returns at most 10 messages, so a bigger batch takes several calls. They are short polls:
        the batch ends when the queue has nothing more (Lambda would wait out the window; locally that only
        adds latency).
        """
        batch_size = self.source.batch_size
        messages = self._receive(sqs, batch_size, wait_seconds=1)
        if not messages or self.source.batching_window_seconds <= 0:
            return messages
        deadline = time.monotonic() + self.source.batching_window_seconds
        size = sum(len(m["Body"].encode()) + RECORD_OVERHEAD_BYTES for m in messages)
        while len(messages) < batch_size and time.monotonic() < deadline and not self.stopping.is_set():
            more = self._receive(sqs, batch_size - len(messages), wait_seconds=0)
            if not more:
                break
            fits = 0
            for message in more:
                record_size = len(message["Body"].encode()) + RECORD_OVERHEAD_BYTES
                if size + record_size > LAMBDA_PAYLOAD_BYTES:
                    break
                size += record_size
                fits += 1
            messages.extend(more[:fits])
            if fits < len(more):  # the payload is full: the rest are for the next batch, visible again now
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(more[fits:])
                ]
                sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
                break
        return messages

    def deliver(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        event = sqs_event(
            self.source.queue_arn,
            [
                (m["MessageId"], m["Body"], int((m.get("Attributes") or {}).get("ApproximateReceiveCount", 1)))
                for m in messages
            ],
            region=self.bridge.region,
        )
        for record, message in zip(event["Records"], messages, strict=True):
            record["receiptHandle"] = message["ReceiptHandle"]
            record["md5OfBody"] = message.get("MD5OfBody", "")
            record["attributes"].update(message.get("Attributes") or {})
            record["messageAttributes"] = _event_message_attributes(message.get("MessageAttributes") or {})
        ids = [m["MessageId"] for m in messages]
        try:
            result = self.bridge.invoke(self.source.function, event)
        except Exception:
            log(f"{self.source.function} failed on a batch of {len(messages)} message(s); they will be retried:")
            traceback.print_exc(file=sys.stderr)
            failed = set(ids)
        else:
            failed = self.failed_ids(result, ids) if self.source.report_batch_item_failures else set()
        done = [m for m in messages if m["MessageId"] not in failed]
        retry = [m for m in messages if m["MessageId"] in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
            ]
            sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        if retry:
            log(
                f"{self.source.function}: {len(retry)} message(s) failed; visible again in {self.bridge.retry_seconds}s"
            )
            with contextlib.suppress(Exception):
                for start in range(0, len(retry), 10):
                    chunk = retry[start : start + 10]
                    entries = [
                        {
                            "Id": str(i),
                            "ReceiptHandle": m["ReceiptHandle"],
                            "VisibilityTimeout": self.bridge.retry_seconds,
                        }
                        for i, m in enumerate(chunk)
                    ]
                    sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)

    @staticmethod
    def failed_ids(result: Any, ids: list[str]) -> set[str]:
        """Lambda's partial batch response rules: a malformed response fails the whole batch."""
        if result is None or result == {}:
            return set()
        if not isinstance(result, dict) or not isinstance(result.get("batchItemFailures", []), list):
            return set(ids)
        failed = set()
        for failure in result.get("batchItemFailures") or []:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in ids:
                return set(ids)
            failed.add(identifier)
        return failed


def embedded_queue_waiter(queue_url: str, region: str) -> Callable[[float], bool] | None:
    """A wait, in this process, for a visible message in the embedded moto's queue; ``None`` without one.

    An idle poller's long polls, one HTTP request a second each, were most of an idle runner's CPU. The queue's own
    condition (moto notifies it on every message added, and its long poll waits on it too) wakes the poller the
    moment a message is sent; the poller then receives it over HTTP as before, so batches, retries and the DLQ are
    moto's as before. The wait returns whether a message is visible; on any surprise (moto's internals changed, the
    queue gone) it returns True and the poller long-polls as it would without it.
    """
    try:
        from moto.sqs.models import sqs_backends
    except ImportError:
        return None
    account, name = urlsplit(queue_url).path.strip("/").split("/")[-2:]

    def visible(timeout: float) -> bool:
        try:
            queue = sqs_backends[account][region].queues.get(name)
            if queue is None:
                return True
            queue.wait_for_messages(timeout)  # type: ignore[arg-type]  # annotated int; a Condition waits any float
            return bool(queue.messages)
        except Exception:
            return True

    return visible


def _event_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS API message attributes -> the lower-camel-case shape of Lambda's SQS event."""
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(value["BinaryValue"]).decode() if value.get("BinaryValue") else None,
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType"),
        }
        for name, value in attributes.items()
    }
