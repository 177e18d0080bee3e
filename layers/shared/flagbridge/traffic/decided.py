"""Runs that stop when the verdict is decided: ``flagbridge traffic run --until-decided`` and ``until_decided`` runs.

The run's ``requests`` is a **budget**. :class:`UntilDecided` sends it in rounds: it is the run loop's ``stop``
check (:func:`flagbridge.traffic.run.run_traffic` asks it before every batch) and, at each round's end, it waits
until the oracle has counted the round (an evaluation that started after the round's last result was taken by the
bridge), then reads the fed verdicts (treatment x metric) with :func:`assess`:

* every fed verdict PASS or FAIL: the run ends, **decided** (a FAIL also ends it mid-round, through
  :class:`flagbridge.traffic.stop.OracleStop`);
* a verdict INCONCLUSIVE with no estimate (``needed: null``: the rate lies between the lines) or one more events
  cannot change (INVALID, ERROR): the run ends, **undecided**: more events alone will not decide;
* otherwise the next round: the most requests an undecided verdict asks for, its ``needed`` events divided by its
  treatment's share of the metric's events so far (the run's testers spread over the treatments), at least one
  batch, in whole batches, cut to what is left of the budget. The budget is never exceeded.

The first round is sized from the verdict read before the run when it has an estimate (NO_DATA says how many
clean events would pass), else it is ``first_round`` requests; a verdict decided before the run does not end it
before its first round (a decision counts from an evaluation of the run's own results). The run also ends when the
budget is spent (after a last look: a budget spent just as the verdict is decided ends decided), when
``max_duration_s`` is spent (waits included), and when the oracle does not evaluate a round within
``wait_seconds`` or cannot be read.

Why the run ended is :attr:`UntilDecided.ended` (a kind from :data:`ENDINGS`) and :attr:`UntilDecided.reason`
(a sentence); :meth:`UntilDecided.record` is what the manifest's summary and a run's status carry.
:func:`decided_check` is the same judgement as a plain stop check, for workers sending a run's shards in parallel.
The verdicts come from a :class:`flagbridge.oracle.verdicts.VerdictSource` (the in-memory twin in tests), and
freshness and the fed rows from the same module. Only the standard library is imported here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from flagbridge.oracle.verdicts import (
    VerdictDocument,
    VerdictReadError,
    VerdictSource,
    fail_reason,
    fed_rows,
    verdict_fresh,
)
from flagbridge.traffic.manifest import ManifestWriter
from flagbridge.traffic.stop import Check

UNDECIDABLE = "more events alone will not decide"
ENDINGS = ("decided", "undecided", "budget", "duration", "not evaluated", "unreadable", "stopped")
"""Why a run ended: every verdict decided; more events will not decide; the budget or the duration spent; the
oracle did not evaluate a round in time or could not be read; stopped by something else (stop switch, failures)."""
DEFAULT_FIRST_ROUND = 100
DEFAULT_WAIT_SECONDS = 180.0


def _label(row: Mapping[str, Any]) -> str:
    return f"treatment {row.get('treatment')} ({row.get('metric')})"


def _needed(row: Mapping[str, Any]) -> int | None:
    value = row.get("needed")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _share(row: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> float:
    """The row's treatment's share of its metric's events so far; an even share before there are any."""
    same = [r for r in rows if r.get("metric") == row.get("metric")]
    total = sum(int(r.get("n") or 0) for r in same)
    mine = int(row.get("n") or 0)
    if total > 0 and mine > 0:
        return mine / total
    return 1 / max(1, len(same))


@dataclass(frozen=True)
class Assessment:
    """What the fed verdicts say: end the run (``ended`` and ``reason``), or ``requests`` more (None: no estimate)."""

    ended: str | None = None
    reason: str | None = None
    requests: int | None = None


def assess(test: str, document: VerdictDocument | None, metrics: Sequence[str] | None) -> Assessment:
    """Read the fed verdicts (see the module docstring)."""
    rows = fed_rows(document, metrics)
    if not rows:
        return Assessment()
    failed = fail_reason(test, {"verdicts": rows}, None)
    if failed is not None:
        return Assessment("decided", f"decided: {failed}")
    undecided = [row for row in rows if row.get("state") != "PASS"]
    if not undecided:
        treatments = ", ".join(dict.fromkeys(str(row.get("treatment")) for row in rows))
        return Assessment("decided", f"decided: oracle PASS for test {test} ({treatments}: every fed verdict)")
    for row in undecided:
        state = row.get("state")
        if state == "INCONCLUSIVE" and _needed(row) is None:
            return Assessment(
                "undecided",
                f"undecided: {UNDECIDABLE}: test {test} {_label(row)} INCONCLUSIVE, the rate lies between the lines",
            )
        if state not in ("INCONCLUSIVE", "NO_DATA"):
            return Assessment("undecided", f"undecided: {UNDECIDABLE}: test {test} {_label(row)} is {state}")
    asked = [math.ceil((_needed(row) or 0) / _share(row, rows)) for row in undecided]
    return Assessment(requests=max(asked))


