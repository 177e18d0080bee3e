"""The local runner's schedule poller: a schedule whose invocations overrun its interval says so once, not per tick."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from local.resources import ScheduleSource
from local.runner import schedule
from local.runner.schedule import SchedulePoller


def test_an_overrunning_schedule_says_so_once(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(schedule, "log", lines.append)
    invoked: list[Any] = []

    def invoke(function: str, event: Any) -> None:
        invoked.append(event)
        time.sleep(0.03)  # every invocation takes longer than the 0.01 s interval

    source = ScheduleSource("OracleEvaluatorFunction", "Every", "rate(1 minute)")
    poller = SchedulePoller(SimpleNamespace(invoke=invoke), source, interval=0.01)  # type: ignore[arg-type]
    poller.start()
    deadline = time.monotonic() + 30
    while poller.ticks < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    poller.stopping.set()
    poller.join(timeout=5)
    assert poller.ticks >= 4
    assert [line for line in lines if "took longer than the local schedule interval" in line] == [
        f"{poller.name}: an invocation took longer than the local schedule interval (said once)"
    ]
