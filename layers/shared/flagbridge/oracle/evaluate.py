"""One evaluation of one test, from its stored counters to a report (pure).

:func:`collect` picks what the window holds: by default the newest flag version seen in the counters (the
version change in the impressions starts the test) from the hour it was first counted, for ``window_hours``;
with a configured ``start``, every version from then. Counters are hourly, so the window is whole hours: from
the hour holding its start to the first hour boundary at or after ``start + window_hours`` (:func:`window`);
its events are exactly those of its counters. It sums the counters per (treatment, metric): the cost grows with
the number of counters (hours x versions x treatments x metrics), never with the number of events.

:func:`judge_test` judges every (treatment, metric) (:mod:`flagbridge.oracle.judge`), applies the always-valid
sample-ratio-mismatch check when the test declares a ``split`` (:func:`flagbridge.oracle.stats.srm_log_evidence`
at or above 1/0.001 marks every verdict INVALID except a FAIL, which stays FAIL with the mismatch beside it), and
sums it up in one state: FAIL if any verdict fails, else ERROR, else INVALID, else PASS when all pass, NO_DATA
when nothing was counted, INCONCLUSIVE otherwise. The first look at or after the window's end is its final
decision; later looks repeat it (at most one final decision per window).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flagbridge.oracle.config import OracleTest
from flagbridge.oracle.counting import ANY_METRIC, HOUR_MS, KILLED, UNATTRIBUTED, Delta, UserSetKey
from flagbridge.oracle.judge import Judgement, State, overridden
from flagbridge.oracle.kinds import kind_of
from flagbridge.oracle.stats import srm_log_evidence, srm_p_value
from flagbridge.oracle.store import CounterItem

SRM_ALPHA = 0.001
"""The chance a correct split is ever flagged, over every look of the test."""
NO_TREATMENT = "(none)"


@dataclass
class TestData:
    """What the counters of one test hold for its window."""

    __test__ = False  # not a pytest class

    version: int | None
    window_start: int | None
    window_end: int | None
    per: dict[tuple[str, str], Delta] = field(default_factory=dict)
    unattributed: dict[str, Delta] = field(default_factory=dict)
    killed_events: int = 0
    killed_since: dict[int, int] = field(default_factory=dict)
    """Hour -> events served with label ``killed`` (the kill's confirmation)."""
    users: dict[str, int] = field(default_factory=dict)
    counters: int = 0


def window(test: OracleTest, start_ms: int) -> tuple[int, int]:
    """The window of a test starting at ``start_ms``: whole hours, from the hour holding the start to the first
    hour boundary at or after ``start + window_hours``."""
    end = start_ms + test.window_ms
    return start_ms - start_ms % HOUR_MS, end + (-end) % HOUR_MS


def read_range(test: OracleTest, now_ms: int) -> tuple[int, int]:
    """The hours of counters an evaluation reads: the configured window, else all of the test's counters (the
    newest flag version and its window are found among them)."""
    start = test.start_ms
    if start is not None:
        return window(test, start)
    return 0, now_ms + HOUR_MS


def _exact_shares(test: OracleTest, item: CounterItem) -> Delta:
    """The counter's delta as its metric's kind judges it (e.g. a percentile counter written before its line
    counts were exact)."""
    metric = next((m for m in test.metrics if m.name == item.key.metric), None)
    return item.delta if metric is None else kind_of(metric).exact_shares(metric, item.delta)


def collect(test: OracleTest, items: Sequence[CounterItem], users: Mapping[UserSetKey, int], now_ms: int) -> TestData:
    """Sum the counters of the test's window."""
    version, start, end = _version_and_window(test, items)
    data = TestData(version=version, window_start=start, window_end=end)
    for item in items:
        key = item.key
        if start is not None and not (start <= key.hour < (end or 0)):
            continue
        data.counters += 1
        if key.treatment == KILLED:
            data.killed_events += item.delta.n
            data.killed_since[key.hour] = data.killed_since.get(key.hour, 0) + item.delta.n
        elif key.treatment == UNATTRIBUTED:
            data.unattributed.setdefault(key.metric, Delta()).add(item.delta)
        elif version is None or key.version == version:
            data.per.setdefault((key.treatment, key.metric), Delta()).add(_exact_shares(test, item))
    for user_key, count in users.items():
        if version is None or user_key.version == version:
            data.users[user_key.treatment] = data.users.get(user_key.treatment, 0) + count
    return data


def _version_and_window(test: OracleTest, items: Sequence[CounterItem]) -> tuple[int | None, int | None, int | None]:
    """The version judged (None: every version) and the window, from the test's start or else its counters'."""
    start = test.start_ms
    version: int | None = None
    if start is None:
        judged = [i for i in items if i.key.treatment not in (KILLED, UNATTRIBUTED)]
        if judged:
            version = max(i.key.version for i in judged)
            start = min(i.key.hour for i in judged if i.key.version == version)
        else:
            start = min((i.key.hour for i in items), default=None)
    if start is None:
        return version, None, None
    start, end = window(test, start)
    return version, start, end


def _overall(states: Sequence[State]) -> State:
    if not states:
        return "NO_DATA"
    for worst in ("FAIL", "ERROR", "INVALID"):
        if worst in states:
            return worst
    if all(s == "PASS" for s in states):
        return "PASS"
    if all(s == "NO_DATA" for s in states):
        return "NO_DATA"
    return "INCONCLUSIVE"


def overall_state(states: Sequence[str]) -> str:
    """The one state summing up several verdicts (see the module docstring)."""
    return _overall(states)  # type: ignore[arg-type]


def _srm(test: OracleTest, data: TestData) -> dict[str, Any] | None:
    if not test.split:
        return None
    observed = {name: data.users.get(name, 0) for name in sorted(set(test.split) | set(data.users))}
    log_evidence = srm_log_evidence(observed, test.split)
    return {
        "intended": dict(test.split),
        "users": observed,
        "p_value": srm_p_value(observed, test.split),
        "evidence": None if log_evidence is None else math.exp(min(log_evidence, 690.0)),
        "alpha": SRM_ALPHA,
        "mismatch": log_evidence is not None and log_evidence >= -math.log(SRM_ALPHA),
    }


def _judge_all(test: OracleTest, data: TestData, final: bool) -> list[Judgement]:
    seen = sorted({treatment for treatment, _ in data.per})
    treatments = list(test.treatments or seen or (list(test.split) if test.split else [NO_TREATMENT]))
    verdicts = []
    for treatment in treatments:
        for metric in test.metrics:
            delta = data.per.get((treatment, metric.name), Delta())
            verdicts.append(kind_of(metric).judge(metric, test.flag, treatment, delta, final=final))
    return verdicts


def _decided(previous: Mapping[str, Any] | None, data: TestData) -> Mapping[str, Any] | None:
    """The previous report when it already holds this window's final decision."""
    if not previous or previous.get("error") or previous.get("state") == "ERROR":
        return None
    seen = previous.get("window") or {}
    same = (seen.get("start"), seen.get("end"), previous.get("version")) == (
        data.window_start,
        data.window_end,
        data.version,
    )
    return previous if same and seen.get("final") and previous.get("verdicts") else None


def _srm_applied(verdicts: list[Judgement], srm: Mapping[str, Any]) -> list[Judgement]:
    """INVALID for every verdict but a FAIL: a FAIL is never hidden (the kill proceeds), the mismatch is beside it."""
    shares = " / ".join(f"{name} {count:,}" for name, count in srm["users"].items())
    intended = "/".join(f"{share:g}" for share in srm["intended"].values())
    reason = (
        f"sample ratio mismatch: users {shares} vs intended {intended} "
        f"(evidence {srm['evidence']:.3g} ≥ 1/{SRM_ALPHA:g})"
    )
    applied = []
    for verdict in verdicts:
        if verdict.state == "FAIL":
            values = verdict.to_dict()
            values["explain"] = f"{verdict.explain}; also {reason}"
            applied.append(Judgement(**values))
        else:
            applied.append(overridden(verdict, "INVALID", reason))
    return applied


def judge_test(
    test: OracleTest, data: TestData, now_ms: int, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The report of one evaluation (JSON-ready): verdicts, window, unattributed and invalid counts, SRM.

    ``previous`` (the last report): once it holds the window's final decision, that decision is repeated."""
    final = data.window_end is not None and now_ms >= data.window_end
    decided = _decided(previous, data) if final else None
    verdicts = _judge_all(test, data, final)
    srm = _srm(test, data)
    if srm is not None and srm["mismatch"]:
        verdicts = _srm_applied(verdicts, srm)
    unattributed = {
        metric: {"n": delta.n, "k": delta.k, "invalid": delta.invalid} for metric, delta in data.unattributed.items()
    }
    report = {
        "test": test.name,
        "flag": test.flag,
        "environment": test.environment,
        "cohort": test.cohort,
        "version": data.version,
        "window": {"start": data.window_start, "end": data.window_end, "final": final},
        "evaluated_at": now_ms,
        "state": _overall([v.state for v in verdicts]),
        "verdicts": [v.to_dict() for v in verdicts],
        "unattributed": unattributed,
        "invalid": sum(v.invalid for v in verdicts),
        "srm": srm,
        "counters": data.counters,
        "killed_events": data.killed_events,
        "decided_at": now_ms if final else None,
    }
    if decided is not None:
        report.update(
            state=decided["state"], verdicts=decided["verdicts"], srm=decided.get("srm"),
            decided_at=decided.get("decided_at") or decided.get("evaluated_at"),
        )  # fmt: skip
    return report


def error_report(
    test: OracleTest, previous: Mapping[str, Any] | None, now_ms: int, errors: int, error: str
) -> dict[str, Any]:
    """The report when the counters could not be read ``errors`` evaluations in a row (ERROR from the 4th)."""
    base = dict(previous or {"test": test.name, "flag": test.flag, "environment": test.environment, "verdicts": []})
    reason = f"counters unreadable {errors} evaluations in a row ({error})"
    verdicts = []
    for verdict in base.get("verdicts", []):
        changed = dict(verdict)
        changed["state"] = "ERROR"
        changed["explain"] = f"ERROR {verdict['flag']}={verdict['treatment']} {verdict['metric']}: {reason}"
        verdicts.append(changed)
    if not verdicts:
        verdicts = [
            {"flag": test.flag, "treatment": NO_TREATMENT, "metric": m.name, "kind": m.type, "state": "ERROR",
             "explain": f"ERROR {test.flag}={NO_TREATMENT} {m.name}: {reason}"}
            for m in test.metrics
        ]  # fmt: skip
    return {**base, "evaluated_at": now_ms, "state": "ERROR", "verdicts": verdicts, "error": reason}


def verdict_states(report: Mapping[str, Any]) -> dict[str, str]:
    """``{"treatment/metric": state}`` of a report (what a state change is measured on)."""
    return {f"{v['treatment']}/{v['metric']}": v["state"] for v in report.get("verdicts", [])}


def changes(previous: Mapping[str, Any] | None, report: Mapping[str, Any]) -> list[dict[str, str]]:
    """The verdicts whose state differs from the previous evaluation's (all of them on the first)."""
    before = verdict_states(previous or {})
    return [
        {"verdict": name, "from": before.get(name, "NONE"), "to": state}
        for name, state in verdict_states(report).items()
        if before.get(name) != state
    ]


ANY = ANY_METRIC  # re-exported for readers of the counters