def ended_verdict(ended: str | None) -> str | None:
    """The verdict a run until decided ended on (``PASS`` or ``FAIL``, read from the ``ended`` reason
    :func:`assess` wrote), or None for a run that ended otherwise or has not ended: its exit status follows it."""
    for state in ("FAIL", "PASS"):
        if (ended or "").startswith(f"decided: oracle {state} "):
            return state
    return None


def round_size(requests: int | None, left: int, batch_size: int, first_round: int) -> int:
    """The next round: ``requests`` (``first_round`` without an estimate) in whole batches, cut to ``left``."""
    wanted = first_round if requests is None else requests
    batches = max(1, math.ceil(wanted / batch_size))
    return max(0, min(batches * batch_size, left))


@dataclass(frozen=True)
class Round:
    first: int
    requests: int
    asked: int | None
    """Requests the oracle's estimate asked for (None: the first round without an estimate)."""

    def record(self) -> dict[str, Any]:
        return {"first": self.first, "requests": self.requests, "asked": self.asked}


class HeldSummary(ManifestWriter):
    """A manifest writer that holds the run loop's summary line until :meth:`release` adds why the run ended."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.held: dict[str, Any] | None = None

    def write(self, record: Mapping[str, Any]) -> None:
        if record.get("type") == "summary":
            self.held = dict(record)
            return
        super().write(record)

    def release(self, extra: Mapping[str, Any]) -> None:
        if self.held is not None:
            super().write({**self.held, **extra})
            self.held = None


@dataclass
class UntilDecided:
    """The rounds of one run (see the module docstring). Use it as the run loop's ``stop`` and ``progress``
    (wrapping another progress callback), then call :meth:`finish` with the run's summary."""

    test: str
    source: VerdictSource
    metrics: Sequence[str] | None
    budget: int
    batch_size: int = 50
    first_round: int = DEFAULT_FIRST_ROUND
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    max_duration_s: float | None = None
    poll_seconds: float = 1.0
    clock: Callable[[], float] = time.monotonic
    wall_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    sleep: Callable[[float], None] = time.sleep
    on_error: Callable[[VerdictReadError], None] = lambda _error: None
    rounds: list[Round] = field(default_factory=list)
    ended: str | None = None
    reason: str | None = None
    generated: int = 0
    results_end_ms: int | None = None
    """When the last round's last result had been taken by the bridge (what a fresh evaluation starts after)."""
    last: VerdictDocument | None = None
    reads: int = 0
    errors: int = 0
    _round_end: int = 0
    _looked_at: int = -1
    _deadline: float | None = None
    _writer: HeldSummary | None = None

    # ---- the run loop's callbacks ----------------------------------------------------------------------------

    def progress(self, inner: Callable[[Any, Any], None] | None = None) -> Callable[[Any, Any], None]:
        """The run loop's ``progress``: counts the cases generated, then calls ``inner``."""

        def track(summary: Any, case: Any) -> None:
            self.generated = summary.generated
            if inner is not None:
                inner(summary, case)

        return track

    def __call__(self) -> str | None:
        if self.reason is not None:
            return self.reason
        if self._deadline is None and self.max_duration_s is not None:
            self._deadline = self.clock() + self.max_duration_s
        if self.generated < self._round_end or self.generated >= self.budget:
            return None
        if not self.rounds:
            return self._first()
        outcome = self._look()
        if outcome.ended is not None:
            return self._end(outcome.ended, outcome.reason)
        self._next(outcome.requests)
        return None

    def finish(self, summary: Any) -> str:
        """After the run loop: why the run ended (a run that spent its budget has its last round looked at first);
        the manifest's summary line, held by :meth:`writer`, is written with it."""
        kind = self._why(summary)
        if self._writer is not None:
            self._writer.release({"until_decided": self.record()})
        return kind

    def results_end(self, now_ms: int) -> int:
        """When the run's last result was taken: the last look's time when nothing was sent after it, else now."""
        if self.results_end_ms is not None and self._looked_at == self.generated:
            return self.results_end_ms
        return now_ms

    def _why(self, summary: Any) -> str:
        if self.ended is not None:
            return self.ended
        stopped = getattr(summary, "stopped", None)
        if stopped is not None:
            text = str(stopped)
            if text.startswith("oracle FAIL"):
                self._end("decided", f"decided: {text}")
            else:
                self._end("duration" if text.startswith("duration budget") else "stopped", text)
            return self.ended or "stopped"
        outcome = self._look()
        if outcome.ended is not None:
            self._end(outcome.ended, outcome.reason)
        else:
            self._end("budget", budget_reason(self.budget, outcome.requests))
        return self.ended or "stopped"

    def record(self) -> dict[str, Any]:
        """Why the run ended and its rounds (the manifest's summary and the run's status carry this)."""
        return {
            "budget": self.budget,
            "ended": self.ended,
            "reason": self.reason,
            "rounds": [item.record() for item in self.rounds],
            "results_end_ms": self.results_end_ms,
        }

    def writer(self, stream: IO[str]) -> HeldSummary:
        """The manifest writer of the run: its summary line waits for :meth:`finish`."""
        self._writer = HeldSummary(stream)
        return self._writer

    # ---- rounds --------------------------------------------------------------------------------------------

    def _first(self) -> str | None:
        try:
            document = self._read()
        except VerdictReadError as exc:
            if exc.permanent:
                return self._end("unreadable", f"the oracle's verdict for test {self.test} cannot be read ({exc})")
            document = None
        outcome = assess(self.test, document, self.metrics)
        self._next(outcome.requests)
        return None

    def _next(self, asked: int | None) -> None:
        size = round_size(asked, self.budget - self.generated, self.batch_size, self.first_round)
        self.rounds.append(Round(self.generated, size, asked))
        self._round_end = self.generated + size

    def _end(self, kind: str | None, reason: str | None) -> str:
        self.ended = kind or "stopped"
        self.reason = reason or self.ended
        return self.reason

    def _read(self) -> VerdictDocument | None:
        self.reads += 1
        self.last = self.source.verdict(self.test)
        return self.last

    def _look(self) -> Assessment:
        """Wait for an evaluation of everything sent so far, then assess it (or say why there is none)."""
        self.results_end_ms = self.wall_ms()
        self._looked_at = self.generated
        wait_until = self.clock() + self.wait_seconds
        if self._deadline is not None:
            wait_until = min(wait_until, self._deadline)
        while True:
            try:
                document = self._read()
            except VerdictReadError as exc:
                self.errors += 1
                self.on_error(exc)
                if exc.permanent:
                    return Assessment("unreadable", f"the oracle's verdict for test {self.test} cannot be read ({exc})")
                document = None
            if document is not None and self._counted(document):
                return assess(self.test, document, self.metrics)
            left = wait_until - self.clock()
            if left <= 0:
                return self._no_evaluation()
            self.sleep(min(self.poll_seconds, left))

    def _counted(self, document: VerdictDocument) -> bool:
        return counted(self.test, document, self.metrics, self.results_end_ms or 0)

    def _no_evaluation(self) -> Assessment:
        if self._deadline is not None and self.clock() >= self._deadline:
            return Assessment("duration", duration_reason(self.max_duration_s or 0))
        return Assessment("not evaluated", not_evaluated_reason(self.test, self.wait_seconds))


