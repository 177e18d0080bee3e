"""Data plan validation: coercion, violation classification, actions, block_metadata, plan selection."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from flagbridge.cdp.batch import normalize_batch
from flagbridge.cdp.dataplan import CompiledPlan, PlanDocumentError, PlanEnforcement, PlanOutcome, PlanValidator
from tests.unit.cdp.samples import PLAN_DOCUMENT, batch, commerce_event, custom_event

PLAN_TAG = {"plan_id": "bridge_plan"}


def validator(**enforcement: Any) -> PlanValidator:
    plan = CompiledPlan.compile("bridge_plan", 3, PLAN_DOCUMENT, "production")
    return PlanValidator([plan], PlanEnforcement(**enforcement))


def run(events: list[dict[str, Any]], user_attributes: dict[str, Any] | None = None, **enforcement: Any) -> PlanOutcome:
    doc = batch(events, plan=PLAN_TAG, user_attributes=user_attributes)
    return validator(**enforcement).validate(normalize_batch(doc))


@pytest.mark.parametrize(
    "attributes",
    [
        {"plan": "pro", "seats": "42"},
        {"plan": "pro", "seats": 42},
        {"plan": "pro", "trial": "true"},
        {"plan": "pro", "trial": True},
        {"plan": "pro", "code": 42},
        {"plan": "pro", "code": "42"},
    ],
)
def test_string_and_native_forms_are_equal(attributes: dict[str, Any]) -> None:
    outcome = run([custom_event(attributes=attributes)])
    assert outcome.violations == []
    assert outcome.plan == ("bridge_plan", 3)


def test_enum_compares_canonical_forms() -> None:
    document = {
        "data_points": [
            {
                "match": {"type": "custom_event", "criteria": {"event_name": "e"}},
                "validator": {
                    "type": "json_schema",
                    "definition": {
                        "properties": {
                            "data": {"properties": {"custom_attributes": {"properties": {"n": {"enum": [42, True]}}}}}
                        }
                    },
                },
            }
        ]
    }
    plan = CompiledPlan.compile("p", 1, document, "production")
    v = PlanValidator([plan], PlanEnforcement())
    for value, ok in (("42", True), (42, True), ("true", True), ("43", False)):
        doc = batch([custom_event("e", {"n": value}, custom_event_type="other")], plan={"plan_id": "p"})
        assert (v.validate(normalize_batch(doc)).violations == []) is ok, value


def test_invalid_value_is_classified_with_pointer_expected_actual() -> None:
    outcome = run([custom_event(attributes={"plan": "gold", "seats": "0"})])
    by_key = {v.key: v for v in outcome.violations}
    assert by_key["plan"].validation_error_type == "invalid_value"
    assert by_key["plan"].error_pointer == "#/data/custom_attributes/plan"
    assert by_key["plan"].expected == 'enum: ["free","pro"]'
    assert by_key["plan"].actual == "gold"
    assert by_key["seats"].validation_error_type == "invalid_value"
    assert by_key["seats"].expected == "minimum: 1"
    assert all(v.action == "allow" for v in outcome.violations)
    assert outcome.batch is not None and len(outcome.batch.events) == 1
    assert outcome.block_metadata is None


def test_wrong_type_that_cannot_be_coerced() -> None:
    outcome = run([custom_event(attributes={"plan": "pro", "seats": "many", "trial": "maybe"})])
    assert {(v.key, v.validation_error_type) for v in outcome.violations} == {
        ("seats", "invalid_value"),
        ("trial", "invalid_value"),
    }


def test_missing_required_including_absent_custom_attributes() -> None:
    event = custom_event(attributes={"seats": 2})
    no_attributes = custom_event()
    del no_attributes["data"]["custom_attributes"]
    outcome = run([event, no_attributes])
    assert [(v.validation_error_type, v.error_pointer, v.event_index) for v in outcome.violations] == [
        ("missing_required", "#/data/custom_attributes/plan", 0),
        ("missing_required", "#/data/custom_attributes/plan", 1),
    ]


def test_unplanned_attribute_event_and_user_attribute() -> None:
    events = [
        custom_event(attributes={"plan": "pro", "debug": "1"}),
        custom_event("never_planned"),
        {"event_type": "screen_view", "data": {"screen_name": "Cart"}},
        {"event_type": "session_start", "data": {}},  # not plannable: never validated
    ]
    outcome = run(events, user_attributes={"is_test_user": "true", "shoe_size": 44})
    kinds = {(v.validation_error_type, v.error_pointer, v.key, v.event_index) for v in outcome.violations}
    assert kinds == {
        ("unplanned", "#/data/custom_attributes/debug", "debug", 0),
        ("unplanned", "#", "never_planned", 1),
        ("unplanned", "#/user_attributes/shoe_size", "shoe_size", None),
    }


def test_allow_keeps_everything() -> None:
    outcome = run([custom_event(attributes={"plan": "pro", "debug": "1"}), custom_event("x")])
    assert outcome.batch is not None
    assert [e.index for e in outcome.batch.events] == [0, 1]
    assert outcome.batch.events[0].custom_attributes == {"plan": "pro", "debug": "1"}


def test_drop_attribute_removes_only_that_key_without_mutating_input() -> None:
    doc = batch(
        [custom_event(attributes={"plan": "pro", "debug": "1"})],
        plan=PLAN_TAG,
        user_attributes={"is_test_user": True, "shoe_size": 44},
    )
    original = copy.deepcopy(doc)
    b = normalize_batch(doc)
    outcome = validator(on_unplanned="drop_attribute").validate(b)
    assert outcome.batch is not None
    out = outcome.batch.to_dict()
    assert out["events"][0]["data"]["custom_attributes"] == {"plan": "pro"}
    assert out["user_attributes"] == {"is_test_user": True}
    assert outcome.batch.user_attributes == {"is_test_user": True}
    assert doc == original
    meta = outcome.block_metadata
    assert meta is not None
    assert meta["blocked_event_attributes"] == [
        {"event_id": b.events[0].event_id, "event_attributes": ["./data/custom_attributes/debug"]}
    ]
    assert meta["blocked_user_attributes"] == ["shoe_size"]
    assert meta["blocked_event_ids"] == []
    quarantined = outcome.quarantine_document()
    assert quarantined is not None
    assert quarantined["context"]["data_plan"]["block_metadata"] == meta
    assert quarantined["events"][0]["data"]["custom_attributes"] == {"plan": "pro", "debug": "1"}, "original batch"


def test_drop_attribute_on_unplanned_event_escalates_to_drop_event() -> None:
    outcome = run(
        [custom_event("never_planned"), custom_event(attributes={"plan": "pro"})], on_unplanned="drop_attribute"
    )
    assert outcome.violations[0].action == "drop_event"
    assert outcome.dropped_events == {0: "plan.unplanned"}
    assert outcome.batch is not None and [e.index for e in outcome.batch.events] == [1]


def test_on_unplanned_event_override() -> None:
    outcome = run([custom_event("never_planned")], on_unplanned="drop_event", on_unplanned_event="allow")
    assert outcome.violations[0].action == "allow"
    assert outcome.dropped_events == {}


def test_drop_event_on_invalid_value() -> None:
    outcome = run(
        [custom_event(attributes={"plan": "gold"}), custom_event(attributes={"plan": "pro"})],
        on_invalid_value="drop_event",
    )
    assert outcome.dropped_events == {0: "plan.invalid_value"}
    assert outcome.batch is not None and [e.index for e in outcome.batch.events] == [1]
    assert outcome.block_metadata is not None
    assert outcome.block_metadata["blocked_event_ids"] == [outcome.original.events[0].event_id]


def test_drop_attribute_on_invalid_value_removes_the_attribute() -> None:
    outcome = run([custom_event(attributes={"plan": "pro", "seats": "zero"})], on_invalid_value="drop_attribute")
    assert outcome.batch is not None
    assert outcome.batch.events[0].custom_attributes == {"plan": "pro"}


def test_drop_event_on_missing_required() -> None:
    outcome = run([custom_event(attributes={})], on_missing_required="drop_event")
    assert outcome.dropped_events == {0: "plan.missing_required"}


def test_drop_batch() -> None:
    outcome = run([custom_event(attributes={"plan": "pro"}), custom_event("x")], on_unplanned="drop_batch")
    assert outcome.batch is None
    assert outcome.batch_drop_reason == "plan.unplanned"
    assert outcome.block_metadata is not None
    assert len(outcome.block_metadata["blocked_event_ids"]) == 2
    assert outcome.quarantine_document() is not None


def test_missing_required_cannot_be_drop_attribute() -> None:
    with pytest.raises(ValidationError):
        PlanEnforcement(on_missing_required="drop_attribute")


def test_batch_without_plan_passes_unless_required() -> None:
    b = normalize_batch(batch([custom_event("anything")]))
    assert validator().validate(b).batch is b
    outcome = validator(require_plan=True).validate(b)
    assert outcome.batch is None
    assert outcome.batch_drop_reason == "plan.no_data_plan"


def test_plan_selection_by_version_and_environment() -> None:
    dev_only = CompiledPlan.compile("p", 2, PLAN_DOCUMENT, "development")
    prod = CompiledPlan.compile("p", 1, PLAN_DOCUMENT, "production")
    inactive = CompiledPlan.compile("p", 3, PLAN_DOCUMENT, "none")
    v = PlanValidator([prod, dev_only, inactive], PlanEnforcement())

    def select(environment: str, version: int | None = None) -> int | None:
        tag: dict[str, Any] = {"plan_id": "p"}
        if version is not None:
            tag["plan_version"] = version
        plan = v.select(normalize_batch(batch([], environment=environment, plan=tag)))
        return None if plan is None else plan.version

    assert select("development") == 2  # highest active version for development
    assert select("production") == 1  # a development activation does not cover production
    assert select("production", 2) is None
    assert select("production", 3) is None  # not activated
    assert select("development", 1) == 1  # production activation covers development
    assert v.select(normalize_batch(batch([], plan={"plan_id": "unknown"}))) is None


def test_commerce_matching() -> None:
    outcome = run([commerce_event(2, "purchase"), commerce_event(1, "refund")])
    assert [(v.key, v.data_point) for v in outcome.violations] == [("commerce_event", "product_action:refund")]


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"data_points": [{"match": {"type": "nope"}}]},
        {"data_points": [{"match": {"type": "custom_event", "criteria": {}}}]},
        {"data_points": [{"match": {"type": "screen_view", "criteria": {"screen_name": "a"}}, "validator": 3}]},
        {
            "data_points": [
                {"match": {"type": "screen_view", "criteria": {"screen_name": "a"}}},
                {"match": {"type": "screen_view", "criteria": {"screen_name": "a"}}},
            ]
        },
    ],
)
def test_invalid_plan_documents(document: dict[str, Any]) -> None:
    with pytest.raises(PlanDocumentError):
        CompiledPlan.compile("p", 1, document, "production")


def _identity_plan() -> PlanValidator:
    document = copy.deepcopy(PLAN_DOCUMENT)
    document["version_document"]["data_points"].append(
        {
            "match": {"type": "user_identities", "criteria": {}},
            "validator": {
                "type": "json_schema",
                "definition": {"additionalProperties": False, "properties": {"customer_id": {"type": "string"}}},
            },
        }
    )
    plan = CompiledPlan.compile("bridge_plan", 3, document, "production")
    return PlanValidator([plan], PlanEnforcement(on_unplanned="drop_attribute"))


def test_drop_attribute_blocks_an_unplanned_identity_in_the_shape_it_arrived_in() -> None:
    as_object = batch([custom_event(attributes={"plan": "pro"})], plan=PLAN_TAG)
    as_object["user_identities"] = {"customer_id": "c-1", "email": "a@example.com"}
    as_array = batch([custom_event(attributes={"plan": "pro"})], plan=PLAN_TAG)
    as_array["user_identities"] = [
        {"identity_type": "customer_id", "identity": "c-1"},
        {"identity_type": "email", "identity": "a@example.com"},
    ]
    as_array["mpid"] = 7346244611012968789
    kept_object = {"customer_id": "c-1"}
    kept_array = [{"identity_type": "customer_id", "identity": "c-1"}]
    for doc, kept in ((as_object, kept_object), (as_array, kept_array)):
        outcome = _identity_plan().validate(normalize_batch(doc))
        assert outcome.batch is not None
        assert [kind for kind, _ in outcome.batch.identities if kind != "mpid"] == ["customer_id"]
        out = outcome.batch.to_dict()
        assert out["user_identities"] == kept
        assert out.get("mpid") == doc.get("mpid"), "mpid is never planned, so never blocked"
        assert outcome.block_metadata is not None
        assert outcome.block_metadata["blocked_user_identities"] == ["email"]
        assert outcome.block_metadata["blocked_user_attributes"] == []
        assert len(doc["user_identities"]) == 2, "the input is not mutated"
