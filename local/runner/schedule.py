"""Schedule events (EventBridge rules): one thread per ``Schedule`` event fires it on a short local interval.

In AWS the oracle evaluator runs every minute and evaluates each test when its ``interval_minutes`` has passed.
Locally time is compressed: every ``FLAGBRIDGE_LOCAL_SCHEDULE_SECONDS`` (default 15; 0 turns schedules off) the
function gets a ``Scheduled Event`` as EventBridge sends it, plus ``"force": true`` so every test is evaluated
at every tick.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from local.resources import DEFAULT_ACCOUNT, DEFAULT_REGION, ScheduleSource
from local.runner.invoke import log

if TYPE_CHECKING:
    from local.runner.bridge import LocalBridge

DEFAULT_INTERVAL_SECONDS = 15.0


def schedule_interval() -> float:
    return float(os.environ.get("FLAGBRIDGE_LOCAL_SCHEDULE_SECONDS", DEFAULT_INTERVAL_SECONDS))


def scheduled_event(source: ScheduleSource) -> dict[str, Any]:
    """The event EventBridge delivers for a scheduled rule (plus the local ``force`` flag)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": DEFAULT_ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": DEFAULT_REGION,
        "resources": [f"arn:aws:events:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:rule/{source.function}-{source.event_name}"],
        "detail": {},
        "force": True,
    }


class SchedulePoller(threading.Thread):
    """Invokes one function on one schedule until stopped."""

    def __init__(self, bridge: LocalBridge, source: ScheduleSource, interval: float) -> None:
        super().__init__(name=f"schedule-{source.function}-{source.event_name}", daemon=True)
        self.bridge = bridge
        self.source = source
        self.interval = interval
        self.stopping = threading.Event()
        self.ticks = 0
        self.overran = False

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            started = time.monotonic()
            try:
                self.bridge.invoke(self.source.function, scheduled_event(self.source))
            except Exception:
                log(f"{self.name}: the scheduled invocation failed:\n{traceback.format_exc(limit=5)}")
            self.ticks += 1
            if time.monotonic() - started > self.interval and not self.overran:
                # Once per schedule: on a busy laptop every tick can overrun, and a line each would bury the rest.
                self.overran = True
                log(f"{self.name}: an invocation took longer than the local schedule interval (said once)")
