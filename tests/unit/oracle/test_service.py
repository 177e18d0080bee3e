"""Counting and evaluation services on the in-memory stores: exactly once, state changes, ERROR, kill."""

from __future__ import annotations

import gc
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from flagbridge.errors import StoreError
from flagbridge.oracle.config import parse_oracle_config
from flagbridge.oracle.counting import Counter
from flagbridge.oracle.service import CounterService, Evaluator, detail_document, list_document
from flagbridge.oracle.split_admin import SplitAdminClient, rate_limit_wait
from flagbridge.oracle.store import InMemoryCounterStore, InMemoryVerdictStore
from flagbridge.oracle.verdicts import exit_status as overall_exit_code
from flagbridge.outbound import Response as HttpAnswer
from flagbridge.outbound import TransportError as AdminTransportError
from flagbridge.profiles.model import Assignment, FlagState
from flagbridge.quarantine import InMemoryQuarantine
from flagbridge.queues import QueueRecord
from tests.unit.oracle.test_counting import T0, request

NOW = T0 + 30 * 60_000


def config(**test: Any) -> Any:
    base = {"name": "checkout", "flag": "new_checkout", "environment": "Production"}
    return parse_oracle_config({"tests": [{**base, **test}]})


def profile(user: str, treatment: str, label: str | None = "whitelisted", version: int = 5) -> FlagState:
    assignment = Assignment(treatment, label, version, "Production", T0 - 1000, T0 - 1000, 1)
    return FlagState(
        traffic_type="user", key=user, identity_type="customer_id", flag="new_checkout", treatment=treatment,
        label=label, version=version, environment="Production", environment_id="env-1", current_time=T0 - 1000,
        first_seen=T0 - 1000, last_seen=T0 - 1000, exposures=1, assignments=(assignment,),
    )  # fmt: skip


