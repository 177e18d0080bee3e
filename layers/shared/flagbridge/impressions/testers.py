"""Which impressions mark their user as a tester, and by which rule.

Impression-side rules: ``key_allowlist``, ``key_pattern``, ``label`` and ``flag_treatment``. The
CDP-only rules (user attributes, environment, profile mark) do not apply to impressions. Rules are
checked in configuration order and the first match names the rule. A mark is sticky: a later
impression that matches no rule does not unmark a user.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from flagbridge.impressions.records import Row, row_of
from flagbridge.rules import FlagTreatmentRule, KeyAllowlistRule, KeyPatternRule, LabelRule, TesterRules

if TYPE_CHECKING:
    from flagbridge.impressions.models import QueuedImpression

_UNKNOWN = -2  # memo miss
_NO_MATCH = -1


def matching_rule(impression: QueuedImpression, config: TesterRules) -> str | None:
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


class RuleMatcher:
    """:func:`matching_rule` for the many impressions of one batch, with the same answers.

    The impression-side rules look at three independent things: the key (allowlists, key patterns), the
    label, and the (flag, treatment). The first matching rule of each kind is memoised per distinct value,
    so an impression costs three dictionary lookups; the earliest of the three in configuration order wins.
    Build one per batch (the memos grow with the distinct values seen).
    """

    def __init__(self, config: TesterRules) -> None:
        self._names = [rule.name for rule in config.rules]
        self._key_rules = [
            (index, rule)
            for index, rule in enumerate(config.rules)
            if isinstance(rule, KeyAllowlistRule | KeyPatternRule)
        ]
        self._label_rules = [(index, rule) for index, rule in enumerate(config.rules) if isinstance(rule, LabelRule)]
        self._flag_rules = [
            (index, rule) for index, rule in enumerate(config.rules) if isinstance(rule, FlagTreatmentRule)
        ]
        self._by_key: dict[tuple[str, str], int] = {}
        self._by_label: dict[str | None, int] = {}
        self._by_flag: dict[tuple[str, str], int] = {}
        # What a label or flag rule can match at all: most impressions are told apart by one set lookup each.
        self._labels = frozenset(label for _, rule in self._label_rules for label in rule.labels)
        self._flags = frozenset(rule.flag for _, rule in self._flag_rules)

    def marked(self, rows: Iterable[Row]) -> Iterator[tuple[Row, str]]:
        """``(row, match_row(row))`` for the rows of ``rows`` that a rule marks, in order.

        A row whose key no key rule matches (memoised), whose label no label rule names and whose flag no flag
        rule names is passed over without :meth:`match_row`'s three lookups (the usual row).
        """
        by_key, labels, flags = self._by_key, self._labels, self._flags
        for row in rows:
            key = (row[0], row[11])  # key, identity type
            index = by_key.get(key, _UNKNOWN)
            if index == _UNKNOWN:
                index = by_key[key] = self._first_key_rule(*key)
            if index == _NO_MATCH and row[4] not in labels and row[1] not in flags:
                continue
            rule = self.match_row(row)
            if rule is not None:
                yield row, rule

    def match(self, impression: QueuedImpression) -> str | None:
        """The name of the first rule that marks this impression's user as a tester, or None."""
        return self.match_row(row_of(impression))

    def match_row(self, row: Row) -> str | None:
        """:meth:`match` of an impression given as a :data:`~flagbridge.impressions.records.Row`."""
        key = (row[0], row[11])  # key, identity type
        by_key = self._by_key.get(key, _UNKNOWN)
        if by_key == _UNKNOWN:
            by_key = self._by_key[key] = self._first_key_rule(*key)
        label = row[4]
        by_label = self._by_label.get(label, _UNKNOWN)
        if by_label == _UNKNOWN:
            by_label = self._by_label[label] = self._first_label_rule(label)
        flag = (row[1], row[2])  # flag, treatment
        by_flag = self._by_flag.get(flag, _UNKNOWN)
        if by_flag == _UNKNOWN:
            by_flag = self._by_flag[flag] = self._first_flag_rule(*flag)
        if by_key == by_label == by_flag == _NO_MATCH:
            return None  # the usual answer
        return self._names[min(index for index in (by_key, by_label, by_flag) if index != _NO_MATCH)]

    def _first_key_rule(self, key: str, identity_type: str) -> int:
        for index, rule in self._key_rules:
            if isinstance(rule, KeyAllowlistRule):
                if key in rule.key_set:
                    return index
            elif (not rule.identity_types or identity_type in rule.identity_types) and rule.regex.fullmatch(key):
                return index
        return _NO_MATCH

    def _first_label_rule(self, label: str | None) -> int:
        if label is None:
            return _NO_MATCH
        return next((index for index, rule in self._label_rules if label in rule.labels), _NO_MATCH)

    def _first_flag_rule(self, flag: str, treatment: str) -> int:
        return next(
            (index for index, rule in self._flag_rules if flag == rule.flag and treatment in rule.treatments),
            _NO_MATCH,
        )
