"""Exact error rates and costs of the oracle's rule, by dynamic programming over the bad count (no simulation).

A cohort is a sequence of independent events, bad with probability ``p``. After every event the rule looks: the
mass of cohorts still undecided is carried over the bad count ``k`` and moved one event at a time (binomial
step), and the cohorts whose state the rule claims (``k`` at or above the FAIL threshold of ``n``, or at or below
the PASS threshold) are absorbed. What is absorbed is the exact probability that the claim is *ever* made with a
look after every event; looking less often can only claim less. The thresholds are tabulated once per ``n`` from
the shipped :func:`flagbridge.oracle.judge.decides_pass` / :func:`decides_fail`, so the rule checked is the
shipped rule.

The undecided mass far in the tail the claim cannot reach soon (below ``TRIM`` per entry) is dropped to keep
this fast in pure Python, and the dropped mass is *added* to the bound, so every figure is an upper bound.

``python -m tests.unit.oracle.exact`` (or ``make oracle-tables``) rewrites the generated tables in
docs/oracle.md; ``test_error_rates.py`` fails when the page and this computation disagree.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from flagbridge.oracle.config import PercentileMetric, RateMetric, parse_oracle_config
from flagbridge.oracle.judge import decides_fail, decides_pass
from flagbridge.oracle.stats import log_binomial_upper_tail, srm_log_evidence, wilson_bounds
from flagbridge.oracle.stats import z_for as _z_for

LOOKS = 10_000
"""A look after every event up to this many events."""
TRIM = 1e-15
DOCS = Path(__file__).resolve().parents[3] / "docs" / "oracle.md"
Metric = RateMetric | PercentileMetric


def metric(pass_below: float, fail_at: float, **options: object) -> RateMetric:
    """A rate metric with these lines (defaults otherwise: alpha 1%, min_samples 300, min_failures 3)."""
    document = {"tests": [{"name": "t", "flag": "f", "environment": "e", "metrics": [
        {"name": "r", "type": "rate", "bad": {"event_names": {"include": ["x"]}}, "pass_below": pass_below,
         "fail_at": fail_at, **options}]}]}  # fmt: skip
    found = parse_oracle_config(document).tests[0].metrics[0]
    assert isinstance(found, RateMetric)
    return found


def shipped() -> tuple[RateMetric, PercentileMetric]:
    """The default metrics: the 5xx rate (1% / 5%; the unanswered rate has the same lines) and latency p95 (judged
    as a 5% tail share twice)."""
    test = parse_oracle_config({"tests": [{"name": "t", "flag": "f", "environment": "e"}]}).tests[0]
    rate, latency, *_ = test.metrics
    assert isinstance(rate, RateMetric) and isinstance(latency, PercentileMetric)
    return rate, latency


GRID = ((0.005, 0.015), (0.005, 0.05), (0.01, 0.03), (0.02, 0.1), (0.05, 0.1), (0.1, 0.2))
"""Lines from 0.5% to 20% (pass, fail), judged without min_samples / min_failures: the bare guarantee."""


def _lines(judged: Metric) -> tuple[float, float]:
    if isinstance(judged, PercentileMetric):
        return judged.tail, judged.tail
    return judged.pass_below, judged.fail_at


def fail_thresholds(judged: Metric, looks: int = LOOKS) -> tuple[int, ...]:
    return _thresholds(judged.model_dump_json(), looks)[0]


def pass_thresholds(judged: Metric, looks: int = LOOKS) -> tuple[int, ...]:
    return _thresholds(judged.model_dump_json(), looks)[1]


@cache
def _thresholds(document: str, looks: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    kind = PercentileMetric if '"type":"percentile"' in document else RateMetric
    judged = kind.model_validate_json(document)
    return _fail_thresholds(judged, looks), _pass_thresholds(judged, looks)


def _fail_thresholds(judged: Metric, looks: int) -> tuple[int, ...]:
    """``t[n]``: the smallest bad count that FAILs at ``n`` events (``n + 1``: none). Nondecreasing in ``n`` (each
    good event multiplies every likelihood ratio of the FAIL mixture by ``(1-θ)/(1-fail_at) < 1``)."""
    table = [1]
    k = 0
    for n in range(1, looks + 1):
        while k <= n and not decides_fail(judged, n, k, final=True):
            k += 1
        table.append(k)
    return tuple(table)


def _pass_thresholds(judged: Metric, looks: int) -> tuple[int, ...]:
    """``t[n]``: the largest bad count that PASSes at ``n`` events (-1: none). Nondecreasing in ``n``."""
    table = [-1]
    k = -1
    for n in range(1, looks + 1):
        while k + 1 <= n and decides_pass(judged, n, k + 1, final=True):
            k += 1
        table.append(k)
    return tuple(table)


@dataclass(frozen=True)
class Passage:
    """The exact distribution of the first claim over a look after every event."""

    ever: float
    """P(claimed at some look up to the horizon), trimmed mass included (an upper bound)."""
    trimmed: float
    median: int | None
    """The first n by which half of the cohorts are claimed (None: not within the horizon)."""


def _step(alive: list[float], p: float) -> list[float]:
    q = 1 - p
    return [a * q + b * p for a, b in zip([*alive, 0.0], [0.0, *alive], strict=True)]


def _trim(alive: list[float], low: int, trimmed: float) -> tuple[int, float]:
    """Drop the negligible ends of ``alive`` in place; their mass is counted as claimed (conservative)."""
    while len(alive) > 1 and alive[-1] < TRIM:
        trimmed += alive.pop()
    drop = 0
    while drop < len(alive) - 1 and alive[drop] < TRIM:
        trimmed += alive[drop]
        drop += 1
    del alive[:drop]
    return low + drop, trimmed


def first_fail(thresholds: tuple[int, ...], p: float) -> Passage:
    """P(ever FAIL) at true rate ``p`` with a look after every event (the mass at ``k >= t[n]`` is absorbed)."""
    alive, low = [1.0], 0  # alive[i]: P(undecided, k = low + i)
    hit = trimmed = 0.0
    median = None
    for n in range(1, len(thresholds)):
        alive = _step(alive, p)
        cut = thresholds[n] - low
        if cut < len(alive):
            hit += sum(alive[max(cut, 0) :])
            alive = alive[: max(cut, 0)]
        low, trimmed = _trim(alive, low, trimmed)
        if median is None and hit + trimmed >= 0.5:
            median = n
    return Passage(hit + trimmed, trimmed, median)


def first_pass(thresholds: tuple[int, ...], p: float) -> Passage:
    """P(ever PASS) at true rate ``p`` with a look after every event (the mass at ``k <= t[n]`` is absorbed)."""
    alive, low = [1.0], 0
    hit = trimmed = 0.0
    median = None
    for n in range(1, len(thresholds)):
        alive = _step(alive, p)
        cut = thresholds[n] - low + 1  # entries below cut pass
        if cut > 0:
            hit += sum(alive[:cut])
            alive = alive[cut:]
            low += cut
        low, trimmed = _trim(alive, low, trimmed)
        if median is None and hit + trimmed >= 0.5:
            median = n
    return Passage(hit + trimmed, trimmed, median)


@dataclass(frozen=True)
class ErrorRow:
    lines: str
    alpha: float
    fail_at_line: float
    pass_at_line: float
    fail_at_budget: float


def error_rows() -> list[ErrorRow]:
    """P(ever wrong) at the lines and at the budget for the shipped metrics and :data:`GRID`."""
    rate, latency = shipped()
    judged: list[tuple[str, Metric]] = [
        ("5xx rate 1% / 5% (shipped)", rate),
        ("latency p95: tail share 5% (shipped)", latency),
    ]
    judged += [(f"{100 * pl:g}% / {100 * fl:g}%", metric(pl, fl, min_samples=1, min_failures=1)) for pl, fl in GRID]
    rows = []
    for label, one in judged:
        pass_line, fail_line = _lines(one)
        fails, passes = fail_thresholds(one), pass_thresholds(one)
        rows.append(
            ErrorRow(
                label, one.alpha, first_fail(fails, fail_line).ever, first_pass(passes, pass_line).ever,
                first_fail(fails, pass_line).ever,
            )
        )  # fmt: skip
    return rows


# ---- costs -------------------------------------------------------------------------------------------------


def _old_fail_thresholds(fail_at: float, looks: int) -> tuple[int, ...]:
    """The rule before issue 16 (Wilson lower bound at the interim 99%, at least 3 bad) as FAIL thresholds."""
    z = _z_for(0.99)
    table, k = [1], 0
    for n in range(1, looks + 1):
        while k <= n and not (k >= 3 and wilson_bounds(k, n, z)[0] >= fail_at):
            k += 1
        table.append(k)
    return tuple(table)


def _old_clean_pass(pass_below: float) -> int:
    z = _z_for(0.99)
    return next(n for n in range(300, 10**6) if wilson_bounds(0, n, z)[1] < pass_below)


def _single_look_clean_pass(pass_below: float, alpha: float) -> int:
    """Events a single planned look needs to PASS with none bad: ``(1 - pass_below)^n <= alpha``."""
    return math.ceil(math.log(alpha) / math.log1p(-pass_below))


def _single_look_fail(fail_at: float, true_rate: float, alpha: float) -> int:
    """The fewest events at which one planned look (exact binomial test at ``alpha``) FAILs half the cohorts."""
    for n in range(1, 10**6):
        k = next(k for k in range(n + 2) if k > n or log_binomial_upper_tail(n, k, fail_at) <= math.log(alpha))
        if k <= n and math.exp(log_binomial_upper_tail(n, k, true_rate)) >= 0.5:
            return n
    raise AssertionError("no single look decides")  # pragma: no cover


@dataclass(frozen=True)
class CostRow:
    lines: str
    clean_pass: tuple[int, int, int]
    """(this rule, the rule before, one planned look) events to PASS with no bad event."""
    fail_twice: tuple[int, int, int]
    """(this rule: median, the rule before: median, one planned look: half the cohorts) at 2x the fail line."""


def cost_rows() -> list[CostRow]:
    rate, latency = shipped()
    rows = []
    for label, one in (("5xx rate 1% / 5%", rate), ("latency p95 (5% tail)", latency)):
        pass_line, fail_line = _lines(one)
        clean = next(n for n, k in enumerate(pass_thresholds(one)) if k >= 0)
        now = first_fail(fail_thresholds(one), 2 * fail_line).median
        before = first_fail(_old_fail_thresholds(fail_line, 2_000), 2 * fail_line).median
        assert now is not None and before is not None
        rows.append(
            CostRow(
                label,
                (clean, _old_clean_pass(pass_line), _single_look_clean_pass(pass_line, one.alpha)),
                (now, before, _single_look_fail(fail_line, 2 * fail_line, one.alpha)),
            )
        )
    return rows


# ---- the sample-ratio check ----------------------------------------------------------------------------------


def srm_false_alarm(users: int, alpha: float = 0.001) -> float:
    """P(a correct 50/50 split is ever flagged) with a look after every new user up to ``users`` (exact DP)."""
    bar = -math.log(alpha)

    def flagged(n: int, a: int) -> bool:
        evidence = srm_log_evidence({"on": a, "off": n - a}, {"on": 50, "off": 50})
        return evidence is not None and evidence >= bar

    alive, low = [1.0], 0  # alive[i]: P(unflagged, users in "on" = low + i)
    hit = trimmed = 0.0
    high_cut = 1  # the smallest a >= n/2 that flags (symmetric: n - a flags below)
    for n in range(1, users + 1):
        alive = _step(alive, 0.5)
        high_cut = max(high_cut, (n + 1) // 2)
        while high_cut > (n + 1) // 2 and flagged(n, high_cut - 1):
            high_cut -= 1
        while high_cut <= n and not flagged(n, high_cut):
            high_cut += 1
        start = max(low, n - high_cut + 1)  # a <= n - high_cut flags too (the split is symmetric)
        total = sum(alive)
        alive = alive[start - low : max(start - low, high_cut - low)]
        hit += total - sum(alive)
        low, trimmed = _trim(alive, start, trimmed)
    return hit + trimmed


# ---- the generated tables ------------------------------------------------------------------------------------

_BEGIN = "<!-- generated by tests/unit/oracle/exact.py: {name} -->"
_END = "<!-- end of generated {name} -->"


def _pct(value: float) -> str:
    return f"{100 * value:.2g}%" if value >= 1e-6 else f"{value:.1e}"


def error_table() -> str:
    lines = [
        "| lines (pass / fail) | alpha | FAIL ever, true rate = fail line | PASS ever, true rate = pass line "
        "| FAIL ever, true rate = budget (pass line) |",
        "|---|---|---|---|---|",
    ]
    for row in error_rows():
        lines.append(
            f"| {row.lines} | {_pct(row.alpha)} | ≤ {_pct(row.fail_at_line)} | ≤ {_pct(row.pass_at_line)} "
            f"| ≤ {_pct(row.fail_at_budget)} |"
        )
    return "\n".join(lines)


def cost_table() -> str:
    lines = [
        "| metric | clean cohort to PASS: this rule / before / one planned look | true rate twice the fail line, "
        "events to FAIL (median): this rule / before / one planned look |",
        "|---|---|---|",
    ]
    for row in cost_rows():
        lines.append(
            f"| {row.lines} | {row.clean_pass[0]:,} / {row.clean_pass[1]:,} / {row.clean_pass[2]:,} "
            f"| {row.fail_twice[0]:,} / {row.fail_twice[1]:,} / {row.fail_twice[2]:,} |"
        )
    return "\n".join(lines)


TABLES = {"error table": error_table, "cost table": cost_table}


def section(text: str, name: str) -> str | None:
    """The generated table ``name`` as the page holds it (None when its markers are missing)."""
    pattern = re.escape(_BEGIN.format(name=name)) + r"\n(.*?)" + re.escape(_END.format(name=name))
    found = re.search(pattern, text, re.S)
    return None if found is None else found.group(1).removesuffix("\n")


def regenerate(path: Path = DOCS) -> None:
    text = path.read_text()
    for name, table in TABLES.items():
        begin, end = _BEGIN.format(name=name), _END.format(name=name)
        if section(text, name) is None:
            raise SystemExit(f"{path}: no '{begin}' ... '{end}' markers")
        generated = f"{begin}\n{table()}\n{end}"
        text = re.sub(re.escape(begin) + r"\n.*?" + re.escape(end), lambda _, done=generated: done, text, flags=re.S)
    path.write_text(text)


if __name__ == "__main__":
    regenerate(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS)
    print(f"regenerated the oracle tables in {DOCS if len(sys.argv) < 2 else sys.argv[1]}")
