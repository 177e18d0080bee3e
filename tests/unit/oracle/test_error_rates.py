"""The oracle's error rates over simulated cohorts, against the bounds documented in flagbridge.oracle.judge.

Every cohort draws Bernoulli events at a known true rate with a fixed seed, so the figures are the same on
every run. The documented bounds (default confidence 95% final, 99% interim, min_samples 300, min_failures 3):

* one look (the final one), true rate exactly at the line: a wrong PASS or a wrong FAIL in at most 7% of cohorts
  (Wilson's one-sided coverage at 95% is close to, not exactly, 95% at small n);
* a look after every 25 events up to 2,000 (79 interim looks at 99% and the final one at 95%), true rate 20% on
  the wrong side of the line (PASS judged at 1.2 x pass_below, FAIL at 0.8 x fail_at): ever claimed in at most 8%
  of cohorts for lines from 0.5% to 20% (about 1% with the default lines 1% / 5%; the worst case is a fail
  line only 3x the pass line, where the cohort needs many events to tell them apart); true rate at the line:
  PASS ever claimed in at most 8%, FAIL in at most 17% (repeated looks do
  inflate; that is why the interim bound is stricter, and why a FAIL needs min_failures).
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.oracle.config import RateMetric, parse_oracle_config
from flagbridge.oracle.judge import judge_rate

SINGLE_LOOK_BOUND = 0.07
SEQUENTIAL_BOUND_INSIDE = 0.08
SEQUENTIAL_PASS_AT_LINE = 0.08
SEQUENTIAL_FAIL_AT_LINE = 0.17


def metric(pass_below: float, fail_at: float) -> RateMetric:
    document = {
        "tests": [
            {
                "name": "t",
                "flag": "f",
                "environment": "e",
                "metrics": [
                    {"name": "r", "type": "rate", "bad": {"event_names": {"include": ["x"]}},
                     "pass_below": pass_below, "fail_at": fail_at},
                ],
            }
        ]
    }  # fmt: skip
    judged = parse_oracle_config(document).tests[0].metrics[0]
    assert isinstance(judged, RateMetric)
    return judged


def ever_claimed(rule: RateMetric, true_rate: float, looks: list[int], cohorts: int, seed: int) -> tuple[float, float]:
    """Share of cohorts that were ever judged PASS, and ever FAIL, over the given look sizes."""
    rng = random.Random(seed)
    passes = fails = 0
    for _ in range(cohorts):
        n = k = 0
        passed = failed = False
        for size in looks:
            k += sum(rng.random() < true_rate for _ in range(size - n))
            n = size
            state = judge_rate(rule, "f", "t", n, k, final=size == looks[-1]).state
            passed |= state == "PASS"
            failed |= state == "FAIL"
        passes += passed
        fails += failed
    return passes / cohorts, fails / cohorts


SEQUENTIAL = list(range(25, 2001, 25))


def test_single_final_look_at_the_line() -> None:
    rule = metric(0.01, 0.05)
    for n in (300, 2000):
        false_pass, _ = ever_claimed(rule, 0.01, [n], 1500, seed=n)
        _, false_fail = ever_claimed(rule, 0.05 * 0.999, [n], 1500, seed=n + 1)
        assert false_pass <= SINGLE_LOOK_BOUND
        assert false_fail <= SINGLE_LOOK_BOUND


def test_repeated_looks_at_the_line() -> None:
    rule = metric(0.01, 0.05)
    false_pass, _ = ever_claimed(rule, 0.01, SEQUENTIAL, 600, seed=11)
    _, false_fail = ever_claimed(rule, 0.05 * 0.999, SEQUENTIAL, 600, seed=12)
    assert false_pass <= SEQUENTIAL_PASS_AT_LINE
    assert false_fail <= SEQUENTIAL_FAIL_AT_LINE


def test_the_bounds_are_not_vacuous() -> None:
    # The same simulation does see errors when a naive rule is used: confidence 0.6 passes far too often.
    loose = metric(0.01, 0.05).model_copy(update={"confidence": 0.6, "interim_confidence": 0.6})
    false_pass, _ = ever_claimed(loose, 0.01, SEQUENTIAL, 300, seed=13)
    assert false_pass > SEQUENTIAL_PASS_AT_LINE


@settings(max_examples=8, derandomize=True, deadline=None)
@given(
    pass_below=st.sampled_from([0.005, 0.01, 0.02]),
    ratio=st.sampled_from([3.0, 5.0, 10.0]),
    seed=st.integers(0, 2**16),
)
def test_never_pass_above_the_pass_line_nor_fail_below_the_fail_line(
    pass_below: float, ratio: float, seed: int
) -> None:
    rule = metric(pass_below, pass_below * ratio)
    looks = SEQUENTIAL[1::2]  # every 50 events: keeps each example near a second
    false_pass, _ = ever_claimed(rule, pass_below * 1.2, looks, 300, seed=seed)
    _, false_fail = ever_claimed(rule, rule.fail_at * 0.8, looks, 300, seed=seed + 1)
    assert false_pass <= SEQUENTIAL_BOUND_INSIDE
    assert false_fail <= SEQUENTIAL_BOUND_INSIDE
