"""The run loop: generate, pace, send, record, report; with a budget and a stop switch.

:func:`run_traffic` is the one loop the CLI (and later a Lambda worker) drives; all I/O is injected:

- ``send``: a :class:`flagbridge.traffic.sender.HttpSender` (or a fake in tests);
- ``reporter``: a :class:`flagbridge.traffic.results.ResultReporter`, flushed after every batch, so
  results reach the bridge while the run goes on;
- ``manifest``: the NDJSON writer (streams; memory does not grow with the run);
- ``stop``: checked **between batches**; returns a reason to stop (a stop file exists locally, an SSM
  parameter says stop in AWS, the oracle said FAIL for the run's test) or None;
- ``progress``: called after every case with the running :class:`RunSummary`.

Budget: at most ``requests`` cases and ``max_duration_s`` seconds; ``max_failures`` stops early.
**A target lost mid-run**: ``max_unanswered`` requests in a row that got no answer at all (refused, timed out,
dropped; default :data:`MAX_UNANSWERED`) stop the run at once, mid-batch, with ``target stopped answering``: the
results of those requests are still reported (the oracle's ``unanswered rate`` sees them), but the run does not go
on flooding the oracle with its own failure. One answer, of any status, resets the count. 0 turns the check off.
Pace: a token bucket at ``rate`` requests/s; a 429 pauses the bucket for its ``Retry-After`` (else 5 s)
and re-sends the same case, up to ``max_429_retries`` times. ``count_only`` generates and counts,
``dry_run`` also writes the manifest; neither sends anything nor reports anything.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagbridge.traffic.generator import Case, TrafficGenerator, WireRequest
from flagbridge.traffic.manifest import ManifestWriter, Outcome, case_record
from flagbridge.traffic.results import ResultReporter, outcome_class
from flagbridge.traffic.safety import TokenBucket
from flagbridge.traffic.sender import retry_after_seconds

MAX_FAILURES_KEPT = 1000
MAX_UNANSWERED = 20
"""Requests in a row that got no answer before a run stops (enough for the oracle's unanswered rate to see it)."""


@dataclass(frozen=True)
class RunSettings:
    requests: int
    rate: float = 50.0
    max_duration_s: float | None = 3600.0
    batch_size: int = 50
    dry_run: bool = False
    count_only: bool = False
    max_failures: int | None = None
    max_unanswered: int = MAX_UNANSWERED
    max_429_retries: int = 3
    default_retry_after: float = 5.0
    first_index: int = 0


@dataclass
class RunSummary:
    """What happened so far: counts, the status histogram, failures (case ids) and why it stopped."""

    planned: int
    generated: int = 0
    sent: int = 0
    mutations: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    failure_count: int = 0
    retried_429: int = 0
    started: float = 0.0
    elapsed: float = 0.0
    stopped: str | None = None
    unanswered_in_a_row: int = 0
    last_error: str | None = None
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def latency_p95(self) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    def count(self, case_id: str, outcome: Outcome) -> None:
        """Count one sent case's outcome."""
        self.sent += 1
        self.statuses[str(outcome.status) if outcome.status is not None else "error"] += 1
        self.outcomes[outcome_class(outcome)] += 1
        self.latencies.append(outcome.latency_ms)
        if outcome.status is None:
            self.unanswered_in_a_row += 1
            self.last_error = outcome.error
        else:
            self.unanswered_in_a_row = 0
        if outcome.failed:
            self.failure_count += 1
            if len(self.failures) < MAX_FAILURES_KEPT:
                self.failures.append(case_id)

    def record(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "planned": self.planned,
            "generated": self.generated,
            "sent": self.sent,
            "mutations": self.mutations,
            "statuses": dict(sorted(self.statuses.items())),
            "outcomes": dict(sorted(self.outcomes.items())),
            "failures": self.failure_count,
            "retried_429": self.retried_429,
            "elapsed_s": round(self.elapsed, 3),
            "rate_per_s": round(self.rate, 2),
            "latency_p95_ms": self.latency_p95(),
            "stopped": self.stopped,
        }


def stop_file_check(path: Path | None) -> Callable[[], str | None]:
    """The local stop switch: the run stops before its next batch once ``path`` exists."""

    def check() -> str | None:
        if path is not None and path.exists():
            return f"stop switch: {path} exists"
        return None

    return check


def _over_budget(settings: RunSettings, summary: RunSummary, clock: Callable[[], float]) -> str | None:
    if settings.max_duration_s is not None and clock() - summary.started >= settings.max_duration_s:
        return f"duration budget of {settings.max_duration_s:g}s spent"
    return None


def _send_with_backoff(
    request: WireRequest,
    send: Callable[[WireRequest], Outcome],
    bucket: TokenBucket | None,
    settings: RunSettings,
    summary: RunSummary,
) -> Outcome:
    outcome = send(request)
    retries = 0
    while outcome.status == 429 and retries < settings.max_429_retries:
        retries += 1
        summary.retried_429 += 1
        delay = retry_after_seconds(outcome, settings.default_retry_after)
        if bucket is not None:
            bucket.pause(delay)
            bucket.acquire()
        else:
            time.sleep(delay)
        outcome = send(request)
    return outcome


def target_lost(settings: RunSettings, summary: RunSummary, request: WireRequest) -> str | None:
    """``target <url> stopped answering: ...`` once ``max_unanswered`` requests in a row got no answer."""
    if settings.max_unanswered <= 0 or summary.unanswered_in_a_row < settings.max_unanswered:
        return None
    base = request.url[: len(request.url) - len(request.target)] if request.target else request.url
    return (
        f"target {base} stopped answering: {summary.unanswered_in_a_row} requests in a row got no answer "
        f"(last: {summary.last_error or 'no answer'})"
    )


@dataclass
class _Cases:
    """What one case needs: the run's collaborators (``send`` is None when nothing is sent)."""

    generator: TrafficGenerator
    settings: RunSettings
    summary: RunSummary
    send: Callable[[WireRequest], Outcome] | None
    bucket: TokenBucket | None
    reporter: ResultReporter | None
    manifest: ManifestWriter | None
    progress: Callable[[RunSummary, Case], None] | None
    clock: Callable[[], float]

    def run(self, index: int) -> None:
        """Generate, send, count, report and record case ``index``; set ``summary.stopped`` if the target is lost."""
        generator, summary = self.generator, self.summary
        case = generator.case(index)
        summary.generated += 1
        summary.mutations += len(case.mutations)
        outcome: Outcome | None = None
        if self.send is not None:
            assert self.bucket is not None
            self.bucket.acquire()
            outcome = _send_with_backoff(case.request, self.send, self.bucket, self.settings, summary)
            summary.count(case.case_id, outcome)
            if self.reporter is not None:
                self.reporter.add(case, outcome, generator.run_id, generator.plan.plan_hash)
        if self.manifest is not None and not self.settings.count_only:
            self.manifest.write(case_record(case, outcome))
        summary.elapsed = self.clock() - summary.started
        if self.progress is not None:
            self.progress(summary, case)
        if outcome is not None:
            summary.stopped = target_lost(self.settings, summary, case.request)


def run_traffic(
    generator: TrafficGenerator,
    settings: RunSettings,
    send: Callable[[WireRequest], Outcome] | None,
    reporter: ResultReporter | None = None,
    manifest: ManifestWriter | None = None,
    stop: Callable[[], str | None] = lambda: None,
    progress: Callable[[RunSummary, Case], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    bucket: TokenBucket | None = None,
) -> RunSummary:
    """Run ``settings.requests`` cases (see the module docstring); returns the summary."""
    summary = RunSummary(settings.requests, started=clock())
    sending = not (settings.dry_run or settings.count_only)
    if sending and send is None:
        raise ValueError("a run that sends needs a send function")
    if sending and bucket is None:
        bucket = TokenBucket(settings.rate, clock=clock)
    cases = _Cases(generator, settings, summary, send if sending else None, bucket, reporter, manifest, progress, clock)
    next_index = settings.first_index
    end = settings.first_index + settings.requests
    while next_index < end:
        reason = stop() or _over_budget(settings, summary, clock)
        if reason is not None:
            summary.stopped = reason
            break
        batch_end = min(next_index + settings.batch_size, end)
        while next_index < batch_end and summary.stopped is None:
            cases.run(next_index)
            next_index += 1
        if reporter is not None and sending:
            reporter.flush(generator.run_id)
        if summary.stopped is not None:
            break
        if settings.max_failures is not None and summary.failure_count >= settings.max_failures:
            summary.stopped = f"{summary.failure_count} failures reached --max-failures"
            break
    summary.elapsed = clock() - summary.started
    if manifest is not None:
        manifest.write(summary.record())
    return summary
