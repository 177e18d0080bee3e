"""The judgement states and their explain lines."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.oracle import histogram
from flagbridge.oracle.config import PercentileMetric, RateMetric, parse_oracle_config
from flagbridge.oracle.judge import judge_percentile, judge_rate, overridden

[TEST] = parse_oracle_config({"tests": [{"name": "t", "flag": "new_checkout", "environment": "Production"}]}).tests
RATE = TEST.metrics[0]
LATENCY = TEST.metrics[1]
assert isinstance(RATE, RateMetric) and isinstance(LATENCY, PercentileMetric)


def test_the_issue_example_fails_on_and_passes_off() -> None:
    on = judge_rate(RATE, "new_checkout", "on", 600, 48, final=False)
    off = judge_rate(RATE, "new_checkout", "off", 1500, 3, final=False)
    assert on.state == "FAIL" and off.state == "PASS"
    assert on.explain == "FAIL new_checkout=on 5xx rate 8% (lower bound 5.8%, n=600) ≥ fail line 5%"
    assert off.explain == "PASS new_checkout=off 5xx rate 0.2% (upper bound 0.7%, n=1,500) < pass line 1%"
    assert on.confidence == 0.99 and not on.final


def test_the_explain_line_of_the_issue() -> None:
    judged = judge_rate(RATE, "new_checkout", "on", 620, 49, final=True)
    assert judged.explain == "FAIL new_checkout=on 5xx rate 7.9% (lower bound 6.3%, n=620) ≥ fail line 5%"


def test_small_samples_are_inconclusive_with_events_needed() -> None:
    one_in_twenty = judge_rate(RATE, "f", "on", 20, 1, final=True)
    assert one_in_twenty.state == "INCONCLUSIVE"
    assert "n=20" in one_in_twenty.explain
    clean = judge_rate(RATE, "f", "on", 100, 0, final=False)
    assert clean.state == "INCONCLUSIVE" and clean.needed == 436
    assert clean.explain.endswith("about 436 more events needed")
    two_failures = judge_rate(RATE, "f", "on", 20, 2, final=True)  # 10%, but below min_failures
    assert two_failures.state == "INCONCLUSIVE" and two_failures.needed is not None


def test_no_data_is_never_pass() -> None:
    judged = judge_rate(RATE, "f", "on", 0, 0, final=True, invalid=4)
    assert judged.state == "NO_DATA"
    assert judged.explain == "NO_DATA f=on 5xx rate: no events counted, 4 invalid (about 300 needed to pass)"


def test_window_end_uses_the_final_confidence_and_never_passes_by_timeout() -> None:
    assert judge_rate(RATE, "f", "on", 300, 0, final=False).state == "INCONCLUSIVE"  # z 2.326 needs 536
    assert judge_rate(RATE, "f", "on", 300, 0, final=True).state == "PASS"  # z 1.645 needs 268 (min 300)
    assert judge_rate(RATE, "f", "on", 299, 0, final=True).state == "INCONCLUSIVE"


def test_overridden_states_keep_the_numbers() -> None:
    judged = overridden(judge_rate(RATE, "f", "on", 600, 48, final=False), "INVALID", "sample ratio mismatch")
    assert (judged.state, judged.n, judged.k) == ("INVALID", 600, 48)
    assert judged.explain == "INVALID f=on 5xx rate: sample ratio mismatch"


def buckets(values: list[float]) -> dict[int, int]:
    return histogram.merge([{histogram.bucket_of(v): 1} for v in values])


def test_percentile_verdicts() -> None:
    rng = random.Random(3)
    fast = buckets([rng.uniform(50, 300) for _ in range(1000)])
    slow = buckets([rng.uniform(50, 300) for _ in range(900)] + [rng.uniform(1100, 3000) for _ in range(100)])
    good = judge_percentile(LATENCY, "f", "off", fast, final=True)
    bad = judge_percentile(LATENCY, "f", "on", slow, final=True)
    assert good.state == "PASS" and good.value is not None and good.value < 300
    assert bad.state == "FAIL" and bad.k == 100
    assert bad.explain.startswith("FAIL f=on latency p95 ")
    assert "10% of events ≥ 1000" in bad.explain and bad.explain.endswith("≥ fail line 1000")
    assert judge_percentile(LATENCY, "f", "on", {}, final=True).state == "NO_DATA"


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.integers(0, 5000), st.integers(0, 5000), st.booleans())
def test_verdicts_never_contradict_the_observed_counts(n: int, k: int, final: bool) -> None:
    k = min(k, n)
    judged = judge_rate(RATE, "f", "t", n, k, final=final)
    if judged.state == "FAIL":
        assert k >= RATE.min_failures and k / n >= RATE.fail_at and judged.lower >= RATE.fail_at
    if judged.state == "PASS":
        assert n >= RATE.min_samples and k / n < RATE.pass_below and judged.upper < RATE.pass_below
    if n == 0:
        assert judged.state == "NO_DATA"
