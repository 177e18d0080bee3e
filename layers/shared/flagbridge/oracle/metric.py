"""What every oracle metric kind shares: the strict model base, event selectors and the metric settings.

A metric kind (:mod:`flagbridge.oracle.kinds`) subclasses :class:`MetricConfig` with its own ``type`` and fields;
:class:`Selector` is the event part of a destination filter, with :func:`never_matches` telling at load when a
selector (or several at once) can never pick an event.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from flagbridge.cdp.filters import AttributePredicate, CompiledFilter, EventNameRule, EventTypeRule, Filter
from flagbridge.rules import StrictModel
from flagbridge.values import canonical, to_number

Action = Literal["alert", "kill"]
Decision = Literal["sequential", "fixed"]
_NAMED_BY_TYPE = frozenset({"custom_event", "screen_view"})


class Selector(StrictModel):
    """Which events: the event parts of a destination filter (all given parts must hold)."""

    event_types: EventTypeRule = Field(default_factory=EventTypeRule)
    event_names: EventNameRule = Field(default_factory=EventNameRule)
    attributes: list[AttributePredicate] = Field(default_factory=list)

    def compile(self) -> CompiledFilter:
        return Filter(
            users="any", event_types=self.event_types, event_names=self.event_names, attributes=self.attributes
        ).compile()


def _type_and_name_problem(selector: Selector) -> str | None:
    types, names = selector.event_types, selector.event_names
    if types.include is not None and not set(types.include) - set(types.exclude):
        return "event_types: nothing is left once exclude removes its types from include"
    if names.include is not None:
        literal_excludes = {p for p in names.exclude if not re.search(r"[*?\[]", p)}
        if not [p for p in names.include if p not in literal_excludes]:
            return "event_names: nothing is left once exclude removes its names from include"
        if types.include is not None and not set(types.include) & _NAMED_BY_TYPE:
            possible = set(types.include) - set(types.exclude)
            if not any(fnmatch.fnmatchcase(t, p) for t in possible for p in names.include):
                return "event_names: no included name can match the included event types"
    return None


def _allowed_values(attribute: str, checks: list[AttributePredicate]) -> tuple[set[Any] | None, str | None]:
    """The values equals/in/not_equals/not_in leave for one attribute (None: unrestricted), or why none is left."""
    equal = {canonical(p.value) for p in checks if p.op == "equals"}
    allowed: set[Any] | None = set(equal) if equal else None
    for p in checks:
        if p.op == "in":
            values = {canonical(v) for v in p.value}
            allowed = values if allowed is None else allowed & values
    if allowed is not None:
        allowed -= {canonical(p.value) for p in checks if p.op == "not_equals"}
        allowed -= {canonical(v) for p in checks if p.op == "not_in" for v in p.value}
    if len(equal) > 1 or (allowed is not None and not allowed):
        return allowed, f"attributes: no value of {attribute} satisfies its equals/in/not_equals/not_in predicates"
    return allowed, None


Bounds = tuple[float, bool, float, bool]
"""(low, low is open, high, high is open) of the numbers an attribute may take."""


def _numeric_bounds(checks: list[AttributePredicate]) -> Bounds:
    low, high = -float("inf"), float("inf")
    low_open = high_open = False
    for p in checks:
        bound = to_number(p.value) if p.op in ("gt", "gte", "lt", "lte") else None
        if bound is None:
            continue
        if p.op in ("gt", "gte") and (bound > low or (bound == low and p.op == "gt")):
            low, low_open = bound, p.op == "gt"
        if p.op in ("lt", "lte") and (bound < high or (bound == high and p.op == "lt")):
            high, high_open = bound, p.op == "lt"
    return low, low_open, high, high_open


def _within(number: float | None, bounds: Bounds) -> bool:
    low, low_open, high, high_open = bounds
    if number is None:
        return False
    return (number > low or (number == low and not low_open)) and (number < high or (number == high and not high_open))


def _attribute_problem(predicates: list[AttributePredicate]) -> str | None:
    by_attribute: dict[str, list[AttributePredicate]] = {}
    for predicate in predicates:
        by_attribute.setdefault(predicate.attribute, []).append(predicate)
    for attribute, checks in by_attribute.items():
        ops = {p.op for p in checks}
        if "not_exists" in ops and len(ops) > 1:
            return f"attributes: {attribute} must be absent and also {sorted(ops - {'not_exists'})[0]}"
        allowed, problem = _allowed_values(attribute, checks)
        if problem:
            return problem
        bounds = _numeric_bounds(checks)
        low, low_open, high, high_open = bounds
        if low > high or (low == high and (low_open or high_open)):
            return f"attributes: no number satisfies every bound on {attribute}"
        bounded = (low, high) != (-float("inf"), float("inf"))
        if allowed is not None and bounded and not any(_within(to_number(v), bounds) for v in allowed):
            return f"attributes: no allowed value of {attribute} satisfies its numeric bounds"
    return None


def never_matches(*selectors: Selector) -> str | None:
    """Why events chosen by all of ``selectors`` at once can never exist, or None when some can."""
    for selector in selectors:
        problem = _type_and_name_problem(selector)
        if problem:
            return problem
    return _attribute_problem([p for selector in selectors for p in selector.attributes])


def _with_alert(actions: list[str]) -> list[str]:
    """``alert`` first and always, each action once."""
    return ["alert", *[a for a in dict.fromkeys(actions) if a != "alert"]]


class MetricConfig(StrictModel):
    """The settings of every metric kind; a kind adds its ``type`` and its own fields."""

    type: str

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.%-]*$")
    events: Selector = Field(default_factory=Selector)
    pass_below: float = Field(gt=0)
    fail_at: float = Field(gt=0)
    alpha: float = Field(
        default=0.01, gt=0, le=0.2, description="the chance a verdict is ever wrong, over every look (per line)"
    )
    decision: Decision = Field(
        default="sequential", description="sequential: decide at any look; fixed: once, at the window's end"
    )
    confidence: float | None = Field(default=None, gt=0.5, lt=1, description="deprecated and ignored: use alpha")
    interim_confidence: float | None = Field(
        default=None, gt=0.5, lt=1, description="deprecated and ignored: use alpha"
    )
    min_samples: int = Field(default=300, ge=1)
    min_failures: int = Field(default=3, ge=1)
    actions: list[Action] | None = Field(default=None, description="overrides the test's actions for this metric")

    @field_validator("actions")
    @classmethod
    def _alert_always(cls, actions: list[str] | None) -> list[str] | None:
        return None if actions is None else _with_alert(actions)

    @model_validator(mode="after")
    def _lines(self) -> MetricConfig:
        if self.pass_below >= self.fail_at:
            raise ValueError(f"pass_below ({self.pass_below:g}) must be below fail_at ({self.fail_at:g})")
        problem = never_matches(self.events)
        if problem:
            raise ValueError(f"events can never match: {problem}")
        return self

    reports_fail_count: ClassVar[bool] = False
    """Whether the verdict reports the events at/above the FAIL line apart (``k_fail``)."""

    def judged_lines(self) -> tuple[float, float]:
        """(the PASS line, the FAIL line) of the judged rate."""
        return self.pass_below, self.fail_at
