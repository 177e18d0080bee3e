"""Runs until decided: round sizing from the oracle's estimate, the wait for a round to be counted, why a run ends.

The verdicts come from the in-memory twin (:class:`flagbridge.oracle.verdicts.InMemoryVerdicts`), played by a fake
oracle that evaluates what the run sent with a fixed rule (every answer 202 counts as good): a round is counted
when the twin's ``evaluated_at`` is at or after the round's last result. The run loop is the real one
(:func:`flagbridge.traffic.run.run_traffic`) with a fake clock. The local runner end to end is
tests/e2e/test_until_decided_e2e.py.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from flagbridge.oracle.store import InMemoryVerdictStore
from flagbridge.oracle.verdicts import InMemoryVerdicts, StoreVerdicts, VerdictReadError, fed_rows
from flagbridge.traffic.decided import (
    ENDINGS,
    Assessment,
    UntilDecided,
    assess,
    decided_check,
    ended_verdict,
    round_size,
    run_ending,
)
from flagbridge.traffic.model import RequestModel
from flagbridge.traffic.plan import TrafficPlan
from flagbridge.traffic.run import RunSettings, RunSummary, run_traffic
from flagbridge.traffic.safety import TokenBucket
from flagbridge.traffic.stop import OracleStop, first_reason
from tests.conftest import ROOT
from tests.unit.traffic.conftest import make_generator
from tests.unit.traffic.test_traffic_run import FakeClock, Service

TEST = "checkout"
RATE = "5xx rate"


def row(treatment: str, state: str, needed: int | None = None, n: int = 0, metric: str = RATE) -> dict[str, Any]:
    return {"treatment": treatment, "metric": metric, "state": state, "needed": needed, "n": n,
            "explain": f"{state} {treatment} {metric}"}  # fmt: skip


def document(*rows: dict[str, Any], evaluated_at: int = 1) -> dict[str, Any]:
    return {"state": "INCONCLUSIVE", "evaluated_at": evaluated_at, "verdicts": list(rows)}


# ---- assess and round_size --------------------------------------------------------------------------------------


def test_every_fed_verdict_pass_or_fail_is_decided_and_a_fail_decides_at_once() -> None:
    both = document(row("on", "PASS"), row("off", "PASS"))
    assert assess(TEST, both, [RATE]) == Assessment(
        "decided", "decided: oracle PASS for test checkout (on, off: every fed verdict)"
    )
    failing = document(row("on", "FAIL"), row("off", "INCONCLUSIVE", 200, n=100))
    assert assess(TEST, failing, [RATE]) == Assessment(
        "decided", "decided: oracle FAIL for test checkout treatment on (5xx rate)"
    )
    # A metric the run does not feed does not count either way
    other = document(row("on", "PASS"), row("on", "INCONCLUSIVE", 50, metric="conversion"))
    assert assess(TEST, other, [RATE]).ended == "decided"
    assert assess(TEST, other, None).ended is None


def test_a_rate_between_the_lines_or_a_verdict_more_events_cannot_change_ends_undecided() -> None:
    between = assess(TEST, document(row("on", "INCONCLUSIVE", None, n=400), row("off", "PASS")), [RATE])
    assert between.ended == "undecided"
    assert between.reason == (
        "undecided: more events alone will not decide: test checkout treatment on (5xx rate) INCONCLUSIVE, "
        "the rate lies between the lines"
    )
    invalid = assess(TEST, document(row("on", "INVALID"), row("off", "INCONCLUSIVE", 10, n=5)), [RATE])
    assert invalid == Assessment(
        "undecided", "undecided: more events alone will not decide: test checkout treatment on (5xx rate) is INVALID"
    )
    assert assess(TEST, document(row("-", "ERROR")), [RATE]).ended == "undecided"


def test_the_verdict_a_run_ended_on_is_read_back_from_the_reason_assess_wrote() -> None:
    """``flagbridge traffic status`` exits by it: a run that ended decided is not a stopped run (exit 2)."""
    passing = assess(TEST, document(row("on", "PASS"), row("off", "PASS")), [RATE]).reason
    failing = assess(TEST, document(row("on", "FAIL"), row("off", "PASS")), [RATE]).reason
    undecided = assess(TEST, document(row("on", "INVALID")), [RATE]).reason
    assert (ended_verdict(passing), ended_verdict(failing)) == ("PASS", "FAIL")
    assert ended_verdict(undecided) is None and ended_verdict(None) is None
    assert ended_verdict("the budget of 1,000 requests is spent") is None


def test_the_next_round_is_the_most_any_undecided_verdict_asks_for_over_its_treatment_s_share() -> None:
    # on has a quarter of the events so far: 90 more of on's events take about 360 requests
    shares = document(row("on", "INCONCLUSIVE", 90, n=100), row("off", "INCONCLUSIVE", 100, n=300))
    assert assess(TEST, shares, [RATE]) == Assessment(requests=360)
    # before any event (NO_DATA), the treatments are taken to share the run evenly
    fresh = document(row("on", "NO_DATA", 300), row("off", "NO_DATA", 300))
    assert assess(TEST, fresh, [RATE]) == Assessment(requests=600)
    # a verdict already PASS asks for nothing; no fed verdict at all: no estimate
    assert (
        assess(TEST, document(row("on", "PASS", n=200), row("off", "INCONCLUSIVE", 40, n=200)), [RATE]).requests == 80
    )
    assert assess(TEST, None, [RATE]) == Assessment()
    # the estimate comes from the full report (GET /tests/{name} nests it under `report`)
    nested = {"state": "INCONCLUSIVE", "verdicts": [row("on", "INCONCLUSIVE")],
              "report": document(row("on", "INCONCLUSIVE", 70, n=10))}  # fmt: skip
    assert [r["needed"] for r in fed_rows(nested, [RATE])] == [70]


@pytest.mark.parametrize(
    ("asked", "left", "expected"),
    [(None, 5000, 100), (360, 5000, 400), (1, 5000, 50), (0, 5000, 50), (600, 5000, 600), (900, 230, 230),
     (None, 30, 30)],
)  # fmt: skip
def test_rounds_are_whole_batches_at_least_one_and_cut_to_the_budget_left(
    asked: int | None, left: int, expected: int
) -> None:
    assert round_size(asked, left, batch_size=50, first_round=100) == expected


# ---- the rounds of a run ----------------------------------------------------------------------------------------


class Oracle:
    """Plays the evaluator: on the first read and every ``every`` reads after, evaluates what the run sent so far
    (``sent()``) with ``rule``; each read takes half a second of the run's clock."""

    def __init__(
        self,
        clock: FakeClock,
        sent: Callable[[], int],
        rule: Callable[[int], list[dict[str, Any]]],
        every: int = 2,
    ) -> None:
        self.clock = clock
        self.sent = sent
        self.rule = rule
        self.every = every
        self.twin = InMemoryVerdicts()
        self.evaluations: list[int] = []
        self.calls = 0

    def wall_ms(self) -> int:
        return int(self.clock.now * 1000)

    def verdict(self, test: str) -> Mapping[str, Any] | None:
        self.calls += 1
        if self.calls % self.every == 1:
            self.evaluations.append(self.sent())
            self.twin.documents[test] = document(*self.rule(self.sent()), evaluated_at=self.wall_ms())
        self.clock.now += 0.5
        return self.twin.verdict(test)


