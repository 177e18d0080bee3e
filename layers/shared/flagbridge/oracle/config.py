"""The ``oracle`` section of the configuration: the tests the oracle judges.

A test names a flag, its environment and cohort, the treatments to judge, and metrics:

* ``rate``: bad events / all events. ``events`` and ``bad`` are *selectors* in the predicate language of the
  destination filters (``event_types``, ``event_names`` wildcards, ``attributes`` predicates; see
  :mod:`flagbridge.cdp.filters`); ``bad`` is applied to the events ``events`` selected.
* ``percentile``: the ``percentile`` (e.g. 95) of a numeric ``attribute`` (e.g. ``latency_ms``) of the selected
  events, in the attribute's unit. Judged as the rate of events above the line (see :mod:`flagbridge.oracle.judge`).

``pass_below`` is the budget and ``fail_at`` the line that fails (rates as fractions: ``0.01`` is 1%).
A test without metrics gets :data:`DEFAULT_METRICS`: the 5xx rate and p95 latency of the *answers* among
``api_response`` events (a service's own) and ``flagbridge_test_request`` events (the traffic generator's results),
both carrying ``status`` and ``latency_ms``, and the ``unanswered rate``: the share of requests nothing answered
(``status`` 0: refused, timed out, dropped). A run's own mistake (a wrong port, a target gone) then moves only the
unanswered rate, never the 5xx rate or the latency of the service.

Actions: a test's ``actions`` (``alert`` always, ``kill`` on FAIL) apply to each metric unless the metric has its
own ``actions``, which override them: kill on the 5xx rate, only alert on latency. The default unanswered rate
only alerts (``actions: [alert]``): it kills only where a test opts in on that metric.

Everything is validated at load and errors name the key, e.g.
``'oracle.tests.0.metrics.0': pass_below (0.05) must be below fail_at (0.01)``. A selector that can never
match (an empty include list, an include the exclude cancels, contradictory attribute predicates, also
across ``events`` and ``bad``) is an error too: such a test would report NO_DATA forever.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flagbridge.cdp._values import canonical, to_number
from flagbridge.cdp.filters import AttributePredicate, CompiledFilter, EventNameRule, EventTypeRule, Filter
from flagbridge.errors import ConfigError

Action = Literal["alert", "kill"]
Cohort = Literal["testers", "everyone"]
Decision = Literal["sequential", "fixed"]
DEPRECATED_METRIC_KEYS = ("confidence", "interim_confidence")
"""Keys still accepted (old configurations load) but ignored since verdicts are always valid: ``alpha`` sets the
error level of every look, and ``decision: fixed`` is the classic single look at ``1 - alpha``."""
_LOG = logging.getLogger(__name__)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_NAMED_BY_TYPE = frozenset({"custom_event", "screen_view"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Selector(_Strict):
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


class _Metric(_Strict):
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
    def _lines(self) -> _Metric:
        if self.pass_below >= self.fail_at:
            raise ValueError(f"pass_below ({self.pass_below:g}) must be below fail_at ({self.fail_at:g})")
        problem = never_matches(self.events)
        if problem:
            raise ValueError(f"events can never match: {problem}")
        return self


class RateMetric(_Metric):
    """bad events / selected events, e.g. the 5xx rate of ``api_response`` events."""

    type: Literal["rate"] = "rate"
    bad: Selector
    pass_below: float = Field(gt=0, lt=1)
    fail_at: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _bad_can_match(self) -> RateMetric:
        problem = never_matches(self.events, self.bad)
        if problem:
            raise ValueError(f"bad can never match among the selected events: {problem}")
        return self


class PercentileMetric(_Metric):
    """A percentile of a numeric attribute, e.g. ``latency_ms`` p95 below 500 passes, at 1000 fails."""

    type: Literal["percentile"]
    attribute: str = Field(min_length=1)
    percentile: float = Field(gt=0, lt=100)

    @property
    def tail(self) -> float:
        """The share of events allowed above the line (p95 -> 0.05)."""
        return round(1 - self.percentile / 100, 12)


Metric = Annotated[RateMetric | PercentileMetric, Field(discriminator="type")]

SERVER_ERROR = "^5[0-9][0-9]$"
"""A ``status`` that is a 5xx, matched on the canonical text, so ``500``, ``"500"`` and ``500.0`` all match."""
SERVER_ERROR_OR_NO_ANSWER = "^(0|5[0-9][0-9])$"
"""A 5xx or no answer in one ``bad`` rule, for a test that wants a single metric for both (not the default)."""
NO_ANSWER = 0
"""The ``status`` of a request nothing answered (a timeout, a refused or dropped connection): the traffic
generator's results carry it with outcome ``transport_error``."""

