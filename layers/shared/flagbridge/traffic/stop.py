"""Stop switches of a traffic run: the oracle's FAIL for the run's test, and several switches combined.

:func:`flagbridge.traffic.run.run_traffic` calls its ``stop`` function before every batch; it returns the reason
to stop, or None. :class:`OracleStop` is the one that closes the loop: it reads the oracle's current verdict of the
test the run feeds and says stop once a verdict of a metric the run feeds is FAIL::

    oracle FAIL for test new-checkout-health treatment on (5xx rate)

The verdict comes from a :class:`VerdictSource` (one method: the test's verdict document, the shape of
``GET /tests/{name}``: ``state``, ``evaluated_at``, ``verdicts`` of ``treatment``, ``metric``, ``state``,
``explain``; None when the test was never evaluated):

* :class:`HttpVerdicts`: ``GET <bridge>/tests/{name}`` with the oracle API's bearer token. What the CLI uses on a
  laptop: it needs only the bridge's URL and a read-only token, like its results need only the Events API, and
  never AWS credentials to the verdicts table. No redirect is followed (the token stays with the bridge).
* :class:`StoreVerdicts`: the oracle's verdict store (:class:`flagbridge.oracle.store.DynamoDBVerdictStore` in a
  Lambda worker, which reads the table with its own role; the in-memory store in tests).
* :class:`InMemoryVerdicts`: the twin, for tests.

The evaluator writes a verdict at most once per ``interval_minutes``, so :class:`OracleStop` reads at most once per
``refresh_seconds`` (between those reads a check costs nothing). A FAIL, once seen, stays seen. A read that fails
does not stop the run, but ``max_errors`` failures in a row do: a run that can no longer hear its oracle's FAIL
stops rather than go on blind. Only the standard library is imported here.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from flagbridge.errors import FlagbridgeError

Check = Callable[[], str | None]
VerdictDocument = Mapping[str, Any]


class VerdictReadError(FlagbridgeError):
    """The verdict could not be read. ``permanent``: asking again will not help (unknown test, refused token)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class VerdictSource(Protocol):
    def verdict(self, test: str) -> VerdictDocument | None:
        """The test's current verdict document, None when never evaluated; VerdictReadError when unreadable."""
        ...


class _StateStore(Protocol):
    def load_state(self, test: str) -> dict[str, Any] | None: ...


@dataclass
class StoreVerdicts:
    """Verdicts straight from the oracle's verdict store (its ``STATE`` item is the current report)."""

    store: _StateStore

    def verdict(self, test: str) -> VerdictDocument | None:
        try:
            return self.store.load_state(test)
        except Exception as exc:  # the store's client errors are many; the type is enough to report
            raise VerdictReadError(f"the verdict store could not be read ({type(exc).__name__})") from exc


@dataclass
class InMemoryVerdicts:
    """The twin: documents set by the test; ``fail_reads`` makes the next reads fail."""

    documents: dict[str, VerdictDocument] = field(default_factory=dict)
    fail_reads: int = 0
    reads: int = 0

    def verdict(self, test: str) -> VerdictDocument | None:
        self.reads += 1
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise VerdictReadError("the verdict could not be read (simulated)")
        return self.documents.get(test)


@dataclass
class HttpVerdicts:
    """``GET <bridge>/tests/{name}`` with a bearer token (the oracle API of the bridge)."""

    bridge: str
    token: str = field(repr=False)
    timeout: float = 10.0

    def verdict(self, test: str) -> VerdictDocument | None:
        parts = urlsplit(self.bridge.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise VerdictReadError(f"the bridge must be an http(s) URL, got {self.bridge!r}", permanent=True)
        path = f"{parts.path}/tests/{quote(test, safe='')}"
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        try:
            connection.request(
                "GET", path, headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            )
            response = connection.getresponse()
            body = response.read(1 << 22)
        except (OSError, http.client.HTTPException) as exc:
            raise VerdictReadError(f"the oracle API at {self.bridge} did not answer ({type(exc).__name__})") from exc
        finally:
            connection.close()
        return _document(self.bridge, test, response.status, body)


def _document(bridge: str, test: str, status: int, body: bytes) -> VerdictDocument | None:
    if status in (401, 403):
        raise VerdictReadError(f"the oracle API at {bridge} refused the token (HTTP {status})", permanent=True)
    if status == 404:
        raise VerdictReadError(f"the bridge at {bridge} has no oracle test {test!r} (HTTP 404)", permanent=True)
    if status != 200:
        raise VerdictReadError(f"the oracle API at {bridge} answered HTTP {status}")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise VerdictReadError(f"the oracle API at {bridge} answered something that is not JSON") from exc
    if not isinstance(document, dict):
        raise VerdictReadError(f"the oracle API at {bridge} answered a JSON {type(document).__name__}")
    return None if document.get("state") in (None, "PENDING") and not document.get("verdicts") else document


def fed_verdicts(document: VerdictDocument | None, metrics: Sequence[str] | None) -> list[Mapping[str, Any]]:
    """The verdicts (treatment x metric) of the metrics a run feeds (every metric when ``metrics`` is None)."""
    verdicts = (document or {}).get("verdicts") or []
    return [v for v in verdicts if isinstance(v, Mapping) and (metrics is None or v.get("metric") in metrics)]


def fail_reason(test: str, document: VerdictDocument | None, metrics: Sequence[str] | None) -> str | None:
    """``oracle FAIL for test X treatment Y (metric)`` when a fed verdict is FAIL, else None."""
    failing = [v for v in fed_verdicts(document, metrics) if v.get("state") == "FAIL"]
    if not failing:
        return None
    treatments = list(dict.fromkeys(str(v.get("treatment")) for v in failing))
    failed_metrics = list(dict.fromkeys(str(v.get("metric")) for v in failing))
    label = "treatment" if len(treatments) == 1 else "treatments"
    return f"oracle FAIL for test {test} {label} {', '.join(treatments)} ({', '.join(failed_metrics)})"


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