def pass_after(events: int) -> Callable[[int], list[dict[str, Any]]]:
    """A clean cohort: one treatment, INCONCLUSIVE asking for the rest until ``events``, then PASS."""

    def rule(sent: int) -> list[dict[str, Any]]:
        if sent >= events:
            return [row("on", "PASS", n=sent)]
        return [row("on", "INCONCLUSIVE" if sent else "NO_DATA", events - sent, n=sent)]

    return rule


def rounds_run(
    plan: TrafficPlan,
    model: RequestModel,
    budget: int,
    rule: Callable[[int], list[dict[str, Any]]],
    **options: Any,
) -> tuple[UntilDecided, RunSummary, Service, Oracle, list[dict[str, Any]]]:
    clock = FakeClock()
    service = Service(clock)
    oracle = Oracle(clock, lambda: len(service.sent), rule)
    rounds = UntilDecided(TEST, oracle, [RATE], budget, clock=clock, wall_ms=oracle.wall_ms, sleep=clock.sleep,
                          **options)  # fmt: skip
    stream = io.StringIO()
    writer = rounds.writer(stream)
    writer.write({"type": "run"})
    bucket = TokenBucket(1000.0, burst=1.0, clock=clock, sleep=clock.sleep)
    summary = run_traffic(
        make_generator(plan, model),
        RunSettings(requests=budget, rate=1000.0, max_duration_s=options.get("max_duration_s")),
        service,
        manifest=writer,
        stop=rounds,
        progress=rounds.progress(),
        clock=clock,
        bucket=bucket,
    )
    rounds.finish(summary)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    return rounds, summary, service, oracle, records