_HTTP_EVENTS: dict[str, Any] = {
    "event_types": {"include": ["custom_event"]},
    "event_names": {"include": ["api_response", "flagbridge_test_request"]},
}
_ANSWERS: dict[str, Any] = {
    **_HTTP_EVENTS,
    "attributes": [{"attribute": "status", "op": "not_equals", "value": NO_ANSWER}],
}
DEFAULT_METRICS: tuple[dict[str, Any], ...] = (
    {
        "name": "5xx rate",
        "type": "rate",
        "events": _ANSWERS,
        "bad": {"attributes": [{"attribute": "status", "op": "regex", "value": SERVER_ERROR}]},
        "pass_below": 0.01,
        "fail_at": 0.05,
    },
    {
        "name": "latency p95",
        "type": "percentile",
        "events": _ANSWERS,
        "attribute": "latency_ms",
        "percentile": 95,
        "pass_below": 500,
        "fail_at": 1000,
    },
    {
        "name": "unanswered rate",
        "type": "rate",
        "events": _HTTP_EVENTS,
        "bad": {"attributes": [{"attribute": "status", "op": "equals", "value": NO_ANSWER}]},
        "pass_below": 0.01,
        "fail_at": 0.05,
        "actions": ["alert"],
    },
)


class KillOptions(_Strict):
    """How the ``kill`` action calls Split's Admin API (the key itself is a Secrets Manager secret)."""

    dry_run: bool = Field(default=False, description="record what would be sent, send nothing")
    workspace_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    comment: str = Field(default="flagbridge oracle: FAIL verdict", max_length=500)
    confirm_within_minutes: int = Field(
        default=30,
        ge=1,
        le=7 * 1440,
        description="alert `kill not confirmed` when no `killed` impression is counted this long after Split accepted",
    )


class OracleTest(_Strict):
    """One test: a flag's treatments in one environment, judged on metrics."""

    name: str = Field(pattern=_NAME)
    flag: str = Field(min_length=1, max_length=128)
    environment: str = Field(min_length=1, description="Split environment name (or id) of the impressions")
    cohort: Cohort = "testers"
    treatments: list[str] | None = Field(default=None, description="omitted: every treatment seen")
    treatment_attribute: str | None = Field(
        default=None, description="an event attribute naming the treatment; omitted: the profile's assignment"
    )
    split: dict[str, float] | None = Field(
        default=None, description="intended percentage per treatment: enables the sample-ratio-mismatch check"
    )
    interval_minutes: int = Field(default=1, ge=1, le=1440)
    start: datetime | None = Field(default=None, description="omitted: when the newest flag version was first seen")
    window_hours: float = Field(default=24, gt=0, le=24 * 90)
    actions: list[Action] = Field(default_factory=lambda: list[Action](["alert"]))
    kill: KillOptions | None = None
    metrics: list[Metric] = Field(
        default_factory=lambda: [dict(m) for m in DEFAULT_METRICS], validate_default=True, min_length=1
    )

    @field_validator("actions")
    @classmethod
    def _alert_always(cls, actions: list[str]) -> list[str]:
        return _with_alert(actions)

    @field_validator("split")
    @classmethod
    def _split_weights(cls, split: dict[str, float] | None) -> dict[str, float] | None:
        if split is not None and (len(split) < 2 or any(w <= 0 for w in split.values())):
            raise ValueError("split needs at least two treatments with positive percentages")
        return split

    @model_validator(mode="after")
    def _consistent(self) -> OracleTest:
        if "kill" in self.actions and self.kill is None:
            raise ValueError("actions include kill: set kill.workspace_id (Split workspace of the flag)")
        for position, metric in enumerate(self.metrics):
            if metric.actions is not None and "kill" in metric.actions and self.kill is None:
                raise ValueError(
                    f"metrics.{position}.actions include kill: set the test's kill.workspace_id (Split workspace of "
                    "the flag)"
                )
        names = [m.name for m in self.metrics]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(repeated)}")
        if self.split and self.treatments and set(self.split) - set(self.treatments):
            raise ValueError("split names treatments that treatments does not judge")
        return self

    def metric_actions(self, metric: str) -> list[str]:
        """The actions a FAIL of ``metric`` takes: the metric's own ``actions``, else the test's."""
        found = next((m for m in self.metrics if m.name == metric), None)
        if found is not None and found.actions is not None:
            return list(found.actions)
        return list(self.actions)

    @property
    def start_ms(self) -> int | None:
        return None if self.start is None else int(self.start.timestamp() * 1000)

    @property
    def window_ms(self) -> int:
        return int(self.window_hours * 3_600_000)


