"""Wilson bounds, binomial tails, the mixture martingales, "about N more" and the chi-square and SRM tests."""

from __future__ import annotations

import math

import pytest

from flagbridge.oracle.stats import (
    chi_square_sf,
    log_binomial_lower_tail,
    log_binomial_upper_tail,
    log_fail_evidence,
    log_mixture,
    log_pass_evidence,
    srm_log_evidence,
    srm_p_value,
    wilson_bounds,
    z_for,
)

Z95, Z99 = z_for(0.95), z_for(0.99)


def test_z_values() -> None:
    assert pytest.approx(1.6449, abs=1e-4) == Z95
    assert pytest.approx(2.3263, abs=1e-4) == Z99
    with pytest.raises(ValueError):
        z_for(0.5)
    with pytest.raises(ValueError):
        z_for(1.0)


def test_wilson_matches_the_reference_arithmetic() -> None:
    # testing-loop.md: 1 error in 20, two-sided 95% (z 1.96) -> 0.9%..23.6%
    lower, upper = wilson_bounds(1, 20, 1.96)
    assert (round(lower, 3), round(upper, 3)) == (0.009, 0.236)
    # 268 clean requests show < 1% at one-sided 95%; 267 do not
    assert wilson_bounds(0, 268, Z95)[1] < 0.01 <= wilson_bounds(0, 267, Z95)[1]
    # errors needed for a lower bound above 5%: n=20 -> 3, n=100 -> 9, n=1000 -> 62
    for n, errors in ((20, 3), (100, 9), (1000, 62)):
        assert wilson_bounds(errors, n, Z95)[0] > 0.05 >= wilson_bounds(errors - 1, n, Z95)[0]


def test_wilson_edges() -> None:
    assert wilson_bounds(0, 0, Z95) == (0.0, 1.0)
    assert wilson_bounds(0, 10, Z95)[0] == 0.0
    assert wilson_bounds(10, 10, Z95)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_bounds(11, 10, Z95)


def _upper_tail(n: int, k: int, p: float) -> float:
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


@pytest.mark.parametrize("n", [1, 2, 5, 17, 60, 300, 1000])
@pytest.mark.parametrize("p", [0.001, 0.01, 0.05, 0.3, 0.9])
def test_binomial_tails_against_direct_sums(n: int, p: float) -> None:
    for k in sorted({0, 1, 2, n // 100, n // 20, n // 2, n - 1, n} & set(range(n + 1))):
        exact_upper = _upper_tail(n, k, p)
        exact_lower = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k + 1))
        upper, lower = math.exp(log_binomial_upper_tail(n, k, p)), math.exp(log_binomial_lower_tail(n, k, p))
        assert upper == pytest.approx(exact_upper, rel=1e-9, abs=1e-200)  # the direct sum underflows below
        assert lower == pytest.approx(exact_lower, rel=1e-9, abs=1e-200)


def _quadrature(n: int, k: int, line: float, low: float, high: float, nodes: int = 4000) -> float:
    """log of the mixture by Simpson's rule in log space (a reference independent of the closed form)."""
    step = (high - low) / nodes
    logs = []
    for i in range(nodes + 1):
        theta = min(max(low + i * step, 1e-300), 1 - 1e-16)
        weight = 1 if i in (0, nodes) else (4 if i % 2 else 2)
        logs.append(math.log(weight) + k * math.log(theta / line) + (n - k) * math.log((1 - theta) / (1 - line)))
    top = max(logs)
    return top + math.log(sum(math.exp(v - top) for v in logs) * step / 3 / (high - low))


@pytest.mark.parametrize(("n", "k"), [(0, 0), (10, 0), (10, 10), (20, 3), (100, 5), (600, 48), (1500, 3)])
def test_the_closed_forms_against_quadrature(n: int, k: int) -> None:
    assert log_pass_evidence(n, k, 0.01) == pytest.approx(_quadrature(n, k, 0.01, 0, 0.01), abs=1e-6)
    assert log_mixture(n, k, 0.05, 0.05, 0.1) == pytest.approx(_quadrature(n, k, 0.05, 0.05, 0.1), abs=1e-6)
    near, far = _quadrature(n, k, 0.05, 0.05, 0.1), _quadrature(n, k, 0.05, 0.05, 1.0, 40_000)
    mixed = math.log(0.5 * math.exp(near) + 0.5 * math.exp(far))
    assert log_fail_evidence(n, k, 0.05) == pytest.approx(mixed, abs=1e-4)


