"""The ``rate`` metric kind: bad events / selected events, e.g. the 5xx rate of ``api_response`` events.

``events`` and ``bad`` are selectors (:class:`~flagbridge.oracle.metric.Selector`); ``bad`` is applied to the
events ``events`` selected. An event whose ``bad`` attributes cannot be read (missing, or not a number where a
numeric bound reads it) is counted as ``invalid``. Judged against ``pass_below`` / ``fail_at`` as fractions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from flagbridge.oracle.judge import Judgement, judge_common, needed_text, pct, shown, waiting, with_text
from flagbridge.oracle.kinds.base import ChartRow, CountEvent, MetricKind, percent
from flagbridge.oracle.metric import MetricConfig, Selector, never_matches
from flagbridge.oracle.tally import MEMO_LIMIT, Delta, EventMatcher, number_of
from flagbridge.values import canonical


class RateMetric(MetricConfig):
    """bad events / selected events, e.g. the 5xx rate of ``api_response`` events."""

    type: Literal["rate"] = "rate"
    bad: Selector
    pass_below: float = Field(gt=0, lt=1)
    fail_at: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _bad_can_match(self) -> RateMetric:
        problem = never_matches(self.events, self.bad)
        if problem:
            raise ValueError(f"bad can never match among the selected events: {problem}")
        return self


_INVALID, _GOOD, _BAD = 0, 1, 2
_MEMO_KINDS = (str, int, bool)
"""Value types whose equal values always have one canonical form and one number (floats: ``-0.0 == 0.0``)."""


class RateCount:
    """One rate metric compiled for the per-event path."""

    __slots__ = ("_memo", "_memo_attribute", "bad", "needs")

    def __init__(self, metric: RateMetric) -> None:
        self.bad = EventMatcher(metric.bad)
        self.needs: list[tuple[str, bool]] = [
            (p.attribute, p.op in ("gt", "gte", "lt", "lte"))
            for p in metric.bad.attributes
            if p.op not in ("exists", "not_exists")
        ]
        """(attribute, must be a number) that must be readable for the event to be judged."""
        read = {attribute for attribute, _ in self.needs} | {p.attribute for p in metric.bad.attributes}
        self._memo_attribute: str | None = read.pop() if self.bad.any_name and len(read) == 1 else None
        """The one attribute the outcome depends on, when it depends on nothing else."""
        self._memo: dict[tuple[type, Any], int] = {}

    def outcome(self, event_type: Any, name: str, data: dict[str, Any], attributes: Mapping[str, Any]) -> int:
        """_INVALID, _GOOD or _BAD for one event the ``events`` selector picked."""
        for attribute, numeric in self.needs:
            value = attributes.get(attribute)
            if value is None or (number_of(value) is None if numeric else canonical(value) is None):
                return _INVALID
        return _BAD if self.bad.matches(event_type, name, data, attributes) else _GOOD

    def count(
        self, delta: Delta, event_type: Any, name: str, data: dict[str, Any], attributes: Mapping[str, Any]
    ) -> None:
        # hot path: the default rates read one attribute only, so their outcome is memoised per value
        outcome = -1
        if self._memo_attribute is not None:
            value = attributes.get(self._memo_attribute)
            kind = type(value)
            if kind in _MEMO_KINDS:
                outcome = self._memo.get((kind, value), -1)
                if outcome < 0:
                    outcome = self.outcome(event_type, name, data, attributes)
                    if len(self._memo) < MEMO_LIMIT:
                        self._memo[(kind, value)] = outcome
        if outcome < 0:
            outcome = self.outcome(event_type, name, data, attributes)
        if outcome == _INVALID:
            delta.invalid += 1
        else:
            delta.n += 1
            if outcome == _BAD:
                delta.k += 1


def judge_rate(
    metric: RateMetric, flag: str, treatment: str, n: int, k: int, *, final: bool, invalid: int = 0
) -> Judgement:
    """Judge a rate metric from ``k`` bad events out of ``n``."""
    state, judged = judge_common(metric, flag, treatment, n, k, k, final=final, invalid=invalid)
    subject = f"{flag}={treatment} {metric.name}"
    invalid_note = f", {invalid:,} invalid" if invalid else ""
    bar = f"1/alpha = {shown(1 / metric.alpha)}"
    if state == "NO_DATA":
        text = f"NO_DATA {subject}: no events counted{invalid_note} (about {judged.needed or 0:,} needed to pass)"
    elif state == "FAIL":
        text = (
            f"FAIL {subject} {pct(k / n)} (evidence {shown(judged.fail_evidence)} ≥ {bar}, n={n:,}{invalid_note}) "
            f"≥ fail line {pct(metric.fail_at)}"
        )
    elif state == "PASS":
        text = (
            f"PASS {subject} {pct(k / n)} (evidence {shown(judged.pass_evidence)} ≥ {bar}, n={n:,}{invalid_note}) "
            f"< pass line {pct(metric.pass_below)}"
        )
    else:
        text = (
            f"INCONCLUSIVE {subject} {pct(k / n)} (n={n:,}{invalid_note}, lines {pct(metric.pass_below)} / "
            f"{pct(metric.fail_at)}): {waiting(metric, final)}{needed_text(judged.needed)}"
        )
    return with_text(judged, text)


def _takes(selector: Selector, event: Any) -> bool:
    return selector.compile().event_reason(event) is None


class RateKind(MetricKind):
    name = "rate"
    model = RateMetric

    def compile(self, metric: Any) -> CountEvent:
        return RateCount(metric).count

    def judge(self, metric: Any, flag: str, treatment: str, delta: Delta, *, final: bool) -> Judgement:
        return judge_rate(metric, flag, treatment, delta.n, delta.k, final=final, invalid=delta.invalid)

    def counts_as_bad(self, metric: Any, event: Any) -> bool:
        return _takes(metric.events, event) and _takes(metric.bad, event)

    def datums(self, verdict: Mapping[str, Any]) -> dict[str, tuple[float, str]]:
        if verdict.get("pass_below") is None:
            return {}
        return {"PassLine": (100 * verdict["pass_below"], "Percent"), "FailLine": (100 * verdict["fail_at"], "Percent")}

    def cells(self, verdict: Mapping[str, Any]) -> tuple[str, str]:
        interval = f"{percent(verdict.get('lower'))} .. {percent(verdict.get('upper'))}" if verdict.get("n") else "-"
        return percent(verdict.get("rate")), interval

    def chart_row(self, verdict: Mapping[str, Any]) -> ChartRow:
        """The rate's interval and point against the pass and fail lines."""
        pass_line, fail_line = float(verdict["pass_below"]), float(verdict["fail_at"])
        lower, upper = float(verdict.get("lower") or 0.0), float(verdict.get("upper") or 1.0)
        rate = verdict.get("rate")
        return ChartRow(
            top=max(fail_line * 2, min(1.0, upper * 1.1), pass_line * 3),
            pass_line=pass_line, fail_line=fail_line, pass_tick=f"{100 * pass_line:g}%",
            fail_tick=f"{100 * fail_line:g}%", value=None if rate is None else float(rate),
            interval=(lower, upper), line_titles=(f"pass line {100 * pass_line:g}%", f"fail line {100 * fail_line:g}%"),
        )  # fmt: skip


RATE = RateKind()
