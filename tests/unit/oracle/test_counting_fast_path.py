"""The counter's memoised shortcuts equal the paths they stand for: the rate metric's outcome memoised per value of
the one attribute it reads, and a test's plans (what an event does to every metric, kept per event type, name and
values of the attributes the selectors read) against the general per-event path."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagbridge.oracle.config import SERVER_ERROR_OR_NO_ANSWER, parse_oracle_config
from flagbridge.oracle.counting import Contribution, Counter, Delta
from flagbridge.oracle.kinds.percentile import compile_percentile, compile_percentile_values
from flagbridge.oracle.kinds.rate import RateCount as _CompiledMetric
from flagbridge.oracle.tally import number_of as _number
from flagbridge.values import canonical
from tests.unit.oracle.test_counting_equivalence import (
    _PROFILES,
    _VALUES,
    CONFIGS,
    T0,
    TRAFFIC_TYPES,
    _body,
    _configs,
    _states,
)

BAD_SELECTORS: list[list[dict[str, Any]]] = [
    [{"attribute": "status", "op": "regex", "value": SERVER_ERROR_OR_NO_ANSWER}],
    [{"attribute": "status", "op": "gte", "value": 500}],
    [{"attribute": "status", "op": "in", "value": [500, "503", True]}],
    [{"attribute": "status", "op": "equals", "value": "0"}],
    [{"attribute": "status", "op": "exists"}],
    [{"attribute": "status", "op": "gte", "value": 500}, {"attribute": "status", "op": "lt", "value": 600}],
]

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=700),
    st.sampled_from([0.0, -0.0, 500.0, 503.5, float("nan"), float("inf")]),
    st.sampled_from(["500", "500.0", "0", "-0", "abc", "", "true", " 500", "5e2"]),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.just({"a": 1}),
)


def _metrics(bad: list[dict[str, Any]]) -> Any:
    test = {"name": "t", "flag": "f", "environment": "Production",
            "metrics": [{"name": "m", "type": "rate", "events": {}, "bad": {"attributes": bad},
                         "pass_below": 0.01, "fail_at": 0.05}]}  # fmt: skip
    return parse_oracle_config({"tests": [test]}).tests[0].metrics[0]


def _reference(metric: _CompiledMetric, attributes: dict[str, Any]) -> Delta:
    """The count without the memo: every need read, then the bad selector."""
    delta = Delta()
    for attribute, numeric in metric.needs:
        value = attributes.get(attribute)
        if value is None or (_number(value) is None if numeric else canonical(value) is None):
            delta.invalid += 1
            return delta
    delta.n += 1
    assert metric.bad is not None
    if metric.bad.matches("custom_event", "x", {}, attributes):
        delta.k += 1
    return delta


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(BAD_SELECTORS))), st.lists(_values, min_size=1, max_size=30))
def test_memoised_rate_outcome_equals_the_reference(which: int, statuses: list[Any]) -> None:
    metric = _CompiledMetric(_metrics(BAD_SELECTORS[which]))
    assert metric._memo_attribute == "status"
    fast, slow = Delta(), Delta()
    for status in statuses + statuses:  # the second pass hits the memo
        attributes = {"status": status}
        metric.count(fast, "custom_event", "x", {}, attributes)
        slow.add(_reference(metric, attributes))
    assert (fast.n, fast.k, fast.invalid) == (slow.n, slow.k, slow.invalid)


def test_a_metric_reading_two_attributes_is_not_memoised() -> None:
    metric = _CompiledMetric(
        _metrics([{"attribute": "status", "op": "gte", "value": 500}, {"attribute": "route", "op": "exists"}])
    )
    assert metric._memo_attribute is None
    delta = Delta()
    metric.count(delta, "custom_event", "x", {}, {"status": 500})
    metric.count(delta, "custom_event", "x", {}, {"status": 500, "route": "/a"})
    assert (delta.n, delta.k, delta.invalid) == (2, 1, 0)


def _general(config: Any) -> Counter:
    """A counter whose tests all take the general per-event path (no plans)."""
    counter = Counter(config, TRAFFIC_TYPES)
    for compiled in counter._tests:
        compiled.keyed = None
    return counter


def _exactly(contributions: list[Contribution]) -> list[Any]:
    """Contributions with the order of their counters and buckets (what the store's writes are built from)."""
    return [
        (c.ledger_id, c.events, c.users, [(key, d, list(d.buckets.items())) for key, d in c.deltas.items()])
        for c in contributions
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(CONFIGS) + 1)),
    st.lists(_body(), min_size=1, max_size=6),
    _PROFILES,
)
def test_planned_counts_equal_the_general_path(which: int, bodies: list[str], profiles: Any) -> None:
    config = _configs()[which]
    states = _states(profiles)
    lookup = lambda user, flag: states.get((user, flag))  # noqa: E731
    planned, general = Counter(config, TRAFFIC_TYPES), _general(config)
    assert all(compiled.keyed is not None for compiled in planned._tests)
    for _ in range(2):  # the second round finds the plans the first one kept
        fast_batch, slow_batch = planned.batch(lookup), general.batch(lookup)
        fast = [fast_batch.count(planned.read(body, T0)) for body in bodies]
        slow = [slow_batch.count(general.read(body, T0)) for body in bodies]
        assert _exactly(fast) == _exactly(slow)


