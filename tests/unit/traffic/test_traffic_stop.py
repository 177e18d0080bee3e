"""The oracle's FAIL as a stop switch: what it reads, how often, what it says, and a run it stops between batches.

Verdict sources: the in-memory twin and the oracle's verdict store (in memory here; DynamoDB in AWS); the bridge's
``GET /tests/{name}`` over HTTP is tests/tools/test_traffic_oracle_cli.py. The plan's ``oracle`` section is checked
for shape when the plan loads.
"""

from __future__ import annotations

from typing import Any

import pytest

from flagbridge.oracle.store import InMemoryVerdictStore
from flagbridge.oracle.verdicts import InMemoryVerdicts, StoreVerdicts, VerdictReadError, fail_reason
from flagbridge.traffic.errors import PlanError
from flagbridge.traffic.model import RequestModel
from flagbridge.traffic.plan import TrafficPlan, parse_plan
from flagbridge.traffic.run import RunSettings, run_traffic
from flagbridge.traffic.safety import TokenBucket
from flagbridge.traffic.stop import OracleStop, first_reason
from tests.unit.traffic.conftest import make_generator
from tests.unit.traffic.test_traffic_run import FakeClock, Service


def verdict(treatment: str, metric: str, state: str) -> dict[str, Any]:
    return {"treatment": treatment, "metric": metric, "state": state, "explain": f"{state} flag={treatment} {metric}"}


def document(*verdicts: dict[str, Any], evaluated_at: int = 1) -> dict[str, Any]:
    states = [v["state"] for v in verdicts]
    return {"state": "FAIL" if "FAIL" in states else "INCONCLUSIVE", "evaluated_at": evaluated_at,
            "verdicts": list(verdicts)}  # fmt: skip


def test_the_reason_names_the_test_the_treatments_and_the_metrics() -> None:
    failing = document(verdict("on", "5xx rate", "FAIL"), verdict("off", "5xx rate", "PASS"))
    assert fail_reason("checkout", failing, None) == "oracle FAIL for test checkout treatment on (5xx rate)"
    both = document(verdict("on", "5xx rate", "FAIL"), verdict("beta", "latency p95", "FAIL"))
    assert fail_reason("checkout", both, None) == (
        "oracle FAIL for test checkout treatments on, beta (5xx rate, latency p95)"
    )
    # A FAIL of a metric the run does not feed is not the run's to stop on
    assert fail_reason("checkout", both, ["conversion"]) is None
    assert fail_reason("checkout", None, None) is None


def test_the_stop_reads_at_most_once_per_refresh_and_a_fail_stays_seen() -> None:
    clock = FakeClock()
    source = InMemoryVerdicts({"checkout": document(verdict("on", "5xx rate", "INCONCLUSIVE"))})
    stop = OracleStop("checkout", source, ["5xx rate", "latency p95"], refresh_seconds=2.0, clock=clock)
    assert stop() is None and source.reads == 1
    clock.now = 1.0
    assert stop() is None and source.reads == 1  # within the refresh: no read
    source.documents["checkout"] = document(verdict("on", "5xx rate", "FAIL"))
    clock.now = 2.0
    assert stop() == "oracle FAIL for test checkout treatment on (5xx rate)" and source.reads == 2
    source.documents["checkout"] = document(verdict("on", "5xx rate", "PASS"))
    clock.now = 10.0
    assert stop() == "oracle FAIL for test checkout treatment on (5xx rate)" and source.reads == 2


def test_unreadable_verdicts_do_not_stop_the_run_until_too_many_in_a_row() -> None:
    clock = FakeClock()
    errors: list[str] = []
    source = InMemoryVerdicts({}, fail_reads=2)
    stop = OracleStop("checkout", source, None, refresh_seconds=0.0, max_errors=3, clock=clock,
                      on_error=lambda exc: errors.append(str(exc)))  # fmt: skip
    assert [stop(), stop(), stop()] == [None, None, None]  # two failures, then a read: the count starts again
    assert stop.errors == 2 and len(errors) == 2
    source.fail_reads = 3
    assert stop() is None and stop() is None
    reason = stop()
    assert reason is not None and reason.startswith("the oracle's verdict for test checkout could not be read 3 times")


def test_the_oracle_s_verdict_store_is_a_source() -> None:
    store = InMemoryVerdictStore()
    source = StoreVerdicts(store)
    assert source.verdict("checkout") is None
    store.save("checkout", document(verdict("on", "5xx rate", "FAIL")), None)
    assert fail_reason("checkout", source.verdict("checkout"), None) is not None

    class Broken:
        def load_state(self, test: str) -> dict[str, Any] | None:
            raise ConnectionError("no route")

    with pytest.raises(VerdictReadError, match=r"could not be read \(ConnectionError\)"):
        StoreVerdicts(Broken()).verdict("checkout")


def test_a_run_stops_between_batches_once_the_oracle_says_fail(body_plan: TrafficPlan, model: RequestModel) -> None:
    # Given: the oracle turns FAIL once 120 requests were sent (the evaluator's doing, simulated)
    clock = FakeClock()
    service = Service(clock, script=[500] * 1000)
    source = InMemoryVerdicts({"checkout": document(verdict("on", "5xx rate", "INCONCLUSIVE"))})

    def progress(summary: Any, case: Any) -> None:
        if summary.sent == 120:
            source.documents["checkout"] = document(verdict("on", "5xx rate", "FAIL"))

    stop = OracleStop("checkout", source, ["5xx rate"], refresh_seconds=0.0, clock=clock)
    files: list[str] = []
    settings = RunSettings(requests=1000, rate=1000.0, batch_size=50)
    bucket = TokenBucket(settings.rate, burst=1.0, clock=clock, sleep=clock.sleep)
    # When
    summary = run_traffic(make_generator(body_plan, model), settings, service, stop=first_reason(
        lambda: files[0] if files else None, stop), progress=progress, clock=clock, bucket=bucket)  # fmt: skip
    # Then: the batch that crossed 120 finished, the next one never started
    assert summary.sent == 150 and len(service.sent) == 150
    assert summary.stopped == "oracle FAIL for test checkout treatment on (5xx rate)"
    assert summary.record()["stopped"] == summary.stopped


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"test": ""}, "'oracle.test': must name an oracle test"),
        ({"test": "a b"}, "'oracle.test': must name an oracle test"),
        ({"metrics": ["5xx rate"]}, "'oracle.test': must name an oracle test"),
        ({"test": "checkout", "metrics": "5xx rate"}, "'oracle.metrics': must be a non-empty list"),
        ({"test": "checkout", "metrics": []}, "'oracle.metrics': must be a non-empty list"),
        ({"test": "checkout", "metrics": ["5xx rate", "5xx rate"]}, "'oracle.metrics': names '5xx rate' twice"),
        ({"test": "checkout", "kill": True}, "'oracle.kill': unknown key"),
    ],
)
def test_the_plan_s_oracle_section_is_checked_when_it_loads(section: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError, match=message.replace("(", r"\(")):
        parse_plan({"oracle": section}, "plan.yaml")
    plan = parse_plan({"oracle": {"test": "checkout", "metrics": ["5xx rate"]}}, "plan.yaml")
    assert plan.oracle == {"test": "checkout", "metrics": ["5xx rate"]}
    assert parse_plan({"oracle": {"test": "checkout"}}, "plan.yaml").plan_hash == parse_plan({}, "p").plan_hash