def test_a_clean_run_sends_rounds_sized_from_the_estimate_and_ends_decided_before_its_budget(
    published_plan: TrafficPlan, model: RequestModel
) -> None:
    rounds, summary, service, oracle, records = rounds_run(published_plan, model, 5000, pass_after(640))
    assert rounds.ended == "decided" and summary.stopped == rounds.reason
    assert rounds.reason == "decided: oracle PASS for test checkout (on: every fed verdict)"
    # first round from the NO_DATA estimate (640 -> 650), then PASS from an evaluation of those 650
    assert [(r.first, r.requests, r.asked) for r in rounds.rounds] == [(0, 650, 640)]
    assert len(service.sent) == summary.sent == 650 and oracle.evaluations[-1] == 650
    # the manifest's summary line is the last and says why the run ended
    assert records[-1]["type"] == "summary" and records[-1]["until_decided"]["ended"] == "decided"
    assert records[-1]["until_decided"]["rounds"] == [{"first": 0, "requests": 650, "asked": 640}]


def test_each_round_waits_for_an_evaluation_of_everything_sent_before_sizing_the_next(
    published_plan: TrafficPlan, model: RequestModel
) -> None:
    def rule(sent: int) -> list[dict[str, Any]]:  # no estimate before any event, 120 more until 360, then PASS
        if sent == 0:
            return []
        return [row("on", "PASS", n=sent)] if sent >= 360 else [row("on", "INCONCLUSIVE", 120, n=sent)]

    rounds, summary, _, oracle, _ = rounds_run(published_plan, model, 5000, rule, first_round=100)
    assert [(r.first, r.requests) for r in rounds.rounds] == [(0, 100), (100, 150), (250, 150)]
    assert rounds.ended == "decided" and summary.sent == 400
    # no round was sized from an evaluation that had not counted the previous one
    assert all(evaluated in oracle.evaluations for evaluated in (100, 250, 400))


def test_the_budget_is_never_exceeded_the_last_round_is_cut_to_fit(
    published_plan: TrafficPlan, model: RequestModel
) -> None:
    rounds, summary, service, _, records = rounds_run(published_plan, model, 730, pass_after(10_000))
    assert len(service.sent) == summary.sent == 730
    assert [r.requests for r in rounds.rounds] == [730]  # asked for 10,000: cut to the budget
    assert rounds.ended == "budget"
    assert rounds.reason == "the budget of 730 requests is spent, undecided (the oracle asks for about 9,270 more)"
    assert records[-1]["until_decided"]["ended"] == "budget"

    rounds, summary, service, _, _ = rounds_run(published_plan, model, 420, pass_after(400))
    assert [(r.first, r.requests) for r in rounds.rounds] == [(0, 400)]
    assert rounds.ended == "decided" and summary.sent == 400


def test_a_rate_between_the_lines_ends_the_run_early_undecided(
    published_plan: TrafficPlan, model: RequestModel
) -> None:
    def rule(sent: int) -> list[dict[str, Any]]:
        return [row("on", "INCONCLUSIVE", 300 - sent if sent < 300 else None, n=sent)]

    rounds, summary, _, _, _ = rounds_run(published_plan, model, 5000, rule)
    assert rounds.ended == "undecided" and "more events alone will not decide" in str(rounds.reason)
    assert summary.sent == 300 < 5000


