"""The oracle's services: count an oracle-lane SQS batch, evaluate the tests, read verdicts for the API.

* :class:`CounterService`: parse the batch's lane messages, read the profiles attribution needs in one bulk
  read, count (:mod:`flagbridge.oracle.counting`), apply to the counters exactly once
  (:mod:`flagbridge.oracle.store`). Only messages whose counters could not be written are reported for
  redelivery; a message that is not a lane message is reported as ``unreadable``, kept in the quarantine with
  its reason and acknowledged (redelivered when the quarantine cannot take it: kept next time).
* :class:`Evaluator`: for every test due (``interval_minutes``), read its counters, judge
  (:mod:`flagbridge.oracle.evaluate`), store the evaluation in the history, and on a change of any verdict's
  state notify (SNS alarm topic, EventBridge ``source: flagbridge.oracle``); CloudWatch metrics every
  evaluation. On a FAIL of a metric with ``kill`` among its actions (the metric's own ``actions``, else the
  test's): claim the kill of the flag version (never twice for one FAIL), call Split's Admin API (or only record
  it in dry-run), and record every attempt; then follow the kill's timeline until ``killed`` events are counted
  (:mod:`flagbridge.oracle.kills`). Every FAIL alerts. Counters that cannot be read leave the verdicts as they
  were, until the 4th evaluation in a row: then ERROR and an alert, never a kill.
* :func:`list_document` / :func:`detail_document`: what ``GET /tests`` and ``GET /tests/{name}`` return.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flagbridge.collector import collector_paused
from flagbridge.config import BridgeConfig
from flagbridge.errors import ConfigError
from flagbridge.oracle.config import OracleConfig, OracleTest, lane_problems
from flagbridge.oracle.counting import HOUR_MS, Contribution, Counter, LaneMessage, LaneMessageError
from flagbridge.oracle.evaluate import changes, collect, error_report, judge_test, read_range
from flagbridge.oracle.kills import (
    KillEvent,
    begin,
    failed_since,
    follow,
    killed_by_version,
    killed_since_version,
    settle,
)
from flagbridge.oracle.split_admin import SplitAdminClient
from flagbridge.oracle.store import CounterStore, VerdictStore
from flagbridge.profiles.model import FlagState
from flagbridge.quarantine import Quarantine, QuarantineSource, put_message
from flagbridge.queues import QueueRecord, batch_item_failures

ERROR_LIMIT = 4
"""Evaluations in a row with unreadable counters before the verdict is ERROR (Argo's consecutiveErrorLimit)."""
HISTORY_IN_API = 20
SETTLED = ("killed", "dry_run", "refused")
"""Kill statuses no claim changes any more: only these records are updated as their confirmation progresses."""
DUE_SLACK_MS = 5_000
"""A test is due this much before its interval has passed, so a 1-minute schedule's jitter never skips a look."""

StateLoader = Callable[[Sequence[tuple[str, str]]], Mapping[tuple[str, str], FlagState]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def oracle_config(config: BridgeConfig) -> OracleConfig:
    """The ``oracle`` section, checked against the lane that feeds it; ConfigError naming the key otherwise."""
    oracle = config.oracle
    if oracle is None:
        raise ConfigError("the configuration has no 'oracle' section: no tests to count or judge")
    cdp = config.cdp
    lanes = {d.name: (d.type, d.filter.users) for d in cdp.compiled_destinations} if cdp is not None else {}
    problems = lane_problems(oracle, lanes)
    if problems:
        raise ConfigError("invalid configuration at " + "; ".join(problems))
    return oracle


@dataclass
class CountResult:
    messages: int = 0
    events: int = 0
    counters: int = 0
    writes: int = 0
    redeliveries: int = 0
    failed_message_ids: list[str] = field(default_factory=list)
    unreadable: list[tuple[QueueRecord, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    quarantine_errors: list[str] = field(default_factory=list)
    """The error type of each unreadable message the quarantine could not take (that message is redelivered)."""

    def batch_response(self) -> dict[str, Any]:
        return batch_item_failures(self.failed_message_ids)


class CounterService:
    """Counts oracle-lane SQS batches into the counter store.

    ``quarantine`` (a factory, called only when a batch has unreadable messages) keeps those messages; without
    it they are only reported in :attr:`CountResult.unreadable`.
    """

    def __init__(
        self,
        counter: Counter,
        store: CounterStore,
        load_states: StateLoader,
        clock_ms: Callable[[], int] = _now_ms,
        *,
        quarantine: Callable[[], Quarantine] | None = None,
    ) -> None:
        self._counter = counter
        self._store = store
        self._load_states = load_states
        self._clock_ms = clock_ms
        self._quarantine = quarantine

    def process(self, records: Sequence[QueueRecord]) -> CountResult:
        with collector_paused():
            return self._process(records)

    def _process(self, records: Sequence[QueueRecord]) -> CountResult:
        result = CountResult(messages=len(records))
        now = self._clock_ms()
        messages: list[tuple[QueueRecord, LaneMessage]] = []
        for record in records:
            try:
                messages.append((record, self._counter.read(record.body, now)))
            except LaneMessageError as exc:
                result.unreadable.append((record, str(exc)))
        flags = self._counter.profile_flags
        pairs = sorted({(user, flag) for _, message in messages for user in message.users for flag in flags})
        states = self._load_states(pairs) if pairs else {}
        batch = self._counter.batch(lambda user, flag: states.get((user, flag)))
        contributions: list[tuple[QueueRecord, Contribution]] = []
        for record, message in messages:
            contribution = batch.count(message)
            result.events += contribution.events
            contributions.append((record, contribution))
        applied = self._store.apply([c for _, c in contributions])
        result.counters, result.writes, result.redeliveries = applied.counters, applied.writes, applied.conflicts
        result.errors = applied.errors
        result.failed_message_ids = [r.message_id for r, c in contributions if c.ledger_id in applied.failed_ledger_ids]
        if self._quarantine is not None:
            _keep_unreadable(self._quarantine, result)
        return result


def _keep_unreadable(quarantine: Callable[[], Quarantine], result: CountResult) -> None:
    for record, reason in result.unreadable:
        try:
            put_message(quarantine(), QuarantineSource.ORACLE_COUNTER, record.message_id, reason="unreadable",
                        detail=reason, item=record.body)  # fmt: skip
        except Exception as exc:  # not kept yet: redelivered, and kept next time
            result.quarantine_errors.append(type(exc).__name__)
            result.failed_message_ids.append(record.message_id)


class Notifier(Protocol):
    def verdict_changed(self, report: Mapping[str, Any], changed: list[dict[str, str]]) -> None: ...

    def metrics(self, report: Mapping[str, Any]) -> None: ...

    def kill_changed(self, report: Mapping[str, Any], event: KillEvent) -> None:
        """The kill in ``report["kill"]`` was accepted, confirmed, or not confirmed in time (each sent once)."""
        ...


class Evaluator:
    """Evaluates the configured tests and acts on their verdicts."""

    def __init__(
        self,
        config: OracleConfig,
        counters: CounterStore,
        verdicts: VerdictStore,
        notifier: Notifier,
        split_admin: Callable[[], SplitAdminClient] | None = None,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._config = config
        self._counters = counters
        self._verdicts = verdicts
        self._notifier = notifier
        self._split_admin = split_admin
        self._clock_ms = clock_ms

    def run(self, only: str | None = None, force: bool = False) -> list[dict[str, Any]]:
        """Evaluate every test that is due (all with ``force``); returns their reports.

        A test whose evaluation fails (the verdict store or a notification unreachable) does not stop the others:
        its report is ``{"test", "state": "ERROR", "failure": <error type>}`` and it is evaluated again next time.
        """
        reports: list[dict[str, Any]] = []
        for test in self._config.tests:
            if only is not None and test.name != only:
                continue
            try:
                now = self._clock_ms()
                previous = self._verdicts.load_state(test.name)
                next_due = (previous or {}).get("evaluated_at", 0) + test.interval_minutes * 60_000 - DUE_SLACK_MS
                due = previous is None or now >= next_due
                if force or due:
                    reports.append(self.evaluate(test, previous, now))
            except Exception as exc:
                reports.append({"test": test.name, "state": "ERROR", "failure": type(exc).__name__})
        return reports

    def evaluate(self, test: OracleTest, previous: Mapping[str, Any] | None, now: int) -> dict[str, Any]:
        errors = 0
        try:
            low, high = read_range(test, now)
            items, users = self._counters.read(test.name, low - low % HOUR_MS, high)
        except Exception as exc:  # counted, alerted from the 4th in a row; the type only (no data in messages)
            errors = int((previous or {}).get("consecutive_errors", 0)) + 1
            if errors < ERROR_LIMIT and previous is not None:
                report = {**previous, "consecutive_errors": errors, "last_error": type(exc).__name__}
                self._verdicts.save(test.name, report, None)
                return report
            report = error_report(test, previous, now, errors, type(exc).__name__)
        else:
            report = judge_test(test, collect(test, items, users, now), now, previous)
            report["killed_versions"] = killed_by_version(items)
        report["consecutive_errors"] = errors
        report["failed_since"] = failed_since(report, previous, now)
        report["kill"] = self._act(test, report, previous, now)
        changed = changes(previous, report)
        report["changes"] = changed
        if changed:  # before the state is saved: an alert that fails is sent again by the next evaluation
            self._notifier.verdict_changed(report, changed)
        self._verdicts.save(test.name, report, report)
        self._notifier.metrics(report)
        return report

    def _act(
        self, test: OracleTest, report: dict[str, Any], previous: Mapping[str, Any] | None, now: int
    ) -> dict[str, Any] | None:
        """Kill on a FAIL of a metric whose actions include ``kill`` (its own, else the test's); report the newest
        kill record (with its confirmation)."""
        version = int(report.get("version") or 0)
        killing = killing_fails(test, report)
        if killing and self._split_admin is not None:
            assert test.kill is not None
            claim = self._verdicts.claim_kill(test.name, version, now)
            if claim is not None:
                record = dict(claim)
                begin(record, failed_at=report.get("failed_since") or now, claimed_at=now,
                      comment=test.kill.comment, confirm_within_ms=test.kill.confirm_within_minutes * 60_000,
                      confirmable=test.treatment_attribute is None)  # fmt: skip
                try:
                    options = test.kill
                    result = self._split_admin().kill(
                        options.workspace_id, test.flag, test.environment, options.comment, dry_run=options.dry_run
                    )
                    record["status"] = result.outcome
                    record["attempts"] = [*claim.get("attempts", []), *result.attempts]
                except Exception as exc:  # e.g. the Admin API key secret cannot be read: try again next time
                    record["status"] = "retry"
                    record["attempts"] = [*claim.get("attempts", []), {"at": now, "outcome": type(exc).__name__}]
                killed = killed_since_version(report.get("killed_versions"), version)
                settle(record, record["status"], self._clock_ms(), killed)
                record["requested_at"] = record.get("requested_at") or now
                record["reason"] = killing[0].get("explain", "")
                self._verdicts.save_kill(test.name, version, record)
        kills = self._verdicts.kills(test.name) if can_kill(test) else []
        if not kills:
            return None
        newest = max(kills, key=lambda k: k.get("requested_at") or 0)
        self._follow_kill(test, report, newest, now)
        return newest

    def _follow_kill(self, test: OracleTest, report: dict[str, Any], kill: dict[str, Any], now: int) -> None:
        """Confirmed once events of users served the flag with label "killed" were counted after Split accepted
        the kill (their impressions reached the profiles): it took effect in the SDKs, not only in Split's UI.
        The record is saved before its messages go out, and again once each is sent: a message that fails is
        sent by the next evaluation, and t2 stays the evaluation that first saw the events."""
        assert test.kill is not None
        before = dict(kill, timeline=dict(kill.get("timeline") or {}))
        killed = killed_since_version(report.get("killed_versions"), int(kill.get("version") or 0))
        due = follow(kill, killed, now, test.kill.confirm_within_minutes * 60_000)
        version = int(kill.get("version") or 0)
        if kill.get("status") not in SETTLED:
            return  # a claim in progress or to retry is written only by its claimant
        if kill != before:
            self._verdicts.save_kill(test.name, version, kill)
        if not due:
            return
        report["kill"] = kill
        for event in due:
            self._notifier.kill_changed(report, event)
            kill["notified"] = [*kill["notified"], event]
            self._verdicts.save_kill(test.name, version, kill)


def can_kill(test: OracleTest) -> bool:
    """Whether a FAIL of any of the test's metrics kills the flag."""
    return any("kill" in test.metric_actions(metric.name) for metric in test.metrics)


def killing_fails(test: OracleTest, report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The report's FAIL verdicts whose metric has ``kill`` among its actions (ERROR verdicts never kill)."""
    return [
        verdict
        for verdict in report.get("verdicts", [])
        if verdict.get("state") == "FAIL" and "kill" in test.metric_actions(str(verdict.get("metric")))
    ]


# ---- API documents ---------------------------------------------------------------------------------------


def _summary(test: OracleTest, state: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "name": test.name,
        "flag": test.flag,
        "environment": test.environment,
        "state": (state or {}).get("state", "PENDING"),
        "evaluated_at": (state or {}).get("evaluated_at"),
        "verdicts": [
            {k: v.get(k) for k in ("treatment", "metric", "state", "n", "k", "rate", "lower", "upper", "explain")}
            for v in (state or {}).get("verdicts", [])
        ],
    }


def list_document(config: OracleConfig, verdicts: VerdictStore) -> dict[str, Any]:
    """``GET /tests``: every configured test with its current verdicts."""
    return {"tests": [_summary(test, verdicts.load_state(test.name)) for test in config.tests]}


def detail_document(test: OracleTest, verdicts: VerdictStore, history: int = HISTORY_IN_API) -> dict[str, Any]:
    """``GET /tests/{name}``: the current report in full, its thresholds, the kills and the recent history."""
    state = verdicts.load_state(test.name)
    document = _summary(test, state)
    document.update(
        report=state,
        config=test.model_dump(mode="json"),
        kills=verdicts.kills(test.name),
        history=[
            {
                "evaluated_at": h.get("evaluated_at"),
                "state": h.get("state"),
                "version": h.get("version"),  # the report's flag version: where a new version starts
                "verdicts": [
                    {k: v.get(k) for k in ("treatment", "metric", "state", "n", "k", "rate", "lower", "upper")}
                    for v in h.get("verdicts", [])
                ],
                "changes": h.get("changes", []),
                "kill": (h.get("kill") or {}).get("status"),
            }
            for h in verdicts.history(test.name, history)
        ],
    )
    return document
