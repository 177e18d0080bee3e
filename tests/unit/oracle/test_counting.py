"""Counting lane messages: cohort, attribution by attribute and by assignment history, invalid and unattributed."""

from __future__ import annotations

import json
from typing import Any

from flagbridge.oracle.config import parse_oracle_config
from flagbridge.oracle.counting import (
    HOUR_MS,
    KILLED,
    UNATTRIBUTED,
    Counter,
    CounterKey,
    assignment_at,
    merge_contributions,
)
from flagbridge.profiles.model import Assignment, FlagState

T0 = 1_767_225_600_000  # an hour boundary
TRAFFIC_TYPES = {"customer_id": ["user"]}


def config(**test: Any) -> Any:
    return parse_oracle_config(
        {"tests": [{"name": "checkout", "flag": "new_checkout", "environment": "Production", **test}]}
    )


def request(status: Any, latency: Any = 120, at: int = T0 + 1000, **extra: Any) -> dict[str, Any]:
    attributes = {"status": status, "latency_ms": latency, **extra}
    return {
        "event_type": "custom_event",
        "data": {"event_name": "flagbridge_test_request", "custom_event_type": "other",
                 "timestamp_unixtime_ms": at, "custom_attributes": attributes},
    }  # fmt: skip


def message(events: list[dict[str, Any]], user: str = "qa-1", tester: bool = True, key: str = "srid:1") -> str:
    batch = {"environment": "production", "user_identities": {"customer_id": user}, "events": events}
    return json.dumps({"v": 1, "destination": "oracle", "type": "oracle", "batch_key": key,
                       "test_user": tester, "batch": batch})  # fmt: skip


def state(*assignments: tuple[str, int, int, int, str | None], environment: str = "Production") -> FlagState:
    history = tuple(Assignment(t, label, v, environment, first, last, 1) for t, v, first, last, label in assignments)
    newest = max(history, key=lambda a: a.last_seen)
    return FlagState(
        traffic_type="user", key="qa-1", identity_type="customer_id", flag="new_checkout", treatment=newest.treatment,
        label=newest.label, version=newest.version, environment=environment, environment_id="env-1",
        current_time=newest.last_seen, first_seen=min(a.first_seen for a in history),
        last_seen=newest.last_seen, exposures=len(history), assignments=history,
    )  # fmt: skip


def lookup(states: dict[str, FlagState]) -> Any:
    return lambda user, flag: states.get(user) if flag == "new_checkout" else None


def test_assignment_at_uses_the_history() -> None:
    profile = state(("on", 1, T0, T0 + 100, "rule"), ("off", 2, T0 + 200, T0 + 300, "rule"))
    assert assignment_at(profile, "Production", T0 + 50) == ("on", 1, "rule")
    assert assignment_at(profile, "Production", T0 + 150) == ("on", 1, "rule")  # last seen before
    assert assignment_at(profile, "Production", T0 + 250) == ("off", 2, "rule")
    assert assignment_at(profile, "Production", T0 + 10_000) == ("off", 2, "rule")
    assert assignment_at(profile, "Production", T0 - 1) is None  # not exposed yet
    assert assignment_at(profile, "Staging", T0 + 50) is None
    assert assignment_at(profile, "env-1", T0 + 50) == ("on", 1, "rule")  # environment id


def test_rate_and_percentile_counts_by_profile_treatment() -> None:
    counter = Counter(config(), TRAFFIC_TYPES)
    body = message([request(200, 100), request(503, 900), request("500", "2000"), request(200, "slow")])
    contribution = counter.count(counter.parse(body), lookup({"user#qa-1": state(("on", 7, T0, T0, None))}), T0)
    rate = contribution.deltas[CounterKey("checkout", T0, 7, "on", "5xx rate")]
    latency = contribution.deltas[CounterKey("checkout", T0, 7, "on", "latency p95")]
    assert (rate.n, rate.k, rate.invalid) == (4, 2, 0)
    assert (latency.n, latency.invalid, sum(latency.buckets.values())) == (3, 1, 3)
    assert contribution.events == 4


def test_missing_attributes_are_invalid_and_other_events_are_ignored() -> None:
    counter = Counter(config(), TRAFFIC_TYPES)
    other = {"event_type": "custom_event", "data": {"event_name": "add_to_plan", "custom_attributes": {}}}
    no_status = request(None)
    body = message([other, no_status, {"event_type": "screen_view", "data": "broken"}])
    contribution = counter.count(counter.parse(body), lookup({"user#qa-1": state(("on", 1, T0, T0, None))}), T0)
    # no status: not an answer (the 5xx rate counts answers only), and invalid where the status is read
    assert CounterKey("checkout", T0, 1, "on", "5xx rate") not in contribution.deltas
    rate = contribution.deltas[CounterKey("checkout", T0, 1, "on", "unanswered rate")]
    assert (rate.n, rate.k, rate.invalid) == (0, 0, 1)


