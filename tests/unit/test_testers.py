"""Impression-side tester rules."""

from __future__ import annotations

from flagbridge.config import TesterRules, load_config
from flagbridge.impressions.models import QueuedImpression
from flagbridge.impressions.testers import matching_rule
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
