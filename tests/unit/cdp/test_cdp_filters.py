"""Per-destination filters: users, event types, wildcard names, attribute predicates, environments."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flagbridge.cdp.batch import normalize_batch
from flagbridge.cdp.filters import Filter, evaluate_filter
from tests.unit.cdp.samples import batch, custom_event


def decide(spec: dict[str, Any], events: list[dict[str, Any]], *, is_tester: bool = False, **kw: Any) -> list[Any]:
    compiled = Filter.model_validate(spec).compile()
    return evaluate_filter(compiled, "dest", normalize_batch(batch(events, **kw)), is_tester)


def one(spec: dict[str, Any], attributes: dict[str, Any] | None = None, name: str = "e", **kw: Any) -> tuple[bool, str]:
    [d] = decide(spec, [custom_event(name, attributes)], **kw)
    return d.sent, d.reason


def test_users_modes() -> None:
    assert one({"users": "test_only"}, is_tester=True) == (True, "sent")
    assert one({"users": "test_only"}, is_tester=False) == (False, "filter.users:test_only")
    assert one({"users": "exclude_test"}, is_tester=True) == (False, "filter.users:exclude_test")
    assert one({"users": "exclude_test"}, is_tester=False) == (True, "sent")
    assert one({"users": "any"}, is_tester=True) == (True, "sent")


def test_default_users_mode_comes_from_compile() -> None:
    compiled = Filter().compile(default_users="test_only")
    assert compiled.users == "test_only"
    assert Filter(users="any").compile(default_users="test_only").users == "any"


def test_environments() -> None:
    assert one({"environments": ["production"]}, environment="development") == (
        False,
        "filter.environments:development",
    )
    assert one({"environments": ["production"]}) == (True, "sent")


def test_event_types_include_and_exclude() -> None:
    events = [
        custom_event(),
        {"event_type": "session_start", "data": {}},
        {"event_type": "screen_view", "data": {"screen_name": "Cart"}},
    ]
    decisions = decide(
        {"event_types": {"include": ["custom_event", "session_start"], "exclude": ["session_start"]}}, events
    )
    assert [(d.sent, d.reason) for d in decisions] == [
        (True, "sent"),
        (False, "filter.event_types:exclude:session_start"),
        (False, "filter.event_types:include"),
    ]


def test_unknown_event_type_in_filter_is_a_config_error() -> None:
    with pytest.raises(ValidationError):
        Filter.model_validate({"event_types": {"include": ["custom"]}})


@pytest.mark.parametrize(
    ("spec", "name", "expected"),
    [
        ({"exclude": ["debug_*"]}, "debug_click", (False, "filter.event_names:exclude:debug_*")),
        ({"exclude": ["debug_*"]}, "Debug_click", (True, "sent")),  # case-sensitive
        ({"exclude": ["debug_*"]}, "add_to_plan", (True, "sent")),
        ({"exclude": ["exact", "e?act"]}, "exact", (False, "filter.event_names:exclude:exact")),
        ({"exclude": ["e?act", "exact"]}, "exact", (False, "filter.event_names:exclude:exact")),
        ({"exclude": ["e?act"]}, "enact", (False, "filter.event_names:exclude:e?act")),
        ({"include": ["checkout_*", "add_to_plan"]}, "checkout_done", (True, "sent")),
        ({"include": ["checkout_*", "add_to_plan"]}, "add_to_plan", (True, "sent")),
        ({"include": ["checkout_*"]}, "add_to_plan", (False, "filter.event_names:include")),
        ({"include": ["[ab]*"]}, "bob", (True, "sent")),
        (
            {"include": ["checkout_*"], "exclude": ["checkout_test*"]},
            "checkout_test1",
            (False, "filter.event_names:exclude:checkout_test*"),
        ),
    ],
)
def test_event_name_wildcards(spec: dict[str, Any], name: str, expected: tuple[bool, str]) -> None:
    assert one({"event_names": spec}, name=name) == expected


def test_event_names_of_non_custom_events() -> None:
    events = [{"event_type": "screen_view", "data": {"screen_name": "Cart"}}, {"event_type": "session_end", "data": {}}]
    decisions = decide({"event_names": {"include": ["Cart", "session_*"]}}, events)
    assert all(d.sent for d in decisions)


def pred(op: str, value: Any = None, attribute: str = "a") -> dict[str, Any]:
    p: dict[str, Any] = {"attribute": attribute, "op": op}
    if value is not None:
        p["value"] = value
    return {"attributes": [p]}


@pytest.mark.parametrize(
    ("op", "value", "attribute_value", "sent"),
    [
        ("equals", "pro", "pro", True),
        ("equals", "pro", "Pro", False),
        ("equals", 42, "42", True),
        ("equals", True, "true", True),
        ("not_equals", "pro", "free", True),
        ("not_equals", "pro", "pro", False),
        ("in", ["a", "b"], "b", True),
        ("in", ["a", 1], "1", True),
        ("in", ["a", "b"], "c", False),
        ("not_in", ["a", "b"], "c", True),
        ("not_in", ["a", "b"], "a", False),
        ("exists", None, "x", True),
        ("exists", None, None, False),
        ("not_exists", None, "x", False),
        ("regex", "^qa-", "qa-1", True),
        ("regex", "^qa-", "prod", False),
        ("regex", "^4", 42, True),
        ("gt", 10, "11", True),
        ("gt", 10, 10, False),
        ("gte", 10, 10, True),
        ("lt", 10, "9.5", True),
        ("lt", 10, "abc", False),
        ("lte", 10, 10.0, True),
        ("lte", 10, True, False),
    ],
)
def test_attribute_ops(op: str, value: Any, attribute_value: Any, sent: bool) -> None:
    attributes = {} if attribute_value is None else {"a": attribute_value}
    result = one(pred(op, value), attributes)
    assert result == ((True, "sent") if sent else (False, f"filter.attributes:a:{op}"))


@pytest.mark.parametrize(
    ("op", "value"),
    [
        ("equals", "x"),
        ("not_equals", "x"),
        ("in", ["x"]),
        ("not_in", ["x"]),
        ("exists", None),
        ("regex", ".*"),
        ("gt", 0),
        ("gte", 0),
        ("lt", 0),
        ("lte", 0),
    ],
)
def test_a_missing_attribute_never_matches(op: str, value: Any) -> None:
    assert one(pred(op, value), {"other": 1})[0] is False
    assert one(pred(op, value), {"a": None})[0] is False


def test_not_exists_matches_missing_and_null() -> None:
    assert one(pred("not_exists"), {})[0] is True
    assert one(pred("not_exists"), {"a": None})[0] is True


def test_predicates_are_anded_and_first_failure_is_reported() -> None:
    spec = {
        "attributes": [
            {"attribute": "plan", "op": "equals", "value": "pro"},
            {"attribute": "seats", "op": "gte", "value": 2},
        ]
    }
    assert one(spec, {"plan": "pro", "seats": "3"}) == (True, "sent")
    assert one(spec, {"plan": "pro", "seats": "1"}) == (False, "filter.attributes:seats:gte")
    assert one(spec, {"plan": "free", "seats": "1"}) == (False, "filter.attributes:plan:equals")


@pytest.mark.parametrize(
    "predicate",
    [
        {"attribute": "a", "op": "exists", "value": 1},
        {"attribute": "a", "op": "in", "value": "x"},
        {"attribute": "a", "op": "in", "value": []},
        {"attribute": "a", "op": "regex", "value": "("},
        {"attribute": "a", "op": "gt", "value": "ten"},
        {"attribute": "a", "op": "equals"},
        {"attribute": "a", "op": "like", "value": "x"},
    ],
)
def test_invalid_predicates_are_config_errors(predicate: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Filter.model_validate({"attributes": [predicate]})


def test_order_environment_then_users_then_event_rules() -> None:
    spec = {"environments": ["production"], "users": "test_only", "event_names": {"exclude": ["*"]}}
    assert one(spec, environment="development")[1] == "filter.environments:development"
    assert one(spec, is_tester=False)[1] == "filter.users:test_only"
    assert one(spec, is_tester=True)[1] == "filter.event_names:exclude:*"
