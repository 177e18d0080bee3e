"""Rounds of a run until decided in AWS (``POST /runs`` with ``until_decided: true``).

The run's ``requests`` is a budget cut into its shards as any run's; the shards are sent in **rounds**, sized by the
CLI's rule (:func:`flagbridge.traffic.decided.round_size`, whole shards instead of whole batches):

1. the run function enqueues only the first round's shards (:func:`first_rounds`: the requests the verdict read
   before the run asks for, as the CLI's first round, else ``first_round`` requests);
2. the worker that finishes a round's last shard (:meth:`Rounds.shard_finished`; a redelivered message of a
   finished shard asks again, so a lost look is sent again) puts a **look** message on the shard queue, delayed
   by ``delay_seconds`` (SQS ``DelaySeconds``: the oracle's evaluation lag);
3. the look (:meth:`Rounds.look`) reads the verdict. An evaluation older than the round's last result (and no
   FAIL) is not the round's: the look is sent again, delayed, until ``wait_seconds`` after the first look (then the
   run ends, not evaluated). Otherwise :func:`flagbridge.traffic.decided.assess` decides: the run ends (decided;
   more events alone will not decide), or the next round is the requests the oracle asks for, cut to the shards
   left. The run also ends when no shard is left (budget), when ``max_duration_s`` since the run was created is
   spent (duration), when a shard of the round was stopped by something else (stop switch, target not answering:
   stopped) and when the verdict cannot be read (unreadable);
4. the next round, or the end, is one conditional write (:meth:`RunStore.advance_round`): of two looks at the
   same round (two workers finished its last shards at once) exactly one wins; only the winner enqueues the next
   round's shards. A winner whose enqueueing failed is handed back and, redelivered, enqueues the round's shards
   no worker has claimed yet (its ``look_id`` is the round's ``look``).

Shards of rounds never sent are the run status's ``not_sent``; the budget is never exceeded (the shards are the
budget's). The run's ``rounds`` record says why it ended, as :meth:`flagbridge.traffic.decided.UntilDecided.record`.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flagbridge.oracle.verdicts import VerdictReadError, VerdictSource
from flagbridge.queues import MessageSender
from flagbridge.runs.shards import LookMessage, shard_messages
from flagbridge.runs.spec import RunSpec
from flagbridge.runs.store import FINISHED, RunStore
from flagbridge.traffic.decided import (
    DEFAULT_FIRST_ROUND,
    DEFAULT_WAIT_SECONDS,
    assess,
    budget_reason,
    counted,
    duration_reason,
    not_evaluated_reason,
    round_size,
)

DEFAULT_DELAY_SECONDS = 30
MAX_DELAY_SECONDS = 900  # SQS's DelaySeconds limit


def next_round(
    spec: RunSpec, first_shard: int, asked: int | None, look: str | None, first_round: int
) -> dict[str, Any]:
    """The round starting at ``first_shard``: ``asked`` requests (``first_round`` without an estimate) in whole
    shards, cut to the shards left."""
    left = max(0, spec.requests - first_shard * spec.shard_size)
    size = round_size(asked, left, spec.shard_size, first_round)
    last = min(spec.shards, first_shard + math.ceil(size / spec.shard_size))
    return {
        "first": first_shard * spec.shard_size,
        "requests": size,
        "asked": asked,
        "shards": [first_shard, last],
        "look": look,
    }


def first_rounds(spec: RunSpec, asked: int | None = None, first_round: int = DEFAULT_FIRST_ROUND) -> dict[str, Any]:
    """The run's ``rounds`` record when it starts: its first round only, ``asked`` requests (the estimate of the
    verdict read before the run, as the CLI's first round) or ``first_round``."""
    return {
        "budget": spec.requests,
        "ended": None,
        "reason": None,
        "rounds": [next_round(spec, 0, asked, None, first_round)],
        "results_end_ms": None,
    }


def round_shards(rounds: Mapping[str, Any], current: int) -> tuple[int, int]:
    """``(first shard, end shard)`` of round ``current`` (the last round once the run ended)."""
    listed = rounds["rounds"]
    first, end = listed[min(current, len(listed) - 1)]["shards"]
    return int(first), int(end)


def shards_sent(rounds: Mapping[str, Any]) -> int:
    """The shards of every round enqueued so far (the shards after them were never sent)."""
    return max(int(item["shards"][1]) for item in rounds["rounds"])


