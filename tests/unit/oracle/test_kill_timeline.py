"""A kill's timeline on the in-memory stores with a fake clock: t0 (FAIL), the claim, t1 (Split accepted), t2
(the first ``killed`` event counted), the latencies, ``kill not confirmed`` once, dry run and refusal."""

from __future__ import annotations

from typing import Any

import pytest

from flagbridge.oracle.kills import follow, timeline_lines
from flagbridge.oracle.notify import kill_detail, kill_message
from flagbridge.outbound import Response as HttpAnswer
from tests.unit.oracle.test_service import World, profile

CALL_MS = 1_500  # what each Admin API call takes on the fake clock
MINUTE = 60_000


class TimedWorld(World):
    """The Admin API call takes CALL_MS of the fake clock, so t1 is not the evaluation's own time."""

    def put(self, url: str, body: bytes, headers: Any) -> HttpAnswer:
        self.now += CALL_MS
        return super().put(url, body, headers)

    def evaluate(self) -> dict[str, Any]:
        [report] = self.evaluator.run()
        return report

    def killed_event(self, user: str, version: int, key: str) -> None:
        """``user`` is served the flag with label killed in ``version``; their next event reaches the lane."""
        self.profiles[(f"user#{user}", "new_checkout")] = profile(user, "off", label="killed", version=version)
        self.counting.process(self.send(user, [200], key))


def failing(**kill: Any) -> TimedWorld:
    world = TimedWorld(actions=["alert", "kill"], kill={"workspace_id": "ws-1", **kill})
    world.counting.process(world.cohort("qa-1", "on", 64, 800, "on"))
    return world


def test_t0_claim_t1_t2_and_their_latencies() -> None:
    world = failing()
    world.answers = [HttpAnswer(429, {"retry-after": "60"}, "")]  # beyond the budget: retried next evaluation
    t0 = world.now
    first = world.evaluate()
    assert first["state"] == "FAIL" and first["failed_since"] == t0
    kill = first["kill"]
    assert (kill["status"], kill["confirmation"]) == ("retry", "pending")
    assert kill["timeline"] == {"failed_at": t0, "claimed_at": t0, "accepted_at": None, "confirmed_at": None,
                                "claim_ms": 0, "accept_ms": None, "confirm_ms": None}  # fmt: skip
    assert kill["comment"] == "flagbridge oracle: FAIL verdict" and kill["confirm_within_ms"] == 30 * MINUTE
    assert world.kill_events == []

    world.now = t0 + MINUTE
    second = world.evaluate()
    t1 = t0 + MINUTE + CALL_MS
    assert second["failed_since"] == t0  # the same FAIL: t0 stays the first evaluation's
    timeline = second["kill"]["timeline"]
    assert (timeline["failed_at"], timeline["claimed_at"], timeline["accepted_at"]) == (t0, t0, t1)
    assert (timeline["accept_ms"], timeline["confirm_ms"]) == (MINUTE + CALL_MS, None)
    assert second["kill"]["confirmation"] == "pending" and second["kill"]["status"] == "killed"
    assert [event for event, _ in world.kill_events] == ["accepted"]

    world.now = t0 + 2 * MINUTE  # nothing killed counted yet
    assert world.evaluate()["kill"]["confirmation"] == "pending"
    world.killed_event("qa-1", 6, "after-kill")
    t2 = world.now = t0 + 3 * MINUTE
    third = world.evaluate()
    assert third["kill"]["timeline"]["confirmed_at"] == t2
    assert third["kill"]["timeline"]["confirm_ms"] == t2 - t1
    assert (third["kill"]["confirmation"], third["kill"]["confirmed"]) == ("confirmed", True)
    assert [event for event, _ in world.kill_events] == ["accepted", "confirmed"]
    world.killed_event("qa-1", 6, "later")
    world.now += MINUTE
    later = world.evaluate()
    assert later["kill"]["timeline"]["confirmed_at"] == t2  # the first one counted, never moved
    assert len(world.kill_events) == 2
    [stored] = world.verdicts.kills("checkout")
    assert stored["timeline"] == later["kill"]["timeline"] and stored["notified"] == ["accepted", "confirmed"]


def test_killed_events_before_t1_or_of_an_older_version_do_not_confirm() -> None:
    world = failing()
    world.killed_event("qa-old", 4, "old-kill")  # a kill of an older version, counted long ago
    world.killed_event("qa-early", 5, "early")  # counted before this evaluation called Split
    report = world.evaluate()
    assert report["killed_versions"] == {"4": 1, "5": 1} and report["kill"]["killed_before"] == 1
    world.killed_event("qa-old", 4, "old-again")
    world.now += MINUTE
    assert world.evaluate()["kill"]["confirmation"] == "pending"
    world.killed_event("qa-1", 6, "after-kill")
    world.now += MINUTE
    assert world.evaluate()["kill"]["confirmation"] == "confirmed"


