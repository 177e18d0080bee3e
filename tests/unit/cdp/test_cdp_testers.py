"""Tester resolution on the CDP side."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from flagbridge.cdp.batch import normalize_batch
from flagbridge.cdp.testers import TesterResolver, profile_lookup_keys, resolve_tester
from flagbridge.config import TesterRule, TesterRules
from tests.unit.cdp.samples import WEBHOOK_BATCH, batch, custom_event

RULES = TypeAdapter(list[TesterRule])


def rules(*items: dict[str, Any]) -> list[Any]:
    return RULES.validate_python(list(items))


def decide(doc: dict[str, Any], rule_list: list[Any], marked: Any = ()) -> Any:
    return resolve_tester(normalize_batch(doc), rule_list, marked)


def test_no_rules_means_not_a_tester() -> None:
    decision = decide(batch([custom_event()]), [])
    assert (decision.is_tester, decision.rule) == (False, None)


def test_key_allowlist_matches_any_identity_value() -> None:
    r = rules({"name": "qa", "type": "key_allowlist", "keys": ["qa@example.com"]})
    decision = decide(WEBHOOK_BATCH, r)
    assert decision.is_tester and decision.rule == "qa"
    assert "qa@example.com" not in decision.reason, "reasons must not carry identity values"
    assert not decide(batch([], customer_id="someone"), r).is_tester


def test_key_pattern_full_match_and_identity_types() -> None:
    any_type = rules({"name": "qa", "type": "key_pattern", "pattern": "qa-.*"})
    assert decide(batch([], customer_id="qa-bot-01"), any_type).is_tester
    assert not decide(batch([], customer_id="xqa-bot"), any_type).is_tester, "fullmatch, not search"
    email_only = rules({"name": "qa", "type": "key_pattern", "pattern": "qa-.*", "identity_types": ["email"]})
    assert not decide(batch([], customer_id="qa-bot-01"), email_only).is_tester


def test_user_attribute_default_truthy_and_values() -> None:
    truthy = rules({"name": "flag", "type": "user_attribute", "attribute": "is_test_user"})
    for value in (True, "true", "TRUE", "yes", 1, "1"):
        assert decide(batch([], user_attributes={"is_test_user": value}), truthy).is_tester, value
    for value in (False, "false", 0, "no", None):
        assert not decide(batch([], user_attributes={"is_test_user": value}), truthy).is_tester, value
    assert not decide(batch([]), truthy).is_tester
    valued = rules({"name": "tier", "type": "user_attribute", "attribute": "tier", "values": ["qa", 42]})
    assert decide(batch([], user_attributes={"tier": "42"}), valued).is_tester
    assert decide(batch([], user_attributes={"tier": ["gold", "qa"]}), valued).is_tester
    assert not decide(batch([], user_attributes={"tier": "QA"}), valued).is_tester


def test_environment_rule() -> None:
    r = rules({"name": "dev", "type": "environment", "environments": ["development"]})
    assert decide(batch([], environment="development"), r).is_tester
    assert not decide(batch([], environment="production"), r).is_tester


def test_profile_mark_uses_the_passed_in_lookup() -> None:
    r = rules({"name": "marked", "type": "profile_mark"})
    doc = batch([], customer_id="c-77")
    assert decide(doc, r, {("customer_id", "c-77")}).is_tester
    assert not decide(doc, r, {("email", "c-77")}).is_tester
    assert not decide(doc, r).is_tester
    assert TesterResolver(r).uses_profile_marks


def test_split_side_rules_never_match_and_first_match_wins() -> None:
    r = rules(
        {"name": "label", "type": "label", "labels": ["whitelisted"]},
        {"name": "flag", "type": "flag_treatment", "flag": "f", "treatments": ["on"]},
        {"name": "first", "type": "environment", "environments": ["production"]},
        {"name": "second", "type": "key_pattern", "pattern": ".*"},
    )
    assert decide(batch([]), r).rule == "first"
    config = TesterRules(rules=r)
    assert TesterResolver(config).resolve(normalize_batch(batch([]))).rule == "first"
    assert not TesterResolver(r[:2]).uses_profile_marks


def test_profile_lookup_keys_are_distinct_and_ordered() -> None:
    b1 = normalize_batch(batch([], customer_id="a"))
    b2 = normalize_batch(batch([], customer_id="a"))
    b3 = normalize_batch(WEBHOOK_BATCH)
    keys = profile_lookup_keys([b1, b2, b3])
    assert keys[0] == ("customer_id", "a")
    assert len(keys) == len(set(keys)) == 4
