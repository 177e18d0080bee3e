"""The small-sample arithmetic of the oracle: Wilson score bounds, sample sizes, and the chi-square test.

Everything here is pure and uses only the standard library (no scipy in the layer):

* :func:`wilson_bounds` gives the one-sided Wilson score bounds of a binomial rate ``k / n``. At confidence
  ``c`` the lower bound is below the true rate with probability about ``c`` (and the upper bound above it);
  unlike the normal ("Wald") interval it stays sensible at ``k = 0`` and small ``n``.
* :func:`log_pass_evidence` and :func:`log_fail_evidence` are the one-sided beta-binomial mixture martingales
  of the verdicts (Robbins; Howard et al. 2021), in closed form through binomial tails (:func:`log_incomplete_beta`);
  :func:`srm_log_evidence` is the always-valid sample-ratio test; :func:`first_total` searches a monotone predicate.
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
    """The smallest ``n >= start`` (up to ``limit``) with ``decides(n)``; ``decides`` must stay true once true."""
    if decides(start):
        return start
    low, high = start, max(start * 2, start + 1)
    while not decides(high):
        if high >= limit:
            return None
        low, high = high, min(limit, high * 2)
    while high - low > 1:  # decides(low) is False, decides(high) is True
        middle = (low + high) // 2
        if decides(middle):
            high = middle
        else:
            low = middle
    return high


# ---- binomial tails and the beta-binomial mixture martingales -------------------------------------------

_TINY = 1e-300
_EPSILON = 3e-16
_MAX_TERMS = 100_000
NEVER = -math.inf
"""A log value meaning "no evidence at all" (a mixture with no mass, a tail that is 0)."""


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta (modified Lentz), for ``x < (a+1)/(a+b+2)``."""
    qab, qap, qam = a + b, a + 1, a - 1
    c = 1.0
    d = 1 - qab * x / qap
    d = 1 / (_TINY if abs(d) < _TINY else d)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (_TINY if abs(d) < _TINY else d)
        c = 1 + aa / c
        c = _TINY if abs(c) < _TINY else c
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (_TINY if abs(d) < _TINY else d)
        c = 1 + aa / c
        c = _TINY if abs(c) < _TINY else c
        delta = d * c
        h *= delta
        if abs(delta - 1) < _EPSILON:
            break
    return h


def _log1mexp(value: float) -> float:
    """``log(1 - exp(value))`` for ``value <= 0`` (NEVER at 0)."""
    if value >= 0:
        return NEVER
    return math.log(-math.expm1(value)) if value > -0.693 else math.log1p(-math.exp(value))


def log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def log_incomplete_beta(a: float, b: float, x: float) -> tuple[float, float]:
    """``(log I_x(a, b), log(1 - I_x(a, b)))``, each accurate in its own tail (a, b > 0, real)."""
    if x <= 0:
        return NEVER, 0.0
    if x >= 1:
        return 0.0, NEVER
    front = a * math.log(x) + b * math.log1p(-x) - log_beta(a, b)
    if x < (a + 1) / (a + b + 2):
        small = front - math.log(a) + math.log(_beta_fraction(a, b, x))
        return small, _log1mexp(min(small, 0.0))
    small = front - math.log(b) + math.log(_beta_fraction(b, a, 1 - x))
    return _log1mexp(min(small, 0.0)), small


def log_binomial_upper_tail(n: float, k: float, p: float) -> float:
    """``log P(Bin(n, p) >= k)``, continued to real ``0 <= k <= n`` as the incomplete beta ``I_p(k, n - k + 1)``."""
    if k <= 0:
        return 0.0
    return log_incomplete_beta(k, n - k + 1, p)[0]


def log_binomial_lower_tail(n: float, k: float, p: float) -> float:
    """``log P(Bin(n, p) <= k)`` (``1 - I_p(k + 1, n - k)``), continued to real ``0 <= k <= n``."""
    if k >= n:
        return 0.0
    return log_incomplete_beta(k + 1, n - k, p)[1]