def test_equal_values_of_other_types_never_share_a_plan() -> None:
    """``True == 1`` and ``1.0 == 1`` as dict keys: a plan kept for one must not be taken for the other."""
    metric = {"name": "ones", "type": "rate", "events": {"attributes": [{"attribute": "flag", "op": "exists"}]},
              "bad": {"attributes": [{"attribute": "flag", "op": "in", "value": [1]}]},
              "pass_below": 0.01, "fail_at": 0.05}  # fmt: skip
    test = {"name": "t", "flag": "f", "environment": "Production", "cohort": "everyone",
            "treatment_attribute": "arm", "metrics": [metric]}  # fmt: skip
    config = parse_oracle_config({"tests": [test]})
    events = [{"event_type": "custom_event", "data": {"event_name": "e", "timestamp_unixtime_ms": T0,
                                                      "custom_attributes": {"arm": "on", "flag": value}}}
              for value in (1, True, 1.0, "1", 1, True, 1.0, "1")]  # fmt: skip
    body = json.dumps({"batch_key": "k", "batch": {"events": events}})
    planned, general = Counter(config, TRAFFIC_TYPES), _general(config)
    fast = planned.batch(lambda user, flag: None).count(planned.read(body, T0))
    slow = general.batch(lambda user, flag: None).count(general.read(body, T0))
    assert _exactly([fast]) == _exactly([slow])
    [delta] = slow.deltas.values()
    assert (delta.n, delta.k) == (8, 6)  # True is not in [1]; 1, 1.0 and "1" are
    assert len(planned._tests[0].plans) == 3  # int, bool and str kept apart; floats never kept


@settings(max_examples=300, deadline=None)
@given(st.lists(_VALUES, max_size=30))
def test_gathered_percentile_values_count_as_each_event_in_turn(values: list[Any]) -> None:
    """The planned path gathers a percentile's values per counter and counts them in one call: the same delta,
    buckets in the same order, as the per-event count called on each value from an empty delta."""
    config = parse_oracle_config({"tests": [{"name": "t", "flag": "f", "environment": "Production"}]})
    [metric] = [m for m in config.tests[0].metrics if m.type == "percentile"]
    one_by_one = Delta()
    count = compile_percentile(metric)  # type: ignore[arg-type]
    for value in values:
        count(one_by_one, "custom_event", "x", {}, {metric.attribute: value})  # type: ignore[attr-defined]
    gathered = compile_percentile_values(metric)(values)  # type: ignore[arg-type]
    assert (gathered, list(gathered.buckets.items())) == (one_by_one, list(one_by_one.buckets.items()))


def test_consecutive_events_take_the_last_plan_only_for_the_same_values() -> None:
    """Two keyed attributes (the shipped test's shape): an event takes the previous event's plan without a lookup
    only when its values are the same objects and its type and name are equal; equal values of other types (and
    an event whose key cannot be kept in between) get their own."""
    metric = {"name": "ones", "type": "rate",
              "events": {"attributes": [{"attribute": "flag", "op": "exists"}]},
              "bad": {"attributes": [{"attribute": "code", "op": "in", "value": [1]}]},
              "pass_below": 0.01, "fail_at": 0.05}  # fmt: skip
    test = {"name": "t", "flag": "f", "environment": "Production", "cohort": "everyone",
            "treatment_attribute": "arm", "metrics": [metric]}  # fmt: skip
    config = parse_oracle_config({"tests": [test]})
    pairs = [(1, 1), (1, 1), (True, 1), (True, True), (1.0, 1), (1, 1.0), ("1", 1), (1, [1]), (1, 1), (None, 1),
             (1, None), (1, 1)]  # fmt: skip
    events = [{"event_type": kind, "data": {"event_name": name, "timestamp_unixtime_ms": T0,
                                            "custom_attributes": {"arm": "on", "flag": flag, "code": code}}}
              for kind, name in (("custom_event", "e"), ("custom_event", "f"), ("screen_view", "e"))
              for flag, code in pairs]  # fmt: skip
    body = json.dumps({"batch_key": "k", "batch": {"events": events}})
    planned, general = Counter(config, TRAFFIC_TYPES), _general(config)
    assert planned._tests[0].keyed == ("code", "flag")
    for _ in range(2):  # the second round finds every keepable plan kept
        fast = planned.batch(lambda user, flag: None).count(planned.read(body, T0))
        slow = general.batch(lambda user, flag: None).count(general.read(body, T0))
        assert _exactly([fast]) == _exactly([slow])
    [delta] = slow.deltas.values()
    # per kind and name: a list and a missing code are invalid, a missing flag is not selected; True is not in [1]
    assert (delta.n, delta.k) == (27, 24)