def test_kill_not_confirmed_alerts_once_then_a_late_confirmation_records_t2() -> None:
    world = failing(confirm_within_minutes=5)
    t1 = world.now + CALL_MS
    world.evaluate()
    confirmations = []
    for minute in range(1, 9):  # accepted + 1 .. 8 minutes: late from t1 + 5 min
        world.now = t1 + minute * MINUTE
        confirmations.append(world.evaluate()["kill"]["confirmation"])
    assert confirmations == ["pending"] * 4 + ["not_confirmed"] * 4
    assert [event for event, _ in world.kill_events] == ["accepted", "not_confirmed"]
    _, alerted = world.kill_events[1]
    assert alerted["timeline"]["confirmed_at"] is None and alerted["confirm_within_ms"] == 5 * MINUTE
    subject, body = kill_message({"test": "checkout", "flag": "new_checkout", "environment": "Production",
                                  "kill": alerted}, "not_confirmed")  # fmt: skip
    assert subject == "flagbridge oracle: checkout kill not confirmed"
    assert "within 5 minutes of Split accepting the kill" in body
    world.killed_event("qa-1", 6, "late")
    world.now = t1 + 20 * MINUTE
    report = world.evaluate()
    assert report["kill"]["confirmation"] == "confirmed"
    assert report["kill"]["timeline"]["confirm_ms"] == 20 * MINUTE
    assert [event for event, _ in world.kill_events] == ["accepted", "not_confirmed", "confirmed"]


def test_a_message_that_fails_is_sent_next_time_and_t2_stays() -> None:
    world = failing()
    world.evaluate()
    world.killed_event("qa-1", 6, "after-kill")
    sent = world.kill_events

    def broken(report: Any, event: str) -> None:
        raise ConnectionError("SNS unreachable")

    world.kill_changed = broken  # type: ignore[method-assign]
    t2 = world.now = world.now + MINUTE
    assert world.evaluator.run() == [{"test": "checkout", "state": "ERROR", "failure": "ConnectionError"}]
    del world.kill_changed
    world.now += MINUTE
    report = world.evaluate()
    assert report["kill"]["timeline"]["confirmed_at"] == t2
    assert [event for event, _ in sent] == ["accepted", "confirmed"]


def test_dry_run_and_refusal_have_no_t1_and_never_alert() -> None:
    dry = failing(dry_run=True, confirm_within_minutes=1)
    report = dry.evaluate()
    assert report["kill"]["confirmation"] == "dry_run" and report["kill"]["timeline"]["accepted_at"] is None
    dry.now += 10 * MINUTE
    assert dry.evaluate()["kill"]["confirmation"] == "dry_run"
    assert dry.puts == [] and dry.kill_events == []
    refused = failing(confirm_within_minutes=1)
    refused.answers = [HttpAnswer(403, {}, '{"message": "no"}')]
    report = refused.evaluate()
    assert report["kill"]["confirmation"] == "failed" and report["kill"]["timeline"]["accept_ms"] is None
    refused.now += 10 * MINUTE
    refused.evaluate()
    assert refused.kill_events == []


def test_messages_and_text_show_each_time_and_latency() -> None:
    world = failing()
    world.evaluate()
    world.killed_event("qa-1", 6, "after-kill")
    world.now += 90_000
    report = world.evaluate()
    lines = timeline_lines(report["kill"])
    assert lines[0].startswith("t0 FAIL found        2026-") and lines[1].endswith("(+0.0 s after t0)")
    assert lines[2].endswith("(+1.5 s after t0)") and lines[3].endswith("(+90.0 s after t1)")
    subject, body = kill_message(report, "confirmed")
    assert subject == "flagbridge oracle: checkout kill confirmed"
    assert "Kill of version 5: killed, confirmed" in body and "(+90.0 s after t1)" in body
    detail = kill_detail(report, "confirmed")
    assert detail["event"] == "confirmed" and detail["kill"]["timeline"]["confirm_ms"] == 90_000
    assert detail["kill"]["confirmation"] == "confirmed"


def test_a_record_without_a_timeline_gets_one_from_its_attempts() -> None:
    legacy = {"version": 5, "status": "killed", "requested_at": 1_000, "claimed_at": 1_000,
              "attempts": [{"at": 1_200, "outcome": "killed"}]}  # fmt: skip
    assert follow(legacy, 0, 2_000, MINUTE) == ["accepted"]
    assert legacy["timeline"]["accept_ms"] == 200 and legacy["confirmation"] == "pending"


@pytest.mark.parametrize("minutes", [0, 7 * 1440 + 1])
def test_confirm_within_minutes_is_bounded(minutes: int) -> None:
    from flagbridge.errors import ConfigError
    from flagbridge.oracle.config import parse_oracle_config

    base = {"name": "t", "flag": "f", "environment": "Production", "actions": ["kill"]}
    with pytest.raises(ConfigError, match=r"'oracle\.tests\.0\.kill\.confirm_within_minutes'"):
        parse_oracle_config({"tests": [{**base, "kill": {"workspace_id": "w", "confirm_within_minutes": minutes}}]})


def test_a_claim_in_progress_elsewhere_is_reported_but_never_written() -> None:
    world = failing()
    elsewhere = {"version": 5, "status": "in_progress", "claimed_at": world.now, "requested_at": world.now,
                 "attempts": []}  # fmt: skip
    world.verdicts.kill_records[("checkout", 5)] = dict(elsewhere)
    report = world.evaluate()
    assert world.puts == [] and report["kill"]["confirmation"] == "pending"
    assert world.verdicts.kill_records[("checkout", 5)] == elsewhere  # its claimant's write is never overwritten
