"""The rate metric's memoised outcome (per value of the one attribute it reads) equals the unmemoised count."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.oracle.config import SERVER_ERROR_OR_NO_ANSWER, parse_oracle_config
from flagbridge.oracle.counting import Delta
from flagbridge.oracle.kinds.rate import RateCount as _CompiledMetric
from flagbridge.oracle.tally import number_of as _number
from flagbridge.values import canonical

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
