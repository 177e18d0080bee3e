"""What ``make run`` shows a person: one line per invocation (function, outcome, the handler's own counts), while
the handlers' JSON log lines and metric blobs go to a file, or to the terminal with ``--verbose``.

Handlers run in this process and write to ``sys.stdout`` (Powertools' Logger keeps the stream it finds when the
handler module is imported; its metrics ``print``). :class:`HandlerOutput` takes the place of ``sys.stdout``
before the handlers are imported: it passes every line to its sink unchanged and keeps the JSON log records by
``function_request_id`` (which the Logger adds from the Lambda context), so that an invocation is described from
its own records even when worker threads wrote them or several functions run at once.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from local.runner.invoke import log

# Keys the Logger adds to every record: context, not counts.
CONTEXT_KEYS = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "correlation_id",
        "xray_trace_id",
        "sampling_rate",
        "exception",
        "exception_name",
        "stack_trace",
        "traceback",
    }
)
MAX_TRACKED_INVOCATIONS = 256  # records nobody asked for (an invocation outside LocalBridge.invoke) are dropped
MAX_TEXT_VALUE = 40


class HandlerOutput(io.TextIOBase):
    """A stand-in for ``sys.stdout``: writes through to ``sink``, remembers JSON log records per request id."""

    def __init__(self, sink: TextIO, path: Path | None = None) -> None:
        super().__init__()
        self.sink = sink
        self.path = path  # where the sink writes, None for the terminal
        self._lock = threading.Lock()
        self._partial: dict[int, str] = {}  # per thread: print() writes the text and the newline separately
        self._records: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        with self._lock:
            self.sink.write(text)
            pending = self._partial.pop(thread, "") + text
            *lines, rest = pending.split("\n")
            if rest:
                self._partial[thread] = rest
            for line in lines:
                self._remember(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.sink.flush()

    def _remember(self, line: str) -> None:
        if not line.startswith("{") or '"function_request_id"' not in line:
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        request_id = record.get("function_request_id") if isinstance(record, dict) else None
        if not isinstance(request_id, str):
            return
        self._records.setdefault(request_id, []).append(record)
        while len(self._records) > MAX_TRACKED_INVOCATIONS:
            self._records.popitem(last=False)

    def records_for(self, request_id: str) -> list[dict[str, Any]]:
        """The log records of one invocation (forgotten once read)."""
        with self._lock:
            return self._records.pop(request_id, [])


def outcome(event: Any, result: Any, error: BaseException | None) -> str:
    """How the invocation ended, as its trigger sees it: an HTTP status, or records and failed records."""
    if error is not None:
        return f"raised {type(error).__name__}"
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        records = len(event["Records"])
        failures = result.get("batchItemFailures") if isinstance(result, dict) else None
        failed = f", {len(failures)} failed" if failures else ""
        return f"{records} record{'s' if records != 1 else ''}{failed}"
    http = (event.get("requestContext") or {}).get("http") if isinstance(event, dict) else None
    if isinstance(http, dict):
        status = result.get("statusCode", 200) if isinstance(result, dict) else 200
        return f"{http.get('method')} {event.get('rawPath')} -> {status}"
    return "ok"


def counts(record: dict[str, Any]) -> str:
    """A log record as ``message: key=value ...``, keeping numbers and short words (nested objects are left to
    the log file)."""
    fields = []
    for key, value in record.items():
        if key in CONTEXT_KEYS or isinstance(value, dict | list) or value is None:
            continue
        if isinstance(value, str) and len(value) > MAX_TEXT_VALUE:
            continue
        fields.append(f"{key}={value}")
    message = str(record.get("message", ""))
    return f"{message}: {' '.join(fields)}" if fields else message


def describe_invocation(
    function: str,
    event: Any,
    result: Any,
    error: BaseException | None,
    seconds: float,
    records: list[dict[str, Any]],
) -> str:
    """One line for a person: function, outcome and time, then the handler's info lines and any warnings."""
    line = f"{function:<22} {outcome(event, result, error)} in {seconds * 1000:.0f} ms"
    info = [counts(record) for record in records if record.get("level") == "INFO"]
    if info:
        line += " | " + "; ".join(info)
    problems = [record for record in records if record.get("level") in ("WARNING", "ERROR", "CRITICAL")]
    if problems:
        first = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        line += f" | {str(first.get('level')).lower()}: {counts(first)}{more}"
    return line


class InvocationTally:
    """Counts successful invocations per function; logs them in one line every ``every_seconds`` and on flush."""

    def __init__(self, every_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_seconds = every_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._since = clock()

    def count(self, function: str) -> None:
        with self._lock:
            self._counts[function] = self._counts.get(function, 0) + 1
            due = self._clock() - self._since >= self.every_seconds
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            elapsed, self._since = self._clock() - self._since, self._clock()
        if counts:  # one line per period, whatever the number of functions
            tally = ", ".join(f"{function} {invocations}" for function, invocations in sorted(counts.items()))
            log(f"invocations ok in the last {elapsed:.0f} s: {tally}")


def tally_events(events: list[dict[str, Any]], shown_keys: int = 6) -> list[str]:
    """Events received, one line per event name with its count per key (never one line per event)."""
    by_name: dict[str, dict[str, int]] = {}
    for event in events:
        keys = by_name.setdefault(str(event.get("eventTypeId")), {})
        key = str(event.get("key"))
        keys[key] = keys.get(key, 0) + 1
    lines = []
    for name, keys in sorted(by_name.items()):
        ranked = sorted(keys.items(), key=lambda item: (-item[1], item[0]))
        per_key = ", ".join(f"{key} {count}" for key, count in ranked[:shown_keys])
        more = f", and {len(ranked) - shown_keys} more keys" if len(ranked) > shown_keys else ""
        lines.append(f"{name}: {sum(keys.values())} from {len(keys)} key(s) ({per_key}{more})")
    return lines


class RepeatFilter:
    """Says whether a scheduled invocation's line repeats the previous one of its function (times aside).

    The oracle's evaluator runs every few seconds for as long as ``make run`` serves; a person needs its line when
    the verdict changes, not a copy every tick. HTTP and queue invocations are never filtered.
    """

    _TIME = re.compile(r" in \d+ ms")

    def __init__(self) -> None:
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()

    def repeated(self, function: str, event: Any, line: str) -> bool:
        if outcome(event, None, None) != "ok":  # an HTTP request or a queue batch: always shown
            return False
        text = self._TIME.sub("", line)
        with self._lock:
            previous, self._last[function] = self._last.get(function), text
        return previous == text
