"""Stop switches of a traffic run: the oracle's FAIL for the run's test, and several switches combined.

:func:`flagbridge.traffic.run.run_traffic` calls its ``stop`` function before every batch; it returns the reason
to stop, or None. :class:`OracleStop` is the one that closes the loop: it reads the oracle's current verdict of the
test the run feeds and says stop once a verdict of a metric the run feeds is FAIL::

    oracle FAIL for test new-checkout-health treatment on (5xx rate)

The verdict comes from a :class:`flagbridge.oracle.verdicts.VerdictSource` (over HTTP, the verdict store or the
in-memory twin), and the sentence from :func:`flagbridge.oracle.verdicts.fail_reason`: a run's verdict has its one
home in :mod:`flagbridge.oracle.verdicts`.

The evaluator writes a verdict at most once per ``interval_minutes``, so :class:`OracleStop` reads at most once per
``refresh_seconds`` (between those reads a check costs nothing). A FAIL, once seen, stays seen. A read that fails
does not stop the run, but ``max_errors`` failures in a row do: a run that can no longer hear its oracle's FAIL
stops rather than go on blind. Only the standard library is imported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from flagbridge.oracle.verdicts import VerdictDocument, VerdictReadError, VerdictSource, fail_reason

Check = Callable[[], str | None]


class OracleStop:
    """``stop()`` for a run feeding an oracle test: the reason once its verdict is FAIL (see the module docstring).

    :attr:`last` is the newest document read (what the run's summary shows), :attr:`errors` the failed reads.
    """

    def __init__(
        self,
        test: str,
        source: VerdictSource,
        metrics: Sequence[str] | None = None,
        refresh_seconds: float = 1.0,
        max_errors: int = 5,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[VerdictReadError], None] = lambda _error: None,
    ) -> None:
        self.test = test
        self.metrics = tuple(metrics) if metrics is not None else None
        self._source = source
        self._refresh = refresh_seconds
        self._max_errors = max_errors
        self._clock = clock
        self._on_error = on_error
        self._read_at: float | None = None
        self._in_a_row = 0
        self.reason: str | None = None
        self.last: VerdictDocument | None = None
        self.reads = 0
        self.errors = 0

    def read(self) -> VerdictDocument | None:
        """Read the verdict now (VerdictReadError propagates): the check before a run, and after it."""
        self.reads += 1
        self.last = self._source.verdict(self.test)
        return self.last

    def __call__(self) -> str | None:
        if self.reason is not None:
            return self.reason
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._refresh:
            return None
        self._read_at = now
        try:
            document = self.read()
        except VerdictReadError as exc:
            self.errors += 1
            self._in_a_row += 1
            self._on_error(exc)
            if self._in_a_row >= self._max_errors:
                self.reason = (
                    f"the oracle's verdict for test {self.test} could not be read {self._in_a_row} times in a row "
                    f"({exc})"
                )
            return self.reason
        self._in_a_row = 0
        self.reason = fail_reason(self.test, document, self.metrics)
        return self.reason


def first_reason(*checks: Check) -> Check:
    """One check from several: the first reason any of them gives (each asked in order, until one says stop)."""

    def check() -> str | None:
        for one in checks:
            reason = one()
            if reason is not None:
                return reason
        return None

    return check
