"""Stopping a local process (``make run``, ``make service``) on SIGINT or SIGTERM without a lock in the handler.

Python runs a signal handler in the main thread between two bytecodes, possibly while that thread holds a lock:
``threading.Event.wait`` holds its condition's lock as each wait begins and ends. ``Event.set`` from the handler
then takes that same non-reentrant lock, and the process never stops (seen once in a loaded test run: ``make
service`` ignored its SIGTERM). The handler here only appends to a list, which takes no lock; the main thread
polls it with ``time.sleep``, which a signal interrupts.
"""

from __future__ import annotations

import signal
import time
from types import FrameType


class StopRequest:
    """Set by SIGINT or SIGTERM once :meth:`install` has run; read and waited for by the main thread."""

    def __init__(self) -> None:
        self._received: list[int] = []

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._receive)

    def _receive(self, signum: int, _frame: FrameType | None) -> None:
        self._received.append(signum)

    @property
    def requested(self) -> bool:
        return bool(self._received)

    @property
    def signal_name(self) -> str:
        """The first stopping signal's name (``SIGTERM``), or an empty string before one came."""
        return signal.Signals(self._received[0]).name if self._received else ""

    def wait(self, poll_seconds: float = 0.2) -> None:
        """Until a stopping signal has come."""
        while not self._received:
            time.sleep(poll_seconds)
