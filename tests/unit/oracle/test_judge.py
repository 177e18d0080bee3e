"""The judgement states and their explain lines."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.oracle import histogram
from flagbridge.oracle.config import PercentileMetric, RateMetric, parse_oracle_config
from flagbridge.oracle.judge import Judgement, overridden
from flagbridge.oracle.kinds.percentile import judge_percentile
from flagbridge.oracle.kinds.rate import judge_rate
from tests.unit.oracle.exact import DOCS

[TEST] = parse_oracle_config({"tests": [{"name": "t", "flag": "new_checkout", "environment": "Production"}]}).tests
RATE = TEST.metrics[0]
LATENCY = TEST.metrics[1]
assert isinstance(RATE, RateMetric) and isinstance(LATENCY, PercentileMetric)


def test_the_worked_example_of_the_docs() -> None:
    # docs/oracle.md, "A worked example": the lines are quoted there verbatim
    early = judge_rate(RATE, "new_checkout", "on", 600, 48, final=False)
    on = judge_rate(RATE, "new_checkout", "on", 800, 64, final=False)
    off = judge_rate(RATE, "new_checkout", "off", 1500, 3, final=False)
    small = judge_rate(RATE, "small_flag", "on", 20, 1, final=False)
    assert (early.state, on.state, off.state, small.state) == ("INCONCLUSIVE", "FAIL", "PASS", "INCONCLUSIVE")
    page = DOCS.read_text()
    for judged in (early, on, off, small):
        assert judged.explain in page, judged.explain
    assert on.confidence == 0.99 and not on.final
    assert round(on.fail_evidence) == 158 and round(off.pass_evidence) == 406


def test_small_samples_are_inconclusive_with_events_needed() -> None:
    one_in_twenty = judge_rate(RATE, "f", "on", 20, 1, final=True)
    assert one_in_twenty.state == "INCONCLUSIVE" and one_in_twenty.needed is None
    assert "n=20" in one_in_twenty.explain
    clean = judge_rate(RATE, "f", "on", 100, 0, final=False)
    assert clean.state == "INCONCLUSIVE" and clean.needed == 544
    assert clean.explain.endswith("about 544 more events needed")
    assert judge_rate(RATE, "f", "on", 644, 0, final=False).state == "PASS"
    assert judge_rate(RATE, "f", "on", 643, 0, final=False).state == "INCONCLUSIVE"
    two_failures = judge_rate(RATE, "f", "on", 2, 2, final=True)  # 100%, but below min_failures
    assert two_failures.state == "INCONCLUSIVE" and two_failures.needed == 1


def test_no_data_is_never_pass() -> None:
    judged = judge_rate(RATE, "f", "on", 0, 0, final=True, invalid=4)
    assert judged.state == "NO_DATA"
    assert judged.explain == "NO_DATA f=on 5xx rate: no events counted, 4 invalid (about 644 needed to pass)"


def test_the_window_end_changes_nothing_in_the_sequential_rule_and_never_passes_by_timeout() -> None:
    for n, k in ((300, 0), (643, 0), (600, 48), (20, 1)):
        at_end = judge_rate(RATE, "f", "on", n, k, final=True).to_dict()
        before = judge_rate(RATE, "f", "on", n, k, final=False).to_dict()
        assert {**at_end, "final": False} == before
    assert judge_rate(RATE, "f", "on", 643, 0, final=True).state == "INCONCLUSIVE"


def test_overridden_states_keep_the_numbers() -> None:
    judged = overridden(judge_rate(RATE, "f", "on", 800, 64, final=False), "INVALID", "sample ratio mismatch")
    assert (judged.state, judged.n, judged.k) == ("INVALID", 800, 64)
    assert judged.explain == "INVALID f=on 5xx rate: sample ratio mismatch"


def buckets(values: list[float]) -> dict[int, int]:
    return histogram.merge([{histogram.bucket_of(v): 1} for v in values])


def judge_values(values: list[float], treatment: str = "on") -> Judgement:
    """A percentile verdict from raw values, the line counts taken exactly as the counter takes them."""
    at_pass = sum(1 for v in values if v >= LATENCY.pass_below)
    at_fail = sum(1 for v in values if v >= LATENCY.fail_at)
    value = histogram.percentile(buckets(values), LATENCY.percentile / 100)
    return judge_percentile(LATENCY, "f", treatment, len(values), at_pass, at_fail, value, final=True)


def test_percentile_verdicts() -> None:
    rng = random.Random(3)
    good = judge_values([rng.uniform(50, 300) for _ in range(1000)], "off")
    bad = judge_values([rng.uniform(50, 300) for _ in range(900)] + [rng.uniform(1100, 3000) for _ in range(100)])
    assert good.state == "PASS" and good.value is not None and good.value < 300
    assert bad.state == "FAIL" and bad.k == 100 and bad.k_fail == 100
    assert bad.explain.startswith("FAIL f=on latency p95 ")
    assert "10% of events ≥ 1000 vs 5%" in bad.explain and bad.explain.endswith("≥ fail line 1000")
    assert judge_percentile(LATENCY, "f", "on", 0, 0, 0, None, final=True).state == "NO_DATA"


def test_percentile_lines_are_classified_exactly() -> None:
    # the audit's defect 2: the bucket representative of 500.0 is 497.78 (counted below the 500 line: PASS) and
    # that of 995.0 is 1002.43 (counted at/above 1000: FAIL). Exact counts judge the values themselves.
    at_the_pass_line = judge_values([500.0] * 1000)
    just_below_the_fail_line = judge_values([995.0] * 1000)
    assert at_the_pass_line.state != "PASS" and at_the_pass_line.k == 1000
    assert just_below_the_fail_line.state != "FAIL" and just_below_the_fail_line.k_fail == 0
    assert just_below_the_fail_line.state == "INCONCLUSIVE"
    assert judge_values([1000.0] * 1000).state == "FAIL"
    assert judge_values([499.99] * 1000).state == "PASS"


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.integers(0, 5000), st.integers(0, 5000), st.booleans())
def test_verdicts_never_contradict_the_observed_counts(n: int, k: int, final: bool) -> None:
    k = min(k, n)
    judged = judge_rate(RATE, "f", "t", n, k, final=final)
    if judged.state == "FAIL":
        assert k >= RATE.min_failures and k / n > RATE.fail_at and judged.fail_evidence >= 1 / RATE.alpha
    if judged.state == "PASS":
        assert n >= RATE.min_samples and k / n < RATE.pass_below and judged.pass_evidence >= 1 / RATE.alpha
    if n == 0:
        assert judged.state == "NO_DATA"
