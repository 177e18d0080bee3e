"""Impression-side tester rules."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.config import TesterRules, load_config
from flagbridge.impressions.models import QueuedImpression
from flagbridge.impressions.records import FIELDS, Row
from flagbridge.impressions.testers import RuleMatcher, matching_rule
from flagbridge.settings import PACKAGED_CONFIG

RULES = load_config(PACKAGED_CONFIG).test_users


def imp(
    key: str = "u-1", label: str | None = "default rule", flag: str = "f", treatment: str = "on"
) -> QueuedImpression:
    return QueuedImpression(
        key=key,
        flag=flag,
        treatment=treatment,
        time=1767225600000,
        label=label,
        version=1,
        environment="Production",
        traffic_type="user",
        identity_type="customer_id",
    )


def test_each_rule_kind_marks_with_its_name() -> None:
    assert matching_rule(imp(key="qa-bot-01"), RULES) == "qa-allowlist"
    assert matching_rule(imp(key="qa-someone"), RULES) == "qa-key-prefix"
    assert matching_rule(imp(label="whitelisted"), RULES) == "targeted-by-whitelist"
    assert matching_rule(imp(label="in segment internal_testers"), RULES) == "targeted-by-whitelist"
    assert matching_rule(imp(flag="internal_tester", treatment="on"), RULES) == "internal-tester-flag"


def test_non_matching_impressions() -> None:
    assert matching_rule(imp(), RULES) is None
    assert matching_rule(imp(key="xqa-1"), RULES) is None  # patterns match the whole key
    assert matching_rule(imp(label=None), RULES) is None
    assert matching_rule(imp(flag="internal_tester", treatment="off"), RULES) is None
    assert matching_rule(imp(key="qa-bot-01"), TesterRules()) is None


# ---- RuleMatcher (the processor's memoised matching, and marked()) agrees with matching_rule -------------------

_RULE_DOCUMENTS = [
    {"name": "allow", "type": "key_allowlist", "keys": ["qa-1", "k-2"]},
    {"name": "prefix", "type": "key_pattern", "pattern": "qa-.*"},
    {"name": "emails", "type": "key_pattern", "pattern": "k-.*", "identity_types": ["email"]},
    {"name": "labels", "type": "label", "labels": ["whitelisted", ""]},
    {"name": "flag", "type": "flag_treatment", "flag": "f", "treatments": ["on"]},
    {"name": "attribute", "type": "user_attribute", "attribute": "is_test_user"},
]
_ROWS = st.tuples(
    st.sampled_from(["qa-1", "qa-2", "k-2", "u-1"]),
    st.sampled_from(["f", "g"]),
    st.sampled_from(["on", "off"]),
    st.integers(1767225600000, 1767225600005),
    st.sampled_from([None, "", "whitelisted", "default rule"]),
    st.none(),
    st.just("Production"),
    st.just(""),
    st.none(),
    st.none(),
    st.just("user"),
    st.sampled_from(["customer_id", "email"]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(_RULE_DOCUMENTS), unique_by=lambda rule: rule["name"]),
    st.lists(st.lists(_ROWS, max_size=8), max_size=3),
)
def test_the_batch_matcher_agrees_with_matching_rule(rules: list[dict[str, Any]], batches: list[list[Row]]) -> None:
    config = TesterRules.model_validate({"rules": rules})
    matcher = RuleMatcher(config)  # one per SQS batch: its memos are shared by the batch's messages
    for rows in batches:
        expected = [(row, matching_rule(_impression(row), config)) for row in rows]
        assert list(matcher.marked(rows)) == [(row, rule) for row, rule in expected if rule is not None]
        assert [matcher.match_row(row) for row in rows] == [rule for _, rule in expected]


def _impression(row: Row) -> QueuedImpression:
    return QueuedImpression(**dict(zip(FIELDS, row, strict=True)))