def test_a_fail_read_mid_round_ends_the_run_decided(published_plan: TrafficPlan, model: RequestModel) -> None:
    clock = FakeClock()
    service = Service(clock)
    store = InMemoryVerdictStore()
    store.save(TEST, document(row("on", "NO_DATA", 1000)), None)
    source = StoreVerdicts(store)
    rounds = UntilDecided(TEST, source, [RATE], 5000, clock=clock, sleep=clock.sleep)
    fail = OracleStop(TEST, source, [RATE], refresh_seconds=0.0, clock=clock)

    def progress(summary: RunSummary, case: Any) -> None:
        if summary.sent == 120:
            store.save(TEST, document(row("on", "FAIL", n=120)), None)

    summary = run_traffic(
        make_generator(published_plan, model), RunSettings(requests=5000, rate=1000.0), service,
        stop=first_reason(fail, rounds), progress=rounds.progress(progress), clock=clock,
        bucket=TokenBucket(1000.0, burst=1.0, clock=clock, sleep=clock.sleep),
    )  # fmt: skip
    assert rounds.finish(summary) == "decided" and summary.sent == 150  # stopped before the next batch
    assert rounds.reason == "decided: oracle FAIL for test checkout treatment on (5xx rate)"
    assert rounds.results_end(99) == 99  # results were sent after the last look: the run's end is now


def test_no_evaluation_in_time_the_duration_and_an_unreadable_verdict_each_end_the_run(
    published_plan: TrafficPlan, model: RequestModel
) -> None:
    clock = FakeClock()
    service = Service(clock)
    twin = InMemoryVerdicts({TEST: document(row("on", "NO_DATA", 300))})
    stalled = UntilDecided(TEST, twin, [RATE], 5000, wait_seconds=3.0, clock=clock, sleep=clock.sleep,
                           wall_ms=lambda: 10 + int(clock.now * 1000))  # fmt: skip
    summary = run_traffic(
        make_generator(published_plan, model), RunSettings(requests=5000, rate=1000.0), service, stop=stalled,
        progress=stalled.progress(), clock=clock, bucket=TokenBucket(1000.0, burst=1.0, clock=clock, sleep=clock.sleep),
    )  # fmt: skip
    assert stalled.finish(summary) == "not evaluated" and summary.sent == 300
    assert stalled.reason == "the oracle did not evaluate the round's results within 3s (test checkout)"

    timed = UntilDecided(TEST, twin, [RATE], 5000, wait_seconds=60.0, max_duration_s=2.0, clock=clock,
                         sleep=clock.sleep, wall_ms=lambda: 10 + int(clock.now * 1000))  # fmt: skip
    summary = run_traffic(
        make_generator(published_plan, model), RunSettings(requests=5000, rate=1000.0, max_duration_s=2.0), service,
        stop=timed, progress=timed.progress(), clock=clock,
        bucket=TokenBucket(1000.0, burst=1.0, clock=clock, sleep=clock.sleep),
    )  # fmt: skip
    assert timed.finish(summary) == "duration" and timed.reason == "duration budget of 2s spent"

    class Refused:
        def verdict(self, test: str) -> Mapping[str, Any] | None:
            raise VerdictReadError("the oracle API refused the token (HTTP 401)", permanent=True)

    refused = UntilDecided(TEST, Refused(), [RATE], 5000, clock=clock, sleep=clock.sleep)
    summary = run_traffic(
        make_generator(published_plan, model), RunSettings(requests=5000, rate=1000.0), service, stop=refused,
        progress=refused.progress(), clock=clock, bucket=TokenBucket(1000.0, burst=1.0, clock=clock, sleep=clock.sleep),
    )  # fmt: skip
    assert refused.finish(summary) == "unreadable" and summary.sent == 0


