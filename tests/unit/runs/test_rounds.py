"""Rounds of a run until decided in AWS (flagbridge.runs.rounds) on the in-memory twins: the first round alone, the
delayed look sent by the round's last shard, a stale evaluation looked at again, exactly one advance of a round,
the next round sized by the oracle's estimate and cut to the budget, and every reason a run ends.

The same through the handlers on moto: tests/handlers/test_traffic_runs_until_decided.py.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from flagbridge.oracle.verdicts import InMemoryVerdicts, VerdictReadError
from flagbridge.runs.rounds import Rounds, first_rounds
from flagbridge.runs.shards import LookMessage, parse_message
from flagbridge.runs.spec import RunSpec, validate_run_request
from flagbridge.runs.store import InMemoryRunStore
from tests.fixtures.runs import ORACLE_TEST, PLAN_WITH_TEST, ListSender, run_request, traffic_config
from tests.unit.runs.test_runs import shipped_oracle

NOW = 1_767_225_600_000


class Setup:
    def __init__(self, requests: int = 1000, shard_size: int = 50, **extra: Any) -> None:
        body = run_request("http://127.0.0.1:9", requests, shard_size=shard_size, plan=PLAN_WITH_TEST, **extra)
        self.spec: RunSpec = validate_run_request(
            {**body, "until_decided": True}, traffic_config(), parallelism=4, now_ms=NOW, oracle=shipped_oracle()
        )[0]
        self.store = InMemoryRunStore()
        self.store.create_run(
            self.spec.run_id, {"created_ms": NOW, "until_decided": True, "rounds": first_rounds(self.spec)}
        )
        self.queue: list[str] = []
        self.delayed: list[tuple[str, int]] = []
        self.verdicts = InMemoryVerdicts()
        self.now = NOW
        self.rounds = Rounds(
            self.store,
            ListSender(self.queue),
            lambda body, delay: self.delayed.append((body, delay)),
            self.verdicts,
            clock_ms=lambda: self.now,
            delay_seconds=30,
            wait_seconds=180,
        )

    def finish(self, shard: int, state: str = "done", reason: str | None = None) -> bool:
        claim = self.store.claim(self.spec.run_id, shard, shard * self.spec.shard_size, "w", self.now, 60_000)
        self.store.finish(claim, state, reason, None, self.now)
        return self.rounds.shard_finished(self.spec, shard)

    def finish_round(self, state: str = "done", reason: str | None = None) -> LookMessage:
        record = self.store.get_run(self.spec.run_id) or {}
        first, end = record["rounds"]["rounds"][record["round"]]["shards"]
        for shard in range(first, end):
            self.finish(shard, state, reason)
        body, delay = self.delayed[-1]
        assert delay == 30
        message = parse_message(body)
        assert isinstance(message, LookMessage)
        return message

    def verdict(self, state: str, needed: int | None = None, evaluated_at: int | None = None) -> None:
        row = {"treatment": "on", "metric": "5xx rate", "state": state, "needed": needed, "n": 100}
        at = self.now if evaluated_at is None else evaluated_at
        self.verdicts.documents[ORACLE_TEST] = {"evaluated_at": at, "verdicts": [row]}

    def record(self) -> dict[str, Any]:
        return self.store.get_run(self.spec.run_id) or {}


def test_the_rounds_last_shard_sends_one_delayed_look_at_the_verdict() -> None:
    run = Setup()
    assert run.record()["rounds"]["rounds"] == [
        {"first": 0, "requests": 100, "asked": None, "shards": [0, 2], "look": None}
    ]
    assert run.finish(0) is False and run.delayed == []  # shard 1 of the round is still sending
    run.now += 1_000
    assert run.finish(1) is True
    ((body, delay),) = run.delayed
    look = parse_message(body)
    assert isinstance(look, LookMessage) and delay == 30
    assert (look.round, look.results_end_ms, look.first_look_ms) == (0, NOW + 1_000, NOW + 1_000)
    assert run.queue == []  # nothing more is enqueued before the look


def test_the_next_round_is_what_the_oracle_asks_for_in_whole_shards() -> None:
    run = Setup()
    look = run.finish_round()
    run.now += 30_000
    run.verdict("INCONCLUSIVE", needed=230)
    assert run.rounds.look(run.spec, look) == ("advanced", "round 2: 250 requests")
    shards = [json.loads(body)["shard"] for body in run.queue]
    assert shards == [2, 3, 4, 5, 6]
    record = run.record()
    assert record["round"] == 1
    assert record["rounds"]["rounds"][1] == {
        "first": 100,
        "requests": 250,
        "asked": 230,
        "shards": [2, 7],
        "look": look.look_id,
    }


def test_an_evaluation_older_than_the_rounds_last_result_is_looked_at_again_then_given_up() -> None:
    run = Setup()
    look = run.finish_round()
    run.verdict("INCONCLUSIVE", needed=230, evaluated_at=look.results_end_ms - 1)
    run.now += 30_000
    assert run.rounds.look(run.spec, look) == ("waiting", "the oracle has not evaluated the round yet")
    again = parse_message(run.delayed[-1][0])
    assert again == look and run.delayed[-1][1] == 30 and run.queue == []  # the same look, delayed again
    run.now = look.first_look_ms + 180_000
    outcome, reason = run.rounds.look(run.spec, look)
    assert (outcome, reason) == (
        "ended",
        f"the oracle did not evaluate the round's results within 180s (test {ORACLE_TEST})",
    )
    assert run.record()["rounds"]["ended"] == "not evaluated" and run.queue == []


def test_a_fail_needs_no_fresh_evaluation() -> None:
    run = Setup()
    look = run.finish_round()
    run.verdict("FAIL", evaluated_at=1)
    outcome, reason = run.rounds.look(run.spec, look)
    assert outcome == "ended" and reason.startswith(f"decided: oracle FAIL for test {ORACLE_TEST}")


def test_of_two_looks_at_one_round_exactly_one_advances_it() -> None:
    run = Setup()
    first = run.finish_round()
    assert run.rounds.shard_finished(run.spec, 1)  # a redelivered message of the round's last shard: a look too
    second = parse_message(run.delayed[-1][0])
    assert isinstance(second, LookMessage) and second.look_id != first.look_id and second.round == 0
    run.verdict("INCONCLUSIVE", needed=100)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def look(message: LookMessage) -> None:
        barrier.wait()
        outcomes.append(run.rounds.look(run.spec, message)[0])

    threads = [threading.Thread(target=look, args=(m,)) for m in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["advanced", "skipped"]
    assert [json.loads(body)["shard"] for body in run.queue] == [2, 3]  # the next round, enqueued once
    assert run.record()["round"] == 1


def test_the_winners_redelivered_look_enqueues_the_shards_no_worker_claimed() -> None:
    run = Setup()
    look = run.finish_round()
    run.verdict("INCONCLUSIVE", needed=100)
    assert run.rounds.look(run.spec, look)[0] == "advanced"
    run.finish(2)
    run.queue.clear()
    assert run.rounds.look(run.spec, look) == ("advanced", "round 2: 1 unclaimed shards enqueued again")
    assert [json.loads(body)["shard"] for body in run.queue] == [3]
    other = LookMessage(look.run_id, look.round, "another", look.results_end_ms, look.first_look_ms)
    assert run.rounds.look(run.spec, other) == ("skipped", "the round was advanced already")


def test_the_budget_is_never_exceeded_and_ends_the_run() -> None:
    run = Setup(requests=120, shard_size=50)  # shards of 50, 50 and 20
    look = run.finish_round()
    run.verdict("INCONCLUSIVE", needed=10_000)
    assert run.rounds.look(run.spec, look) == ("advanced", "round 2: 20 requests")
    assert [json.loads(body)["shard"] for body in run.queue] == [2]
    look = run.finish_round()
    run.verdict("INCONCLUSIVE", needed=9_000)
    assert run.rounds.look(run.spec, look) == (
        "ended",
        "the budget of 120 requests is spent, undecided (the oracle asks for about 9,000 more)",
    )
    rounds = run.record()["rounds"]
    assert rounds["ended"] == "budget" and sum(item["requests"] for item in rounds["rounds"]) == 120


@pytest.mark.parametrize(
    ("state", "needed", "ended", "reason"),
    [
        ("PASS", None, "decided", f"decided: oracle PASS for test {ORACLE_TEST} (on: every fed verdict)"),
        ("INCONCLUSIVE", None, "undecided", "undecided: more events alone will not decide: test new-checkout-health "
         "treatment on (5xx rate) INCONCLUSIVE, the rate lies between the lines"),
        ("INVALID", None, "undecided", "undecided: more events alone will not decide: test new-checkout-health "
         "treatment on (5xx rate) is INVALID"),
    ],
)  # fmt: skip
def test_a_decided_verdict_or_one_more_events_will_not_decide_ends_the_run(
    state: str, needed: int | None, ended: str, reason: str
) -> None:
    run = Setup()
    look = run.finish_round()
    run.verdict(state, needed)
    assert run.rounds.look(run.spec, look) == ("ended", reason)
    assert run.record()["rounds"]["ended"] == ended and run.queue == []


def test_the_duration_a_stopped_shard_and_an_unreadable_verdict_end_the_run() -> None:
    run = Setup(max_duration_s=60)
    look = run.finish_round()
    run.verdict("INCONCLUSIVE", needed=100)
    run.now = NOW + 60_000
    assert run.rounds.look(run.spec, look) == ("ended", "duration budget of 60s spent")

    run = Setup()
    look = run.finish_round("stopped", "stop switch: the stack's stop parameter names this run")
    run.verdict("INCONCLUSIVE", needed=100)
    assert run.rounds.look(run.spec, look) == ("ended", "stop switch: the stack's stop parameter names this run")
    assert run.record()["rounds"]["ended"] == "stopped"

    run = Setup()
    look = run.finish_round()
    run.verdicts.fail_reads = 1
    assert run.rounds.look(run.spec, look)[0] == "waiting"  # a failed read is looked at again

    class Gone:
        def verdict(self, test: str) -> Any:
            raise VerdictReadError("403 from the verdict store", permanent=True)

    run.rounds.verdicts = Gone()
    assert run.rounds.look(run.spec, look) == (
        "ended",
        f"the oracle's verdict for test {ORACLE_TEST} cannot be read (403 from the verdict store)",
    )


def test_a_look_message_is_parsed_strictly() -> None:
    look = LookMessage("r-1", 2, "abc", 5, 6)
    assert parse_message(look.body()) == look
    from flagbridge.runs.shards import ShardMessageError

    with pytest.raises(ShardMessageError, match="unknown field 'shard'"):
        parse_message(json.dumps({**json.loads(look.body()), "shard": 1}))
    with pytest.raises(ShardMessageError, match="'look_id' is not a look id"):
        parse_message(json.dumps({**json.loads(look.body()), "look_id": "../x"}))


def test_the_docs_of_rounds_name_settings_that_exist() -> None:
    import re

    from flagbridge.settings import Settings
    from tests.conftest import ROOT

    text = (ROOT / "docs/runs.md").read_text(encoding="utf-8")
    section = text[text.index("### Until decided") : text.index("## Status")]
    named = set(re.findall(r"`(TRAFFIC_[A-Z_]+)`", section))
    defaults = dict(Settings.variables().values())
    assert named == {"TRAFFIC_LOOK_DELAY_SECONDS", "TRAFFIC_LOOK_WAIT_SECONDS"} and named <= defaults.keys()
    assert (defaults["TRAFFIC_LOOK_DELAY_SECONDS"], defaults["TRAFFIC_LOOK_WAIT_SECONDS"]) == (30, 180)
    assert "`DelaySeconds`, default 30" in section and "(default 180)" in section  # the defaults the docs state


@pytest.mark.parametrize(
    ("document", "shards", "asked"),
    [
        (None, [0, 1], None),  # never evaluated: the first round is 100 requests
        ({"evaluated_at": 1, "verdicts": [{"treatment": "on", "metric": "5xx rate", "state": "NO_DATA",
                                           "needed": 230, "n": 0}]}, [0, 1, 2, 3, 4], 230),
        ({"evaluated_at": 1, "verdicts": [{"treatment": "on", "metric": "5xx rate", "state": "PASS",
                                           "needed": None, "n": 900}]}, [0, 1], None),  # decided before the run
    ],
)  # fmt: skip
def test_the_run_function_enqueues_only_the_first_round_sized_like_the_clis(
    document: dict[str, Any] | None, shards: list[int], asked: int | None
) -> None:
    from flagbridge.runs.service import RunService
    from flagbridge.runs.store import InMemoryManifestStore
    from tests.fixtures.runs import qa_rules

    queue: list[str] = []
    verdicts = InMemoryVerdicts({ORACLE_TEST: document} if document else {})
    runs = RunService(
        InMemoryRunStore(), InMemoryManifestStore(), ListSender(queue), traffic_config(), qa_rules(), 4,
        verdicts=verdicts, oracle=shipped_oracle(),
    )  # fmt: skip
    body = run_request("http://127.0.0.1:9", 1000, shard_size=50, plan=PLAN_WITH_TEST, until_decided=True)
    status, started = runs.start({**body, "run_id": "r-first"})
    assert status == 202 and started["shards"] == 20
    assert [json.loads(message)["shard"] for message in queue] == shards
    run = runs.status("r-first")
    assert run is not None and run["rounds"][0]["asked"] == asked
    assert run["shards"] == {"total": 20, "enqueued": len(shards), "pending": len(shards), "not_sent": 20 - len(shards)}
    assert runs.start({**body, "run_id": "r-first"})[1]["state"] == "already started" and len(queue) == len(shards)
