"""Faults of test runs: the target down, slow or answering 429; SQS failing while sharding; a worker crashing or
killed mid-shard; DynamoDB throttling; the stop switch mid-run; a shard handed back before a timeout.

In every case: nothing is sent twice (except the one documented window: a worker *killed* between sending a case
and recording it re-sends that one case), no shard is lost, and the run's status says honestly what happened.
The worker sends for real to a counting server on 127.0.0.1; the stores are the in-memory twins, except for
throttling, which runs the DynamoDB store on moto.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from flagbridge.runs.store import DynamoDBRunStore, InMemoryRunStore
from tests.fixtures.runs import (
    CountingTarget,
    ListSender,
    Script,
    counting_target,
    drain,
    manifest_cases,
    run_request,
    wiring,
)


def _exactly_once(target: CountingTarget, planned: int) -> None:
    assert target.total == planned
    assert len(target.cases) == planned and max(target.cases.values()) == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_target_down_before_the_run_is_refused_and_a_shard_whose_target_is_down_sends_nothing() -> None:
    from flagbridge.errors import RequestError
    from flagbridge.runs.service import http_probe
    from tests.fixtures.runs import traffic_config

    url = f"http://127.0.0.1:{_closed_port()}"
    with counting_target() as results:
        wired = wiring(results_url=f"{results.url}/mparticle/v2")
        # POST /runs asks the target first: a 422 naming it, nothing recorded, nothing enqueued
        wired.service.probe = http_probe(traffic_config())
        with pytest.raises(RequestError) as refused:
            wired.service.start(run_request(url, requests=40, run_id="down"))
        assert (refused.value.status, refused.value.code) == (422, "target_not_answering")
        assert str(refused.value).startswith(f"target {url} does not answer (ConnectionRefusedError")
        assert wired.service.status("down") is None and wired.queue == []
        # a target that went down after the start: every shard asks it before its first case and sends nothing
        wired.service.probe = None
        assert wired.service.start(run_request(url, requests=40, run_id="down"))[0] == 202
        shards = len(wired.queue)
        drain(wired)
        status = wired.service.status("down")
        assert status is not None
        assert (status["state"], status["sent"], status["errors"], status["shards"].get("stopped")) == (
            "stopped", 0, 0, shards
        )  # fmt: skip
        [reason] = status["stopped"]
        assert reason.startswith(f"target {url} does not answer (ConnectionRefusedError")
        assert reason.endswith("; nothing was sent")
        assert manifest_cases(wired.manifests, "down") == [] and results.bulk_events == {}


def test_a_target_lost_mid_shard_stops_it_after_twenty_unanswered_in_a_row() -> None:
    import itertools

    from local.traffic_target import DROP, TrafficTarget

    answers = itertools.count(1)
    service = TrafficTarget(respond=lambda raw, target: 200 if next(answers) <= 12 else DROP, record=False).start()
    url = service.url
    try:
        with counting_target() as results:
            wired = wiring(results_url=f"{results.url}/mparticle/v2", parallelism=1)
            assert wired.service.start(run_request(service.url, requests=200, run_id="gone"))[0] == 202
            drain(wired)
    finally:
        service.stop()
    status = wired.service.status("gone")
    assert status is not None and status["state"] == "stopped"
    assert (status["sent"], status["statuses"], status["errors"]) == (32, {"200": 12, "error": 20}, 20)
    [reason] = status["stopped"]
    assert reason.startswith(f"target {url} stopped answering: 20 requests in a row got no answer (last: ")
    assert len(manifest_cases(wired.manifests, "gone")) == 32
    assert sum(results.bulk_events.values()) == 32  # what was sent is reported (the oracle's unanswered rate)


def test_a_slow_answer_times_out_and_the_run_goes_on() -> None:
    with counting_target() as target:
        target.script.append(Script(200, delay=2.5))  # over the sender's 2 s timeout
        wired = wiring()
        assert wired.service.start(run_request(target.url, requests=20, run_id="slow"))[0] == 202
        drain(wired)
        status = wired.service.status("slow")
        assert status is not None and status["state"] == "completed"
        assert (status["sent"], status["errors"]) == (20, 1)
        assert len(manifest_cases(wired.manifests, "slow")) == 20


def test_429_with_retry_after_is_waited_out_and_the_case_sent_once() -> None:
    with counting_target() as target:
        target.script.extend([Script(429, {"Retry-After": "1"}), Script(429, {"Retry-After": "1"})])
        wired = wiring()
        assert wired.service.start(run_request(target.url, requests=20, run_id="busy"))[0] == 202
        drain(wired)
        _exactly_once(target, 20)
        status = wired.service.status("busy")
        assert status is not None and status["statuses"] == {"200": 20}


def test_sqs_failing_while_sharding_loses_no_shard_and_the_repeat_enqueues_the_rest() -> None:
    with counting_target() as target:
        queue: list[str] = []
        sender = ListSender(queue, fail_batches=0)
        wired = wiring(sender=sender)
        wired.queue = queue
        request = run_request(target.url, requests=250, run_id="sqs", shard_size=10)  # 25 shards: 3 batch sends
        original = sender.send_bodies
        calls = {"n": 0}

        def flaky(bodies: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 2:  # the second batch of ten fails after SqsSender's retries
                from flagbridge.errors import EnqueueError

                raise EnqueueError("10 message(s) could not be enqueued (ServiceUnavailable)")
            original(bodies)

        sender.send_bodies = flaky  # type: ignore[method-assign]
        with pytest.raises(Exception) as refused:
            wired.service.start(request)
        assert getattr(refused.value, "status", None) == 503 and "10 of 25" in str(refused.value)
        status = wired.service.status("sqs")
        assert status is not None and status["state"] == "enqueue_failed"
        code, _ = wired.service.start(request)  # the operator repeats the same request
        assert code == 202 and len(queue) == 25
        drain(wired)
        _exactly_once(target, 250)
        status = wired.service.status("sqs")
        assert status is not None and (status["state"], status["sent"]) == ("completed", 250)


def test_a_worker_crash_mid_shard_resumes_from_the_last_recorded_case() -> None:
    calls = {"n": 0}

    def crash_once(send: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(request: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 30:
                raise RuntimeError("crash")
            return send(request)

        return wrapped

    with counting_target() as target:
        wired = wiring(send_wrapper=crash_once)
        wired.service.start(run_request(target.url, requests=100, run_id="crash", checkpoint_every=7))
        crashed = 0
        while wired.queue:
            message = wired.queue.pop(0)
            try:
                wired.worker.process(message, lambda: 600_000)
            except RuntimeError:
                crashed += 1
                wired.queue.append(message)  # the message comes back (the handler makes it visible again)
        assert crashed == 1
        _exactly_once(target, 100)
        assert sorted(c["index"] for c in manifest_cases(wired.manifests, "crash")) == list(range(100))
        status = wired.service.status("crash")
        assert status is not None and (status["state"], status["sent"]) == ("completed", 100)


class WorkerKilledError(BaseException):
    """The worker's process is gone: not even a ``finally`` that writes to the store runs after it."""