def test_the_martingales_are_robust_at_the_edges() -> None:
    assert log_pass_evidence(0, 0, 0.01) == pytest.approx(0.0, abs=1e-12)  # nothing seen: evidence 1
    assert log_fail_evidence(0, 0, 0.05) == pytest.approx(0.0, abs=1e-12)
    assert log_fail_evidence(3, 3, 0.05) > math.log(100)  # all bad: FAIL at 3 (min_failures)
    for n in (1e6, 1e9):
        clean, all_bad = log_pass_evidence(n, 0, 0.01), log_fail_evidence(n, n, 0.05)
        assert math.isfinite(clean) and clean > 1000 and math.isfinite(all_bad) and all_bad > 1000
        assert log_pass_evidence(n, n, 0.01) == pytest.approx(-math.log(n + 1))  # ∫ (θ/f)^n dθ/f = 1/(n+1)
        assert log_fail_evidence(n, 0, 0.05) < -10  # polynomial in n: the mixture reaches down to the line
        on_the_line = log_pass_evidence(n, n * 0.01, 0.01)
        assert math.isfinite(on_the_line) and on_the_line < 0  # at the line: no evidence, none ever
    # monotone in k: more bad events, more FAIL evidence and less PASS evidence
    fails = [log_fail_evidence(500, k, 0.05) for k in range(0, 501, 5)]
    passes = [log_pass_evidence(500, k, 0.01) for k in range(0, 501, 5)]
    assert fails == sorted(fails) and passes == sorted(passes, reverse=True)


def test_chi_square_survival_function() -> None:
    assert chi_square_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    assert chi_square_sf(10.0, 5) == pytest.approx(0.07523524614651217, rel=1e-9)
    assert chi_square_sf(2.0, 2) == pytest.approx(math.exp(-1.0), rel=1e-12)  # df 2: exp(-x/2)
    assert chi_square_sf(0.0, 3) == 1.0
    assert chi_square_sf(1000.0, 3) < 1e-200
    with pytest.raises(ValueError):
        chi_square_sf(1.0, 0)


def test_srm_against_the_reference_examples() -> None:
    assert srm_p_value({"on": 5200, "off": 4800}, {"on": 50, "off": 50}) == pytest.approx(6.33e-5, rel=1e-2)
    assert srm_p_value({"on": 5100, "off": 4900}, {"on": 0.5, "off": 0.5}) == pytest.approx(0.0455, rel=1e-2)
    assert srm_p_value({"on": 0, "off": 0}, {"on": 50, "off": 50}) is None
    assert srm_p_value({"on": 10, "other": 1}, {"on": 50, "off": 50}) == 0.0
    three = srm_p_value({"a": 330, "b": 340, "c": 330}, {"a": 1, "b": 1, "c": 1})
    assert three is not None and three > 0.5


def test_the_sequential_srm_evidence() -> None:
    assert srm_log_evidence({"on": 0, "off": 0}, {"on": 50, "off": 50}) is None
    assert srm_log_evidence({"on": 10, "other": 1}, {"on": 50, "off": 50}) == math.inf
    balanced = srm_log_evidence({"on": 5000, "off": 5000}, {"on": 50, "off": 50})
    off_split = srm_log_evidence({"on": 5300, "off": 4700}, {"on": 50, "off": 50})
    slightly = srm_log_evidence({"on": 5200, "off": 4800}, {"on": 50, "off": 50})
    assert balanced is not None and balanced < 0
    assert off_split is not None and off_split > math.log(1000)
    # the price of validity at every look: 52/48 of 10,000 (chi-square p = 6e-5 at one look) is not yet flagged
    assert slightly is not None and math.log(100) < slightly < math.log(1000)
    # one user: the Dirichlet(c p) mixture's predictive probability is the intended share itself
    assert srm_log_evidence({"on": 1, "off": 0}, {"on": 30, "off": 70}) == pytest.approx(0.0, abs=1e-12)