@dataclass
class Rounds:
    """The worker's side of the rounds (see the module docstring)."""

    store: RunStore
    enqueue: MessageSender
    send_delayed: Callable[[str, int], None]
    """Puts one message body on the shard queue, visible after the given seconds."""
    verdicts: VerdictSource | None
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    delay_seconds: int = DEFAULT_DELAY_SECONDS
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    first_round: int = DEFAULT_FIRST_ROUND
    looks_sent: int = 0

    def shard_finished(self, spec: RunSpec, shard: int) -> bool:
        """After a shard of ``spec`` finished: when it was its round's last, send the delayed look (True)."""
        if not spec.until_decided:
            return False
        record = self.store.get_run(spec.run_id) or {}
        rounds = record.get("rounds")
        if not isinstance(rounds, dict) or rounds.get("ended"):
            return False
        current = int(record.get("round", 0))
        first, end = round_shards(rounds, current)
        if not first <= shard < end:
            return False
        shards = self.store.shards(spec.run_id, end, first)
        if any(item.get("state") not in FINISHED for item in shards):
            return False
        results_end = max(int(item.get("finished") or 0) for item in shards)
        look = LookMessage(spec.run_id, current, uuid.uuid4().hex, results_end, self.clock_ms())
        self._send_look(look)
        return True

    def _send_look(self, look: LookMessage) -> None:
        self.send_delayed(look.body(), max(0, min(self.delay_seconds, MAX_DELAY_SECONDS)))
        self.looks_sent += 1

    def look(self, spec: RunSpec, message: LookMessage) -> tuple[str, str]:
        """``(outcome, detail)``: ``advanced`` (the next round enqueued), ``ended``, ``waiting`` (looked again
        later) or ``skipped`` (another look advanced the round, or the run ended)."""
        record = self.store.get_run(spec.run_id) or {}
        rounds = record.get("rounds")
        if not isinstance(rounds, dict):
            return "skipped", "not a run until decided"
        current = int(record.get("round", 0))
        if current != message.round:
            return self._after_advance(spec, rounds, current, message)
        first, end = round_shards(rounds, current)
        shards = self.store.shards(spec.run_id, end, first)
        if any(item.get("state") not in FINISHED for item in shards):
            return "skipped", "the round is not finished"
        ending = self._ending(spec, record, shards, message)
        if ending is None:
            return "waiting", "the oracle has not evaluated the round yet"
        kind, reason, asked = ending
        if kind is None:
            upcoming = next_round(spec, end, asked, message.look_id, self.first_round)
            state = {**rounds, "rounds": [*rounds["rounds"], upcoming], "results_end_ms": message.results_end_ms}
            if not self.store.advance_round(spec.run_id, current, state):
                return "skipped", "another look advanced the round"
            self._enqueue(spec, *upcoming["shards"])
            return "advanced", f"round {current + 2}: {upcoming['requests']} requests"
        state = {**rounds, "ended": kind, "reason": reason, "results_end_ms": message.results_end_ms}
        if not self.store.advance_round(spec.run_id, current, state):
            return "skipped", "another look advanced the round"
        return "ended", reason

    def _after_advance(
        self, spec: RunSpec, rounds: Mapping[str, Any], current: int, message: LookMessage
    ) -> tuple[str, str]:
        """A look at a round already advanced: the winner's redelivered look enqueues what is still unclaimed."""
        latest = rounds["rounds"][-1]
        if rounds.get("ended") or current != message.round + 1 or latest.get("look") != message.look_id:
            return "skipped", "the round was advanced already"
        first, end = (int(value) for value in latest["shards"])
        unclaimed = [item["shard"] for item in self.store.shards(spec.run_id, end, first) if "owner" not in item]
        if unclaimed:
            self.enqueue.send_bodies([m.body() for m in shard_messages(spec, unclaimed)])
        return "advanced", f"round {current + 1}: {len(unclaimed)} unclaimed shards enqueued again"

    def _enqueue(self, spec: RunSpec, first: int, end: int) -> None:
        self.enqueue.send_bodies([m.body() for m in shard_messages(spec, range(first, end))])

    def _ending(
        self, spec: RunSpec, record: Mapping[str, Any], shards: list[dict[str, Any]], message: LookMessage
    ) -> tuple[str | None, str, int | None] | None:
        """``(kind or None to go on, reason, requests asked)``; None: look again later (already sent)."""
        for item in shards:
            reason = str(item.get("reason") or "")
            if item.get("state") == "stopped" and reason:
                if reason.startswith(("decided: ", "undecided: ")):
                    return reason.split(":", 1)[0], reason, None
                if reason.startswith("oracle FAIL"):
                    return "decided", f"decided: {reason}", None
                return "stopped", reason, None
        now = self.clock_ms()
        out_of_time = now - int(record.get("created_ms") or now) >= spec.max_duration_s * 1000
        if self.verdicts is None or not spec.oracle_test:
            return "unreadable", "this stack has no oracle verdicts table to look at", None
        test = spec.oracle_test
        try:
            document = self.verdicts.verdict(test)
        except VerdictReadError as exc:
            if exc.permanent:
                return "unreadable", f"the oracle's verdict for test {test} cannot be read ({exc})", None
            document = None
        if document is None or not counted(test, document, spec.oracle_metrics, message.results_end_ms):
            if out_of_time:
                return "duration", duration_reason(spec.max_duration_s), None
            if now - message.first_look_ms >= self.wait_seconds * 1000:
                return "not evaluated", not_evaluated_reason(test, self.wait_seconds), None
            self._send_look(message)
            return None
        outcome = assess(test, document, spec.oracle_metrics)
        if outcome.ended is not None:
            return outcome.ended, outcome.reason or outcome.ended, None
        if out_of_time:
            return "duration", duration_reason(spec.max_duration_s), None
        if shards_sent(record["rounds"]) >= spec.shards:
            return "budget", budget_reason(spec.requests, outcome.requests), None
        return None, "", outcome.requests
