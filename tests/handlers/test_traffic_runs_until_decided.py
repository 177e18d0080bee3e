"""``POST /runs`` with ``until_decided``: refused unless a boolean and a plan feeding an oracle test; the run is sent
in rounds (moto, the real handlers): only the first round is enqueued, the round's last shard sends a delayed look,
the look waits for an evaluation after the round's last result, then enqueues the next round sized by the oracle's
estimate (cut to the budget) or ends the run with the CLI's words; exactly one of two looks advances a round.

The rounds' rules on the in-memory twins: tests/unit/runs/test_rounds.py. The CLI's rounds are
tests/unit/traffic/test_traffic_until_decided.py and tests/e2e/test_until_decided_e2e.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import load_handler
from tests.fixtures.runs import ORACLE_TEST, PLAN, PLAN_WITH_TEST, CountingTarget
from tests.handlers.test_traffic_runs import STOP, VERDICTS, api, run_body, runs_aws, target

__all__ = ["runs_aws", "target"]  # the fixtures this module uses


@pytest.fixture
def rounds_aws(runs_aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The runs stack with looks not delayed (the delay itself: the first test), so a test need not wait."""
    from flagbridge import runtime

    monkeypatch.setenv("TRAFFIC_LOOK_DELAY_SECONDS", "0")
    runtime.reset()
    yield runs_aws


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        ({"until_decided": "yes", "plan": PLAN_WITH_TEST}, "invalid_until_decided",
         "'until_decided' must be true or false, got 'yes'"),
        ({"until_decided": 1, "plan": PLAN_WITH_TEST}, "invalid_until_decided",
         "'until_decided' must be true or false, got 1"),
        ({"until_decided": True, "plan": PLAN}, "until_decided_without_test",
         "'until_decided' runs until the oracle decides: the plan must feed an oracle test (oracle: {test: NAME})"),
    ],
)  # fmt: skip
def test_until_decided_must_be_a_boolean_and_needs_a_plan_feeding_a_test(
    runs_aws: dict[str, Any],
    lambda_context: Any,
    target: CountingTarget,
    extra: dict[str, Any],
    code: str,
    message: str,
) -> None:
    handler = load_handler("traffic_runs")
    status, answer = api(handler, lambda_context, "POST", "/runs", run_body(target, run_id="r-refused", **extra))
    assert (status, answer["error"], answer["message"]) == (400, code, message)
    assert api(handler, lambda_context, "GET", "/runs/r-refused")[0] == 404
    assert runs_aws["sqs"].receive_message(QueueUrl=runs_aws["queue_url"]).get("Messages") is None


def _put_verdict(runs_aws: dict[str, Any], state: str, evaluated_at: int, needed: int | None = None) -> None:
    rows = [{"treatment": "on", "metric": "5xx rate", "state": state, "needed": needed, "n": 400, "explain": "..."}]
    document = {"state": state, "evaluated_at": evaluated_at, "verdicts": rows}
    runs_aws["ddb"].put_item(
        TableName=VERDICTS,
        Item={"pk": {"S": f"TEST#{ORACLE_TEST}"}, "sk": {"S": "STATE"}, "doc": {"S": json.dumps(document)}},
    )


def _later() -> int:
    """An evaluation time after anything a test sends (a fresh evaluation of every round)."""
    return int(time.time() * 1000) + 600_000


def _queued(runs_aws: dict[str, Any]) -> list[dict[str, Any]]:
    """The bodies on the shard queue (left there: visible again at once)."""
    sqs, url = runs_aws["sqs"], runs_aws["queue_url"]
    found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    return [json.loads(message["Body"]) for message in found]


