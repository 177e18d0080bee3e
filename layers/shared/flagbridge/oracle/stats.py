"""The small-sample arithmetic of the oracle: Wilson score bounds, sample sizes, and the chi-square test.

Everything here is pure and uses only the standard library (no scipy in the layer):

* :func:`wilson_bounds` gives the one-sided Wilson score bounds of a binomial rate ``k / n``. At confidence
  ``c`` the lower bound is below the true rate with probability about ``c`` (and the upper bound above it);
  unlike the normal ("Wald") interval it stays sensible at ``k = 0`` and small ``n``.
* :func:`needed_to_pass` and :func:`needed_to_fail` answer "about how many more events would decide this?",
  assuming the observed rate holds.
* :func:`chi_square_sf` is the survival function of the chi-square distribution (the regularised upper
  incomplete gamma function, by its series or its continued fraction); :func:`srm_p_value` uses it for the
  sample-ratio-mismatch check of observed exposures against an intended split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from statistics import NormalDist

_STANDARD_NORMAL = NormalDist()


def z_for(confidence: float) -> float:
    """The one-sided standard normal quantile of ``confidence`` (0.95 -> 1.645, 0.99 -> 2.326)."""
    if not 0.5 < confidence < 1:
        raise ValueError("confidence must be between 0.5 and 1 (exclusive)")
    return _STANDARD_NORMAL.inv_cdf(confidence)


def wilson_bounds(k: int, n: int, z: float) -> tuple[float, float]:
    """One-sided Wilson score bounds ``(lower, upper)`` of the rate ``k / n`` at normal quantile ``z``.

    ``n == 0`` gives ``(0.0, 1.0)``: nothing is known.
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError("k must lie between 0 and n")
    rate = k / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (rate + z2 / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _smallest_n(decides: Callable[[int], bool], start: int, limit: int) -> int | None:
    """The smallest ``n >= start`` (up to ``limit``) with ``decides(n)``, assuming it stays true once true."""
    if decides(start):
        return start
    high = max(start * 2, start + 1)
    while not decides(high):
        if high >= limit:
            return None
        high = min(limit, high * 2)
    low = start  # decides(low) is False, decides(high) is True
    while high - low > 1:
        middle = (low + high) // 2
        if decides(middle):
            high = middle
        else:
            low = middle
    return high


def needed_to_pass(k: int, n: int, line: float, z: float, min_samples: int, limit: int = 100_000_000) -> int | None:
    """More events (at the observed rate; 0 with no events) until the upper bound is below ``line``."""
    rate = k / n if n else 0.0
    if rate >= line:
        return None

    def decides(total: int) -> bool:
        return total >= min_samples and wilson_bounds(round(rate * total), total, z)[1] < line

    total = _smallest_n(decides, max(n, 1), limit)
    return None if total is None else max(0, total - n)


def needed_to_fail(k: int, n: int, line: float, z: float, min_failures: int, limit: int = 100_000_000) -> int | None:
    """More events (at the observed rate) until the lower bound reaches ``line`` with ``min_failures`` bad."""
    rate = k / n if n else 0.0
    if rate < line or rate == 0:
        return None

    def decides(total: int) -> bool:
        bad = round(rate * total)
        return bad >= min_failures and wilson_bounds(bad, total, z)[0] >= line

    total = _smallest_n(decides, max(n, 1), limit)
    return None if total is None else max(0, total - n)


def _lower_regularised_gamma_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    denominator = a
    for _ in range(10_000):
        denominator += 1
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * 1e-15:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _upper_regularised_gamma_fraction(a: float, x: float) -> float:
    # Lentz's method on the continued fraction of Q(a, x), good for x >= a + 1.
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return h * math.exp(-x + a * math.log(x) - math.lgamma(a))


def chi_square_sf(statistic: float, degrees_of_freedom: int) -> float:
    """P(X >= statistic) for X chi-square distributed with ``degrees_of_freedom`` (the test's p-value)."""
    if degrees_of_freedom < 1:
        raise ValueError("degrees_of_freedom must be at least 1")
    if statistic <= 0:
        return 1.0
    a, x = degrees_of_freedom / 2, statistic / 2
    if x < a + 1:
        return max(0.0, 1.0 - _lower_regularised_gamma_series(a, x))
    return min(1.0, _upper_regularised_gamma_fraction(a, x))


def srm_p_value(observed: Mapping[str, int], intended: Mapping[str, float]) -> float | None:
    """Chi-square goodness-of-fit p-value of observed counts per treatment against an intended split.

    ``intended`` holds weights per treatment (percentages or fractions); treatments observed but not
    intended count against an expected 0 and make the p-value 0. None when nothing was observed.
    """
    total = sum(observed.values())
    weight = sum(intended.values())
    if total <= 0 or weight <= 0:
        return None
    if any(count > 0 and intended.get(name, 0) <= 0 for name, count in observed.items()):
        return 0.0
    statistic = 0.0
    cells = 0
    for name, share in intended.items():
        if share <= 0:
            continue
        expected = total * share / weight
        statistic += (observed.get(name, 0) - expected) ** 2 / expected
        cells += 1
    if cells < 2:
        return None
    return chi_square_sf(statistic, cells - 1)
