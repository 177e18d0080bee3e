"""``POST /runs`` with ``until_decided``: refused unless a boolean and a plan feeding an oracle test; the workers stop
once an evaluation since the run started decides its verdict, with the CLI's words (moto, the real handlers).

The CLI's rounds are tests/unit/traffic/test_traffic_until_decided.py and tests/e2e/test_until_decided_e2e.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import load_handler
from tests.fixtures.runs import ORACLE_TEST, PLAN, PLAN_WITH_TEST, CountingTarget
from tests.handlers.test_traffic_runs import VERDICTS, api, run_body, runs_aws, target, work

__all__ = ["runs_aws", "target"]  # the fixtures this module uses


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


def test_the_workers_stop_once_an_evaluation_since_the_run_started_decides_it(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    handler = load_handler("traffic_runs")
    body = run_body(target, run_id="r-decided", plan=PLAN_WITH_TEST, until_decided=True)
    status, started = api(handler, lambda_context, "POST", "/runs", body)
    assert status == 202, started
    _put_verdict(runs_aws, "PASS", int(time.time() * 1000) + 60_000)
    work(runs_aws, lambda_context)
    _, run = api(handler, lambda_context, "GET", "/runs/r-decided")
    assert run["until_decided"] is True and run["state"] == "stopped" and target.total == 0
    assert run["stopped"] == [f"decided: oracle PASS for test {ORACLE_TEST} (on: every fed verdict)"]
    assert run["ended"] == run["stopped"][0]  # why the run ended, in its status


def test_a_rate_between_the_lines_stops_them_and_a_decision_from_before_the_run_does_not(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    handler = load_handler("traffic_runs")
    body = run_body(target, run_id="r-between", plan=PLAN_WITH_TEST, until_decided=True)
    assert api(handler, lambda_context, "POST", "/runs", body)[0] == 202
    _put_verdict(runs_aws, "INCONCLUSIVE", int(time.time() * 1000) + 60_000, needed=None)
    work(runs_aws, lambda_context)
    _, run = api(handler, lambda_context, "GET", "/runs/r-between")
    assert run["state"] == "stopped" and "more events alone will not decide" in run["stopped"][0]
    assert run["ended"].startswith("undecided: more events alone will not decide: test new-checkout-health")

    # a PASS evaluated before the run was created is not this run's decision: it sends its whole budget
    body = run_body(target, run_id="r-standing", plan=PLAN_WITH_TEST, until_decided=True)
    _put_verdict(runs_aws, "PASS", 1)
    assert api(handler, lambda_context, "POST", "/runs", body)[0] == 202
    work(runs_aws, lambda_context)
    _, run = api(handler, lambda_context, "GET", "/runs/r-standing")
    assert (run["state"], run["sent"], run["stopped"]) == ("completed", 120, [])
    assert run["ended"] == "the budget of 120 requests is spent" and target.total == 120
