"""The stop switch of runs in AWS: the stack's SSM parameter, and the oracle's FAIL for the run's test.

The parameter (``/flagbridge/<stage>/traffic/stop``, one per stack) holds ``none`` (nothing stopped), ``all``
(every run) or run ids separated by commas or spaces. ``flagbridge traffic stop RUN`` adds a run id.

The oracle's verdicts table is read as the oracle writes it (``pk`` = ``TEST#<test>``, ``sk`` = ``STATE``, the
JSON ``doc`` with the test's overall ``state``); a run whose plan names a test stops once that state is ``FAIL``.

Each worker reads both before its first case and then at most once per ``refresh_seconds`` (the runtime uses
max(1 s, parallelism / 20 s): all workers together stay under SSM's standard 40 reads/s), always far less than
a shard lasts (about 60 s), so every worker stops within one shard of the switch. An unreadable switch is
logged and does not stop a run (the next read decides); once a stop was seen it stays seen.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

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


class VerdictReader(Protocol):
    def state(self, test: str) -> str | None: ...


class DynamoDBVerdictReader:
    """The overall state of an oracle test from the oracle's verdicts table (None when it was never evaluated)."""

    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def state(self, test: str) -> str | None:
        item = self._ddb.get_item(
            TableName=self._table, Key={"pk": {"S": f"TEST#{test}"}, "sk": {"S": "STATE"}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        document = json.loads(item["doc"]["S"])
        state = document.get("state") if isinstance(document, dict) else None
        return str(state) if state else None

    def document(self, test: str) -> dict[str, Any] | None:
        item = self._ddb.get_item(
            TableName=self._table, Key={"pk": {"S": f"TEST#{test}"}, "sk": {"S": "STATE"}}, ConsistentRead=True
        ).get("Item")
        return None if item is None else dict(json.loads(item["doc"]["S"]))


class StopSwitch:
    """``check()`` → the reason to stop the run, or None."""

    def __init__(
        self,
        run_id: str,
        parameter: Callable[[], str] | None,
        oracle_test: str | None,
        verdicts: VerdictReader | None,
        refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str, Exception], None] = lambda _what, _exc: None,
    ) -> None:
        self.run_id = run_id
        self._parameter = parameter
        self._test = oracle_test
        self._verdicts = verdicts
        self._refresh = refresh_seconds
        self._clock = clock
        self._on_error = on_error
        self._checked_at: float | None = None
        self._reason: str | None = None
        self.reads = 0

    def check(self) -> str | None:
        if self._reason is not None:
            return self._reason
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._refresh:
            return None
        self._checked_at = now
        self._reason = self._read()
        return self._reason

    def _read(self) -> str | None:
        self.reads += 1
        if self._parameter is not None:
            try:
                every, runs = stopped_runs(self._parameter())
            except Exception as exc:
                self._on_error("stop parameter", exc)
            else:
                if every or self.run_id in runs:
                    return (
                        "stop switch: the stack's stop parameter names this run"
                        if not every
                        else ("stop switch: the stack's stop parameter stops every run")
                    )
        if self._test and self._verdicts is not None:
            try:
                state = self._verdicts.state(self._test)
            except Exception as exc:
                self._on_error("oracle verdict", exc)
            else:
                if state == "FAIL":
                    return f"oracle: test {self._test!r} is FAIL"
        return None