class World:
    """The services wired to in-memory stores, a fake Split Admin API and a recording notifier."""

    def __init__(self, **test: Any) -> None:
        self.config = config(**test)
        self.profiles: dict[tuple[str, str], FlagState] = {}
        self.counters = InMemoryCounterStore()
        self.verdicts = InMemoryVerdictStore()
        self.changes: list[list[dict[str, str]]] = []
        self.metric_reports = 0
        self.kill_events: list[tuple[str, dict[str, Any]]] = []
        self.answers: list[HttpAnswer | Exception] = []
        self.puts: list[str] = []
        self.sleeps: list[float] = []
        self.now = NOW
        self.counting = CounterService(
            Counter(self.config, {"customer_id": ["user"]}), self.counters, self.load, clock_ms=lambda: self.now
        )
        self.evaluator = Evaluator(
            self.config, self.counters, self.verdicts, self, lambda: self.admin, clock_ms=lambda: self.now
        )
        self.admin = SplitAdminClient(
            self, "http://admin/internal/api/v2", lambda: "admin-key", sleep=self.sleeps.append
        )

    def load(self, pairs: Sequence[tuple[str, str]]) -> Mapping[tuple[str, str], FlagState]:
        return {pair: self.profiles[pair] for pair in pairs if pair in self.profiles}

    def put(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        assert headers["Authorization"] == "Bearer admin-key"
        self.puts.append(url)
        answer = self.answers.pop(0) if self.answers else HttpAnswer(200, {}, "{}")
        if isinstance(answer, Exception):
            raise answer
        return answer

    def verdict_changed(self, report: Mapping[str, Any], changed: list[dict[str, str]]) -> None:
        self.changes.append(changed)

    def metrics(self, report: Mapping[str, Any]) -> None:
        self.metric_reports += 1

    def kill_changed(self, report: Mapping[str, Any], event: str) -> None:
        self.kill_events.append((event, json.loads(json.dumps(report["kill"]))))

    def send(self, user: str, statuses: list[int], key: str) -> list[QueueRecord]:
        records = []
        for index, status in enumerate(statuses):
            batch = {"user_identities": {"customer_id": user}, "events": [request(status, 100, at=T0 + index)]}
            body = {"destination": "oracle", "batch_key": f"{key}-{index}", "test_user": True, "batch": batch}
            records.append(QueueRecord(f"m-{key}-{index}", json.dumps(body)))
        return records

    def cohort(self, user: str, treatment: str, bad: int, total: int, key: str) -> list[QueueRecord]:
        self.profiles[(f"user#{user}", "new_checkout")] = profile(user, treatment)
        return self.send(user, [503] * bad + [200] * (total - bad), key)


def state_of(report: Mapping[str, Any], treatment: str, metric: str = "5xx rate") -> str:
    return next(v["state"] for v in report["verdicts"] if v["treatment"] == treatment and v["metric"] == metric)


def test_the_issue_example_and_exactly_once_counting() -> None:
    world = World()
    on = world.cohort("qa-1", "on", 64, 800, "on")
    off = world.cohort("qa-2", "off", 3, 1500, "off")
    for chunk in range(0, len(on + off), 10):
        result = world.counting.process((on + off)[chunk : chunk + 10])
        assert result.failed_message_ids == []
        assert result.writes == result.counters  # one write per distinct counter touched
    counts = dict(world.counters.counters)
    for chunk in range(0, len(on + off), 25):  # everything delivered again, in other batches
        world.counting.process((on + off)[chunk : chunk + 25])
    assert world.counters.counters == counts
    [report] = world.evaluator.run()
    assert (state_of(report, "on"), state_of(report, "off"), report["state"]) == ("FAIL", "PASS", "FAIL")
    assert report["version"] == 5 and report["window"]["final"] is False
    assert world.changes and len(world.changes[0]) == 6  # first evaluation: every verdict is a change
    document = detail_document(world.config.tests[0], world.verdicts)
    assert document["state"] == "FAIL" and len(document["history"]) == 1
    assert list_document(world.config, world.verdicts)["tests"][0]["state"] == "FAIL"


def test_no_data_inconclusive_and_notifications_only_on_change() -> None:
    world = World()
    [empty] = world.evaluator.run()
    assert empty["state"] == "NO_DATA"
    world.counting.process(world.cohort("qa-1", "on", 1, 20, "a"))
    world.now += 60_000
    [small] = world.evaluator.run()
    assert state_of(small, "on") == "INCONCLUSIVE"
    assert small["verdicts"][0]["explain"].startswith("INCONCLUSIVE new_checkout=on 5xx rate 5% (n=20, lines ")
    world.now += 60_000
    before = len(world.changes)
    world.evaluator.run()
    assert len(world.changes) == before  # nothing changed: no alarm, but metrics every time
    assert world.metric_reports == 3
    world.now += 10_000
    assert world.evaluator.run() == []  # not due before interval_minutes


def test_unreadable_counters_become_error_after_four_evaluations() -> None:
    world = World()
    world.counting.process(world.cohort("qa-1", "on", 64, 800, "on"))
    world.evaluator.run()

    def broken(*_: Any) -> Any:
        raise TimeoutError("boom")

    world.counters.read = broken  # type: ignore[method-assign]
    states = []
    for _ in range(4):
        world.now += 60_000
        [report] = world.evaluator.run()
        states.append(report["state"])
    assert states == ["FAIL", "FAIL", "FAIL", "ERROR"]
    assert report["consecutive_errors"] == 4 and "TimeoutError" in report["error"]


def test_kill_once_with_rate_limit_and_retries() -> None:
    world = World(actions=["alert", "kill"], kill={"workspace_id": "ws-1"})
    world.answers = [
        HttpAnswer(429, {"x-ratelimit-reset-seconds-org": "2", "x-ratelimit-reset-seconds-ip": "1"}, ""),
        HttpAnswer(503, {}, ""),
        AdminTransportError("ReadTimeoutError"),
        HttpAnswer(200, {}, "{}"),
    ]
    world.counting.process(world.cohort("qa-1", "on", 64, 800, "on"))
    [report] = world.evaluator.run()
    assert world.puts == ["http://admin/internal/api/v2/splits/ws/ws-1/new_checkout/environments/Production/kill"] * 4
    assert world.sleeps[0] == 2.0  # the longest rate-limit header
    assert report["kill"]["status"] == "killed" and not report["kill"]["confirmed"]
    outcomes = [a["outcome"] for a in report["kill"]["attempts"]]
    assert outcomes == ["rate_limited", "server_error", "transport_error", "killed"]
    for _ in range(3):
        world.now += 60_000
        world.evaluator.run()
    assert len(world.puts) == 4  # never twice for one FAIL
    # testers now get the default treatment with label "killed": the kill is confirmed
    world.profiles[("user#qa-1", "new_checkout")] = profile("qa-1", "off", label="killed", version=6)
    world.counting.process(world.send("qa-1", [200], "after-kill"))
    world.now += 60_000
    [after] = world.evaluator.run()
    assert after["kill"]["confirmed"] is True
    assert after["state"] == "FAIL"  # the judged version is still the one that failed


def test_kill_dry_run_refusal_and_retry_next_evaluation() -> None:
    dry = World(actions=["kill"], kill={"workspace_id": "ws-1", "dry_run": True})
    dry.counting.process(dry.cohort("qa-1", "on", 64, 800, "on"))
    [report] = dry.evaluator.run()
    assert dry.puts == [] and report["kill"]["status"] == "dry_run"
    refused = World(actions=["kill"], kill={"workspace_id": "ws-1"})
    refused.answers = [HttpAnswer(401, {}, '{"message": "bad key"}')]
    refused.counting.process(refused.cohort("qa-1", "on", 64, 800, "on"))
    [report] = refused.evaluator.run()
    assert report["kill"]["status"] == "refused" and len(refused.puts) == 1
    flaky = World(actions=["kill"], kill={"workspace_id": "ws-1"})
    flaky.answers = [HttpAnswer(429, {"retry-after": "60"}, "")]  # beyond the budget: next evaluation
    flaky.counting.process(flaky.cohort("qa-1", "on", 64, 800, "on"))
    [report] = flaky.evaluator.run()
    assert report["kill"]["status"] == "retry" and len(flaky.puts) == 1
    flaky.now += 60_000
    [report] = flaky.evaluator.run()
    assert report["kill"]["status"] == "killed" and len(flaky.puts) == 2


def test_a_fail_kills_only_where_its_metric_s_actions_say_kill() -> None:
    # The test kills on FAIL; its default unanswered rate only alerts: a target gone FAILs it, alerts, kills nothing
    world = World(actions=["alert", "kill"], kill={"workspace_id": "ws-1"})
    world.profiles[("user#qa-1", "new_checkout")] = profile("qa-1", "on")
    world.counting.process(world.send("qa-1", [200] * 12 + [0] * 40, "gone"))
    [report] = world.evaluator.run()
    assert state_of(report, "on", "unanswered rate") == "FAIL" and report["state"] == "FAIL"
    assert state_of(report, "on", "5xx rate") != "FAIL"  # the answers: 12, none a 5xx
    assert world.puts == [] and report["kill"] is None
    assert {"verdict": "on/unanswered rate", "from": "NONE", "to": "FAIL"} in world.changes[0]  # alerted
    # The same test, now with 5xx: its 5xx rate takes the test's actions, and kills
    world.counting.process(world.cohort("qa-2", "on", 64, 800, "5xx"))
    world.now += 60_000
    [report] = world.evaluator.run()
    assert state_of(report, "on", "5xx rate") == "FAIL" and len(world.puts) == 1
    assert report["kill"]["status"] == "killed" and report["kill"]["reason"].startswith("FAIL new_checkout=on 5xx rate")


def test_a_metric_that_opts_in_kills_where_the_test_only_alerts() -> None:
    rate = {"name": "5xx rate", "type": "rate", "bad": {"attributes": [{"attribute": "status", "op": "gte",
            "value": 500}]}, "pass_below": 0.01, "fail_at": 0.05, "actions": ["kill"]}  # fmt: skip
    latency = {"name": "latency p95", "type": "percentile", "attribute": "latency_ms", "percentile": 95,
               "pass_below": 500, "fail_at": 1000}  # fmt: skip
    world = World(actions=["alert"], kill={"workspace_id": "ws-1"}, metrics=[rate, latency])
    world.profiles[("user#qa-1", "new_checkout")] = profile("qa-1", "on")
    slow = [{**request(200, 5000, at=T0 + i)} for i in range(400)]
    batch = {"user_identities": {"customer_id": "qa-1"}, "events": slow}
    world.counting.process(
        [QueueRecord("slow", json.dumps({"destination": "oracle", "batch_key": "slow", "test_user": True,
                                          "batch": batch}))]
    )  # fmt: skip
    [report] = world.evaluator.run()
    assert state_of(report, "on", "latency p95") == "FAIL" and world.puts == []  # latency: the test's alert only
    world.counting.process(world.cohort("qa-2", "on", 200, 600, "5xx"))
    world.now += 60_000
    [report] = world.evaluator.run()
    assert state_of(report, "on", "5xx rate") == "FAIL" and len(world.puts) == 1  # 5xx: its own kill


def test_no_kill_without_fail_and_srm_invalid() -> None:
    world = World(actions=["kill"], kill={"workspace_id": "ws-1"}, split={"on": 50, "off": 50})
    for index in range(50):
        world.counting.process(world.cohort(f"qa-on-{index}", "on", 0, 2, f"on{index}"))
    world.counting.process(world.cohort("qa-off", "off", 0, 2, "off"))
    [report] = world.evaluator.run()
    assert report["srm"]["users"] == {"off": 1, "on": 50} and report["srm"]["mismatch"]
    assert report["srm"]["evidence"] >= 1000 and report["srm"]["alpha"] == 0.001
    assert report["state"] == "INVALID" and "sample ratio mismatch" in report["verdicts"][0]["explain"]
    assert world.puts == []


def test_a_fail_with_a_sample_ratio_mismatch_still_fails_and_kills_once() -> None:
    # the audit's defect 4: INVALID used to replace FAIL, so the kill never happened while the SRM lasted
    world = World(actions=["kill"], kill={"workspace_id": "ws-1"}, split={"on": 50, "off": 50})
    world.counting.process(world.cohort("qa-1", "on", 80, 800, "on"))
    for index in range(50):
        world.counting.process(world.cohort(f"qa-on-{index}", "on", 0, 2, f"on{index}"))
    world.counting.process(world.cohort("qa-off", "off", 0, 2, "off"))
    [report] = world.evaluator.run()
    assert report["srm"]["mismatch"]
    assert report["state"] == "FAIL" and state_of(report, "on") == "FAIL" and state_of(report, "off") == "INVALID"
    fail = next(v for v in report["verdicts"] if v["state"] == "FAIL")
    assert fail["explain"].startswith("FAIL new_checkout=on 5xx rate")
    assert "also sample ratio mismatch" in fail["explain"]
    assert report["kill"]["status"] == "killed" and len(world.puts) == 1
    world.now += 60_000
    [again] = world.evaluator.run()
    assert again["state"] == "FAIL" and len(world.puts) == 1  # killed once


def test_rate_limit_headers_and_exit_codes() -> None:
    assert rate_limit_wait({"retry-after": "3"}) == 3.0
    assert rate_limit_wait({"retry-after": "soon"}) is None
    assert overall_exit_code(["PASS", "PASS"]) == 0
    assert overall_exit_code(["PASS", "FAIL", "ERROR"]) == 1
    assert overall_exit_code(["PASS", "INCONCLUSIVE"]) == 2
    assert overall_exit_code([]) == 2


@pytest.mark.parametrize("status", ["not json", '{"no": "batch"}'])
def test_unreadable_messages_are_reported_not_counted(status: str) -> None:
    world = World()
    result = world.counting.process([QueueRecord("x", status)])
    assert [record.message_id for record, _ in result.unreadable] == ["x"]
    assert result.failed_message_ids == []


class RefusingQuarantine:
    def put(self, source: str, object_id: str, document: dict[str, Any]) -> str:
        raise StoreError("quarantine write failed (ConnectionError)")


def test_the_service_keeps_unreadable_messages_in_its_quarantine_or_has_them_redelivered() -> None:
    world = World()
    kept = InMemoryQuarantine()
    counting = CounterService(world.counting._counter, world.counters, world.load, quarantine=lambda: kept)
    result = counting.process([QueueRecord("x", "not json"), QueueRecord("y", "not json either")])
    assert result.failed_message_ids == [] and result.quarantine_errors == []
    assert sorted((d["source"], d["message_id"], d["reason"]) for d in kept.objects.values()) == [
        ("oracle-counter", "x", "unreadable"),
        ("oracle-counter", "y", "unreadable"),
    ]
    refusing = CounterService(world.counting._counter, world.counters, world.load, quarantine=RefusingQuarantine)
    result = refusing.process([QueueRecord("x", "not json")])
    assert result.failed_message_ids == ["x"] and result.quarantine_errors == ["StoreError"]


def test_the_collector_is_paused_while_a_batch_is_counted_and_restored_after() -> None:
    """Counting pauses the cyclic collector (its batch is acyclic) and leaves it as it found it, also on a failure."""
    seen: list[bool] = []

    class Watching(InMemoryCounterStore):
        def apply(self, contributions: Any) -> Any:
            seen.append(gc.isenabled())
            if len(seen) == 2:
                raise StoreError("unreachable")
            return super().apply(contributions)

    world = World()
    world.counting = CounterService(Counter(world.config, {"customer_id": ["user"]}), Watching(), world.load)
    assert gc.isenabled()
    world.counting.process(world.send("qa-1", [200], "a"))
    with pytest.raises(StoreError):
        world.counting.process(world.send("qa-1", [200], "b"))
    assert gc.isenabled() and seen == [False, False]
    gc.disable()
    try:
        world.counting.process(world.send("qa-1", [200], "c"))
        assert not gc.isenabled()  # left off: the caller had turned it off
    finally:
        gc.enable()
