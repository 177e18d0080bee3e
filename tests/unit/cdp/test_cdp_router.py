"""route_batch: the whole CDP pipeline, decisions, payloads, quarantine, counts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from flagbridge.cdp.batch import BatchFormatError
from flagbridge.cdp.config import parse_cdp_config
from flagbridge.cdp.router import route_batch
from flagbridge.cdp.testers import TesterResolver
from flagbridge.config import TesterRule
from tests.fixtures import CDP_EXAMPLE, load_cdp_config
from tests.unit.cdp.samples import NOW_MS, PLAN_DOCUMENT, TS, WEBHOOK_BATCH, batch, commerce_event, custom_event

EXAMPLE = CDP_EXAMPLE
RULES = TesterResolver(
    TypeAdapter(list[TesterRule]).validate_python(
        [
            {"name": "qa-prefix", "type": "key_pattern", "pattern": "qa-.*"},
            {"name": "flagged", "type": "user_attribute", "attribute": "is_test_user"},
            {"name": "marked", "type": "profile_mark"},
        ]
    )
)
CONFIG = load_cdp_config(EXAMPLE)
DESTINATIONS = ["split-prod", "analytics", "warehouse", "reporting", "audit"]


def route(doc: Any, config: Any = CONFIG, marked: Any = (), now_ms: int = NOW_MS) -> Any:
    return route_batch(doc, config, marked, now_ms, RULES)


def test_tester_batch_goes_to_split_and_audit_only() -> None:
    events = [custom_event("add_to_plan", {"plan": "pro"}), custom_event("debug_dump"), commerce_event(3)]
    result = route(batch(events, customer_id="qa-bot-01"))
    assert result.tester.is_tester and result.tester.rule == "qa-prefix"
    assert set(result.payloads) == {"split-prod", "audit"}
    split = result.payloads["split-prod"]
    assert split.event_indexes == [0, 2]
    assert len(split.split_events) == 1 + 3, "one per product for the commerce event"
    assert result.payloads["audit"].batch is not None
    assert len(result.payloads["audit"].batch["events"]) == 3
    by_pair = {(d.destination, d.event_index): d.reason for d in result.decisions}
    assert by_pair["split-prod", 1] == "filter.event_names:exclude:debug_*"
    assert by_pair["analytics", 0] == "filter.users:exclude_test"
    assert by_pair["warehouse", 0] == "filter.users:exclude_test"
    assert result.counts["split-prod"] == {"sent": 2, "filter.event_names:exclude:debug_*": 1}
    assert result.counts["analytics"] == {"filter.users:exclude_test": 3}


def test_real_user_batch_goes_to_business_destinations_not_split() -> None:
    events = [custom_event("checkout_done", {"plan": "pro"}), custom_event("add_to_plan", {"internal": "1"})]
    result = route(batch(events, customer_id="c-123"))
    assert not result.tester.is_tester
    assert set(result.payloads) == {"analytics", "warehouse", "reporting", "audit"}
    assert result.payloads["reporting"].event_indexes == [0]
    reporting = {d.event_index: d.reason for d in result.decisions_for("reporting")}
    assert reporting == {0: "sent", 1: "filter.event_names:include"}
    assert all(d.reason == "filter.users:test_only" for d in result.decisions_for("split-prod"))
    # the forwarded batch is the same batch with only the passing events
    forwarded = result.payloads["reporting"].batch
    assert forwarded["user_identities"] == {"customer_id": "c-123"}
    assert [e["data"]["event_name"] for e in forwarded["events"]] == ["checkout_done"]


def test_profile_mark_makes_a_tester() -> None:
    doc = batch([custom_event("add_to_plan", {"plan": "pro"})], customer_id="c-9")
    assert route(doc, marked={("customer_id", "c-9")}).tester.rule == "marked"


def test_plan_violations_are_in_the_decision_log_and_quarantine() -> None:
    config = parse_cdp_config(
        {
            "data_plans": [
                {"plan_id": "bridge_plan", "version": 3, "activated_environment": "production",
                 "document": PLAN_DOCUMENT}
            ],
            "plan_enforcement": {"on_unplanned": "drop_event", "on_invalid_value": "drop_attribute"},
            "destinations": [
                {"name": "hook", "type": "webhook", "options": {"url": "https://x.example/h"},
                 "filter": {"users": "any"}},
            ],
        }
    )  # fmt: skip
    events = [
        custom_event("add_to_plan", {"plan": "pro", "seats": "0"}),
        custom_event("unknown_event"),
        custom_event("add_to_plan", {"plan": "free"}),
    ]
    doc = batch(events, plan={"plan_id": "bridge_plan"}, user_attributes={"is_test_user": True})
    result = route(doc, config=config)
    reasons = {d.event_index: (d.sent, d.reason) for d in result.decisions}
    assert reasons == {0: (True, "sent"), 1: (False, "plan.unplanned"), 2: (True, "sent")}
    forwarded = result.payloads["hook"].batch
    assert forwarded["events"][0]["data"]["custom_attributes"] == {"plan": "pro"}, "invalid seats removed"
    [record] = result.quarantine
    assert record.kind == "plan_blocked"
    meta = record.payload["batch"]["context"]["data_plan"]["block_metadata"]
    assert meta["blocked_event_ids"] == [result.batch.events[1].event_id]
    assert meta["blocked_event_attributes"][0]["event_attributes"] == ["./data/custom_attributes/seats"]
    assert {v["validation_error_type"] for v in record.payload["violations"]} == {"unplanned", "invalid_value"}


def test_required_plan_drops_untagged_batches_everywhere() -> None:
    config = parse_cdp_config(
        {
            "plan_enforcement": {"require_plan": True},
            "destinations": [{"name": "hook", "type": "webhook", "options": {"url": "https://x.example/h"}}],
        }
    )
    result = route(batch([custom_event(), custom_event("b")], customer_id="c-1"), config=config)
    assert [d.reason for d in result.decisions] == ["plan.no_data_plan"] * 2
    assert result.payloads == {}
    assert result.quarantine[0].reason == "plan.no_data_plan"
    assert result.counts == {"hook": {"plan.no_data_plan": 2}}


def test_split_rejections_are_decisions_and_quarantined() -> None:
    events = [
        custom_event("too_old", ts=NOW_MS - 25 * 3_600_000),
        {"event_type": "session_start", "data": {"timestamp_unixtime_ms": TS}},  # filtered by event_types
        custom_event("ok"),
    ]
    result = route(batch(events, customer_id="qa-bot-01"))
    split = {d.event_index: d.reason for d in result.decisions_for("split-prod")}
    assert split == {0: "split.too_old", 1: "filter.event_types:include", 2: "sent"}
    [record] = [q for q in result.quarantine if q.kind == "split_rejected"]
    assert record.reason == "split.too_old" and record.destination == "split-prod"
    assert record.payload["event"]["data"]["event_name"] == "too_old"
    assert result.counts["split-prod"]["split.too_old"] == 1


def test_unsupported_split_types_are_not_quarantined() -> None:
    config = parse_cdp_config(
        {
            "destinations": [
                {
                    "name": "split",
                    "type": "split",
                    "options": {
                        "sdk_key_secret": "s",
                        "identity_mapping": [{"identity_type": "customer_id", "traffic_type": "user"}],
                    },
                }
            ]
        }
    )
    event = {"event_type": "commerce_event", "data": {"promotion_action": {"action": "view"}}}
    result = route(batch([event], customer_id="qa-1"), config=config)
    assert result.decisions[0].reason == "split.unsupported_event_type"
    assert result.quarantine == []
    assert result.split_rejections["split"][0].reason == "split.unsupported_event_type"


def test_webhook_format_batch_and_empty_batches() -> None:
    result = route(WEBHOOK_BATCH)
    assert result.batch_key == "bid:-5158959812941698317"
    assert result.tester.is_tester
    assert isinstance(result.payloads["audit"].batch["user_identities"], list)
    empty = route(batch([], customer_id="c-1"))
    assert empty.decisions == []
    assert set(empty.payloads) == {"analytics", "warehouse", "reporting", "audit"}, "attribute-only batches flow"
    assert empty.payloads["audit"].batch["events"] == []


def test_malformed_batches_raise() -> None:
    with pytest.raises(BatchFormatError):
        route({"events": "nope"})


# --------------------------------------------------------------------------------------------------
# Property: every (event, destination) pair gets exactly one decision
# --------------------------------------------------------------------------------------------------

names = st.sampled_from(["add_to_plan", "debug_x", "checkout_done", "Add To Cart!", "x" * 70, "commerce_event"])
attribute_values = st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans(), st.none())
attributes = st.dictionaries(st.sampled_from(["plan", "seats", "internal", "debug"]), attribute_values, max_size=4)
custom_events = st.builds(
    lambda name, attrs, age, kind: custom_event(name, attrs, ts=NOW_MS - age, custom_event_type=kind),
    names,
    attributes,
    st.integers(0, 30 * 3_600_000),
    st.sampled_from(["transaction", "other"]),
)
other_events = st.sampled_from(
    [
        {"event_type": "session_start", "data": {}},
        {"event_type": "screen_view", "data": {"screen_name": "Cart"}},
        {"event_type": "crash_report", "data": {}},
        commerce_event(2),
        commerce_event(0, "refund"),
        {"event_type": "commerce_event", "data": {"promotion_action": {"action": "view"}}},
    ]
)
batches = st.builds(
    lambda events, customer, env, test_attr, plan: batch(
        events,
        customer_id=customer,
        environment=env,
        user_attributes=None if test_attr is None else {"is_test_user": test_attr},
        plan={"plan_id": "bridge_plan"} if plan else None,
        source_request_id=None,
    ),
    st.lists(st.one_of(custom_events, other_events), max_size=8),
    st.sampled_from([None, "qa-1", "c-1", "k" * 260]),
    st.sampled_from(["production", "development"]),
    st.sampled_from([None, True, "false"]),
    st.booleans(),
)
PROPERTY_CONFIG = parse_cdp_config(
    {
        **{k: v for k, v in CONFIG.model_dump().items() if k != "plan_enforcement"},
        "data_plans": [
            {"plan_id": "bridge_plan", "version": 3, "activated_environment": "production", "document": PLAN_DOCUMENT}
        ],
        "plan_enforcement": {"on_unplanned": "drop_event", "on_invalid_value": "drop_attribute"},
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.booleans())
def test_every_event_destination_pair_gets_exactly_one_decision(doc: dict[str, Any], strict: bool) -> None:
    config = PROPERTY_CONFIG if strict else CONFIG
    result = route(doc, config=config)
    pairs = [(d.destination, d.event_index) for d in result.decisions]
    expected = {(name, index) for name in DESTINATIONS for index in range(len(doc["events"]))}
    assert len(pairs) == len(set(pairs)) == len(expected)
    assert set(pairs) == expected
    for decision in result.decisions:
        assert decision.sent == (decision.reason == "sent")
        assert decision.reason == "sent" or decision.reason.split(".")[0] in {"plan", "filter", "split"}
    # payloads agree with the decisions
    for name, payload in result.payloads.items():
        sent = sorted(d.event_index for d in result.decisions_for(name) if d.sent)
        assert payload.event_indexes == sent
    for name in DESTINATIONS:
        counted = sum(result.counts[name].values())
        assert counted == len(doc["events"])
