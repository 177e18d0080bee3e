"""Wilson bounds, sample sizes and the chi-square test against the reference's computed figures."""

from __future__ import annotations

import math

import pytest

from flagbridge.oracle.stats import (
    chi_square_sf,
    needed_to_fail,
    needed_to_pass,
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


def test_needed_to_pass_and_fail() -> None:
    assert needed_to_pass(0, 0, 0.01, Z95, 300) == 300  # min_samples dominates 268
    assert needed_to_pass(0, 0, 0.01, Z99, 300) == 536  # the reference: 0 errors pass at n >= 536 at z 2.326
    assert needed_to_pass(0, 500, 0.01, Z99, 300) == 36
    assert needed_to_pass(2, 100, 0.01, Z95, 300) is None  # observed 2% is above the pass line
    more = needed_to_fail(2, 20, 0.05, Z95, 3)
    assert more is not None and wilson_bounds(round(0.1 * (20 + more)), 20 + more, Z95)[0] >= 0.05
    assert needed_to_fail(1, 100, 0.05, Z95, 3) is None


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