def test_a_decision_standing_before_the_run_does_not_end_it_before_its_first_round(
    published_plan: TrafficPlan, model: RequestModel
) -> None:
    clock = FakeClock()
    service = Service(clock)
    twin = InMemoryVerdicts({TEST: document(row("on", "PASS"), evaluated_at=0)})
    rounds = UntilDecided(TEST, twin, [RATE], 5000, wait_seconds=2.0, clock=clock, sleep=clock.sleep,
                          wall_ms=lambda: 5 + int(clock.now * 1000))  # fmt: skip
    summary = run_traffic(
        make_generator(published_plan, model), RunSettings(requests=5000, rate=1000.0), service, stop=rounds,
        progress=rounds.progress(), clock=clock, bucket=TokenBucket(1000.0, burst=1.0, clock=clock, sleep=clock.sleep),
    )  # fmt: skip
    # the standing PASS was not evaluated after the first round: the round was sent, and never counted here
    assert summary.sent == 100 and rounds.finish(summary) == "not evaluated"


def test_the_workers_check_stops_on_a_decision_from_an_evaluation_since_the_run_started() -> None:
    clock = FakeClock()
    twin = InMemoryVerdicts({TEST: document(row("on", "PASS"), evaluated_at=500)})
    check = decided_check(TEST, twin, [RATE], since_ms=1000, refresh_seconds=1.0, clock=clock)
    assert check() is None  # decided before the run: not this run's decision
    twin.documents[TEST] = document(row("on", "INCONCLUSIVE", 200, n=100), evaluated_at=2000)
    clock.now = 1.0
    assert check() is None
    twin.documents[TEST] = document(row("on", "INCONCLUSIVE", None, n=900), evaluated_at=3000)
    clock.now = 1.5
    assert check() is None and twin.reads == 2  # within the refresh: not read
    clock.now = 2.0
    assert "more events alone will not decide" in str(check())
    twin.fail_reads = 3
    assert "more events alone will not decide" in str(check())  # once seen, it stays seen


def test_a_run_in_aws_says_why_it_ended_once_it_has() -> None:
    record = {"until_decided": True, "requests": 20_000}
    decided = "decided: oracle PASS for test checkout (on: every fed verdict)"
    assert run_ending(record, "stopped", ["stop switch: the stack's stop parameter names this run", decided]) == decided
    assert run_ending(record, "stopped", ["stop switch: the stack's stop parameter stops every run"]) == (
        "stop switch: the stack's stop parameter stops every run"
    )
    assert run_ending(record, "completed", []) == "the budget of 20,000 requests is spent"
    assert run_ending(record, "running", []) is None
    assert run_ending({"requests": 20_000}, "completed", []) is None  # not a run until decided


# ---- the docs name what exists ------------------------------------------------------------------------------------


def _section(path: str, heading: str) -> str:
    text = (ROOT / path).read_text(encoding="utf-8")
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else None]


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("docs/traffic.md", "## Until decided"),
        ("docs/runs.md", "### Until decided"),
        ("docs/cli.md", "## `flagbridge traffic`"),
    ],
)
def test_the_docs_of_runs_until_decided_name_files_code_options_and_endings_that_exist(path: str, heading: str) -> None:
    import importlib

    section = _section(path, heading)
    names = re.findall(r"`([^`]+)`", section)
    for name in names:
        if name.startswith("tests/") and name.endswith(".py"):
            assert (ROOT / name).is_file(), name
        elif re.fullmatch(r"flagbridge(\.\w+)+", name):
            module, _, attribute = name.rpartition(".")
            while module and not _importable(importlib, module):
                module, _, attribute = module.rpartition(".")
            assert module and hasattr(importlib.import_module(module), attribute), name
        elif re.fullmatch(r"--[a-z-]+", name):
            assert name in _run_options(), name
    if path == "docs/traffic.md":  # the endings it lists are the endings there are
        listed = re.search(r"`ended`: one of\s+(.*?);\s+`reason`", section, re.S)
        assert listed is not None
        assert tuple(re.findall(r"`([^`]+)`", listed.group(1))) == ENDINGS


def _run_options() -> set[str]:
    """Every option ``flagbridge traffic run`` takes (its own and the global ones)."""
    import argparse

    from flagbridge_ops.__main__ import build_parser

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> argparse.ArgumentParser:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) and path:
                return walk(action.choices[path[0]], path[1:])
        return parser

    parser = walk(build_parser(), ["traffic", "run"])
    return {option for action in parser._actions for option in action.option_strings}


def _importable(importlib: Any, module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
