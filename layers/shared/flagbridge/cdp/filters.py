"""Declarative per-destination filters, evaluated before fan-out.

Every destination has one :class:`Filter`. An event is sent to the destination only when it passes
**every** part of the filter; the parts are checked in this order and the first one that fails names
the decision's reason:

1. ``environments`` (list, optional): the batch ``environment`` must be listed.
   Reason ``filter.environments:<environment>``.
2. ``users``: ``any`` (no condition), ``test_only`` (only batches whose user is a tester) or
   ``exclude_test`` (only batches whose user is not a tester). When a destination's filter omits it,
   Split destinations default to ``test_only`` and every other destination to ``exclude_test``
   (fail closed: business destinations never see testers unless told ``users: any``).
   Reasons ``filter.users:test_only`` / ``filter.users:exclude_test``.
3. ``event_types.include`` / ``event_types.exclude``: exact ``event_type`` values. With ``include``,
   only listed types pass; ``exclude`` removes types (exclude wins over include).
   Reasons ``filter.event_types:include`` / ``filter.event_types:exclude:<type>``.
4. ``event_names.include`` / ``event_names.exclude``: shell-style wildcards (``*``, ``?``, ``[seq]``;
   :func:`fnmatch.fnmatchcase`, **case-sensitive**) against the event's name: ``event_name`` for
   custom events, ``screen_name`` for screen views, and the event type itself for every other event
   (so ``session_*`` works). With ``include``, only matching names pass; a name matching any
   ``exclude`` pattern is dropped (exclude wins). Reasons ``filter.event_names:include`` /
   ``filter.event_names:exclude:<pattern>`` (the first exclude pattern, in configured order, that
   matched).
5. ``attributes``: a list of predicates ``{attribute, op, value}`` on the event's
   ``custom_attributes``; **all** must hold (AND). Reason ``filter.attributes:<attribute>:<op>`` for
   the first predicate that does not. Operators:

   ============ ================================================================================
   op           holds when
   ============ ================================================================================
   equals       the attribute is present and equals ``value``
   not_equals   the attribute is present and differs from ``value``
   in           the attribute is present and equals one of ``value`` (a list)
   not_in       the attribute is present and equals none of ``value`` (a list)
   exists       the attribute is present
   not_exists   the attribute is absent
   regex        the attribute is present and ``re.search(value, text)`` finds a match
   gt gte lt lte the attribute is present, reads as a number and compares to ``value`` (a number)
   ============ ================================================================================

   "Present" means the key exists with a non-null value: a missing (or null) attribute never
   matches any operator except ``not_exists``. Equality compares canonical forms, so ``"42"``
   equals ``42`` and ``"true"`` equals ``true``; strings are otherwise compared exactly and
   case-sensitively (like mParticle forwarding rules). ``regex`` sees the canonical text of scalars;
   lists and objects never match it. Numeric operators read numeric strings as numbers; booleans and
   non-numeric values do not match.

An event that passes every part gets reason ``sent`` (destinations may still refuse it later, e.g.
Split's constraints, which have their own ``split.*`` reasons). Every (event, destination) pair gets
exactly one :class:`Decision`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

from pydantic import Field, field_validator, model_validator

from flagbridge.cdp.batch import EVENT_TYPES, Batch, Event, event_name_of
from flagbridge.rules import StrictModel
from flagbridge.values import canonical, to_number

UsersMode = Literal["test_only", "exclude_test", "any"]
AttributeOp = Literal["equals", "not_equals", "in", "not_in", "exists", "not_exists", "regex", "gt", "gte", "lt", "lte"]
SENT = "sent"
_WILDCARD = re.compile(r"[*?\[]")
_MEMO_LIMIT = 4096  # distinct (event type, name) decisions remembered per filter
_UNKNOWN: Any = object()


class EventTypeRule(StrictModel):
    """Exact event-type include/exclude lists."""

    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)

    @field_validator("include", "exclude")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types: {', '.join(unknown)}")
        return value


class EventNameRule(StrictModel):
    """Wildcard (fnmatch, case-sensitive) event-name include/exclude lists."""

    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)


class AttributePredicate(StrictModel):
    """One condition on an event custom attribute."""

    attribute: str = Field(min_length=1)
    op: AttributeOp
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> AttributePredicate:
        op, value = self.op, self.value
        if op in ("exists", "not_exists"):
            if value is not None:
                raise ValueError(f"op {op} takes no value")
        elif op in ("in", "not_in"):
            if not isinstance(value, list) or not value or any(canonical(v) is None for v in value):
                raise ValueError(f"op {op} needs a non-empty list of scalar values")
        elif op == "regex":
            if not isinstance(value, str):
                raise ValueError("op regex needs a string pattern")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        elif op in ("gt", "gte", "lt", "lte"):
            if to_number(value) is None:
                raise ValueError(f"op {op} needs a numeric value")
        elif canonical(value) is None:
            raise ValueError(f"op {op} needs a scalar value")
        return self


class Filter(StrictModel):
    """A destination's filter; see the module docstring for the exact semantics."""

    users: UsersMode | None = Field(
        default=None, description="omitted: test_only for Split destinations, exclude_test for the others"
    )
    environments: list[Literal["production", "development"]] | None = None
    event_types: EventTypeRule = Field(default_factory=EventTypeRule)
    event_names: EventNameRule = Field(default_factory=EventNameRule)
    attributes: list[AttributePredicate] = Field(default_factory=list)

    def compile(self, default_users: UsersMode = "any") -> CompiledFilter:
        """Compile patterns and predicates once (at configuration load)."""
        return CompiledFilter(self, self.users or default_users)


