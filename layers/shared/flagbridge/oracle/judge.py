"""One verdict per (test, treatment, metric), and the line that explains it.

The rule (rates as fractions; ``z`` the one-sided normal quantile of the confidence in force):

* **NO_DATA**: no event counted. Never PASS, never a kill.
* **FAIL**: at least ``min_failures`` bad events and the Wilson *lower* bound at or above ``fail_at``.
* **PASS**: at least ``min_samples`` events and the Wilson *upper* bound below ``pass_below``.
* **INCONCLUSIVE** otherwise, with about how many more events would decide at the observed rate (none when the
  rate lies between the lines). At the window's end it stays INCONCLUSIVE: never a pass by running out of time.
* **INVALID** (set by the caller): the exposures do not match the intended split (chi-square p < 0.001).
* **ERROR** (set by the caller): the counters could not be read 4 evaluations in a row.

**Repeated looks.** The oracle looks every interval (1 minute by default), so a bound that is right 95% of the
time at one look is wrong more often at *some* look. Before the window ends, every look uses the stricter
``interim_confidence`` (default 99%, z = 2.326) for both FAIL and PASS; the look at or after the window's end
uses ``confidence`` (default 95%, z = 1.645). The error rates this gives, measured over simulated cohorts with
fixed seeds (``tests/unit/oracle/test_error_rates.py`` asserts them):

* one look, the true rate exactly at a line: a wrong PASS or FAIL in at most 7% of cohorts;
* a look after every 25 events up to 2,000 (79 interim looks, then the final one), the true rate 20% on the
  wrong side of a line: a wrong verdict ever claimed in at most 8% of cohorts (about 1% with the default lines
  1% / 5%); the true rate exactly at the line: PASS ever claimed in at most 8%, FAIL in at most 17%.

Looks without new events add no risk (the counts did not change), so the rate depends on how often the counts
grow between looks, not on the interval. ``min_failures`` (3) keeps a handful of errors from failing a cohort:
one 500 in 20 requests is INCONCLUSIVE, not FAIL.

A **percentile** metric (e.g. p95 of ``latency_ms`` below 500, at 1000 fails) is judged as a rate: p95 is below
500 exactly when fewer than 5% of the events are at or above 500. So PASS needs the Wilson upper bound of the
share of events ``>= pass_below`` to be below 5%, FAIL the lower bound of the share ``>= fail_at`` to reach 5%
with at least ``min_failures`` such events. The shares are read from the log-scale histogram (1% relative
resolution, :mod:`flagbridge.oracle.histogram`); the reported percentile is its estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Literal

from flagbridge.oracle import histogram
from flagbridge.oracle.config import PercentileMetric, RateMetric
from flagbridge.oracle.stats import needed_to_fail, needed_to_pass, wilson_bounds, z_for

State = Literal["PASS", "FAIL", "INCONCLUSIVE", "NO_DATA", "ERROR", "INVALID"]
STATES: tuple[State, ...] = ("PASS", "FAIL", "INCONCLUSIVE", "NO_DATA", "ERROR", "INVALID")
STATE_CODES: dict[str, int] = {"PASS": 0, "INCONCLUSIVE": 1, "NO_DATA": 2, "INVALID": 3, "ERROR": 4, "FAIL": 5}
"""The CloudWatch ``VerdictState`` metric value of each state (higher is worse)."""


@dataclass(frozen=True, slots=True)
class Judgement:
    """A verdict with everything it was decided on."""

    flag: str
    treatment: str
    metric: str
    kind: Literal["rate", "percentile"]
    state: State
    n: int
    k: int
    """Bad events (rate) or events at/above the line that decided (percentile)."""
    rate: float | None
    lower: float
    upper: float
    pass_below: float
    fail_at: float
    confidence: float
    final: bool
    needed: int | None
    invalid: int = 0
    value: float | None = None
    """The percentile estimate (percentile metrics)."""
    explain: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(fraction: float) -> str:
    percent = 100 * fraction
    text = f"{percent:.2g}" if percent < 1 else f"{percent:.1f}"
    return (text.removesuffix(".0") if "e" not in text else f"{percent:.1g}") + "%"


def _line(value: float) -> str:
    return f"{value:g}"


def _needed_text(needed: int | None) -> str:
    if needed is None:
        return "the rate lies between the lines: more events alone will not decide"
    return f"about {needed:,} more events needed"


def _confidence(metric: RateMetric | PercentileMetric, final: bool) -> float:
    return metric.confidence if final else metric.interim_confidence


def judge_rate(
    metric: RateMetric, flag: str, treatment: str, n: int, k: int, *, final: bool, invalid: int = 0
) -> Judgement:
    """Judge a rate metric from ``k`` bad events out of ``n``."""
    confidence = _confidence(metric, final)
    z = z_for(confidence)
    lower, upper = wilson_bounds(k, n, z)
    subject = f"{flag}={treatment} {metric.name}"
    invalid_note = f", {invalid:,} invalid" if invalid else ""
    make = partial(
        Judgement, flag=flag, treatment=treatment, metric=metric.name, kind="rate", n=n, k=k, lower=lower,
        upper=upper, pass_below=metric.pass_below, fail_at=metric.fail_at, confidence=confidence, final=final,
        invalid=invalid,
    )  # fmt: skip
    if n == 0:
        needed = needed_to_pass(0, 0, metric.pass_below, z, metric.min_samples)
        text = f"NO_DATA {subject}: no events counted{invalid_note} (about {needed or 0:,} needed to pass)"
        return make(state="NO_DATA", rate=None, needed=needed, explain=text)
    rate = k / n
    if k >= metric.min_failures and lower >= metric.fail_at:
        text = (
            f"FAIL {subject} {_pct(rate)} (lower bound {_pct(lower)}, n={n:,}{invalid_note}) "
            f"≥ fail line {_pct(metric.fail_at)}"
        )
        return make(state="FAIL", rate=rate, needed=None, explain=text)
    if n >= metric.min_samples and upper < metric.pass_below:
        text = (
            f"PASS {subject} {_pct(rate)} (upper bound {_pct(upper)}, n={n:,}{invalid_note}) "
            f"< pass line {_pct(metric.pass_below)}"
        )
        return make(state="PASS", rate=rate, needed=None, explain=text)
    needed = needed_to_pass(k, n, metric.pass_below, z, metric.min_samples)
    if needed is None:
        needed = needed_to_fail(k, n, metric.fail_at, z, metric.min_failures)
    text = (
        f"INCONCLUSIVE {subject} {_pct(rate)} (bounds {_pct(lower)} to {_pct(upper)}, n={n:,}{invalid_note}): "
        f"{_needed_text(needed)}"
    )
    return make(state="INCONCLUSIVE", rate=rate, needed=needed, explain=text)


def judge_percentile(
    metric: PercentileMetric, flag: str, treatment: str, buckets: dict[int, int], *, final: bool, invalid: int = 0
) -> Judgement:
    """Judge a percentile metric from its histogram buckets."""
    confidence = _confidence(metric, final)
    z = z_for(confidence)
    tail = metric.tail
    n = sum(buckets.values())
    at_fail = sum(c for i, c in buckets.items() if histogram.bucket_value(i) >= metric.fail_at)
    at_pass = sum(c for i, c in buckets.items() if histogram.bucket_value(i) >= metric.pass_below)
    value = histogram.percentile(buckets, metric.percentile / 100)
    subject = f"{flag}={treatment} {metric.name}"
    invalid_note = f", {invalid:,} invalid" if invalid else ""
    fail_lower, fail_upper = wilson_bounds(at_fail, n, z)
    pass_lower, pass_upper = wilson_bounds(at_pass, n, z)
    make = partial(
        Judgement, flag=flag, treatment=treatment, metric=metric.name, kind="percentile", n=n,
        pass_below=metric.pass_below, fail_at=metric.fail_at, confidence=confidence, final=final, invalid=invalid,
        value=value,
    )  # fmt: skip
    share = f"{100 - metric.percentile:g}%"
    if n == 0:
        needed = needed_to_pass(0, 0, tail, z, metric.min_samples)
        text = f"NO_DATA {subject}: no events counted{invalid_note} (about {needed or 0:,} needed to pass)"
        return make(state="NO_DATA", k=0, rate=None, lower=0.0, upper=1.0, needed=needed, explain=text)
    shown = f"{value:,.4g}"
    if at_fail >= metric.min_failures and fail_lower >= tail:
        text = (
            f"FAIL {subject} {shown} ({_pct(at_fail / n)} of events ≥ {_line(metric.fail_at)}, lower bound "
            f"{_pct(fail_lower)} ≥ {share}, n={n:,}{invalid_note}) ≥ fail line {_line(metric.fail_at)}"
        )
        return make(
            state="FAIL", k=at_fail, rate=at_fail / n, lower=fail_lower, upper=fail_upper, needed=None, explain=text
        )
    if n >= metric.min_samples and pass_upper < tail:
        text = (
            f"PASS {subject} {shown} ({_pct(at_pass / n)} of events ≥ {_line(metric.pass_below)}, upper bound "
            f"{_pct(pass_upper)} < {share}, n={n:,}{invalid_note}) < pass line {_line(metric.pass_below)}"
        )
        return make(
            state="PASS", k=at_pass, rate=at_pass / n, lower=pass_lower, upper=pass_upper, needed=None, explain=text
        )
    needed = needed_to_pass(at_pass, n, tail, z, metric.min_samples)
    if needed is None:
        needed = needed_to_fail(at_fail, n, tail, z, metric.min_failures)
    text = (
        f"INCONCLUSIVE {subject} {shown} ({_pct(at_pass / n)} ≥ {_line(metric.pass_below)}, "
        f"{_pct(at_fail / n)} ≥ {_line(metric.fail_at)}, n={n:,}{invalid_note}): {_needed_text(needed)}"
    )
    return make(
        state="INCONCLUSIVE",
        k=at_pass,
        rate=at_pass / n,
        lower=pass_lower,
        upper=pass_upper,
        needed=needed,
        explain=text,
    )


def overridden(judgement: Judgement, state: State, reason: str) -> Judgement:
    """The judgement with its state replaced (INVALID after an SRM, ERROR after unreadable counters)."""
    values = judgement.to_dict()
    values.update(state=state, explain=f"{state} {judgement.flag}={judgement.treatment} {judgement.metric}: {reason}")
    return Judgement(**values)
