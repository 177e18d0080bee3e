"""What the counter adds up, and the event matching its per-event path runs on.

:class:`Delta` is what one or more events add to one counter; :class:`EventMatcher` is a metric selector compiled
for the hot path (the event type and name part memoised, attribute predicates called directly).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flagbridge.cdp.batch import Event
from flagbridge.cdp.filters import CompiledFilter, Filter
from flagbridge.oracle.metric import Selector
from flagbridge.values import to_number


@dataclass(slots=True)
class Delta:
    """What one or more messages add to one counter."""

    n: int = 0
    k: int = 0
    invalid: int = 0
    buckets: dict[int, int] = field(default_factory=dict)
    at_pass: int = 0
    """Percentile metrics: events whose value is ``>= pass_below`` (exact, not read from the buckets)."""
    at_fail: int = 0
    """Percentile metrics: events whose value is ``>= fail_at``."""
    classified: int = 0
    """Percentile metrics: events counted into ``at_pass`` / ``at_fail`` (fewer than ``n`` only in counters
    written before the exact counts existed; those are classified from their buckets)."""

    def add(self, other: Delta) -> None:
        self.n += other.n
        self.k += other.k
        self.invalid += other.invalid
        self.at_pass += other.at_pass
        self.at_fail += other.at_fail
        self.classified += other.classified
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count


_UNSET: Any = object()
MEMO_LIMIT = 4096


class EventMatcher:
    """A selector for the hot path: the event type and name part memoised, attribute predicates called directly.

    Metrics with the same ``events`` selector share one instance, so an event is matched once per selector.
    """

    __slots__ = ("_memo", "_names", "accepts", "any_name", "predicates")

    def __init__(self, selector: Selector) -> None:
        self._names: CompiledFilter = Filter(
            users="any", event_types=selector.event_types, event_names=selector.event_names
        ).compile()
        self.any_name = not self._names.has_event_rules
        """No type or name rules: only the attribute predicates decide."""
        self.predicates = [(attribute, check) for attribute, check, _ in Filter(
            users="any", attributes=selector.attributes).compile().predicates]  # fmt: skip
        self._memo: dict[tuple[Any, str], bool] = {}
        self.accepts = _attribute_check(selector, self.predicates)
        """The attribute part alone, ``attributes -> bool`` (None: no predicates)."""

    def takes_name(self, event_type: Any, name: str, data: dict[str, Any]) -> bool:
        """Whether the event type and name part takes the event (not memoised: callers keep the answer)."""
        return self.any_name or self._names.event_reason(Event(0, str(event_type), data, {})) is None

    def matches(self, event_type: Any, name: str, data: dict[str, Any], attributes: Mapping[str, Any]) -> bool:
        if not self.any_name:
            named = self._memo.get((event_type, name), _UNSET)
            if named is _UNSET:
                named = self._names.event_reason(Event(0, str(event_type), data, {})) is None
                if len(self._memo) < MEMO_LIMIT:
                    self._memo[(event_type, name)] = named
            if not named:
                return False
        for attribute, check in self.predicates:  # noqa: SIM110 - a loop, not all(<genexpr>): the hot path
            if not check(attributes.get(attribute)):
                return False
        return True


_MEMO_KINDS = (str, int, bool, type(None))
"""Value types whose equal values always take one canonical form and one number (floats: ``-0.0 == 0.0``)."""
Check = Callable[[Any], bool]
AttributeCheck = Callable[[Mapping[str, Any]], bool]


def _attribute_check(selector: Selector, predicates: list[tuple[str, Check]]) -> AttributeCheck | None:
    """``attributes -> bool`` for the predicates (None when there are none): an attribute that must only be absent
    (or present) is looked up, any other attribute's predicates are answered once per value."""
    if not predicates:
        return None
    ops: dict[str, set[str]] = {}
    for predicate in selector.attributes:
        ops.setdefault(predicate.attribute, set()).add(predicate.op)
    absent = tuple(attribute for attribute, kinds in ops.items() if kinds == {"not_exists"})
    present = tuple(attribute for attribute, kinds in ops.items() if kinds == {"exists"})
    valued: tuple[tuple[str, dict[tuple[type, Any], bool], tuple[Check, ...]], ...] = tuple(
        (attribute, {}, tuple(check for name, check in predicates if name == attribute))
        for attribute in ops
        if attribute not in absent and attribute not in present
    )
    if not present and len(absent) <= 1 and len(valued) == 1:
        return _one_attribute(absent[0] if absent else None, *valued[0])

    def accepts(values: Mapping[str, Any]) -> bool:
        for attribute in absent:
            if values.get(attribute) is not None:
                return False
        for attribute in present:
            if values.get(attribute) is None:
                return False
        for attribute, memo, checks in valued:
            value = values.get(attribute)
            kind = type(value)
            answer = memo.get((kind, value)) if kind in _MEMO_KINDS else None
            if answer is None:
                answer = _answer(value, memo, checks)
            if not answer:
                return False
        return True

    return accepts


def _one_attribute(
    absent: str | None, attribute: str, memo: dict[tuple[type, Any], bool], checks: tuple[Check, ...]
) -> AttributeCheck:
    """The usual shape, without loops: one attribute's predicates, and at most one attribute that must be absent."""

    def accepts(values: Mapping[str, Any]) -> bool:
        if absent is not None and values.get(absent) is not None:
            return False
        value = values.get(attribute)
        kind = type(value)
        answer = memo.get((kind, value)) if kind in _MEMO_KINDS else None
        return _answer(value, memo, checks) if answer is None else answer

    return accepts


def _answer(value: Any, memo: dict[tuple[type, Any], bool], checks: tuple[Check, ...]) -> bool:
    """Whether ``value`` passes every check, remembered for the value when its type allows it."""
    answer = all(check(value) for check in checks)
    kind = type(value)
    if kind in _MEMO_KINDS and len(memo) < MEMO_LIMIT:
        memo[(kind, value)] = answer
    return answer


def number_of(value: Any) -> float | int | None:
    """The finite number a value stands for, or None (the hot path's :func:`~flagbridge.values.to_number`)."""
    kind = type(value)
    if kind is int or kind is float:
        return value if kind is int or math.isfinite(value) else None
    return to_number(value)