class KillingStore(InMemoryRunStore):
    """Kills the worker right after it sent its ``kill_after``-th progress-recorded case (before recording it)."""

    def __init__(self, kill_after: int) -> None:
        super().__init__()
        self.kill_after = kill_after
        self.dead = False

    def progress(self, claim: Any, next_index: int, counts: Any, now_ms: int, lease_ms: int) -> None:
        if self.dead or self.progress_writes == self.kill_after:
            self.dead = True
            raise WorkerKilledError
        super().progress(claim, next_index, counts, now_ms, lease_ms)

    def release(self, claim: Any) -> None:
        if self.dead:
            raise WorkerKilledError
        super().release(claim)


def test_a_worker_killed_between_sending_and_recording_resends_exactly_that_one_case() -> None:
    store = KillingStore(kill_after=12)
    with counting_target() as target:
        wired = wiring(store=store)
        wired.service.start(run_request(target.url, requests=40, run_id="killed", shard_size=40))
        message = wired.queue[0]
        with pytest.raises(WorkerKilledError):
            drain(wired)
        store.dead, store.kill_after = False, -1
        for item in store.items.values():
            item["lease_until"] = 0  # the dead worker's lease runs out
        wired.queue.append(message)  # the queue's visibility timeout: the message comes back
        drain(wired)
        assert target.total == 41  # the documented window: one case, once
        assert sorted(target.cases.values()).count(2) == 1
        assert sorted(c["index"] for c in manifest_cases(wired.manifests, "killed")) == list(range(40))