def test_cohort_and_unattributed() -> None:
    counter = Counter(config(), TRAFFIC_TYPES)
    customer = counter.count(counter.parse(message([request(500)], tester=False)), lookup({}), T0)
    assert customer.deltas == {}
    unexposed = counter.count(counter.parse(message([request(500)])), lookup({}), T0)
    assert CounterKey("checkout", T0, 0, UNATTRIBUTED, "5xx rate") in unexposed.deltas
    everyone = Counter(config(cohort="everyone"), TRAFFIC_TYPES)
    counted = everyone.count(everyone.parse(message([request(500)], tester=False)), lookup({}), T0)
    assert counted.deltas[CounterKey("checkout", T0, 0, UNATTRIBUTED, "5xx rate")].k == 1


def test_attribution_by_attribute_and_killed_label() -> None:
    counter = Counter(config(treatment_attribute="variant"), TRAFFIC_TYPES)
    assert counter.profile_flags == []
    contribution = counter.count(counter.parse(message([request(500, variant="on"), request(200)])), lookup({}), T0)
    assert contribution.deltas[CounterKey("checkout", T0, 0, "on", "5xx rate")].k == 1
    assert contribution.deltas[CounterKey("checkout", T0, 0, UNATTRIBUTED, "5xx rate")].n == 1
    by_profile = Counter(config(), TRAFFIC_TYPES)
    killed = state(("on", 1, T0, T0, None), ("off", 2, T0 + 5, T0 + 5, "killed"))
    later = by_profile.count(by_profile.parse(message([request(200, at=T0 + 10)])), lookup({"user#qa-1": killed}), T0)
    assert list(later.deltas) == [CounterKey("checkout", T0, 2, KILLED, "*")]
    assert later.deltas[CounterKey("checkout", T0, 2, KILLED, "*")].n == 1


def test_the_ledger_id_is_the_batch_key_and_hours_split_counters() -> None:
    counter = Counter(config(), TRAFFIC_TYPES)
    states = lookup({"user#qa-1": state(("on", 1, T0, T0, None))})
    first = counter.count(counter.parse(message([request(500)], key="srid:a")), states, T0)
    again = counter.count(counter.parse(message([request(500)], key="srid:a")), states, T0)
    other = counter.count(counter.parse(message([request(500, at=T0 + HOUR_MS + 5)], key="srid:b")), states, T0)
    assert first.ledger_id == again.ledger_id != other.ledger_id
    assert "srid" not in first.ledger_id and len(first.ledger_id) == 11
    merged = merge_contributions([first, other])
    assert {key.hour for key in merged} == {T0, T0 + HOUR_MS}


def test_split_tests_keep_user_digests_only() -> None:
    counter = Counter(config(split={"on": 50, "off": 50}), TRAFFIC_TYPES)
    contribution = counter.count(
        counter.parse(message([request(200)], user="someone@example.com")),
        lambda user, flag: state(("on", 1, T0, T0, None)),
        T0,
    )
    [(key, users)] = contribution.users.items()
    assert key.treatment == "on" and len(users) == 1
    assert "example" not in next(iter(users))


def test_percentile_lines_are_counted_exactly_beside_the_histogram() -> None:
    # the audit's defect 2: 500.0 sits in a bucket represented by 497.78, 995.0 in one represented by 1002.43
    counter = Counter(config(), TRAFFIC_TYPES)
    values = [499.99, 500.0, 500, "500", 995.0, 999.999, 1000, 1000.0, 2400]
    body = message([request(200, value) for value in values])
    contribution = counter.count(counter.parse(body), lookup({"user#qa-1": state(("on", 7, T0, T0, None))}), T0)
    latency = contribution.deltas[CounterKey("checkout", T0, 7, "on", "latency p95")]
    assert (latency.n, latency.classified, latency.at_pass, latency.at_fail) == (9, 9, 8, 3)
    merged = merge_contributions([contribution, contribution])[CounterKey("checkout", T0, 7, "on", "latency p95")]
    assert (merged.n, merged.classified, merged.at_pass, merged.at_fail) == (18, 18, 16, 6)
