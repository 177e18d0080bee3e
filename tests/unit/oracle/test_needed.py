""" "About N more events": the first total at which the observed rate decides, found by a correct search.

The rule before bisected a predicate that is not monotone (``round(rate * total)`` bad events): ``3`` bad in
``20`` said 11 more where 4 decide, and 98 of 926 states were off, up to 8x. Now the bad count stays real
(``rate * total``), the predicate is monotone (a convex log-Laplace transform, see
:func:`flagbridge.oracle.judge.events_to_decide`), and these tests hold the search to brute force: for every
undecided state up to n = 500 the answer is the *first* deciding total (it decides, the total before does not),
and for small n it equals a linear scan from the state.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from flagbridge.oracle.judge import Metric, decides_fail, decides_pass, events_to_decide
from tests.unit.oracle.exact import fail_thresholds, metric, pass_thresholds, shipped

RATE, LATENCY = shipped()
FIXED = metric(0.01, 0.05, decision="fixed")


def decides(judged: Metric, n: int, k: int, total: int) -> bool:
    """The predicate "about N more" is defined by: the observed rate, kept real, decides at ``total`` events."""
    pass_line = judged.tail if judged.type == "percentile" else judged.pass_below  # type: ignore[union-attr]
    fail_line = judged.tail if judged.type == "percentile" else judged.fail_at  # type: ignore[union-attr]
    rate = k / n if n else 0.0
    final = judged.decision == "fixed"
    if rate < pass_line:
        return decides_pass(judged, total, rate * total, final=final)
    if rate > fail_line:
        return decides_fail(judged, total, rate * total, final=final)
    return False


def undecided_rates(judged: Metric, largest: int) -> dict[Fraction, int]:
    """Each distinct observed rate of the undecided states with n <= ``largest``, with its smallest such n (the
    answer only depends on the rate once the state is given, so one n per rate checks every state)."""
    fails, passes = fail_thresholds(judged, largest), pass_thresholds(judged, largest)
    rates: dict[Fraction, int] = {}
    for n in range(1, largest + 1):
        for k in range(passes[n] + 1, min(fails[n], n + 1)):  # neither PASS (k <= passes[n]) nor FAIL
            rates.setdefault(Fraction(k, n), n)
    return rates


def test_the_audits_reproduction() -> None:
    # 3 bad in 20 (15%): the old bisection said 11 more, 4 decided. The search now equals the scan.
    more = events_to_decide(RATE, 20, 3)
    assert more is not None
    scan = next(total for total in range(20, 100_000) if decides(RATE, 20, 3, total)) - 20
    assert more == scan


@pytest.mark.parametrize(("judged", "largest"), [(RATE, 500), (FIXED, 200)], ids=["sequential", "fixed"])
def test_every_state_up_to_500_gets_the_first_deciding_total(judged: Metric, largest: int) -> None:
    checked = 0
    for rate, n in undecided_rates(judged, largest).items():
        k = int(rate * n)
        more = events_to_decide(judged, n, k)
        pass_line, fail_line = judged.pass_below, judged.fail_at
        if more is None:
            assert pass_line <= rate <= fail_line or not decides(judged, n, k, 1_000_000_000), (n, k)
            continue
        total = n + more
        assert decides(judged, n, k, total), (n, k, more)
        assert more == 0 or not decides(judged, n, k, total - 1), (n, k, more)
        checked += 1
    assert checked > 500


@pytest.mark.parametrize("judged", [RATE, FIXED], ids=["sequential", "fixed"])
def test_small_states_equal_a_linear_scan(judged: Metric) -> None:
    for rate, n in undecided_rates(judged, 40).items():
        k = int(rate * n)
        more = events_to_decide(judged, n, k)
        scan = next((total for total in range(n, n + 3_000) if decides(judged, n, k, total)), None)
        if scan is not None:
            assert more == scan - n, (n, k)
        else:
            assert more is None or more >= 3_000, (n, k)


def test_a_percentile_uses_each_line_share() -> None:
    # 2 of 100 at/above 500 ms (2% < 5%): passes with more events; 9 of 100 at/above 1000 ms: fails with more
    assert events_to_decide(LATENCY, 100, 0, 0) == 200  # min_samples 300 decides first
    assert events_to_decide(LATENCY, 100, 2, 0) == 372
    more = events_to_decide(LATENCY, 100, 20, 9)
    assert more is not None and more > 0
    assert events_to_decide(LATENCY, 100, 20, 4) is None  # 20% at/above 500, 4% at/above 1000: between lines
    assert events_to_decide(RATE, 0, 0) == 644  # nothing yet: a clean cohort's events