def counted(test: str, document: VerdictDocument, metrics: Sequence[str] | None, results_end_ms: int) -> bool:
    """Whether ``document`` judges a round whose last result was taken at ``results_end_ms``: evaluated since, or
    a FAIL already (more results cannot undo it)."""
    fresh = int(document.get("evaluated_at") or 0) >= results_end_ms
    return fresh or fail_reason(test, {"verdicts": fed_rows(document, metrics)}, None) is not None


def budget_reason(budget: int, asked: int | None) -> str:
    still = "" if asked is None else f" (the oracle asks for about {asked:,} more)"
    return f"the budget of {budget:,} requests is spent, undecided{still}"


def duration_reason(max_duration_s: float) -> str:
    return f"duration budget of {max_duration_s:g}s spent"


def not_evaluated_reason(test: str, wait_seconds: float) -> str:
    return f"the oracle did not evaluate the round's results within {wait_seconds:g}s (test {test})"


def run_ending(record: Mapping[str, Any], state: str, reasons: Iterable[str]) -> str | None:
    """Why a run until decided in AWS ended (its status): a shard's decision, else why it stopped, else its spent
    budget; None while it runs, and for a run that is not until decided."""
    if not record.get("until_decided"):
        return None
    ordered = sorted(reasons)
    for prefix in ("decided: ", "undecided: "):
        found = next((reason for reason in ordered if reason.startswith(prefix)), None)
        if found is not None:
            return found
    if state == "completed":
        return f"the budget of {int(record.get('requests') or 0):,} requests is spent"
    return ordered[0] if state == "stopped" and ordered else None


def decided_check(
    test: str,
    source: VerdictSource,
    metrics: Sequence[str] | None,
    since_ms: int,
    refresh_seconds: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    on_error: Callable[[VerdictReadError], None] = lambda _error: None,
) -> Check:
    """A stop check: the reason once an evaluation that started at or after ``since_ms`` (the run's start) decides
    every fed verdict, or says more events alone will not decide; read at most once per ``refresh_seconds``."""
    read_at: float | None = None
    reason: str | None = None

    def check() -> str | None:
        nonlocal read_at, reason
        if reason is not None:
            return reason
        now = clock()
        if read_at is not None and now - read_at < refresh_seconds:
            return None
        read_at = now
        try:
            document = source.verdict(test)
        except VerdictReadError as exc:
            on_error(exc)
            return None
        if document is None or not verdict_fresh(document, since_ms):
            return None
        outcome = assess(test, document, metrics)
        reason = outcome.reason if outcome.ended is not None else None
        return reason

    return check
