"""The ``percentile`` metric kind: a percentile of a numeric attribute, e.g. p95 of ``latency_ms``.

Judged as a rate: p95 is below 500 exactly when fewer than 5% of the events are at or above 500, so PASS judges
the share of events ``>= pass_below`` against the tail (5%), FAIL the share ``>= fail_at``. The shares are
counted exactly per event (``at_pass``, ``at_fail``); the reported percentile is the histogram's estimate (1%
relative resolution, :mod:`flagbridge.oracle.histogram`). An event whose attribute is missing or not a number is
counted as ``invalid``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from flagbridge.oracle import histogram
from flagbridge.oracle.judge import Judgement, judge_common, line, needed_text, pct, shown, waiting, with_text
from flagbridge.oracle.kinds.base import CountEvent, MetricKind
from flagbridge.oracle.metric import MetricConfig
from flagbridge.oracle.tally import Delta, number_of


class PercentileMetric(MetricConfig):
    """A percentile of a numeric attribute, e.g. ``latency_ms`` p95 below 500 passes, at 1000 fails."""

    type: Literal["percentile"]
    attribute: str = Field(min_length=1)
    percentile: float = Field(gt=0, lt=100)

    reports_fail_count: ClassVar[bool] = True

    @property
    def tail(self) -> float:
        """The share of events allowed above the line (p95 -> 0.05)."""
        return round(1 - self.percentile / 100, 12)

    def judged_lines(self) -> tuple[float, float]:
        return self.tail, self.tail


def compile_percentile(metric: PercentileMetric) -> CountEvent:
    """The per-event count: the value into the histogram, and counted at/above each line exactly."""
    attribute, pass_below, fail_at = metric.attribute, metric.pass_below, metric.fail_at
    log, ceil, log_gamma, zero, inf = math.log, math.ceil, histogram.LOG_GAMMA, histogram.ZERO_BUCKET, math.inf

    def count(delta: Delta, event_type: Any, name: str, data: dict[str, Any], attributes: Mapping[str, Any]) -> None:
        number: Any = attributes.get(attribute)
        kind = type(number)
        # hot path: a finite int or float as is (histogram.bucket_of inlined), anything else through number_of
        if not (kind is float and -inf < number < inf) and kind is not int:
            number = None if number is None else number_of(number)
            if number is None:
                delta.invalid += 1
                return
        delta.n += 1
        index = ceil(log(number) / log_gamma) if number > 0 else zero
        buckets = delta.buckets
        buckets[index] = buckets.get(index, 0) + 1
        delta.classified += 1
        if number >= pass_below:
            delta.at_pass += 1
            if number >= fail_at:
                delta.at_fail += 1

    return count


def compile_percentile_values(metric: PercentileMetric) -> Callable[[list[Any]], Delta]:
    """The count of many events at once, from the values of their ``attribute`` in order: the delta that
    :func:`compile_percentile`'s count leaves when called on each of them in turn, from an empty one (the planned
    path gathers the values per counter, then counts them in one call)."""
    pass_below, fail_at = metric.pass_below, metric.fail_at
    log, ceil, log_gamma, zero, inf = math.log, math.ceil, histogram.LOG_GAMMA, histogram.ZERO_BUCKET, math.inf

    def count_values(values: list[Any]) -> Delta:
        invalid = at_pass = at_fail = 0
        buckets: dict[int, int] = {}
        for number in values:
            kind = type(number)
            if not (kind is float and -inf < number < inf) and kind is not int:
                number = None if number is None else number_of(number)
                if number is None:
                    invalid += 1
                    continue
            index = ceil(log(number) / log_gamma) if number > 0 else zero
            buckets[index] = buckets.get(index, 0) + 1
            if number >= pass_below:
                at_pass += 1
                if number >= fail_at:
                    at_fail += 1
        n = len(values) - invalid  # every value not invalid counts
        return Delta(n, 0, invalid, buckets, at_pass, at_fail, n)

    return count_values


def judge_percentile(
    metric: PercentileMetric,
    flag: str,
    treatment: str,
    n: int,
    at_pass: int,
    at_fail: int,
    value: float | None,
    *,
    final: bool,
    invalid: int = 0,
) -> Judgement:
    """Judge a percentile metric from ``n`` events, ``at_pass`` of them ``>= pass_below`` and ``at_fail`` of them
    ``>= fail_at`` (``value``: the percentile estimate, shown)."""
    state, judged = judge_common(metric, flag, treatment, n, at_pass, at_fail, final=final, invalid=invalid)
    subject = f"{flag}={treatment} {metric.name}"
    invalid_note = f", {invalid:,} invalid" if invalid else ""
    share = f"{100 - metric.percentile:g}%"
    bar = f"1/alpha = {shown(1 / metric.alpha)}"
    estimate = "-" if value is None else f"{value:,.4g}"
    if state == "NO_DATA":
        text = f"NO_DATA {subject}: no events counted{invalid_note} (about {judged.needed or 0:,} needed to pass)"
    elif state == "FAIL":
        text = (
            f"FAIL {subject} {estimate} ({pct(at_fail / n)} of events ≥ {line(metric.fail_at)} vs {share}, "
            f"evidence {shown(judged.fail_evidence)} ≥ {bar}, n={n:,}{invalid_note}) ≥ fail line "
            f"{line(metric.fail_at)}"
        )
    elif state == "PASS":
        text = (
            f"PASS {subject} {estimate} ({pct(at_pass / n)} of events ≥ {line(metric.pass_below)} vs {share}, "
            f"evidence {shown(judged.pass_evidence)} ≥ {bar}, n={n:,}{invalid_note}) < pass line "
            f"{line(metric.pass_below)}"
        )
    else:
        text = (
            f"INCONCLUSIVE {subject} {estimate} ({pct(at_pass / n)} ≥ {line(metric.pass_below)}, "
            f"{pct(at_fail / n)} ≥ {line(metric.fail_at)}, n={n:,}{invalid_note}): {waiting(metric, final)}"
            f"{needed_text(judged.needed)}"
        )
    values = with_text(judged, text).to_dict()
    values["value"] = value
    return Judgement(**values)


class PercentileKind(MetricKind):
    name = "percentile"
    model = PercentileMetric

    def compile(self, metric: Any) -> CountEvent:
        return compile_percentile(metric)

    def judge(self, metric: Any, flag: str, treatment: str, delta: Delta, *, final: bool) -> Judgement:
        value = histogram.percentile(delta.buckets, metric.percentile / 100)
        return judge_percentile(
            metric, flag, treatment, delta.n, delta.at_pass, delta.at_fail, value, final=final, invalid=delta.invalid
        )

    def exact_shares(self, metric: Any, delta: Delta) -> Delta:
        """Line counts of a counter written before they were counted exactly, read from its buckets (erring
        toward INCONCLUSIVE)."""
        if not delta.buckets or delta.classified >= delta.n:
            return delta
        return Delta(
            n=delta.n, k=delta.k, invalid=delta.invalid, buckets=delta.buckets, classified=delta.n,
            at_pass=histogram.count_at_or_above(delta.buckets, metric.pass_below, surely=False),
            at_fail=histogram.count_at_or_above(delta.buckets, metric.fail_at, surely=True),
        )  # fmt: skip

    def datums(self, verdict: Mapping[str, Any]) -> dict[str, tuple[float, str]]:
        return {} if verdict.get("value") is None else {"Percentile": (verdict["value"], "None")}


PERCENTILE = PercentileKind()
