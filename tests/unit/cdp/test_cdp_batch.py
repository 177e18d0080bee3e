"""Batch normalisation: accepted wire shapes, structural errors, dedup keys."""

from __future__ import annotations

import copy

import pytest

from flagbridge.cdp.batch import (
    BatchFormatError,
    _check_event,
    _valid_event_type,
    batch_dedup_key,
    event_message_id,
    normalize_batch,
)
from tests.unit.cdp.samples import SDK_BATCH, WEBHOOK_BATCH, batch, custom_event


def test_official_python_sdk_wire_shape_is_accepted_and_customerid_renamed() -> None:
    original = copy.deepcopy(SDK_BATCH)
    b = normalize_batch(SDK_BATCH)
    assert b.source_format == "events_api"
    assert b.environment == "development"
    assert b.identities == (("customer_id", "u-1"), ("other_id_2", "anon-9"))
    assert b.identity_values("customer_id") == ["u-1"]
    assert b.to_dict()["user_identities"] == {"customer_id": "u-1", "other_id_2": "anon-9"}
    [event] = b.events
    assert event.event_type == "custom_event"
    assert event.name == "checkout_clicked"
    assert event.custom_attributes == {"plan": "pro"}
    assert b.dedup_key == "srid:req-1"
    assert original == SDK_BATCH, "the input must not be mutated"


def test_webhook_array_identities_batch_id_and_message_id() -> None:
    b = normalize_batch(WEBHOOK_BATCH)
    assert b.source_format == "webhook"
    assert ("customer_id", "qa-bot-01") in b.identities
    assert ("email", "qa@example.com") in b.identities
    assert ("mpid", "7346244611012968789") in b.identities
    assert b.dedup_key == "bid:-5158959812941698317"
    assert b.events[0].message_id == "msg-1"
    assert b.events[0].event_id == "6004677780660780000"
    # forwarded in the shape it arrived in
    assert isinstance(b.to_dict()["user_identities"], list)


def test_null_identity_is_ignored() -> None:
    doc = batch([custom_event()])
    doc["user_identities"] = {"customer_id": "c-1", "email": None}
    assert normalize_batch(doc).identities == (("customer_id", "c-1"),)


def test_missing_environment_defaults_to_production() -> None:
    doc = batch([custom_event()])
    del doc["environment"]
    assert normalize_batch(doc).environment == "production"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(environment="prod"), "/environment: must be 'production' or 'development'"),
        (lambda d: d.update(events={"a": 1}), "/events: must be an array"),
        (lambda d: d["events"].append("x"), "/events/1: must be an object"),
        (lambda d: d["events"].append({"event_type": "custom_event"}), "/events/1/data: required object"),
        (lambda d: d["events"].append({"event_type": "made_up", "data": {}}), "/events/1/event_type: unknown"),
        (lambda d: d["events"][0]["data"].pop("event_name"), "/events/0/data/event_name: required"),
        (lambda d: d["events"][0]["data"].pop("custom_event_type"), "/events/0/data/custom_event_type: required"),
        (lambda d: d["events"][0]["data"].update(custom_event_type="x"), "/events/0/data/custom_event_type: unknown"),
        (lambda d: d["events"][0]["data"].update(custom_attributes=[1]), "/events/0/data/custom_attributes: must be"),
        (lambda d: d["events"][0]["data"].update(timestamp_unixtime_ms="1"), "/events/0/data/timestamp_unixtime_ms"),
        (lambda d: d["events"].append({"event_type": "screen_view", "data": {}}), "/events/1/data/screen_name"),
        (lambda d: d.update(user_identities="x"), "/user_identities: must be an object or an array"),
        (lambda d: d.update(user_identities=[{"identity": "a"}]), "/user_identities/0/identity_type: required"),
        (lambda d: d.update(user_identities={"customer_id": 1.5}), "/user_identities/customer_id: identity must"),
        (lambda d: d.update(user_attributes=[]), "/user_attributes: must be an object"),
        (lambda d: d.update(context={"data_plan": {"plan_id": 3}}), "/context/data_plan/plan_id"),
        (
            lambda d: d.update(context={"data_plan": {"plan_id": "p", "plan_version": "x"}}),
            "/context/data_plan/plan_version",
        ),
    ],
)
def test_malformed_batches_list_precise_paths(mutate: object, expected: str) -> None:
    doc = batch([custom_event()])
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(BatchFormatError) as info:
        normalize_batch(doc)
    assert any(error.startswith(expected) for error in info.value.errors), info.value.errors


def test_every_error_is_reported_not_just_the_first() -> None:
    doc = {"environment": "staging", "events": [{"event_type": "custom_event", "data": {}}, 7]}
    with pytest.raises(BatchFormatError) as info:
        normalize_batch(doc)
    assert len(info.value.errors) == 4


def test_commerce_structure() -> None:
    bad = {"event_type": "commerce_event", "data": {"product_action": {"action": "steal", "products": [1]}}}
    with pytest.raises(BatchFormatError) as info:
        normalize_batch(batch([bad]))
    assert "/events/0/data/product_action/action" in " ".join(info.value.errors)
    assert "/events/0/data/product_action/products/0: must be an object" in info.value.errors


