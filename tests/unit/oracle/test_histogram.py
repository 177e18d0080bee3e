"""Log-scale histogram buckets: relative error of percentiles (documented <= 2%, built for 1%) and merging."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.oracle import histogram


def build(values: list[float]) -> dict[int, int]:
    buckets: dict[int, int] = {}
    for value in values:
        index = histogram.bucket_of(value)
        buckets[index] = buckets.get(index, 0) + 1
    return buckets


def exact(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    st.lists(st.floats(min_value=1e-3, max_value=1e7, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_percentile_relative_error_is_within_two_percent(values: list[float], fraction: float) -> None:
    estimate = histogram.percentile(build(values), fraction)
    truth = exact(values, fraction)
    assert estimate is not None
    assert abs(estimate - truth) <= histogram.RELATIVE_ACCURACY * truth * (1 + 1e-9)
    assert histogram.RELATIVE_ACCURACY <= 0.02


@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6), max_size=100), st.lists(st.floats(0, 1e6), max_size=100))
def test_merging_histograms_equals_building_from_all_values(left: list[float], right: list[float]) -> None:
    assert histogram.merge([build(left), build(right)]) == build(left + right)


def test_zero_and_empty() -> None:
    assert histogram.percentile({}, 0.95) is None
    assert histogram.percentile(build([0.0, 0.0, 5.0]), 0.5) == 0.0
    assert histogram.count_above(build([0.0, 10.0, 1000.0]), 500) == 1


def test_a_latency_distribution() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(5.5, 0.6) for _ in range(20_000)]
    buckets = build(values)
    assert len(buckets) < 400  # a real distribution touches a few hundred buckets at most
    for fraction in (0.5, 0.95, 0.99):
        estimate = histogram.percentile(buckets, fraction)
        assert estimate is not None
        assert abs(estimate / exact(values, fraction) - 1) <= 0.01
