"""``flagbridge traffic run --until-decided`` from the command line: refusals, what it prints, its exit status.

A fresh interpreter against a service on 127.0.0.1 and a stand-in bridge (tests/tools/test_traffic_oracle_cli.py's
:class:`FakeBridge`) whose oracle asks for 400 clean events, with its estimate, and then says PASS. The real
bridge and evaluator: tests/e2e/test_until_decided_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local.traffic_target import TrafficTarget
from tests.tools.test_traffic_cli import one_line
from tests.tools.test_traffic_oracle_cli import (
    TEST,
    FakeBridge,
    bridge_with,
    now_ms,
    report,
    run,
    service,
    verdict,
    workdir,
)

__all__ = ["service", "workdir"]  # the fixtures this module uses
METRICS = ("5xx rate", "latency p95")


def asks_for(events: int) -> Any:
    """The oracle: INCONCLUSIVE asking for the rest of ``events`` clean events, then PASS once they arrived."""

    def script(bridge: FakeBridge) -> dict[str, Any]:
        arrived = len(bridge.events)
        if arrived >= events:
            return report("PASS", now_ms(), *(verdict("on", metric, "PASS", n=arrived, k=0) for metric in METRICS))
        rows = [{**verdict("on", metric, "INCONCLUSIVE", n=max(arrived, 1), k=0), "n": arrived,
                 "needed": events - arrived} for metric in METRICS]  # fmt: skip
        return report("INCONCLUSIVE", now_ms(), *rows)

    return script


@pytest.mark.parametrize(
    ("extra", "plan", "status", "expected"),
    [
        (["--dry-run"], "feeds.yaml", 2,
         "flagbridge: error: --until-decided sends until the oracle decides: it cannot be combined with --dry-run"),
        (["--no-oracle"], "feeds.yaml", 2,
         "flagbridge: error: --until-decided sends until the oracle decides: it cannot be combined with --no-oracle"),
        ([], "published-plan.yaml", 1,
         "error: --until-decided runs until the oracle decides, but the plan feeds no oracle test "
         "(oracle: {test: NAME})"),
    ],
)  # fmt: skip
def test_a_run_that_cannot_run_until_decided_is_refused_before_sending(
    workdir: Path, service: TrafficTarget, extra: list[str], plan: str, status: int, expected: str
) -> None:
    bridge = bridge_with(asks_for(400))
    try:
        result = run(workdir, service, bridge, "--until-decided", *extra, plan=plan)
    finally:
        bridge.close()
    assert result.returncode == status
    assert one_line(result.stderr) == expected
    assert bridge.events == [] and service.received == []


def test_it_sends_what_the_oracle_asks_for_prints_why_it_ended_and_exits_with_the_verdict(
    workdir: Path, service: TrafficTarget
) -> None:
    bridge = bridge_with(asks_for(400))
    try:
        result = run(workdir, service, bridge, "--until-decided", requests=5000)
    finally:
        bridge.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(bridge.events) == 400  # the estimate, in whole batches, and not one request more
    assert f"  ended: decided: oracle PASS for test {TEST} (on: every fed verdict) (1 round, budget 5,000)\n" in (
        result.stdout
    )
    summary = json.loads((workdir / "run.ndjson").read_text().splitlines()[-1])
    assert summary["sent"] == 400 and summary["until_decided"]["ended"] == "decided"


def test_a_budget_spent_undecided_says_so_and_exits_2(workdir: Path, service: TrafficTarget) -> None:
    bridge = bridge_with(asks_for(400))
    try:
        # The stand-in evaluates every read, so a look never waits; without --verdict-wait the verdict printed after
        # the run would wait its default 180 s for a decision this oracle never makes (the outcome is the same).
        result = run(workdir, service, bridge, "--until-decided", "--json", "--verdict-wait", "1", requests=330)
    finally:
        bridge.close()
    assert result.returncode == 2, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["summary"]["sent"] == len(bridge.events) == 330  # the round of 400 cut to the budget
    assert outcome["until_decided"]["ended"] == "budget"
    assert outcome["until_decided"]["reason"] == (
        "the budget of 330 requests is spent, undecided (the oracle asks for about 70 more)"
    )


def test_a_run_in_the_stack_asks_for_until_decided_in_its_request() -> None:
    from argparse import Namespace

    from flagbridge_ops.traffic_aws import run_request
    from tests.tools.test_traffic_cli import EXAMPLES

    args = Namespace(plan=str(EXAMPLES / "mparticle-plan.yaml"), model=str(EXAMPLES / "mparticle-model.yaml"),
                     attack_sets=[], requests=5000, seed=1, max_duration=600.0, target=None, testers=None,
                     run_id=None, until_decided=True)  # fmt: skip
    assert run_request(args, 50.0)["until_decided"] is True
    args.until_decided = False
    assert "until_decided" not in run_request(args, 50.0)


def test_the_status_of_a_run_until_decided_in_the_stack_says_why_it_ended_and_what_was_never_sent() -> None:
    import io

    from flagbridge_ops.commands.traffic.aws import _print_status

    document = {
        "run_id": "r-1", "state": "stopped", "sent": 250, "planned": 1000, "rate_achieved": 90.0, "rate": 100.0,
        "shards": {"total": 20, "enqueued": 2, "done": 5, "not_sent": 15}, "statuses": {"200": 250}, "errors": 0,
        "failures": 0, "stopped": [], "verdict": "no test", "manifest": {"location": "s3://m/runs/r-1/manifest/"},
        "ended": f"decided: oracle PASS for test {TEST} (on: every fed verdict)",
    }  # fmt: skip
    out = io.StringIO()
    _print_status(out, document)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("shards 5 done, 0 sending, 0 pending, 0 stopped, 15 not sent of 20")
    assert f"  ended: decided: oracle PASS for test {TEST} (on: every fed verdict)" in lines


def test_a_run_that_ended_undecided_does_not_wait_for_a_decision(workdir: Path, service: TrafficTarget) -> None:
    """The rounds' last look read an evaluation of everything sent: more events alone will not decide, so the
    verdict printed after the run is read once, without the default wait for a decision that cannot come."""

    def between_the_lines(bridge: FakeBridge) -> dict[str, Any]:
        rows = [{**verdict("on", metric, "INCONCLUSIVE", n=max(len(bridge.events), 1), k=0), "needed": None}
                for metric in METRICS]  # fmt: skip
        return report("INCONCLUSIVE", now_ms(), *rows)

    bridge = bridge_with(between_the_lines)
    try:
        result = run(workdir, service, bridge, "--until-decided", "--json", requests=5000)
    finally:
        bridge.close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert json.loads(result.stdout)["until_decided"]["ended"] == "undecided"
    assert "waiting up to" not in result.stderr