class Decision(NamedTuple):
    """What happened to one event for one destination."""

    destination: str
    event_index: int
    message_id: str
    sent: bool
    reason: str


_Check = Callable[[Any], bool]


def _compile_predicate(predicate: AttributePredicate) -> _Check:
    op, value = predicate.op, predicate.value
    if op == "exists":
        return lambda v: v is not None
    if op == "not_exists":
        return lambda v: v is None
    if op in ("equals", "not_equals"):
        target = canonical(value)
        if op == "equals":
            return lambda v: v is not None and canonical(v) == target
        return lambda v: v is not None and canonical(v) is not None and canonical(v) != target
    if op in ("in", "not_in"):
        targets = frozenset(canonical(v) for v in value)
        if op == "in":
            return lambda v: v is not None and canonical(v) in targets
        return lambda v: v is not None and canonical(v) is not None and canonical(v) not in targets
    if op == "regex":
        regex = re.compile(value)

        def _regex(v: Any) -> bool:
            text = v if isinstance(v, str) else canonical(v)
            return text is not None and regex.search(text) is not None

        return _regex
    bound = to_number(value)
    assert bound is not None
    compare: Callable[[float, float], bool] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }[op]

    def _numeric(v: Any) -> bool:
        number = to_number(v)
        return number is not None and compare(number, bound)

    return _numeric


class _Patterns:
    """Literal names in a set, wildcard patterns compiled to regexes."""

    __slots__ = ("literal", "ordered")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.literal: set[str] = set()
        self.ordered: list[tuple[str, re.Pattern[str] | None]] = []
        for pattern in patterns:
            if _WILDCARD.search(pattern):
                self.ordered.append((pattern, re.compile(fnmatch.translate(pattern))))
            else:
                self.literal.add(pattern)
                self.ordered.append((pattern, None))

    def first_match(self, name: str) -> str | None:
        if name in self.literal:
            return name
        for pattern, regex in self.ordered:
            if regex is not None and regex.match(name) is not None:
                return pattern
        return None


