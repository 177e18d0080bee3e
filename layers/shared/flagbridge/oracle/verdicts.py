"""A run's verdict, in one place: read it, pick the rows a run feeds, say whether it is decided, and exit by it.

The oracle writes a test's verdict (:mod:`flagbridge.oracle.service`); everything that *reads* one for a run is
here, used by the run's stop switch (:class:`flagbridge.traffic.stop.OracleStop`), by runs that stop when the
verdict is decided (:mod:`flagbridge.traffic.decided`), by a run's status (:mod:`flagbridge.runs.service`,
``flagbridge traffic status``) and by the CLI (``flagbridge traffic run``, ``flagbridge verdict``), which only
prints what these functions return.

**Readers** (:class:`VerdictSource`, one method: the test's verdict document, the shape of ``GET /tests/{name}``:
``state``, ``evaluated_at``, ``verdicts`` of ``treatment``, ``metric``, ``state``, ``explain``, the full
``report``; None when the test was never evaluated; :class:`VerdictReadError` when it cannot be read):

* :class:`HttpVerdicts`: ``GET <bridge>/tests/{name}`` with the oracle API's bearer token. What the CLI uses on a
  laptop: it needs only the bridge's URL and a read-only token, like its results need only the Events API, and
  never AWS credentials to the verdicts table. No redirect is followed (the token stays with the bridge).
* :class:`StoreVerdicts`: the oracle's verdict store (:class:`flagbridge.oracle.store.DynamoDBVerdictStore` in a
  Lambda worker, which reads the table with its own role; the in-memory store in tests).
* :class:`InMemoryVerdicts`: the twin, for tests.

**Rows**: :func:`fed_verdicts` (the summary rows of the metrics a run feeds), :func:`fed_rows` (the full report's
rows, with their estimates), :func:`fail_reason` (the sentence a FAIL stops a run with), :func:`verdict_rows`
(one row per test, treatment and metric, as ``flagbridge verdict`` prints them).

**Fresh and decided**: a verdict is *fresh* for a run when its evaluation started at or after the run's last
result was taken by the bridge (:func:`verdict_fresh`); it is *decided* when a fed verdict is FAIL (whenever it was
evaluated), or a fresh evaluation judged every fed verdict PASS (:func:`verdict_decided`). :func:`verdict_after_run`
waits for a decided one; :func:`run_verdict` is what ``traffic run`` shows and returns; :func:`status_verdict` is
what a run's status carries.

**Exit status**, the one rule (:data:`EXIT_PASS`, :data:`EXIT_FAIL`, :data:`EXIT_UNDECIDED`): :func:`exit_status`
is 0 when every state is PASS, 1 when any is FAIL, 2 otherwise (no state at all included); :func:`run_exit_status`
applies it to a run: a PASS counts only from a fresh evaluation of a run that finished as asked. Only the standard
library is imported here (and, when a verdict is read over HTTP, :mod:`flagbridge.outbound`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from flagbridge.errors import FlagbridgeError

VerdictDocument = Mapping[str, Any]

EXIT_PASS, EXIT_FAIL, EXIT_UNDECIDED = 0, 1, 2
"""The exit status of ``flagbridge verdict`` and ``flagbridge traffic run``: every verdict PASS; any FAIL; neither."""


class VerdictReadError(FlagbridgeError):
    """The verdict could not be read. ``permanent``: asking again will not help (unknown test, refused token)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


