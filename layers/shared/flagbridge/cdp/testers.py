"""Decide whether a batch's user is a tester, from the configured tester rules.

The rules are the shared ``test_users.rules`` of the configuration (:mod:`flagbridge.rules`). On the
CDP side they are evaluated in order against one batch; the first matching rule wins:

- ``key_allowlist``: any identity value of the batch (any identity type, ``mpid`` included) is in
  ``keys`` (exact, case-sensitive);
- ``key_pattern``: an identity value fully matches ``pattern`` (``re.fullmatch``); with
  ``identity_types`` only those identity types are checked;
- ``user_attribute``: the user attribute is present and equals one of ``values``, compared by
  canonical form (``"42"`` equals ``42``, ``"true"`` equals ``true``); without ``values`` it must be
  truthy: ``true``, ``1`` or the strings ``"true"``, ``"yes"``, ``"1"`` (any case). A list-valued
  attribute matches when any element does;
- ``environment``: the batch environment is listed;
- ``profile_mark``: one of the batch's ``(identity_type, value)`` pairs is in ``marked_identities``.
  That lookup is done by the caller (a DynamoDB BatchGetItem of :func:`profile_lookup_keys`, cached per
  invocation) and passed in, so this module stays pure;
- ``label`` and ``flag_treatment`` are Split-side rules (they need an impression); they never match a
  CDP batch.

After the configured rules, the tester registry: one of the batch's ``(identity_type, value)`` pairs is in
``registered_identities`` (looked up by the caller in bulk, like the profile marks; see
:mod:`flagbridge.testers.registry`). The decision names the rule ``tester-registry``.

Reasons never contain identity values (they end up in logs): they name the rule and identity type.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flagbridge.cdp.batch import Batch
from flagbridge.rules import (
    EnvironmentRule,
    KeyAllowlistRule,
    KeyPatternRule,
    ProfileMarkRule,
    TesterRule,
    TesterRules,
    UserAttributeRule,
)
from flagbridge.testers.registry import REGISTRY_RULE
from flagbridge.values import canonical

_TRUTHY_TEXT = frozenset({"true", "yes", "1"})


@dataclass(slots=True, frozen=True)
class TesterDecision:
    """Whether the batch's user is a tester, which rule said so and why."""

    __test__ = False  # not a pytest test class

    is_tester: bool
    rule: str | None
    reason: str


_NOT_A_TESTER = TesterDecision(False, None, "no tester rule matched")
_DECISIONS_LIMIT = 1024  # (rule, reason) pairs remembered per resolver; reasons name identity types and attributes


def _truthy(value: Any) -> bool:
    if value is True:
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 1
    return isinstance(value, str) and value.strip().lower() in _TRUTHY_TEXT


class TesterResolver:
    """Tester rules compiled once (regexes, sets) and evaluated per batch."""

    __test__ = False

    def __init__(self, rules: Sequence[TesterRule] | TesterRules) -> None:
        if isinstance(rules, TesterRules):
            rules = rules.rules
        self._checks: list[tuple[str, str, Any]] = []
        self._decisions: dict[tuple[str, str], TesterDecision] = {}
        for rule in rules:
            if isinstance(rule, KeyAllowlistRule):
                self._checks.append(("key_allowlist", rule.name, frozenset(rule.keys)))
            elif isinstance(rule, KeyPatternRule):
                types = frozenset(rule.identity_types) if rule.identity_types else None
                self._checks.append(("key_pattern", rule.name, (re.compile(rule.pattern), types)))
            elif isinstance(rule, UserAttributeRule):
                values = (
                    None
                    if rule.values is None
                    else frozenset(text for text in (canonical(v) for v in rule.values) if text is not None)
                )
                self._checks.append(("user_attribute", rule.name, (rule.attribute, values)))
            elif isinstance(rule, EnvironmentRule):
                self._checks.append(("environment", rule.name, frozenset(rule.environments)))
            elif isinstance(rule, ProfileMarkRule):
                self._checks.append(("profile_mark", rule.name, None))
            # label / flag_treatment rules need an impression: not applicable to CDP batches.

    def _decision(self, kind: str, name: str, reason: str) -> TesterDecision:
        """The (immutable) decision of a matching rule, built once per rule and reason (reasons name no values)."""
        key = (name, reason)
        decision = self._decisions.get(key)
        if decision is None:
            decision = TesterDecision(True, name, f"{kind} rule '{name}' matched {reason}")
            if len(self._decisions) < _DECISIONS_LIMIT:
                self._decisions[key] = decision
        return decision

    @property
    def uses_profile_marks(self) -> bool:
        """Whether any rule needs the profile-mark lookup (callers can skip the DynamoDB read otherwise)."""
        return any(kind == "profile_mark" for kind, _, _ in self._checks)

    def resolve(
        self,
        batch: Batch,
        marked_identities: Container[tuple[str, str]] = (),
        registered_identities: Container[tuple[str, str]] = (),
    ) -> TesterDecision:
        """Decide whether ``batch``'s user is a tester.

        Parameters
        ----------
        batch
            A normalised batch.
        marked_identities
            ``(identity_type, value)`` pairs the profile store marks as testers (only the batch's own
            identities need to be present; see :func:`profile_lookup_keys`).
        registered_identities
            ``(identity_type, value)`` pairs the tester registry holds (not expired), checked after the rules.

        Returns
        -------
        TesterDecision
            The first matching rule, or ``is_test_user=False``.
        """
        for kind, name, spec in self._checks:
            reason = _MATCHERS[kind](batch, spec, marked_identities)
            if reason is not None:
                return self._decision(kind, name, reason)
        if registered_identities:
            for pair in batch.identities:
                if pair in registered_identities:
                    return TesterDecision(True, REGISTRY_RULE, f"tester registry matched identity {pair[0]}")
        return _NOT_A_TESTER


