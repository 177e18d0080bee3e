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

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, GetPydanticSchema, ValidationError, field_validator, model_validator

from flagbridge.errors import ConfigError
from flagbridge.oracle.kinds import KINDS, PercentileMetric, RateMetric, metric_schema, on_change
from flagbridge.oracle.metric import Action, MetricConfig, Selector, _with_alert, never_matches
from flagbridge.rules import StrictModel

__all__ = ["PercentileMetric", "RateMetric", "Selector", "never_matches"]
Cohort = Literal["testers", "everyone"]
DEPRECATED_METRIC_KEYS = ("confidence", "interim_confidence")
"""Keys still accepted (old configurations load) but ignored since verdicts are always valid: ``alpha`` sets the
error level of every look, and ``decision: fixed`` is the classic single look at ``1 - alpha``."""
_LOG = logging.getLogger(__name__)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


Metric = Annotated[MetricConfig, GetPydanticSchema(metric_schema)]
"""A metric of any kind in :data:`flagbridge.oracle.kinds.KINDS`, told apart by ``type``."""

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


class KillOptions(StrictModel):
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


class OracleTest(StrictModel):
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


class OracleConfig(StrictModel):
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


def _rebuild_for_new_kinds() -> None:
    OracleTest.model_rebuild(force=True)
    OracleConfig.model_rebuild(force=True)


on_change(_rebuild_for_new_kinds)


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
    # Drop pydantic's union tags (the kinds' names) so the key reads like the YAML path.
    return ".".join(str(part) for part in loc if part not in KINDS)


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
