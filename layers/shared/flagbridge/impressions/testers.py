"""Which impressions mark their user as a tester, and by which rule.

Impression-side rules: ``key_allowlist``, ``key_pattern``, ``label`` and ``flag_treatment``. The
CDP-only rules (user attributes, environment, profile mark) do not apply to impressions. Rules are
checked in configuration order and the first match names the rule. A mark is sticky: a later
impression that matches no rule does not unmark a user.
"""

from __future__ import annotations

from flagbridge.config import FlagTreatmentRule, KeyAllowlistRule, KeyPatternRule, LabelRule, TestUsersConfig
from flagbridge.impressions.models import QueuedImpression


def matching_rule(impression: QueuedImpression, config: TestUsersConfig) -> str | None:
    """The name of the first rule that marks this impression's user as a tester, or None."""
    for rule in config.rules:
        if isinstance(rule, KeyAllowlistRule):
            if impression.key in rule.key_set:
                return rule.name
        elif isinstance(rule, KeyPatternRule):
            if rule.identity_types and impression.identity_type not in rule.identity_types:
                continue
            if rule.regex.fullmatch(impression.key):
                return rule.name
        elif isinstance(rule, LabelRule):
            if impression.label is not None and impression.label in rule.labels:
                return rule.name
        elif (
            isinstance(rule, FlagTreatmentRule)
            and impression.flag == rule.flag
            and impression.treatment in rule.treatments
        ):
            return rule.name
    return None