def _match_allowlist(batch: Batch, keys: frozenset[str], _: Container[tuple[str, str]]) -> str | None:
    for kind, value in batch.identities:
        if value in keys:
            return f"identity {kind}"
    return None


def _match_pattern(
    batch: Batch, spec: tuple[re.Pattern[str], frozenset[str] | None], _: Container[tuple[str, str]]
) -> str | None:
    regex, types = spec
    for kind, value in batch.identities:
        if (types is None or kind in types) and regex.fullmatch(value) is not None:
            return f"identity {kind}"
    return None


def _match_attribute(
    batch: Batch, spec: tuple[str, frozenset[str] | None], _: Container[tuple[str, str]]
) -> str | None:
    attribute, values = spec
    if attribute not in batch.user_attributes:
        return None
    raw = batch.user_attributes[attribute]
    items = raw if isinstance(raw, list) else [raw]
    for item in items:
        if values is None:
            if _truthy(item):
                return f"user attribute {attribute}"
        elif canonical(item) in values:
            return f"user attribute {attribute}"
    return None


def _match_environment(batch: Batch, environments: frozenset[str], _: Container[tuple[str, str]]) -> str | None:
    return f"environment {batch.environment}" if batch.environment in environments else None


def _match_mark(batch: Batch, _: None, marked: Container[tuple[str, str]]) -> str | None:
    for pair in batch.identities:
        if pair in marked:
            return f"profile mark on identity {pair[0]}"
    return None


_MATCHERS: dict[str, Any] = {
    "key_allowlist": _match_allowlist,
    "key_pattern": _match_pattern,
    "user_attribute": _match_attribute,
    "environment": _match_environment,
    "profile_mark": _match_mark,
}


def resolve_tester(
    batch: Batch,
    rules: Sequence[TesterRule] | TesterRules | TesterResolver,
    marked_identities: Container[tuple[str, str]] = (),
) -> TesterDecision:
    """Decide whether ``batch``'s user is a tester (convenience wrapper over :class:`TesterResolver`).

    Parameters
    ----------
    batch
        A normalised batch.
    rules
        The configured rules, or an already compiled resolver (preferred on hot paths).
    marked_identities
        ``(identity_type, value)`` pairs marked as testers in the profile store.

    Returns
    -------
    TesterDecision
    """
    resolver = rules if isinstance(rules, TesterResolver) else TesterResolver(rules)
    return resolver.resolve(batch, marked_identities)


def profile_lookup_keys(batches: Iterable[Batch]) -> list[tuple[str, str]]:
    """Return the distinct ``(identity_type, value)`` pairs to look up for ``profile_mark`` rules, in order."""
    seen: dict[tuple[str, str], None] = {}
    for batch in batches:
        for pair in batch.identities:
            seen.setdefault(pair, None)
    return list(seen)