def test_non_object_batch() -> None:
    with pytest.raises(BatchFormatError):
        normalize_batch([1, 2])


def test_plan_tag_numeric_string_version() -> None:
    b = normalize_batch(batch([custom_event()], plan={"plan_id": "p", "plan_version": "3"}))
    assert (b.plan_id, b.plan_version) == ("p", 3)


@pytest.mark.parametrize("version", ["\u00b2", "\u0663", "\uff13", "9" * 5000, ""])
def test_plan_version_digits_int_refuses_are_a_batch_error_not_a_crash(version: str) -> None:
    # str.isdigit() takes "²", Arabic-Indic and full-width digits, and int() refuses more than 4300 digits.
    doc = batch([custom_event()], plan={"plan_id": "p", "plan_version": version})
    with pytest.raises(BatchFormatError) as info:
        normalize_batch(doc)
    assert info.value.errors == ["/context/data_plan/plan_version: must be an integer"]


def test_dedup_key_falls_back_to_a_content_hash_that_is_stable() -> None:
    doc = batch([custom_event(), custom_event("b")], source_request_id=None)
    first = normalize_batch(doc)
    again = normalize_batch(copy.deepcopy(doc))
    assert first.dedup_key.startswith("sha:")
    assert first.dedup_key == again.dedup_key == batch_dedup_key(again)
    changed = copy.deepcopy(doc)
    changed["events"][1]["data"]["custom_attributes"]["x"] = 1
    assert normalize_batch(changed).dedup_key != first.dedup_key


def test_event_message_id_prefers_source_message_id_then_hash() -> None:
    doc = batch([custom_event(message_id="smid-1"), custom_event(), custom_event()])
    b = normalize_batch(doc)
    assert b.events[0].message_id == "smid-1"
    hashed = [e.message_id for e in b.events[1:]]
    assert all(h.startswith("h:") for h in hashed)
    assert hashed[0] != hashed[1], "identical events at different positions get different ids"
    assert event_message_id(b, doc["events"][1], 1) == hashed[0]
    # stable across redeliveries of the same batch
    assert [e.message_id for e in normalize_batch(copy.deepcopy(doc)).events] == [e.message_id for e in b.events]
    # another batch (another source_request_id) with the same events: other ids
    other = normalize_batch({**doc, "source_request_id": "req-other"})
    assert other.events[1].message_id != hashed[0]


_COMMERCE = {"product_action": {"action": "purchase", "products": [{"id": "p-1"}]}}


@pytest.mark.parametrize(
    ("envelope", "fast"),
    [
        (custom_event(), "custom_event"),
        (custom_event(message_id="m-1"), "custom_event"),
        ({"event_type": "custom_event", "data": {"event_name": "n", "custom_event_type": "other"}}, "custom_event"),
        (
            {
                "event_type": "custom_event",
                "data": {
                    "event_name": "n",
                    "custom_event_type": "other",
                    "timestamp_unixtime_ms": None,
                    "custom_attributes": None,
                    "source_message_id": None,
                    "message_id": None,
                },
            },
            "custom_event",
        ),
        ({"event_type": "screen_view", "data": {"screen_name": "home"}}, "screen_view"),
        ({"event_type": "commerce_event", "data": _COMMERCE}, "commerce_event"),
        ({"event_type": "session_start", "data": {}}, "session_start"),
        ([], None),
        ({"event_type": "made_up", "data": {}}, None),
        ({"event_type": "custom_event", "data": []}, None),
        ({"event_type": "custom_event", "data": {"event_name": "", "custom_event_type": "other"}}, None),
        ({"event_type": "custom_event", "data": {"event_name": "n", "custom_event_type": "x"}}, None),
        ({"event_type": "custom_event", "data": {"event_name": "n", "custom_event_type": 1}}, None),
        ({"event_type": "screen_view", "data": {}}, None),
        ({"event_type": "commerce_event", "data": {"product_action": {"action": "steal"}}}, None),
        ({"event_type": "session_start", "data": {"timestamp_unixtime_ms": 1.0}}, None),
        ({"event_type": "session_start", "data": {"timestamp_unixtime_ms": True}}, None),
        ({"event_type": "session_start", "data": {"custom_attributes": []}}, None),
        ({"event_type": "session_start", "data": {"source_message_id": 1}}, None),
        ({"event_type": "session_start", "data": {"message_id": 1}}, None),
    ],
)
def test_the_fast_path_takes_only_events_the_full_check_passes(envelope: object, fast: str | None) -> None:
    # The allocation-free fast path of normalize_batch: None sends the event to _check_event, which words errors.
    assert _valid_event_type(envelope) == fast
    if fast is not None:
        errors: list[str] = []
        assert _check_event(0, envelope, errors) == (fast, envelope["data"])  # type: ignore[index]
        assert errors == []
