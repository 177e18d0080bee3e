"""mParticle event -> Split event mapping and Split's constraints."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flagbridge.cdp.batch import normalize_batch
from flagbridge.cdp.split_events import (
    EVENT_TYPE_ID_RE,
    SplitMapper,
    SplitOptions,
    map_event_to_split,
    sanitize_event_type_id,
)
from tests.unit.cdp.samples import NOW_MS, TS, WEBHOOK_BATCH, batch, commerce_event, custom_event


def options(**kw: Any) -> SplitOptions:
    base: dict[str, Any] = {
        "sdk_key_secret": "flagbridge/split",
        "identity_mapping": [{"identity_type": "customer_id", "traffic_type": "user"}],
    }
    base.update(kw)
    return SplitOptions.model_validate(base)


def map_one(event: dict[str, Any], opts: SplitOptions | None = None, now_ms: int = NOW_MS, **kw: Any) -> Any:
    b = normalize_batch(batch([event], **kw))
    return map_event_to_split(b, b.events[0], opts or options(), now_ms)


def test_custom_event_mapping() -> None:
    result = map_one(custom_event("add_to_plan", {"plan": "pro", "seats": 2}, message_id="m-1"))
    [event] = result.events
    assert result.rejections == []
    assert event.body == {
        "eventTypeId": "add_to_plan",
        "trafficTypeName": "user",
        "key": "qa-bot-01",
        "timestamp": TS,
        "value": None,
        "properties": {
            "plan": "pro",
            "seats": 2,
            "mp.event_type": "custom_event",
            "mp.message_id": "m-1",
            "mp.source_message_id": "m-1",
            "mp.custom_event_type": "transaction",
        },
    }
    assert len(event.dedup_id) == 32


def test_webhook_batch_mapping_uses_array_identities_and_event_id() -> None:
    b = normalize_batch(WEBHOOK_BATCH)
    opts = options(
        identity_mapping=[
            {"identity_type": "customer_id", "traffic_type": "User"},
            {"identity_type": "email", "traffic_type": "user"},
        ]
    )
    result = map_event_to_split(b, b.events[0], opts, NOW_MS)
    assert [(e.body["trafficTypeName"], e.body["key"]) for e in result.events] == [
        ("user", "qa-bot-01"),
        ("user", "qa@example.com"),
    ], "two identities mapped to the same traffic type give two events; traffic types are lowercased"
    assert result.events[0].body["properties"]["mp.event_id"] == "6004677780660780000"
    assert result.events[0].dedup_id != result.events[1].dedup_id


@pytest.mark.parametrize("event_type", ["screen_view", "session_start", "session_end"])
def test_event_type_is_the_event_type_id(event_type: str) -> None:
    data: dict[str, Any] = {"timestamp_unixtime_ms": TS}
    if event_type == "screen_view":
        data["screen_name"] = "Cart"
    if event_type == "session_end":
        data["session_duration_ms"] = 1234
    [event] = map_one({"event_type": event_type, "data": data}).events
    assert event.body["eventTypeId"] == event_type
    if event_type == "screen_view":
        assert event.body["properties"]["mp.screen_name"] == "Cart"
    if event_type == "session_end":
        assert event.body["properties"]["mp.session_duration_ms"] == 1234


def test_commerce_with_three_products_gives_three_split_events() -> None:
    result = map_one(commerce_event(3), options(value_field="product.price"))
    assert len(result.events) == 3
    assert {e.body["eventTypeId"] for e in result.events} == {"commerce_purchase"}
    assert [e.body["value"] for e in result.events] == [10.0, 20.0, 30.0]
    assert [e.product_index for e in result.events] == [0, 1, 2]
    props = result.events[1].body["properties"]
    assert props["product.id"] == "sku-1"
    assert props["product.index"] == 1
    assert props["commerce.action"] == "purchase"
    assert props["commerce.transaction_id"] == "T-1"
    assert props["commerce.currency_code"] == "EUR"
    assert props["commerce.product_count"] == 3
    assert len({e.dedup_id for e in result.events}) == 3


def test_commerce_event_type_option_and_total_value() -> None:
    result = map_one(
        commerce_event(2), options(commerce_event_type="event_type", value_field="product_action.total_amount")
    )
    assert [e.body["eventTypeId"] for e in result.events] == ["commerce_event", "commerce_event"]
    assert [e.body["value"] for e in result.events] == [60.0, 60.0]


def test_commerce_without_products_gives_one_event() -> None:
    assert len(map_one(commerce_event(0)).events) == 1


@pytest.mark.parametrize(
    "event",
    [
        {"event_type": "commerce_event", "data": {"promotion_action": {"action": "view"}}},
        {"event_type": "commerce_event", "data": {"product_impressions": [{"product_impression_list": "x"}]}},
        {"event_type": "crash_report", "data": {}},
        {"event_type": "user_attribute_change", "data": {"user_attribute_name": "a", "new": 1, "old": 2}},
    ],
)
def test_unsupported_event_types(event: dict[str, Any]) -> None:
    result = map_one(event)
    assert result.events == []
    assert [r.reason for r in result.rejections] == ["split.unsupported_event_type"]


def test_value_field_from_custom_attributes_coerces_numeric_strings() -> None:
    opts = options(value_field="custom_attributes.order.total")
    assert map_one(custom_event(attributes={"order.total": "12.5"}), opts).events[0].body["value"] == 12.5
    assert map_one(custom_event(attributes={"order.total": "n/a"}), opts).events[0].body["value"] is None
    assert map_one(custom_event(attributes={}), opts).events[0].body["value"] is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("add_to_plan", "add_to_plan"),
        ("Add To Cart!", "Add_To_Cart_"),
        ("#promo", "e_promo"),
        ("_x", "e_x"),
        ("a:b", "a_b"),
        ("café", "caf_"),
        ("x" * 70, "x" * 63),
        ("", None),
    ],
)
def test_sanitize_event_type_id(name: str, expected: str | None) -> None:
    result = sanitize_event_type_id(name)
    assert result == expected
    if result is not None:
        assert EVENT_TYPE_ID_RE.match(result)
        assert sanitize_event_type_id(name) == result, "deterministic"


def test_event_type_policy_sanitize_and_reject() -> None:
    assert map_one(custom_event("Add To Cart!")).events[0].body["eventTypeId"] == "Add_To_Cart_"
    result = map_one(custom_event("Add To Cart!"), options(event_type_policy="reject"))
    assert result.events == []
    assert result.rejections[0].reason == "split.invalid_event_type_id"


def test_key_too_long_is_rejected_and_250_is_fine() -> None:
    result = map_one(custom_event(), customer_id="k" * 251)
    assert result.events == []
    assert result.rejections[0].reason == "split.key_too_long"
    assert map_one(custom_event(), customer_id="k" * 250).events


def test_blank_key_and_no_mapped_identity() -> None:
    assert map_one(custom_event(), customer_id="  ").rejections[0].reason == "split.invalid_key"
    assert map_one(custom_event(), customer_id=None).rejections[0].reason == "split.no_mapped_identity"


def test_one_bad_identity_does_not_block_the_others() -> None:
    doc = batch([custom_event()])
    doc["user_identities"] = {"customer_id": "k" * 300, "other_id_2": "anon-1"}
    b = normalize_batch(doc)
    opts = options(
        identity_mapping=[
            {"identity_type": "customer_id", "traffic_type": "user"},
            {"identity_type": "other_id_2", "traffic_type": "anonymous"},
        ]
    )
    result = SplitMapper(opts).map_event(b, b.events[0], NOW_MS)
    assert [e.body["key"] for e in result.events] == ["anon-1"]
    assert [(r.reason, r.traffic_type) for r in result.rejections] == [("split.key_too_long", "user")]


def test_301_properties_are_rejected_300_are_fine() -> None:
    # the bridge adds 3 properties of its own to a custom event without source_message_id
    fits = {f"a{i}": i for i in range(297)}
    assert len(map_one(custom_event(attributes=fits)).events[0].body["properties"]) == 300
    result = map_one(custom_event(attributes={**fits, "one_more": 1}))
    assert result.events == []
    assert result.rejections[0].reason == "split.too_many_properties"


def test_properties_over_32kb_are_rejected() -> None:
    # 1024 + 120 * (4 + 256) = 32224 <= 32768: fits; 125 * 260 + 1024 > 32768: too large
    fits = {f"k{i:03d}": "v" * 256 for i in range(120)}
    assert map_one(custom_event(attributes=fits)).events
    too_big = {f"k{i:03d}": "v" * 256 for i in range(125)}
    result = map_one(custom_event(attributes=too_big))
    assert result.events == []
    assert result.rejections[0].reason == "split.properties_too_large"


def test_long_strings_are_truncated_and_nested_values_json_encoded() -> None:
    result = map_one(
        custom_event(
            attributes={"long": "x" * 300, "list": [1, 2], "obj": {"b": 1, "a": 2}, "nan": float("nan"), "none": None}
        )
    )
    [event] = result.events
    props = event.body["properties"]
    assert props["long"] == "x" * 256
    assert event.truncated == ("long",)
    assert props["list"] == "[1,2]"
    assert props["obj"] == '{"a":2,"b":1}'
    assert props["nan"] is None and props["none"] is None
    json.dumps(event.body, allow_nan=False)  # flat and serialisable
    assert all(isinstance(v, (str, int, float, bool)) or v is None for v in props.values())


def test_bridge_fields_win_over_custom_attributes() -> None:
    [event] = map_one(custom_event(attributes={"mp.event_type": "spoofed"})).events
    assert event.body["properties"]["mp.event_type"] == "custom_event"


def test_age_limit_relative_to_injected_now() -> None:
    day = 24 * 3_600_000
    assert map_one(custom_event(ts=NOW_MS - day)).events, "exactly 24 h old is still accepted"
    result = map_one(custom_event(ts=NOW_MS - day - 1))
    assert result.events == [] and result.rejections[0].reason == "split.too_old"
    assert map_one(custom_event(ts=NOW_MS - 2 * 3_600_000), options(max_age_hours=1)).rejections[0].reason == (
        "split.too_old"
    )


def test_missing_timestamp_uses_batch_receive_time_then_now() -> None:
    event = custom_event()
    del event["data"]["timestamp_unixtime_ms"]
    assert map_one(event).events[0].body["timestamp"] == NOW_MS
    doc = batch([event])
    doc["timestamp_unixtime_ms"] = NOW_MS - 5
    b = normalize_batch(doc)
    assert map_event_to_split(b, b.events[0], options(), NOW_MS).events[0].body["timestamp"] == NOW_MS - 5


def test_sdk_key_secret_is_a_secret_name() -> None:
    with pytest.raises(ValueError):
        options(sdk_key_secret="has spaces in it")
