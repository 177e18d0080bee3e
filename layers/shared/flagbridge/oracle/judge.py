"""One verdict per (test, treatment, metric), and the line that explains it.

The rule (rates as fractions), per metric with error level ``alpha`` (default 1%):

* **NO_DATA**: no event counted. Never PASS, never a kill.
* **FAIL**: the FAIL martingale ``M_fail`` of ``k`` bad in ``n`` reaches ``1/alpha`` (and ``k >= min_failures``).
* **PASS**: the PASS martingale ``M_pass`` reaches ``1/alpha`` (and ``n >= min_samples``).
* **INCONCLUSIVE** otherwise, with about how many more events would decide at the observed rate (none when the
  rate lies between the lines). At the window's end it stays INCONCLUSIVE: never a pass by running out of time.
* **INVALID** (set by the caller): the exposures do not match the intended split; a FAIL stays FAIL beside it.
* **ERROR** (set by the caller): the counters could not be read 4 evaluations in a row.

**Always valid.** ``M_pass = E_{θ~U[0, pass_below]}[L(θ) / L(pass_below)]`` and ``M_fail = E_{θ~π}[L(θ) /
L(fail_at)]`` with ``π = ½ U[fail_at, 2·fail_at] + ½ U[fail_at, 1]`` (:mod:`flagbridge.oracle.stats`, closed
forms through binomial tails) are mixtures of likelihood ratios: each is a non-negative supermartingale while
the true rate is on its null side (at or above ``pass_below``; below ``fail_at``), so by Ville's inequality it
*ever* reaches ``1/alpha`` with probability at most ``alpha``: however often, whenever and for how long the
oracle looks. ``tests/unit/oracle/test_error_rates.py`` proves the bound exactly (dynamic programming over the
bad count, a look after every event up to 10,000) and generates the table in docs/oracle.md. ``min_samples`` and
``min_failures`` only make claims rarer, so they keep the bound.

``decision: fixed`` judges once, at the window's end, with the classic one-sided exact binomial test at level
``alpha`` (PASS when ``P(Bin(n, pass_below) <= k) <= alpha``, FAIL when ``P(Bin(n, fail_at) >= k) <= alpha``);
every look before the end is INCONCLUSIVE.

A **percentile** metric (e.g. p95 of ``latency_ms`` below 500, at 1000 fails) is judged as a rate: p95 is below
500 exactly when fewer than 5% of the events are at or above 500. So PASS judges the share of events ``>=
pass_below`` against 5%, FAIL the share ``>= fail_at``, with the same guarantee. The shares are counted exactly
when the events are counted (:mod:`flagbridge.oracle.counting`); the reported percentile is the histogram's
estimate (1% relative resolution, :mod:`flagbridge.oracle.histogram`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from flagbridge.oracle.metric import MetricConfig
from flagbridge.oracle.stats import (
    first_total,
    log_binomial_lower_tail,
    log_binomial_upper_tail,
    log_fail_evidence,
    log_pass_evidence,
    wilson_bounds,
    z_for,
)

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
    kind: str
    """The metric kind (:mod:`flagbridge.oracle.kinds`)."""
    state: State
    n: int
    k: int
    """Bad events (rate) or events at/above the line that decided (percentile)."""
    rate: float | None
    lower: float
    upper: float
    """Single-look Wilson bounds at ``confidence`` (shown for orientation; the verdict is decided by evidence)."""
    pass_below: float
    fail_at: float
    confidence: float
    """``1 - alpha``."""
    final: bool
    needed: int | None
    invalid: int = 0
    value: float | None = None
    """The percentile estimate (percentile metrics)."""
    explain: str = ""
    pass_evidence: float = 1.0
    """``M_pass`` (``decision: fixed``: 1 / the p-value at the window's end); PASS at ``>= 1 / alpha``."""
    fail_evidence: float = 1.0
    """``M_fail`` (``decision: fixed``: 1 / the p-value at the window's end); FAIL at ``>= 1 / alpha``."""
    k_fail: int | None = None
    """Percentile metrics: the events at or above ``fail_at`` (``k`` counts those at or above ``pass_below``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Metric = MetricConfig
_LOG_CAP = 690.0  # exp(690) is about 1e300: evidence stays a finite JSON number


def pct(fraction: float) -> str:
    percent = 100 * fraction
    text = f"{percent:.2g}" if percent < 1 else f"{percent:.1f}"
    return (text.removesuffix(".0") if "e" not in text else f"{percent:.1g}") + "%"


def line(value: float) -> str:
    return f"{value:g}"


def _evidence(log_value: float) -> float:
    return math.exp(min(log_value, _LOG_CAP))


def shown(evidence: float) -> str:
    return f"{evidence:,.0f}" if evidence < 1e6 else f"{evidence:.2g}"


def needed_text(needed: int | None) -> str:
    if needed is None:
        return "the rate lies between the lines: more events alone will not decide"
    return f"about {needed:,} more event{'' if needed == 1 else 's'} needed"


def log_evidence(metric: Metric, n: float, k_pass: float, k_fail: float, *, final: bool) -> tuple[float, float]:
    """``(log M_pass, log M_fail)`` of a state (real counts allowed); 0 means no evidence either way.

    ``decision: fixed`` gives ``-log`` of the exact one-sided p-values, and only at the window's end.
    """
    if n <= 0:
        return 0.0, 0.0
    pass_line, fail_line = metric.judged_lines()
    if metric.decision == "fixed":
        if not final:
            return 0.0, 0.0
        return -log_binomial_lower_tail(n, k_pass, pass_line), -log_binomial_upper_tail(n, k_fail, fail_line)
    return log_pass_evidence(n, k_pass, pass_line), log_fail_evidence(n, k_fail, fail_line)


def decides_pass(metric: Metric, n: float, k_pass: float, *, final: bool) -> bool:
    """PASS at ``k_pass`` events at/above the PASS line out of ``n`` (real counts allowed)."""
    if n < metric.min_samples or n <= 0:
        return False
    return log_evidence(metric, n, k_pass, 0.0, final=final)[0] >= -math.log(metric.alpha)


def decides_fail(metric: Metric, n: float, k_fail: float, *, final: bool) -> bool:
    """FAIL at ``k_fail`` events at/above the FAIL line (bad events) out of ``n`` (real counts allowed)."""
    if k_fail < metric.min_failures or n <= 0:
        return False
    return log_evidence(metric, n, 0.0, k_fail, final=final)[1] >= -math.log(metric.alpha)


def events_to_decide(metric: Metric, n: int, k: int, k_fail: int | None = None) -> int | None:
    """About how many more events decide, if they arrive at the observed rate (0 with no events: a clean
    cohort); None when the rate lies between the lines (more events alone will not decide) or needs more than
    a billion events. ``k`` counts the events at/above the PASS line, ``k_fail`` those at/above the FAIL line
    (the same ``k`` for a rate metric).

    The count ``rate * total`` is kept real, so for ``decision: sequential`` the deciding predicate is a level
    set of ``log E_π[exp(total · g(θ))]``, a log-Laplace transform and so convex in ``total`` and 0 at 0: once
    true it stays true, and the bisection finds the first total exactly (tests check every state to n = 500
    against a linear scan). The judged look is ``final`` for ``decision: fixed``: the look that decides.
    """
    k_fail = k if k_fail is None else k_fail
    pass_line, fail_line = metric.judged_lines()
    final = metric.decision == "fixed"
    pass_rate = k / n if n else 0.0
    if pass_rate < pass_line:
        return first_total(lambda total: decides_pass(metric, total, pass_rate * total, final=final), n)
    fail_rate = k_fail / n if n else 0.0
    if fail_rate > fail_line:
        return first_total(lambda total: decides_fail(metric, total, fail_rate * total, final=final), n)
    return None


def judge_common(
    metric: Metric, flag: str, treatment: str, n: int, k_pass: int, k_fail: int, *, final: bool, invalid: int
) -> tuple[State, Judgement]:
    """The state and a Judgement whose explain text the kind fills in (:mod:`flagbridge.oracle.kinds`)."""
    log_pass, log_fail = log_evidence(metric, n, k_pass, k_fail, final=final)
    threshold = -math.log(metric.alpha)
    if n > 0 and k_fail >= metric.min_failures and log_fail >= threshold:
        state: State = "FAIL"
    elif n > 0 and n >= metric.min_samples and log_pass >= threshold:
        state = "PASS"
    else:
        state = "NO_DATA" if n == 0 else "INCONCLUSIVE"
    needed = events_to_decide(metric, n, k_pass, k_fail) if state in ("NO_DATA", "INCONCLUSIVE") else None
    k = k_fail if state == "FAIL" else k_pass
    lower, upper = wilson_bounds(k, n, z_for(1 - metric.alpha))
    judgement = Judgement(
        flag=flag, treatment=treatment, metric=metric.name, kind=metric.type, state=state, n=n, k=k,
        rate=k / n if n else None, lower=lower, upper=upper, pass_below=metric.pass_below, fail_at=metric.fail_at,
        confidence=1 - metric.alpha, final=final, needed=needed, invalid=invalid,
        pass_evidence=_evidence(log_pass), fail_evidence=_evidence(log_fail),
        k_fail=k_fail if metric.reports_fail_count else None,
    )  # fmt: skip
    return state, judgement


def waiting(metric: Metric, final: bool) -> str:
    if metric.decision == "fixed" and not final:
        return "decided once at the window's end (decision: fixed); "
    return ""


def with_text(judged: Judgement, text: str) -> Judgement:
    values = judged.to_dict()
    values["explain"] = text
    return Judgement(**values)


def overridden(judgement: Judgement, state: State, reason: str) -> Judgement:
    """The judgement with its state replaced (INVALID after an SRM, ERROR after unreadable counters)."""
    values = judgement.to_dict()
    values.update(state=state, explain=f"{state} {judgement.flag}={judgement.treatment} {judgement.metric}: {reason}")
    return Judgement(**values)