class CompiledFilter:
    """A :class:`Filter` ready for the hot path."""

    __slots__ = (
        "_memo",
        "environments",
        "has_event_rules",
        "name_exclude",
        "name_include",
        "predicates",
        "type_exclude",
        "type_include",
        "users",
    )

    def __init__(self, spec: Filter, users: UsersMode) -> None:
        self.users = users
        self.environments = frozenset(spec.environments) if spec.environments is not None else None
        self.type_include = frozenset(spec.event_types.include) if spec.event_types.include is not None else None
        self.type_exclude = frozenset(spec.event_types.exclude)
        self.name_include = _Patterns(spec.event_names.include) if spec.event_names.include is not None else None
        self.name_exclude = _Patterns(spec.event_names.exclude) if spec.event_names.exclude else None
        self.predicates = [
            (p.attribute, _compile_predicate(p), f"filter.attributes:{p.attribute}:{p.op}") for p in spec.attributes
        ]
        self.has_event_rules = bool(
            self.type_include is not None or self.type_exclude or self.name_include or self.name_exclude
        ) or bool(self.predicates)
        self._memo: dict[tuple[str, str], str | None] = {}
        """``(event type, name)`` -> reason of the type and name parts (they depend on nothing else)."""

    def batch_reason(self, environment: str, is_tester: bool) -> str | None:
        """Return the reason every event of the batch is filtered out, or None when the batch may pass."""
        if self.environments is not None and environment not in self.environments:
            return f"filter.environments:{environment}"
        if self.users == "test_only" and not is_tester:
            return "filter.users:test_only"
        if self.users == "exclude_test" and is_tester:
            return "filter.users:exclude_test"
        return None

    def event_reason(self, event: Event) -> str | None:
        """Return the reason ``event`` is filtered out, or None when it passes (batch checks excluded)."""
        if not self.has_event_rules:
            return None
        event_type = event.event_type
        name = str(event_name_of(event_type, event.data))
        key = (event_type, name)
        memo = self._memo
        reason = memo.get(key, _UNKNOWN)
        if reason is _UNKNOWN:
            reason = self._type_and_name_reason(event_type, name)
            if len(memo) < _MEMO_LIMIT:
                memo[key] = reason
        if reason is not None:
            return reason
        if self.predicates:
            attributes = event.custom_attributes
            for attribute, check, message in self.predicates:
                if not check(attributes.get(attribute)):
                    return message
        return None

    def decide(self, events: list[Event]) -> tuple[list[str], list[Event]]:
        """:meth:`event_reason` of every event in one call: the reasons (``sent`` for a pass) and the passing events."""
        reasons: list[str] = []
        passing: list[Event] = []
        memo = self._memo
        predicates = self.predicates
        for event in events:
            event_type = event.event_type
            name = event_name_of(event_type, event.data)
            if type(name) is not str:  # normalised events always carry string names; a hand-built one may not
                name = str(name)
            key = (event_type, name)
            reason = memo.get(key, _UNKNOWN)
            if reason is _UNKNOWN:
                reason = self._type_and_name_reason(event_type, name)
                if len(memo) < _MEMO_LIMIT:
                    memo[key] = reason
            if reason is None and predicates:
                attributes = event.custom_attributes
                for attribute, check, message in predicates:
                    if not check(attributes.get(attribute)):
                        reason = message
                        break
            if reason is None:
                passing.append(event)
                reasons.append(SENT)
            else:
                reasons.append(reason)
        return reasons, passing

    def _type_and_name_reason(self, event_type: str, name: str) -> str | None:
        if self.type_include is not None and event_type not in self.type_include:
            return "filter.event_types:include"
        if event_type in self.type_exclude:
            return f"filter.event_types:exclude:{event_type}"
        if self.name_include is not None or self.name_exclude is not None:
            if self.name_include is not None and self.name_include.first_match(name) is None:
                return "filter.event_names:include"
            if self.name_exclude is not None:
                pattern = self.name_exclude.first_match(name)
                if pattern is not None:
                    return f"filter.event_names:exclude:{pattern}"
        return None


def evaluate_filter(
    compiled: CompiledFilter,
    destination: str,
    batch: Batch,
    is_tester: bool,
    events: Iterable[Event] | None = None,
) -> list[Decision]:
    """Decide, for one destination, which events of a batch pass its filter.

    Parameters
    ----------
    compiled
        The destination's compiled filter.
    destination
        The destination's name (copied into each decision).
    batch
        A normalised batch.
    is_tester
        The batch's tester decision.
    events
        The events to decide on (default: ``batch.events``).

    Returns
    -------
    list of Decision
        One decision per event, in order: ``sent=True, reason="sent"`` or ``sent=False`` with the
        ``filter.*`` reason of the first failing part.
    """
    chosen = batch.events if events is None else events
    batch_reason = compiled.batch_reason(batch.environment, is_tester)
    if batch_reason is not None:
        return [Decision(destination, e.index, e.message_id, False, batch_reason) for e in chosen]
    out: list[Decision] = []
    for event in chosen:
        reason = compiled.event_reason(event)
        out.append(Decision(destination, event.index, event.message_id, reason is None, reason or SENT))
    return out