class ThrottlingClient:
    """A DynamoDB client that refuses every third write with ProvisionedThroughputExceededException."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.writes = 0
        self.throttled = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        self.writes += 1
        if self.writes % 3 == 0:
            self.throttled += 1
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            raise ClientError(error, "UpdateItem")  # type: ignore[arg-type]
        return self._client.update_item(**kwargs)


def test_dynamodb_throttling_is_retried_and_nothing_is_sent_twice() -> None:
    from moto import mock_aws

    with mock_aws(), counting_target() as target:
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="runs",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client = ThrottlingClient(ddb)
        wired = wiring(store=DynamoDBRunStore(client, "runs", sleep=lambda _s: None))
        assert wired.service.start(run_request(target.url, requests=60, run_id="throttled"))[0] == 202
        drain(wired)
        assert client.throttled > 10
        _exactly_once(target, 60)
        status = wired.service.status("throttled")
        assert status is not None and (status["state"], status["sent"]) == ("completed", 60)


def test_the_stop_switch_mid_run_stops_every_later_shard_and_the_status_says_so() -> None:
    with counting_target() as target:
        wired = wiring()
        wired.service.start(run_request(target.url, requests=80, run_id="halt", shard_size=20))
        first = wired.queue.pop(0)
        wired.worker.process(first, lambda: 600_000)
        wired.stop_value[0] = "halt"
        results = drain(wired)
        assert [r.outcome for r in results] == ["stopped"] * 3
        status = wired.service.status("halt")
        assert status is not None
        assert (status["state"], status["sent"], status["shards"]["stopped"]) == ("stopped", 20, 3)
        assert target.total == 20 == len(manifest_cases(wired.manifests, "halt"))


def test_a_shard_handed_back_before_the_timeout_resumes_where_it_stopped() -> None:
    with counting_target() as target:
        wired = wiring()
        wired.service.start(run_request(target.url, requests=30, run_id="deadline", shard_size=30))
        message = wired.queue.pop(0)
        budget = iter([600_000] + [1_000] * 1000)  # after its first batch the invocation is nearly out of time
        result = wired.worker.process(message, lambda: next(budget))
        assert result.outcome == "released" and 0 < result.sent < 30
        assert wired.worker.process(message, lambda: 600_000).outcome == "done"
        _exactly_once(target, 30)


def test_a_duplicate_of_a_shard_being_sent_waits_for_the_lease() -> None:
    with counting_target() as target:
        wired = wiring()
        wired.service.start(run_request(target.url, requests=10, run_id="dup", shard_size=10))
        message = wired.queue.pop(0)
        wired.store.claim("dup", 0, 0, "another-worker", 0, 10**15)
        result = wired.worker.process(message, lambda: 600_000)
        assert result.outcome == "busy" and result.retry_in_seconds > 0 and target.total == 0


def test_results_the_bridge_refuses_are_kept_with_its_answer_beside_each_batch() -> None:
    import json

    from local.traffic_target import TrafficTarget

    refusing = TrafficTarget(respond=lambda raw, path: 401, record=False).start()
    try:
        with counting_target() as target:
            wired = wiring(results_url=refusing.url + "/mparticle/v2")
            assert wired.service.start(run_request(target.url, requests=20, run_id="refused"))[0] == 202
            drain(wired)
    finally:
        refusing.stop()
    kept = []
    for key in wired.manifests.keys("runs/refused/undelivered/"):  # one file per shard that had results refused
        body = wired.manifests.get(key)
        assert body is not None
        kept += json.loads(body)
    assert kept and all(
        entry["answer"]["status"] == 401 and '"status": 401' in entry["answer"]["body"] for entry in kept
    )
    assert sum(len(entry["batch"]["events"]) for entry in kept) == 20
