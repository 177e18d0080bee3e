"""Fault injection through the real handlers on moto, and what both fault suites share.

Faults are injected at each boundary by patching one boto3 client method (``unittest.mock``) with a
:class:`Faults` side effect, which fails the calls a plan picks and delegates the others to the real (moto)
method, or by scripting the local Split-compatible receiver. SQS is driven by hand: messages are drained
from moto into ``local.apigw.sqs_event`` events and the records a handler reports as failed (or every record
of an invocation that raised) are fed again, as the event source mapping would after the visibility timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any
from unittest import mock

from botocore.exceptions import ClientError

from local.apigw import sqs_event

Plan = Callable[[int, dict[str, Any]], BaseException | None]


class Crash(BaseException):
    """The Lambda process dying mid-invocation (timeout, out of memory): no handler code can catch it."""


def client_error(code: str, operation: str, status: int = 400) -> ClientError:
    """The error botocore raises when AWS answers ``code`` (after its own retries gave up)."""
    return ClientError(
        {"Error": {"Code": code, "Message": "injected fault"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


def fail_calls(numbers: set[int] | range, error: Callable[[], BaseException]) -> Plan:
    """A plan failing the calls numbered ``numbers`` (0 = the first call) with ``error()``."""
    return lambda number, _kwargs: error() if number in numbers else None


class Faults:
    """``side_effect`` of a patched client method: ``plan(call number, kwargs)`` says which calls fail.

    Thread-safe (the processor writes from worker threads). ``calls`` counts every call, ``failures`` the
    failed ones.
    """

    def __init__(self, real: Callable[..., Any], plan: Plan) -> None:
        self._real = real
        self._plan = plan
        self._lock = threading.Lock()
        self.calls = 0
        self.failures = 0

    def __call__(self, **kwargs: Any) -> Any:
        with self._lock:
            number = self.calls
            self.calls += 1
            error = self._plan(number, kwargs)
            if error is not None:
                self.failures += 1
        if error is not None:
            raise error
        return self._real(**kwargs)


@contextmanager
def inject(client: Any, method: str, plan: Plan) -> Iterator[Faults]:
    """Patch ``client.<method>`` with :class:`Faults` for the duration of the block."""
    faults = Faults(getattr(client, method), plan)
    with mock.patch.object(client, method, side_effect=faults):
        yield faults


def no_sleep(module: Any, monkeypatch: Any, offset: Callable[[], float] = lambda: 0.0) -> None:
    """Make ``module``'s retry sleeps instant (its ``time`` only; other threads keep the real clock).

    ``offset()`` seconds are added to its ``time.time()``, to move its clock past a staleness window.
    """
    fake = SimpleNamespace(
        sleep=lambda _seconds: None,
        time=lambda: time.time() + offset(),
        monotonic=time.monotonic,
    )
    monkeypatch.setattr(module, "time", fake)


class SqsDriver:
    """Feeds one queue's messages to one SQS-triggered handler as the event source mapping would.

    Records come from the queue (drained from moto) or from earlier invocations: a record reported in
    ``batchItemFailures``, or any record of an invocation that raised, is fed again with its receive count
    increased. ``deliveries`` counts every record fed (redeliveries included).
    """

    def __init__(self, sqs: Any, queue_url: str, handler: Callable[[dict[str, Any], Any], Any], context: Any) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._arn = "arn:aws:sqs:us-east-1:123456789012:" + queue_url.rsplit("/", 1)[-1]
        self._handler = handler
        self._context = context
        self.redeliver: list[tuple[str, str, int]] = []
        self.deliveries = 0
        self.crashes = 0  # invocations that raised (a crash or an unhandled error)

    def receive(self) -> list[tuple[str, str, int]]:
        """New messages on the queue (deleted from moto: from now on this driver owns them)."""
        received: list[tuple[str, str, int]] = []
        while True:
            batch = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return received
            for message in batch:
                received.append((message["MessageId"], message["Body"], 1))
                self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def invoke(self, records: list[tuple[str, str, int]]) -> list[str]:
        """One invocation; returns the failed message ids (every one when it raised) and queues them again."""
        self.deliveries += len(records)
        try:
            response = self._handler(sqs_event(self._arn, records), self._context)
        except (Crash, Exception):  # the invocation failed: SQS redelivers every record of it
            self.crashes += 1
            failed = [message_id for message_id, _, _ in records]
        else:
            failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
        by_id = {message_id: (message_id, body, count + 1) for message_id, body, count in records}
        self.redeliver.extend(by_id[message_id] for message_id in failed)
        return failed

    def round(self, batch_size: int = 10) -> int:
        """Deliver what is pending (redeliveries first, then the queue) in invocations of ``batch_size``.

        Returns the number of records that failed and will be fed again next round.
        """
        records, self.redeliver = self.redeliver + self.receive(), []
        failed = 0
        for start in range(0, len(records), batch_size):
            failed += len(self.invoke(records[start : start + batch_size]))
        return failed

    def drain(self, max_rounds: int = 10) -> int:
        """Rounds until nothing fails (or ``max_rounds``); returns how many rounds had failures."""
        for rounds in range(max_rounds):
            if self.round() == 0 and not self.redeliver:
                return rounds
        raise AssertionError(f"records still failing after {max_rounds} rounds: {len(self.redeliver)}")