class OracleConfig(_Strict):
    """The ``oracle`` section: the tests."""

    tests: list[OracleTest] = Field(default_factory=list)
    destination: str = Field(default="oracle", description="the cdp destination (type oracle) feeding the counters")

    @field_validator("tests")
    @classmethod
    def _unique(cls, tests: list[OracleTest]) -> list[OracleTest]:
        names = [t.name for t in tests]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"test names must be unique; repeated: {', '.join(repeated)}")
        return tests

    def test(self, name: str) -> OracleTest | None:
        return next((t for t in self.tests if t.name == name), None)

    def deprecations(self) -> list[str]:
        """One line per deprecated key the configuration still sets (it loads; the key has no effect)."""
        return [
            f"'oracle.tests.{t}.metrics.{m}.{key}' is deprecated and ignored: verdicts are valid at every look at "
            f"error level alpha ({metric.alpha:g}); set alpha, or decision: fixed for one look at the window's end"
            for t, test in enumerate(self.tests)
            for m, metric in enumerate(test.metrics)
            for key in DEPRECATED_METRIC_KEYS
            if getattr(metric, key) is not None
        ]


def lane_problems(oracle: OracleConfig, destinations: Mapping[str, tuple[str, str]]) -> list[str]:
    """What stops the oracle lane from feeding the tests: ``destinations`` maps names to (type, users mode)."""
    if not oracle.tests:
        return []
    lane = destinations.get(oracle.destination)
    if lane is None or lane[0] != "oracle":
        return [f"'oracle.destination': no cdp destination {oracle.destination!r} of type oracle feeds the tests"]
    problems = []
    for position, test in enumerate(oracle.tests):
        if test.cohort == "everyone" and lane[1] != "any":
            problems.append(
                f"'oracle.tests.{position}.cohort': everyone needs filter.users: any on the "
                f"{oracle.destination!r} destination (it is {lane[1]})"
            )
        if test.cohort == "testers" and lane[1] == "exclude_test":
            problems.append(f"'oracle.tests.{position}.cohort': the {oracle.destination!r} lane excludes testers")
    return problems


def _location(loc: tuple[int | str, ...]) -> str:
    # Drop pydantic's union tags ("rate", "percentile") so the key reads like the YAML path.
    return ".".join(str(part) for part in loc if part not in ("rate", "percentile"))


def parse_oracle_config(document: Any, source: str = "<config>") -> OracleConfig:
    """Validate the ``oracle`` section; ConfigError naming the key (``'oracle.tests.0.metrics.1.confidence'``)."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: invalid configuration at 'oracle': must be a mapping")
    try:
        config = OracleConfig.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"'{_location(('oracle', *error['loc']))}': {error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors(include_url=False)
        )
        raise ConfigError(f"{source}: invalid configuration at {problems}") from exc
    for line in config.deprecations():
        _LOG.warning("%s: %s", source, line)
    return config
