"""Mergeable log-scale histograms for percentile metrics (e.g. ``latency_ms`` p95).

A positive value ``x`` falls in bucket ``i = ceil(log(x) / log(gamma))`` with ``gamma = (1 + a) / (1 - a)``,
so bucket ``i`` covers ``(gamma**(i-1), gamma**i]``. The bucket's representative value
``2 * gamma**i / (gamma + 1)`` is within a relative error ``a`` of every value in it (the DDSketch
construction). With ``a = RELATIVE_ACCURACY = 1%`` a percentile read from the buckets is within 1% of a value
the data really holds at that rank, under the issue's 2% budget, whatever the distribution. Zero and negative
values share bucket :data:`ZERO_BUCKET` (latencies are never negative; 0 ms happens).

Buckets are plain ``{index: count}`` maps, so histograms merge by adding counts: per SQS batch, per counter
item in DynamoDB (one number attribute per bucket, updated with ``ADD``), and across hours at evaluation.
A latency from 1 microsecond to 1 day in milliseconds spans about 1,260 buckets; a real cohort touches a few
dozen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LOG_GAMMA = math.log(GAMMA)
ZERO_BUCKET = -(2**31)
"""Bucket of values <= 0 (never reached by a positive value at any realistic scale)."""


def bucket_of(value: float) -> int:
    """The bucket index of ``value``."""
    if value <= 0:
        return ZERO_BUCKET
    return math.ceil(math.log(value) / LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The representative value of a bucket (within :data:`RELATIVE_ACCURACY` of all its values)."""
    if index == ZERO_BUCKET:
        return 0.0
    return 2 * GAMMA**index / (GAMMA + 1)


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """Add bucket counts."""
    merged: dict[int, int] = {}
    for histogram in histograms:
        for index, count in histogram.items():
            merged[index] = merged.get(index, 0) + count
    return merged


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The value at rank ``ceil(fraction * total)`` (the lower nearest-rank percentile); None when empty."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_value(index)
    return bucket_value(max(histogram))  # pragma: no cover - rank <= total always stops the loop


def count_above(histogram: Mapping[int, int], threshold: float) -> int:
    """How many values exceed ``threshold``, read from the buckets (a bucket counts by its representative)."""
    return sum(count for index, count in histogram.items() if bucket_value(index) > threshold)


def count_at_or_above(histogram: Mapping[int, int], line: float, *, surely: bool) -> int:
    """Values at or above ``line`` as far as the buckets tell: ``surely`` counts only the buckets above the one
    holding the line (every value in them is), otherwise also that bucket (it may hold some). For counters
    written before the exact counts existed: each side errs toward INCONCLUSIVE, never toward a verdict."""
    if line <= 0:
        return sum(histogram.values())
    edge = bucket_of(line)  # the bucket holding the line: (GAMMA**(edge-1), GAMMA**edge]
    return sum(count for index, count in histogram.items() if index > edge or (index == edge and not surely))
