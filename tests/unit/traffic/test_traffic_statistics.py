"""Statistically honest: observed mutation frequencies, caps and frozen elements over 10,000 cases.

Bounds: for every element, the number of cases (of its route) in which it was mutated must lie in the
central 99.9% interval of Binomial(n, r), where r is the exact marginal frequency under the caps
(:func:`flagbridge.traffic.stats.mutation_rates`, itself checked against brute-force enumeration below).
The seeds are fixed, so each test is deterministic: it either holds for these 10,000 cases or not.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict

import pytest

from flagbridge.traffic.generator import TrafficGenerator
from flagbridge.traffic.model import RequestModel
from flagbridge.traffic.plan import TrafficPlan
from flagbridge.traffic.stats import SiteOdds, binomial_bounds, mutation_rates
from tests.unit.traffic.conftest import RUN_TAG, make_generator

CASES = 10_000


def brute_force_rates(sites: list[SiteOdds], cap: int) -> list[float]:
    """Exact P(mutated) by enumerating every firing pattern, order and attack count (small n only)."""
    n = len(sites)
    rates = [0.0] * n
    for pattern in itertools.product([False, True], repeat=n):
        p_pattern = math.prod(s.probability if f else 1 - s.probability for s, f in zip(sites, pattern, strict=True))
        fired = [i for i in range(n) if pattern[i]]
        if not fired or p_pattern == 0:
            continue
        orders = list(itertools.permutations(fired))
        for order in orders:
            for counts in itertools.product(*[range(1, len(sites[i].attack_counts) + 1) for i in order]):
                p_counts = math.prod(sites[i].attack_counts[k - 1] for i, k in zip(order, counts, strict=True))
                remaining = cap
                for i, k in zip(order, counts, strict=True):
                    if remaining <= 0:
                        break
                    rates[i] += p_pattern * p_counts / len(orders)
                    remaining -= min(k, remaining)
    return rates


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_exact_rates_match_brute_force_enumeration(cap: int) -> None:
    sites = [
        SiteOdds(0.05),
        SiteOdds(0.5, (0.5, 0.5)),
        SiteOdds(0.25),
        SiteOdds(0.9, (1 / 3, 1 / 3, 1 / 3)),
        SiteOdds(0.1, (0.5, 0.5)),
    ]
    exact = [rate.mutated for rate in mutation_rates(sites, cap)]
    assert exact == pytest.approx(brute_force_rates(sites, cap), abs=1e-12)
    # the cap lowers every marginal below its probability
    assert all(rate <= site.probability + 1e-15 for rate, site in zip(exact, sites, strict=True))


def test_no_cap_means_the_probability_itself() -> None:
    sites = [SiteOdds(0.3), SiteOdds(0.7, (0.5, 0.5))]
    assert [rate.mutated for rate in mutation_rates(sites, None)] == [0.3, 0.7]


def test_binomial_bounds_are_the_central_interval() -> None:
    low, high = binomial_bounds(10_000, 0.05)
    # normal approximation: 500 +- 3.29 * sqrt(475) = 500 +- 71.7
    assert 425 <= low <= 431 and 569 <= high <= 575
    assert binomial_bounds(100, 0.0) == (0, 0)


def run_cases(generator: TrafficGenerator, count: int = CASES) -> list:
    return [generator.case(index) for index in range(count)]


@pytest.fixture(scope="module")
def published_run(published_plan: TrafficPlan, model: RequestModel) -> tuple[TrafficGenerator, list]:
    generator = make_generator(published_plan, model, seed=20260701)
    return generator, run_cases(generator)


@pytest.fixture(scope="module")
def body_run(body_plan: TrafficPlan, model: RequestModel) -> tuple[TrafficGenerator, list]:
    generator = make_generator(body_plan, model, seed=424242)
    return generator, run_cases(generator)


def assert_frequencies_hold(generator: TrafficGenerator, cases: list) -> int:
    per_route = Counter(case.route for case in cases)
    mutated: dict[tuple[str, str], int] = defaultdict(int)
    for case in cases:
        for element in {mutation.element for mutation in case.mutations}:
            mutated[(case.route, element)] += 1
    checked = 0
    failures = []
    for route, n in per_route.items():
        for element, rate in generator.expected_rates(route).items():
            low, high = binomial_bounds(n, rate.mutated)
            observed = mutated[(route, element)]
            checked += 1
            if not low <= observed <= high:
                failures.append(
                    f"{route} {element}: {observed}/{n}, expected {rate.mutated * n:.1f} in [{low}, {high}]"
                )
        unexpected = {e for (r, e) in mutated if r == route} - set(generator.expected_rates(route))
        assert not unexpected, f"mutated elements the plan does not name: {unexpected}"
    assert not failures, "\n".join(failures)
    # and the routes follow their weights
    total = sum(request.weight for request in generator.model.requests)
    for request in generator.model.requests:
        low, high = binomial_bounds(len(cases), request.weight / total)
        assert low <= per_route[request.name] <= high
    return checked


def test_published_plan_frequencies_are_within_binomial_bounds(published_run: tuple[TrafficGenerator, list]) -> None:
    generator, cases = published_run
    checked = assert_frequencies_hold(generator, cases)
    assert checked >= 20
    # the headline figures of the published plan, before the cap: Method 5%, Path 10%, QueryLine 50%
    rates = generator.expected_rates("upload_events")
    assert rates["method"].mutated < 0.05 and rates["query"].mutated < 0.5
    assert "headers.Authorization.key" not in rates  # KeyChance 0%: frozen
    assert rates["headers.Authorization.value"].mutated < 0.10


def test_body_plan_frequencies_are_within_binomial_bounds(body_run: tuple[TrafficGenerator, list]) -> None:
    generator, cases = body_run
    assert assert_frequencies_hold(generator, cases) >= 25


@pytest.mark.parametrize("run_name", ["published_run", "body_run"])
def test_caps_are_never_exceeded(run_name: str, request: pytest.FixtureRequest) -> None:
    generator, cases = request.getfixturevalue(run_name)
    cap = generator.plan.max_attacks
    assert cap == 3
    seen_full = 0
    for case in cases:
        assert len(case.mutations) <= cap
        seen_full += len(case.mutations) == cap
        per_element = Counter(mutation.element for mutation in case.mutations)
        sites = {site.element: site for site in generator.sites(case.route)}
        for element, count in per_element.items():
            assert count <= min(sites[element].max_attacks, len(sites[element].units))
        units = [mutation.unit for mutation in case.mutations]
        assert len(units) == len(set(units)), "a unit was attacked twice in one case"
    assert seen_full > 100  # the cap is actually reached, so the test can fail


@pytest.mark.parametrize("run_name", ["published_run", "body_run"])
def test_frozen_elements_are_never_changed(run_name: str, request: pytest.FixtureRequest) -> None:
    _, cases = request.getfixturevalue(run_name)
    for case in cases:
        wire = case.request
        elements = {mutation.element for mutation in case.mutations}
        # Host 0% and the Authorization name 0%: never mutated
        assert "host" not in elements and "headers.Authorization.key" not in elements
        assert wire.header("Host") == b"127.0.0.1:8080"
        # the run tag is always there, signed for this case
        tag = wire.header("X-Flagbridge-Run")
        assert tag is not None and RUN_TAG.verify(tag.decode()) == ("run-unit", case.case_id)
        # the tester identity, in headers and body, is exactly the case's tester
        assert not any("X-Tester" in element or "user_identities" in element for element in elements)
        if case.route == "upload_events":
            assert wire.header("X-Tester") == case.tester.key.encode()
            body = json.loads(wire.body)
            assert body["user_identities"] == {"customer_id": case.tester.key, "email": case.tester.email}
        else:
            assert json.loads(wire.body)[0]["user_identities"] == {"customer_id": case.tester.key}


def test_body_plan_asks_to_mutate_the_tester_but_cannot(body_plan: TrafficPlan, model: RequestModel) -> None:
    generator = make_generator(body_plan, model)
    elements = {site.element for route in ("upload_events", "bulk_events") for site in generator.sites(route)}
    assert not any("X-Tester" in element or "user_identities" in element for element in elements)
    assert "body:/environment" in elements  # a sibling of the tester is still mutable
