"""The stop switch of runs in AWS: the stack's SSM parameter, then the oracle's FAIL (as a local run stops).

The parameter (``/flagbridge/<stage>/traffic/stop``, one per stack) holds ``none`` (nothing stopped), ``all``
(every run) or run ids separated by commas or spaces. ``flagbridge traffic stop RUN`` adds a run id.

A run whose plan feeds an oracle test also stops on the oracle's FAIL of a metric it feeds, with the traffic
package's own check (:class:`flagbridge.traffic.stop.OracleStop` over the verdict store): the same reason and the
same message as ``flagbridge traffic run`` on a laptop (``oracle FAIL for test X treatment on (5xx rate)``).

Each worker reads both before its first case and then at most once per ``refresh_seconds`` (the runtime uses
max(1 s, parallelism / 20 s): all workers together stay under SSM's standard 40 reads/s), always far less than
a shard lasts (about 60 s), so every worker stops within one shard of the switch. An unreadable parameter is
logged and does not stop a run (the next read decides); once a stop was seen it stays seen.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

from flagbridge.oracle.verdicts import VerdictSource
from flagbridge.traffic.decided import decided_check
from flagbridge.traffic.stop import Check, OracleStop, first_reason

NO_STOP = frozenset({"", "none", "-", "off"})
EVERY_RUN = frozenset({"all", "stop", "*"})


def stopped_runs(value: str) -> tuple[bool, frozenset[str]]:
    """``(every run stopped, the run ids stopped)`` from the parameter's value."""
    text = value.strip()
    if text.lower() in NO_STOP:
        return False, frozenset()
    if text.lower() in EVERY_RUN:
        return True, frozenset()
    return False, frozenset(item for item in re.split(r"[\s,]+", text) if item)


def with_run(value: str, run_id: str) -> str:
    """The parameter's value once ``run_id`` is stopped too (what ``flagbridge traffic stop`` writes)."""
    every, runs = stopped_runs(value)
    if every:
        return value.strip()
    return ",".join(sorted(runs | {run_id}))


class ParameterStop:
    """``check()`` → the reason to stop when the stack's stop parameter names the run (or every run), else None."""

    def __init__(
        self,
        run_id: str,
        parameter: Callable[[], str],
        refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[Exception], None] = lambda _exc: None,
    ) -> None:
        self.run_id = run_id
        self._parameter = parameter
        self._refresh = refresh_seconds
        self._clock = clock
        self._on_error = on_error
        self._checked_at: float | None = None
        self.reason: str | None = None
        self.reads = 0

    def __call__(self) -> str | None:
        return self.check()

    def check(self) -> str | None:
        if self.reason is not None:
            return self.reason
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._refresh:
            return None
        self._checked_at = now
        self.reads += 1
        try:
            every, runs = stopped_runs(self._parameter())
        except Exception as exc:
            self._on_error(exc)
            return None
        if every:
            self.reason = "stop switch: the stack's stop parameter stops every run"
        elif self.run_id in runs:
            self.reason = "stop switch: the stack's stop parameter names this run"
        return self.reason


def run_stop(
    run_id: str,
    parameter: Callable[[], str],
    oracle_test: str | None,
    metrics: Sequence[str] | None,
    verdicts: VerdictSource | None,
    refresh_seconds: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    on_error: Callable[[str, Exception], None] = lambda _what, _exc: None,
    decided_since_ms: int | None = None,
) -> Check:
    """A run's stop check: the stack's parameter first, then (when it feeds a test) the oracle's FAIL of ``metrics``,
    and for a run until decided (``decided_since_ms``: when it started) a verdict decided by an evaluation since, or
    one more events alone will not decide (:func:`flagbridge.traffic.decided.decided_check`).

    Each is read at most once per ``refresh_seconds``; ``on_error(what, exc)`` hears each failed read.
    """
    switch = ParameterStop(run_id, parameter, refresh_seconds, clock, lambda exc: on_error("stop parameter", exc))
    if not oracle_test or verdicts is None:
        return switch
    oracle = OracleStop(
        oracle_test,
        verdicts,
        metrics,
        refresh_seconds=refresh_seconds,
        clock=clock,
        on_error=lambda exc: on_error("oracle verdict", exc),
    )
    if decided_since_ms is None:
        return first_reason(switch, oracle)
    decided = decided_check(
        oracle_test,
        verdicts,
        metrics,
        decided_since_ms,
        refresh_seconds=refresh_seconds,
        clock=clock,
        on_error=lambda exc: on_error("oracle verdict", exc),
    )
    return first_reason(switch, oracle, decided)