def _log_mass_between(a: float, b: float, low: float, high: float) -> float:
    """``log(I_high(a, b) - I_low(a, b))`` without cancellation in either tail."""
    low_below, low_above = log_incomplete_beta(a, b, low)
    high_below, high_above = log_incomplete_beta(a, b, high)
    if high_below <= -0.693:  # both small: the lower tails
        return high_below + _log1mexp(min(low_below - high_below, 0.0))
    if low_above <= -0.693:  # both near 1: the upper tails
        return low_above + _log1mexp(min(high_above - low_above, 0.0))
    rest = math.exp(low_below) + math.exp(high_above)
    return math.log1p(-rest) if rest < 1 else NEVER


def log_mixture(n: float, k: float, line: float, low: float, high: float) -> float:
    """``log E_{θ~U[low, high]}[L(θ) / L(line)]``: the uniform beta-binomial mixture of likelihood ratios of ``k``
    bad in ``n`` against a rate of exactly ``line`` (real ``k`` allowed; ``0 < line < 1``, ``0 <= low < high <= 1``).

    In closed form ``(line^-k (1-line)^-(n-k) / (high-low)) B(k+1, n-k+1) (I_high - I_low)(k+1, n-k+1)``: only
    log-gamma and one continued fraction per end, so its cost does not grow with ``n`` away from the line.
    """
    a, b = k + 1, n - k + 1
    mass = _log_mass_between(a, b, low, high)
    if mass == NEVER:
        return NEVER
    return -k * math.log(line) - (n - k) * math.log1p(-line) - math.log(high - low) + log_beta(a, b) + mass


def log_pass_evidence(n: float, k: float, line: float) -> float:
    """log of the PASS martingale: the mixture over U[0, line] (evidence the rate is below ``line``)."""
    return log_mixture(n, k, line, 0.0, line)


def fail_prior(line: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """The two uniform halves of the FAIL mixing prior: ½ U[line, 2·line] + ½ U[line, 1]."""
    return (line, min(1.0, 2 * line)), (line, 1.0)


def log_fail_evidence(n: float, k: float, line: float) -> float:
    """log of the FAIL martingale: ½ U[line, 2·line] + ½ U[line, 1] (evidence the rate is at or above ``line``)."""
    (low1, high1), (low2, high2) = fail_prior(line)
    near = log_mixture(n, k, line, low1, high1)
    far = near if high1 == high2 else log_mixture(n, k, line, low2, high2)
    top = max(near, far)
    if top == NEVER:
        return NEVER
    return top + math.log(0.5 * math.exp(near - top) + 0.5 * math.exp(far - top))


def first_total(decides: Callable[[int], bool], n: int, limit: int = 1_000_000_000) -> int | None:
    """More events until ``decides(total)`` holds (0 if it holds at ``n``), None beyond ``limit`` events."""
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


SRM_CONCENTRATION = 100.0
"""The Dirichlet prior's total weight in :func:`srm_log_evidence` (its mean is the intended split)."""


def srm_log_evidence(
    observed: Mapping[str, int], intended: Mapping[str, float], concentration: float = SRM_CONCENTRATION
) -> float | None:
    """log of the always-valid sample-ratio evidence (Lindon & Malek's Dirichlet-multinomial mixture).

    ``E = B(c·p + counts) / B(c·p) / Π p_i^counts_i``, the Dirichlet(c·p) mixture of multinomial likelihood
    ratios against the intended shares ``p``: a martingale while users arrive on the intended split, so it ever
    reaches ``1/alpha`` with probability at most ``alpha`` however often it is checked. ``inf`` when a treatment
    with no intended share was observed; None when nothing was observed or fewer than two shares are positive.
    """
    total = sum(observed.values())
    weight = sum(share for share in intended.values() if share > 0)
    if total <= 0 or weight <= 0:
        return None
    if any(count > 0 and intended.get(name, 0) <= 0 for name, count in observed.items()):
        return math.inf
    shares = {name: share / weight for name, share in intended.items() if share > 0}
    if len(shares) < 2:
        return None
    evidence = math.lgamma(concentration) - math.lgamma(concentration + total)
    for name, share in shares.items():
        count = observed.get(name, 0)
        prior = concentration * share
        evidence += math.lgamma(prior + count) - math.lgamma(prior) - count * math.log(share)
    return evidence