# ---- readers ---------------------------------------------------------------------------------------------


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
        # here, not at the top: the CLI imports this module for its exit codes at start-up
        from flagbridge.outbound import Outbound, TransportError

        parts = urlsplit(self.bridge.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise VerdictReadError(f"the bridge must be an http(s) URL, got {self.bridge!r}", permanent=True)
        url = f"{parts.scheme}://{parts.netloc}{parts.path}/tests/{quote(test, safe='')}"
        http = Outbound(connect_timeout=self.timeout, read_timeout=self.timeout, max_idle=0)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        try:
            response = http.request("GET", url, None, headers, max_body=1 << 22)
        except TransportError as exc:
            raise VerdictReadError(f"the oracle API at {self.bridge} did not answer ({exc.kind})") from exc
        return _document(self.bridge, test, response.status, response.content)


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


# ---- rows ------------------------------------------------------------------------------------------------


def fed_verdicts(document: VerdictDocument | None, metrics: Sequence[str] | None) -> list[Mapping[str, Any]]:
    """The verdicts (treatment x metric) of the metrics a run feeds (every metric when ``metrics`` is None)."""
    verdicts = (document or {}).get("verdicts") or []
    return [v for v in verdicts if isinstance(v, Mapping) and (metrics is None or v.get("metric") in metrics)]


def report_of(document: VerdictDocument | None) -> Mapping[str, Any] | None:
    """The full report: ``GET /tests/{name}`` nests it as ``report``; the verdict store's document is the report."""
    report = (document or {}).get("report")
    return report if isinstance(report, Mapping) else document


def fed_rows(document: VerdictDocument | None, metrics: Sequence[str] | None) -> list[Mapping[str, Any]]:
    """The fed verdicts with their estimates: the full report's rows (see :func:`report_of`)."""
    rows = (report_of(document) or {}).get("verdicts") or []
    return [r for r in rows if isinstance(r, Mapping) and (metrics is None or r.get("metric") in metrics)]


def fail_reason(test: str, document: VerdictDocument | None, metrics: Sequence[str] | None) -> str | None:
    """``oracle FAIL for test X treatment Y (metric)`` when a fed verdict is FAIL, else None."""
    failing = [v for v in fed_verdicts(document, metrics) if v.get("state") == "FAIL"]
    if not failing:
        return None
    treatments = list(dict.fromkeys(str(v.get("treatment")) for v in failing))
    failed_metrics = list(dict.fromkeys(str(v.get("metric")) for v in failing))
    label = "treatment" if len(treatments) == 1 else "treatments"
    return f"oracle FAIL for test {test} {label} {', '.join(treatments)} ({', '.join(failed_metrics)})"


def verdict_rows(documents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (test, treatment, metric) of the current reports; a test never evaluated is one PENDING row."""
    rows = []
    for document in documents:
        report = document.get("report") or {}
        verdicts = report.get("verdicts") or []
        if not verdicts:
            pending = document["state"] == "PENDING"
            explain = "not evaluated yet" if pending else report.get("error", "")
            rows.append({"test": document["name"], "treatment": "-", "metric": "-", "state": document["state"],
                         "explain": explain})  # fmt: skip
        for verdict in verdicts:
            rows.append({"test": document["name"], **verdict})
    return rows


# ---- fresh and decided -----------------------------------------------------------------------------------


def verdict_fresh(document: VerdictDocument | None, results_end_ms: int) -> bool:
    """Whether the verdict comes from an evaluation that started after the run's last result was taken."""
    return int((document or {}).get("evaluated_at") or 0) >= results_end_ms


def verdict_decided(document: VerdictDocument, metrics: Sequence[str] | None, results_end_ms: int) -> bool:
    """A fed verdict is FAIL, or a fresh evaluation judged every fed verdict PASS."""
    rows = fed_verdicts(document, metrics)
    if any(row.get("state") == "FAIL" for row in rows):
        return True
    return bool(rows) and verdict_fresh(document, results_end_ms) and all(row.get("state") == "PASS" for row in rows)


class VerdictReader(Protocol):
    """What :func:`verdict_after_run` reads through (:class:`flagbridge.traffic.stop.OracleStop`)."""

    @property
    def metrics(self) -> Sequence[str] | None: ...

    @property
    def last(self) -> VerdictDocument | None: ...

    def read(self) -> VerdictDocument | None: ...


def verdict_after_run(
    reader: VerdictReader,
    results_end_ms: int,
    wait_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    poll_seconds: float = 1.0,
) -> tuple[VerdictDocument | None, str | None]:
    """The verdict to show after a run: (document, error). Waits up to ``wait_seconds`` for a decided one."""
    deadline = clock() + wait_seconds
    error = None
    while True:
        try:
            document = reader.read()
            error = None
        except VerdictReadError as exc:
            document, error = reader.last, str(exc)
        if document is not None and verdict_decided(document, reader.metrics, results_end_ms):
            return document, None
        remaining = deadline - clock()
        if remaining <= 0:
            return document, error
        sleep(min(poll_seconds, remaining))


def run_verdict(
    test: str,
    metrics: Sequence[str],
    document: VerdictDocument | None,
    error: str | None,
    results_end_ms: int,
    stopped_by: str | None = None,
    read_errors: int = 0,
) -> dict[str, Any]:
    """The oracle's verdict of a run's test after the run, as ``traffic run`` shows and returns it: the rows of the
    fed metrics, whether the evaluation came after the run, whether its FAIL stopped the run (``stopped_by``: the
    run's stop reason)."""
    detail = {"name": test, "state": (document or {}).get("state") or "PENDING", "report": report_of(document)}
    rows = [row for row in verdict_rows([detail]) if row["metric"] == "-" or row["metric"] in metrics]
    return {
        "test": test,
        "metrics": list(metrics),
        "state": detail["state"],
        "evaluated_at": (document or {}).get("evaluated_at"),
        "after_run": verdict_fresh(document, results_end_ms),
        "stopped_the_run": stopped_by is not None and stopped_by.startswith("oracle FAIL"),
        "read_errors": read_errors,
        "error": error,
        "verdicts": rows,
    }


def status_verdict(test: Any, source: VerdictSource | None) -> Any:
    """The oracle's verdict as a run's status carries it (``GET /runs/{id}``, ``flagbridge traffic status``)."""
    if not test:
        return "no test"
    if source is None:
        return {"test": test, "state": "unknown", "detail": "this stack has no oracle verdicts table"}
    try:
        document = source.verdict(str(test))
    except VerdictReadError as exc:
        return {"test": test, "state": "unknown", "detail": str(exc)}
    if document is None:
        return {"test": test, "state": "NO_DATA", "detail": "the oracle has not evaluated this test yet"}
    return {
        "test": test,
        "state": document.get("state"),
        "verdicts": [
            {k: v for k, v in verdict.items() if k in ("treatment", "metric", "state", "explain")}
            for verdict in document.get("verdicts", [])
            if isinstance(verdict, dict)
        ],
    }


# ---- exit status -----------------------------------------------------------------------------------------


def exit_status(states: Iterable[str]) -> int:
    """0 when every state is PASS, 1 when any is FAIL, 2 otherwise (no state at all included)."""
    states = list(states)
    if any(s == "FAIL" for s in states):
        return EXIT_FAIL
    return EXIT_PASS if states and all(s == "PASS" for s in states) else EXIT_UNDECIDED


def run_exit_status(verdict: Mapping[str, Any] | None, *, failures: int, incomplete: bool, finished: bool) -> int:
    """A run's exit status. With its verdict (:func:`run_verdict`): :func:`exit_status` of the fed rows, a PASS
    counting only from an evaluation after the run that ``finished`` as asked (a run cut short did not test what it
    was asked to). Without one: 1 any failed request, 2 an ``incomplete`` run (stopped, results not taken), else 0."""
    if verdict is None:
        if failures:
            return EXIT_FAIL
        return EXIT_UNDECIDED if incomplete else EXIT_PASS
    status = exit_status(row["state"] for row in verdict["verdicts"])
    if status == EXIT_PASS and not (verdict["after_run"] and finished):
        return EXIT_UNDECIDED
    return status
