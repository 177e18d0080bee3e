"""The mutation frequency each element must show, exactly, once the caps are applied.

How a case picks its mutations (:mod:`flagbridge.traffic.generator`):

1. every element *i* of the request fires independently with its probability ``p_i``;
2. a fired element asks for ``K_i`` attacks, uniform over ``1 .. min(max_attacks_i, units_i)``
   (units: the segments of a path, the values of a query line, 1 for a header value);
3. the fired elements are put in a uniformly random order and served greedily from the request's
   budget ``M`` (``max_attacks`` of the request): each gets ``min(K_i, remaining)`` attacks while
   anything remains, and nothing once the budget is spent.

So element *i* is mutated when it fires and the attacks of the fired elements before it sum to less
than ``M``. The request cap therefore lowers every element's marginal frequency below ``p_i``, by an
amount that depends on all the other elements. A uniformly random order is the order of i.i.d.
uniform keys; given its own key ``u``, each other element *j* is independently "fired and before *i*"
with probability ``p_j·u``. Hence, exactly::

    P(i mutated) = p_i · ∫₀¹ P( Σ_{j≠i} B_j(u)·K_j ≤ M-1 ) du,     B_j(u) ~ Bernoulli(p_j·u)

The integrand is a polynomial in ``u`` of degree ≤ n-1 (n elements), so Gauss-Legendre quadrature
with ⌈n/2⌉+1 nodes integrates it exactly (to rounding); the inner probability is a dynamic programme
over the attack sum, capped at ``M``. The expected number of attacks on *i* uses the same
distribution: ``E = p_i · ∫ Σ_s P(S=s | u) · E[min(K_i, M-s)] du``.

:func:`binomial_bounds` gives the two-sided 99.9% acceptance interval the tests hold observed counts to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class SiteOdds:
    """One element: its firing probability and the distribution of attacks it asks for (``P(K=1), P(K=2), …``)."""

    probability: float
    attack_counts: tuple[float, ...] = (1.0,)


@dataclass(frozen=True, slots=True)
class SiteRate:
    """The exact marginal frequency of an element being mutated, and its expected attacks, per request."""

    mutated: float
    attacks: float


def uniform_counts(max_attacks: int, units: int) -> tuple[float, ...]:
    """``K`` uniform over ``1 .. min(max_attacks, units)``."""
    top = max(1, min(max_attacks, units))
    return tuple(1.0 / top for _ in range(top))


@lru_cache(maxsize=64)
def gauss_legendre(nodes: int) -> tuple[tuple[float, float], ...]:
    """Nodes and weights of Gauss-Legendre quadrature on [0, 1] (exact for polynomials of degree < 2·nodes)."""
    points = []
    for index in range(1, nodes + 1):
        x = math.cos(math.pi * (index - 0.25) / (nodes + 0.5))
        for _ in range(100):
            p0, p1 = 1.0, x
            for k in range(2, nodes + 1):
                p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
            derivative = nodes * (x * p1 - p0) / (x * x - 1)
            step = p1 / derivative
            x -= step
            if abs(step) < 1e-15:
                break
        p0, p1 = 1.0, x
        for k in range(2, nodes + 1):
            p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
        derivative = nodes * (x * p1 - p0) / (x * x - 1)
        weight = 2.0 / ((1 - x * x) * derivative * derivative)
        points.append(((x + 1) / 2, weight / 2))
    return tuple(points)


def _sum_distribution(others: Sequence[SiteOdds], u: float, cap: int) -> list[float]:
    """P(S = s) for s < cap, S the attacks of the other elements that fired before key ``u``."""
    dist = [0.0] * cap
    dist[0] = 1.0
    for site in others:
        fire = site.probability * u
        if fire <= 0.0:
            continue
        new = [value * (1.0 - fire) for value in dist]
        for s, value in enumerate(dist):
            if value == 0.0:
                continue
            for k, share in enumerate(site.attack_counts, start=1):
                if s + k < cap:
                    new[s + k] += value * fire * share
        dist = new
    return dist


def mutation_rates(sites: Sequence[SiteOdds], cap: int | None) -> list[SiteRate]:
    """The exact per-request frequency of each element being mutated, under the request cap ``cap``."""
    if cap is None:
        return [
            SiteRate(site.probability, site.probability * sum(k * q for k, q in enumerate(site.attack_counts, 1)))
            for site in sites
        ]
    active = [index for index, site in enumerate(sites) if site.probability > 0]
    nodes = gauss_legendre(len(active) // 2 + 2)
    rates = [SiteRate(0.0, 0.0)] * len(sites)
    for index in active:
        site = sites[index]
        others = [sites[j] for j in active if j != index]
        reach = 0.0
        attacks = 0.0
        for u, weight in nodes:
            dist = _sum_distribution(others, u, cap)
            reach += weight * sum(dist)
            attacks += weight * sum(
                value * sum(min(k, cap - s) * q for k, q in enumerate(site.attack_counts, 1))
                for s, value in enumerate(dist)
            )
        rates[index] = SiteRate(site.probability * reach, site.probability * attacks)
    return rates


def _log_pmf(n: int, p: float, k: int) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def binomial_bounds(n: int, p: float, confidence: float = 0.999) -> tuple[int, int]:
    """The central ``confidence`` interval of Binomial(n, p): ``[low, high]`` with tail mass ≤ (1-c)/2 each side."""
    tail = (1.0 - confidence) / 2
    cumulative = 0.0
    low = 0
    for k in range(n + 1):
        cumulative += math.exp(_log_pmf(n, p, k))
        if cumulative > tail:
            low = k
            break
    cumulative = 0.0
    high = n
    for k in range(n, -1, -1):
        cumulative += math.exp(_log_pmf(n, p, k))
        if cumulative > tail:
            high = k
            break
    return low, high