def _deliver(runs_aws: dict[str, Any], context: Any, message: dict[str, Any], worker: Any = None) -> dict[str, Any]:
    worker = worker or load_handler("traffic_worker")
    event = {"Records": [{"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                          "body": message["Body"], "eventSource": "aws:sqs"}]}  # fmt: skip
    result: dict[str, Any] = worker.lambda_handler(event, context)
    if not result["batchItemFailures"]:
        runs_aws["sqs"].delete_message(QueueUrl=runs_aws["queue_url"], ReceiptHandle=message["ReceiptHandle"])
    return result


def drain(runs_aws: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    """Deliver shard and look messages until the queue is empty or a look comes back (the verdict was stale: it
    is left on the queue). Returns the look messages delivered."""
    sqs, url = runs_aws["sqs"], runs_aws["queue_url"]
    looks: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
        if not messages:
            return looks
        body = json.loads(messages[0]["Body"])
        if body.get("kind") == "look":
            if any(look["look_id"] == body["look_id"] for look in looks):
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"],
                                              VisibilityTimeout=0)  # fmt: skip
                return looks
            looks.append(body)
        _deliver(runs_aws, context, messages[0])


def start(runs_aws: dict[str, Any], context: Any, target: CountingTarget, run_id: str, **extra: Any) -> Any:
    handler = load_handler("traffic_runs")
    body = run_body(target, run_id=run_id, plan=PLAN_WITH_TEST, until_decided=True, **extra)
    status, started = api(handler, context, "POST", "/runs", body)
    assert status == 202, started
    return started


def status(context: Any, run_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = api(load_handler("traffic_runs"), context, "GET", f"/runs/{run_id}")[1]
    return answer


def test_only_the_first_round_is_enqueued_and_its_last_shard_sends_a_delayed_look(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    started = start(runs_aws, lambda_context, target, "r-first", requests=1000, shard_size=50)
    assert (started["shards"], started["sqs_requests"], started["expected_sqs_requests"]) == (20, 1, 1)
    queued = _queued(runs_aws)
    assert sorted(body["shard"] for body in queued) == [0, 1]  # 100 requests: the first round's two shards
    run = status(lambda_context, "r-first")
    assert run["shards"] == {"total": 20, "enqueued": 2, "pending": 2, "not_sent": 18}
    assert run["rounds"] == [{"first": 0, "requests": 100, "asked": None, "shards": [0, 2], "look": None}]
    for body in drain(runs_aws, lambda_context):
        raise AssertionError(f"a look was delivered before its delay: {body}")
    # the look waits the oracle's evaluation lag (TRAFFIC_LOOK_DELAY_SECONDS, 30 by default) on the queue
    attributes = runs_aws["sqs"].get_queue_attributes(QueueUrl=runs_aws["queue_url"], AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert target.total == 100 and status(lambda_context, "r-first")["state"] == "running"


def test_a_stale_evaluation_is_looked_at_again_then_the_next_round_is_the_estimate(
    rounds_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    start(rounds_aws, lambda_context, target, "r-next", requests=1000, shard_size=50)
    _put_verdict(rounds_aws, "INCONCLUSIVE", 1, needed=120)  # evaluated before the round: not the round's
    (look,) = drain(rounds_aws, lambda_context)
    assert look["round"] == 0 and target.total == 100
    again = _queued(rounds_aws)
    assert [body.get("look_id") for body in again] == [look["look_id"]]  # the same look, delayed again
    assert status(lambda_context, "r-next")["state"] == "running"

    # evaluated after the first round's last result, before the second round's: the second round's look waits
    _put_verdict(rounds_aws, "INCONCLUSIVE", int(time.time() * 1000), needed=120)
    looks = drain(rounds_aws, lambda_context)
    assert target.total == 100 + 150  # 120 asked, in whole shards of 50
    run = status(lambda_context, "r-next")
    assert run["rounds"][1] == {"first": 100, "requests": 150, "asked": 120, "shards": [2, 5],
                                "look": look["look_id"]}  # fmt: skip
    assert [item["round"] for item in looks] == [0, 1]  # the second round's look is now waiting
    assert run["shards"]["done"] == 5 and run["shards"]["not_sent"] == 15


def test_of_two_workers_finishing_a_round_at_once_exactly_one_advances_it(
    rounds_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    start(rounds_aws, lambda_context, target, "r-twice", requests=1000, shard_size=50)
    _put_verdict(rounds_aws, "INCONCLUSIVE", _later(), needed=100)
    sqs, url = rounds_aws["sqs"], rounds_aws["queue_url"]
    shards = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(shards) == 2
    worker = load_handler("traffic_worker")
    _together([lambda m=m: _deliver(rounds_aws, lambda_context, m, worker) for m in shards])
    # a redelivered message of a finished shard sends a look as well: at least two looks at round 0 now
    event = {"Records": [{"messageId": "again", "receiptHandle": "", "body": shards[1]["Body"]}]}
    assert worker.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    looks = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(looks) >= 2 and {json.loads(m["Body"])["round"] for m in looks} == {0}
    _together([lambda m=m: _deliver(rounds_aws, lambda_context, m, worker) for m in looks])
    queued = _queued(rounds_aws)
    assert sorted(body["shard"] for body in queued) == [2, 3]  # the next round, enqueued once
    assert status(lambda_context, "r-twice")["rounds"][1]["shards"] == [2, 4]


def _together(calls: list[Callable[[], Any]]) -> None:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_the_budget_is_never_exceeded_the_last_round_is_cut_to_it(
    rounds_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    start(rounds_aws, lambda_context, target, "r-budget", requests=130, shard_size=50)
    _put_verdict(rounds_aws, "INCONCLUSIVE", _later(), needed=10_000)
    drain(rounds_aws, lambda_context)
    run = status(lambda_context, "r-budget")
    assert target.total == run["sent"] == 130 and [item["requests"] for item in run["rounds"]] == [100, 30]
    assert (run["state"], run["ended"]) == (
        "completed",
        "the budget of 130 requests is spent, undecided (the oracle asks for about 10,000 more)",
    )


def test_the_workers_stop_once_an_evaluation_since_the_run_started_decides_it(
    rounds_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    start(rounds_aws, lambda_context, target, "r-decided")
    _put_verdict(rounds_aws, "PASS", _later())
    drain(rounds_aws, lambda_context)
    run = status(lambda_context, "r-decided")
    assert run["until_decided"] is True and run["state"] == "stopped" and target.total == 0
    assert run["stopped"] == [f"decided: oracle PASS for test {ORACLE_TEST} (on: every fed verdict)"]
    assert run["ended"] == run["stopped"][0]  # why the run ended, in its status


def test_a_decision_from_before_the_run_was_accepted_does_not_stop_it_whatever_its_clock_ms(
    rounds_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    # Given an earlier run's PASS, evaluated a minute ago, and a run whose request sets its clock far in the past
    _put_verdict(rounds_aws, "PASS", int(time.time() * 1000) - 60_000)
    start(rounds_aws, lambda_context, target, "r-old-clock", requests=1000, shard_size=50, clock_ms=1_000)

    # When its workers and its first look run
    (look,) = drain(rounds_aws, lambda_context)

    # Then the old PASS decided nothing: the first round was sent and the look waits for an evaluation of it
    assert look["round"] == 0 and target.total == 100
    run = status(lambda_context, "r-old-clock")
    assert run["state"] == "running" and run["stopped"] == []


@pytest.mark.parametrize(
    ("state", "needed", "extra", "ended"),
    [
        ("PASS", None, {}, f"decided: oracle PASS for test {ORACLE_TEST} (on: every fed verdict)"),
        ("INCONCLUSIVE", None, {}, f"undecided: more events alone will not decide: test {ORACLE_TEST} treatment on "
         "(5xx rate) INCONCLUSIVE, the rate lies between the lines"),
        ("INCONCLUSIVE", 100, {"max_duration_s": 0.001}, "duration budget of 0.001s spent"),
    ],
)  # fmt: skip
def test_a_round_looked_at_ends_the_run_with_its_reason(
    rounds_aws: dict[str, Any],
    lambda_context: Any,
    target: CountingTarget,
    state: str,
    needed: int | None,
    extra: dict[str, Any],
    ended: str,
) -> None:
    start(rounds_aws, lambda_context, target, "r-ends", requests=1000, shard_size=50, **extra)
    # a verdict from before the run (evaluated_at 1) does not stop its shards; the look sees the fresh one
    _put_verdict(rounds_aws, "INCONCLUSIVE", 1, needed=50)
    sqs, url = rounds_aws["sqs"], rounds_aws["queue_url"]
    for _ in range(2):  # the first round's shards
        _deliver(rounds_aws, lambda_context, sqs.receive_message(QueueUrl=url)["Messages"][0])
    _put_verdict(rounds_aws, state, _later(), needed=needed)
    drain(rounds_aws, lambda_context)
    run = status(lambda_context, "r-ends")
    assert (run["state"], run["ended"], target.total) == ("stopped", ended, 100)
    assert run["shards"] == {"total": 20, "enqueued": 2, "done": 2, "not_sent": 18}
    assert _queued(rounds_aws) == []


def test_the_stop_switch_and_a_silent_oracle_end_the_run_with_their_reasons(
    rounds_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    from flagbridge import runtime

    start(rounds_aws, lambda_context, target, "r-switch", requests=1000, shard_size=50)
    rounds_aws["ssm"].put_parameter(Name=STOP, Value="r-switch", Type="String", Overwrite=True)
    drain(rounds_aws, lambda_context)
    run = status(lambda_context, "r-switch")
    assert (run["state"], run["ended"]) == ("stopped", "stop switch: the stack's stop parameter names this run")
    rounds_aws["ssm"].put_parameter(Name=STOP, Value="none", Type="String", Overwrite=True)

    _put_verdict(rounds_aws, "INCONCLUSIVE", 1, needed=50)  # never evaluated again; its estimate: a first round of 50
    start(rounds_aws, lambda_context, target, "r-silent", requests=1000, shard_size=50)
    assert [body["shard"] for body in _queued(rounds_aws)] == [0]
    (look,) = drain(rounds_aws, lambda_context)
    rounds = runtime.shard_worker().runtime.rounds
    assert rounds is not None
    rounds.clock_ms = lambda: look["first_look_ms"] + 180_000  # TRAFFIC_LOOK_WAIT_SECONDS (180 by default) later
    drain(rounds_aws, lambda_context)
    run = status(lambda_context, "r-silent")
    assert run["ended"] == f"the oracle did not evaluate the round's results within 180s (test {ORACLE_TEST})"
    assert run["state"] == "stopped" and _queued(rounds_aws) == []


def test_a_look_that_could_not_be_sent_is_sent_when_the_shard_message_comes_back(
    rounds_aws: dict[str, Any], lambda_context: Any, target: CountingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flagbridge import runtime
    from flagbridge.errors import EnqueueError

    start(rounds_aws, lambda_context, target, "r-lost", requests=1000, shard_size=50)
    sqs, url = rounds_aws["sqs"], rounds_aws["queue_url"]
    first, last = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    worker = load_handler("traffic_worker")
    assert _deliver(rounds_aws, lambda_context, first, worker) == {"batchItemFailures": []}
    rounds = runtime.shard_worker().runtime.rounds
    assert rounds is not None
    send_delayed = rounds.send_delayed
    calls: list[int] = []

    def failing_once(body: str, delay: int) -> None:
        calls.append(delay)
        if len(calls) == 1:
            raise EnqueueError("SQS unavailable (simulated)")
        send_delayed(body, delay)

    monkeypatch.setattr(rounds, "send_delayed", failing_once)
    # the round's last shard is sent and finished, but its look is not: the message is handed back
    assert _deliver(rounds_aws, lambda_context, last, worker) == {
        "batchItemFailures": [{"itemIdentifier": last["MessageId"]}]
    }
    assert target.total == 100 and _queued(rounds_aws) == []
    event = {"Records": [{"messageId": "back", "receiptHandle": "", "body": last["Body"]}]}
    assert worker.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    (look,) = _queued(rounds_aws)
    assert (look["kind"], look["round"], target.total) == ("look", 0, 100)  # the look, and nothing sent twice
