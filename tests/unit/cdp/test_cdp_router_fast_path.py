"""The router's fast paths decide exactly what their general versions decide.

- :func:`flagbridge.cdp.router._fan_out` (a destination's reasons from its filter's decisions over the events the
  plan left, the plan's reasons in the gaps) against :func:`~flagbridge.cdp.router._fan_out_general` (event by
  event), over the router corpus with every configuration: same snapshot, same order of counts, also when every
  batch's decisions come from those remembered for its shape;
- :meth:`CompiledFilter.decide` against :meth:`CompiledFilter.event_reason`, event by event;
- the Split properties check that bounds floats (:func:`~flagbridge.cdp.split_events._properties_fit`) against the
  exact count, on the samples' properties and at the limits, and a commerce event's products checked with their
  shared properties counted once (:meth:`SplitMapper._product_variants`) against each product's checked alone,
  and a product's properties counted while they are built against :func:`~flagbridge.cdp.split_events._bounded_size`;
- a schema leaf's no-finding predicate, which remembers the strings it passed, against its check, value by value,
  and a bounded number's, which answers numbers in range without the compiled validator;
- the JSON pointer joined in one pass against the token-by-token escaping.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

import flagbridge.cdp.router as router
from flagbridge.cdp.batch import BatchFormatError, normalize_batch
from flagbridge.cdp.dataplan.schema import _KNOWN_LIMIT, compile_schema, json_pointer
from flagbridge.cdp.filters import SENT
from flagbridge.cdp.split_events import (
    MAX_PROPERTIES,
    MAX_PROPERTIES_BYTES,
    MAX_STRING_LENGTH,
    PROPERTIES_BASE_BYTES,
    SplitMapper,
    _bounded_size,
    _properties_fit,
)
from flagbridge.values import escape_pointer_token
from tests.unit.cdp.router_corpus import MARKED, NOW_MS, REGISTERED, configurations, corpus, routing_snapshot


def _route_all(documents: list[dict[str, Any]]) -> list[Any]:
    rows: list[Any] = []
    for name, (config, resolver) in configurations().items():
        for position, document in enumerate(documents):
            try:
                result = router.route_batch(document, config, MARKED, NOW_MS, resolver, REGISTERED)
            except BatchFormatError as exc:
                rows.append((name, position, exc.errors))
                continue
            order = {destination: list(counts) for destination, counts in result.counts.items()}
            rows.append((name, position, routing_snapshot(result), order))
    return rows


def test_fan_out_decides_as_the_general_path_on_the_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    documents = corpus()
    fast = _route_all(documents)
    monkeypatch.setattr(router, "_fan_out", lambda lane, *rest: router._fan_out_general(lane.pairs, *rest))
    general = _route_all(documents)
    assert len(fast) == len(general)
    for fast_row, general_row in zip(fast, general, strict=True):
        assert fast_row == general_row, f"configuration {fast_row[0]}, batch {fast_row[1]}"
    # the corpus reaches every shape of the fast path: batches with plan gaps and without, and batches the plan
    # left without any event (not dropped whole)
    gaps = [row for row in fast if len(row) == 4 and row[2]["plan"][2]]
    assert gaps and len(gaps) < len(fast)
    emptied = [row for row in gaps if row[2]["plan"][1] is None and len(row[2]["plan"][2]) == _events(row)]
    assert emptied and len(emptied) < len(gaps)


def test_fan_out_from_remembered_shapes_decides_as_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    documents = corpus()
    configs = configurations()

    def remembered() -> int:
        lanes = [lane for config, _ in configs.values() for lane in config.route_plan[2].values()]
        return sum(len(lane.decided) for lane in lanes if lane.decided is not None)

    assert remembered() == 0

    def route_all() -> list[Any]:
        rows: list[Any] = []
        for config, resolver in configs.values():
            for document in documents:
                try:
                    result = router.route_batch(document, config, MARKED, NOW_MS, resolver, REGISTERED)
                except BatchFormatError as exc:
                    rows.append(exc.errors)
                    continue
                rows.append((routing_snapshot(result), {name: list(c) for name, c in result.counts.items()}))
        return rows

    first = route_all()
    shapes = remembered()
    again = route_all()  # every shape is now remembered by its lane: decided from the memo
    assert remembered() == shapes and 0 < shapes < len(first)
    # a lane whose filters read attributes remembers nothing; a configuration loaded again starts with nothing
    assert all(lane.decided is None for lane in configs["predicates"][0].route_plan[2].values())
    assert all(not lane.decided for config, _ in configurations().values() for lane in config.route_plan[2].values())
    monkeypatch.setattr(router, "_fan_out", lambda lane, *rest: router._fan_out_general(lane.pairs, *rest))
    assert first == again == route_all()


def _events(row: Any) -> int:
    return len(next(iter(row[2]["reasons"].values())))


def test_filter_decide_is_event_reason_event_by_event() -> None:
    batches = []
    for document in corpus():
        try:
            batches.append(normalize_batch(document))
        except BatchFormatError:
            continue
    checked = 0
    for config, _ in configurations().values():
        for destination in config.compiled_destinations:
            compiled = destination.filter
            for batch in batches:
                reasons, passing = compiled.decide(batch.events)
                expected = [compiled.event_reason(event) or SENT for event in batch.events]
                assert reasons == expected
                kept = [event for event, reason in zip(batch.events, expected, strict=True) if reason == SENT]
                assert passing == kept
                checked += len(reasons)
    assert checked


def _split_properties() -> list[dict[str, Any]]:
    """The properties the Split mapper builds for every event of the corpus (before any check)."""
    out: list[dict[str, Any]] = []
    for document in corpus():
        try:
            batch = normalize_batch(document)
        except BatchFormatError:
            continue
        for event in batch.events:
            if event.event_type not in ("custom_event", "screen_view", "commerce_event", "session_start"):
                continue
            base = SplitMapper._base_properties(event) if _mappable(event.data, event.event_type) else None
            if base is None:
                continue
            out.append(base)
            if event.event_type == "commerce_event":
                products = event.data["product_action"].get("products") or []
                out.extend(SplitMapper._product_properties(base, p, i) for i, p in enumerate(products))
    return out


def _mappable(data: dict[str, Any], event_type: str) -> bool:
    return event_type != "commerce_event" or isinstance(data.get("product_action"), dict)


def _edge_properties() -> list[dict[str, Any]]:
    room = MAX_PROPERTIES_BYTES - PROPERTIES_BASE_BYTES
    return [
        {},
        {"a": None, "b": True, "c": 0, "d": -1.5e-308, "e": 1e308, "f": float("inf")},
        {"s": "x" * MAX_STRING_LENGTH},
        {"s": "x" * (MAX_STRING_LENGTH + 1), "t": "y" * 300, "n": 1.0},
        {"big": 10**400},  # an integer's text is counted exactly ...
        {f"i{n}": 10**3999 for n in range(9)},  # ... so these are too large
        {"k": "x" * (room - 1)},  # one under the size limit, then at it, then over it (long string: truncated)
        {f"k{i:04d}": "v" * 200 for i in range(room // 205)},
        {f"k{i:04d}": 1.0 for i in range(room // 8)},  # floats the bound overcounts: the exact count decides
        {f"k{i:04d}": -1.2345678901234567e-308 for i in range(room // 30)},
        {f"k{i:03d}": i for i in range(301)},
    ]


@pytest.mark.parametrize("source", ["samples", "edges"])
def test_split_properties_check_matches_the_exact_count(source: str) -> None:
    cases = _split_properties() if source == "samples" else _edge_properties()
    assert cases
    for props in cases:
        exact_props, fast_props = copy.deepcopy(props), copy.deepcopy(props)
        expected = SplitMapper._check_properties_exactly(exact_props)
        assert SplitMapper._check_properties(fast_props) == expected
        assert fast_props == exact_props
        if len(props) <= MAX_PROPERTIES and _properties_fit(props):
            assert expected == (None, "", ())
            assert exact_props == props  # nothing truncated


def _commerce_cases() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """``(base properties, products)`` of the corpus's commerce events, and at the limits."""
    cases: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for document in corpus():
        try:
            batch = normalize_batch(document)
        except BatchFormatError:
            continue
        for event in batch.events:
            if event.event_type == "commerce_event" and _mappable(event.data, event.event_type):
                products = event.data["product_action"].get("products") or []
                cases.append((SplitMapper._base_properties(event), products))
    room = MAX_PROPERTIES_BYTES - PROPERTIES_BASE_BYTES
    base = {"mp.event_type": "commerce_event", "commerce.total_amount": 1.5}
    cases += [
        (base, [{"id": "a", "price": 2.0}, {"id": "b" * (MAX_STRING_LENGTH + 1)}]),  # a product's long string
        ({**base, "long": "x" * (MAX_STRING_LENGTH + 1)}, [{"id": "a"}]),  # the base's long string
        ({**base, "product.id": "kept?", "product.index": "shadowed"}, [{"id": "a"}, {"name": "n"}]),  # names shared
        ({f"k{i:03d}": i for i in range(MAX_PROPERTIES - 2)}, [{"id": "a"}, {"id": "a", "name": "b"}]),  # 300, 301
        ({"k": "v" * 200, **{f"k{i:04d}": "v" * 200 for i in range(room // 205 - 1)}}, [{"id": "a" * 200}]),
        ({f"k{i:04d}": 1.0 for i in range(room // 8 - 2)}, [{"price": 1.0, "quantity": 2}]),  # bound overcounts
        (base, [{"custom_attributes": {"a": [1, 2], "b": {"c": 1}, "n": float("nan")}}]),
    ]
    return cases


def test_commerce_variants_check_as_each_product_alone() -> None:
    cases = _commerce_cases()
    assert len(cases) > 7
    proved = 0
    for base, products in cases:
        variants = SplitMapper._product_variants(base, products)
        assert [position for position, _, _, _ in variants] == list(range(len(products)))
        for (position, props, product, checked), expected_product in zip(variants, products, strict=True):
            assert product is expected_product
            expected_props = SplitMapper._product_properties(base, expected_product, position)
            assert props == expected_props and list(props) == list(expected_props)
            if checked is not None:
                exact_props = copy.deepcopy(props)
                assert checked == SplitMapper._check_properties_exactly(exact_props) == (None, "", ())
                assert exact_props == props
                proved += 1
    assert proved


_PRODUCT_PARTS: list[dict[str, Any]] = [
    {"id": "a", "name": "n", "price": 2.5, "quantity": 3, "position": True},
    {"id": "b" * (MAX_STRING_LENGTH + 1), "price": 1.0},
    {"id": "b" * MAX_STRING_LENGTH, "name": "x" * (MAX_STRING_LENGTH + 1)},
    {"price": float("nan"), "quantity": float("inf"), "brand": None, "category": ""},
    {"variant": [1, "two"], "coupon_code": {"c": 1}, "total_product_amount": -1e300},
    {"variant": ["v" * MAX_STRING_LENGTH], "id": "a"},
    {"custom_attributes": {"a": 1, "b": 2.5}, "id": "c"},
    {"custom_attributes": "not an object", "price": 3},
    {},
]


def test_sized_product_properties_are_the_properties_and_the_parts_bounded_size() -> None:
    cases = [(base, product) for base, products in _commerce_cases() for product in products]
    cases += [(base, product) for base in ({}, {"product.id": "shared", "z": 1}) for product in _PRODUCT_PARTS]
    for position, (base, product) in enumerate(cases):
        props, size = SplitMapper._sized_product_properties(base, product, position)
        expected = SplitMapper._product_properties(base, product, position)
        assert repr(props) == repr(expected)  # same names, order and values (nan stays nan)
        assert size == _bounded_size(SplitMapper._product_part(product, position))


_LEAF_SCHEMAS: list[dict[str, Any]] = [
    {"type": "integer", "minimum": 1},
    {"type": "boolean"},
    {"type": "number"},
    {"type": ["string", "null"]},
    {"type": "string", "enum": ["free", "pro", "team"]},
    {"enum": ["1", 2, True]},
    {"type": "string", "pattern": "^[a-z]+$"},
]
_LEAF_VALUES: list[Any] = [
    "3", " 3 ", "0", "-1", "2.5", "true", "TRUE", "false", "yes", "pro", "Pro", "abc", "ab1", "", "1", "2",
    3, 0, 2.0, 2.5, True, False, None, [1], {"a": 1},
]  # fmt: skip


@pytest.mark.parametrize("schema", _LEAF_SCHEMAS, ids=json.dumps)
def test_leaf_ok_is_its_check_passing_every_time(schema: dict[str, Any]) -> None:
    leaf = compile_schema(schema, {}, "test")
    assert leaf is not None
    for _ in range(2):  # the strings passed once are remembered: the second round answers from the memo
        assert [leaf.ok(value) for value in _LEAF_VALUES] == [leaf.check(value) is None for value in _LEAF_VALUES]
    many = [str(n) for n in range(_KNOWN_LIMIT + 10)] + [f"s{n}" for n in range(_KNOWN_LIMIT + 10)]
    for _ in range(2):  # past the memo's bound
        assert [leaf.ok(value) for value in many] == [leaf.check(value) is None for value in many]


_BOUNDED_SCHEMAS: list[dict[str, Any]] = [
    {"type": "integer", "minimum": 1},
    {"type": "number", "minimum": 0},
    {"type": "number", "minimum": -2.5, "maximum": 10},
    {"type": ["integer", "number"], "maximum": 3},
    {"type": "integer", "minimum": 0.5, "maximum": 7.5},
    {"minimum": 0},
]
_BOUNDED_VALUES: list[Any] = [
    0, 1, -1, 3, 7, 8, 10, 11, 2**70, -(2**70), 0.0, -0.0, 0.5, 2.5, -2.5, 2.0, 10.0, 10.5, float("nan"),
    float("inf"), float("-inf"), True, False, None, "3", "0", "-1", "2.5", "x", [1], {"a": 1},
]  # fmt: skip


@pytest.mark.parametrize("schema", _BOUNDED_SCHEMAS, ids=json.dumps)
def test_bounded_number_leaf_ok_is_its_check(schema: dict[str, Any]) -> None:
    leaf = compile_schema(schema, {}, "test")
    assert leaf is not None and leaf._numeric_bounds() is not None  # the fast path applies to these schemas
    for _ in range(2):
        assert [leaf.ok(value) for value in _BOUNDED_VALUES] == [leaf.check(value) is None for value in _BOUNDED_VALUES]


@pytest.mark.parametrize(
    "path",
    [(), ("data",), ("data", "custom_attributes", "plan"), ("user_attributes", "a/b"), ("x", "~0", 3), ("a", "/", "")],
)
def test_json_pointer_escapes_as_token_by_token(path: tuple[Any, ...]) -> None:
    expected = "#/" + "/".join(escape_pointer_token(str(part)) for part in path) if path else "#"
    assert json_pointer(path) == expected
