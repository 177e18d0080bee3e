"""The ``cdp`` section of the configuration: data plans, plan enforcement and destinations.

:class:`CdpConfig` is validated by pydantic (unknown keys are errors, models are frozen) and compiles
everything once at load: data plan JSON Schemas (fastjsonschema), filter wildcards and regexes, and
the Split mapping of each Split destination. See the ``cdp:`` section of
``layers/shared/config/flagbridge.yaml`` for a commented example.

Destination types and their ``options``:

- ``split``: :class:`~flagbridge.cdp.split_events.SplitOptions` (``sdk_key_secret`` names a Secrets
  Manager secret; the SDK key itself never appears in the configuration);
- ``webhook``: ``url``, optional ``authorization_secret`` (a secret name whose value is sent as the
  ``Authorization`` header);
- ``sqs``: ``queue_url``; ``sns``: ``topic_arn``; ``eventbridge``: ``event_bus_name``, ``detail_type``,
  ``source``; ``firehose``: ``stream_name``;
- ``oracle``: no options. Its lane feeds the test oracle's counters (:mod:`flagbridge.oracle`), so the oracle
  judges exactly what the router decided.

When a destination's ``filter.users`` is omitted it defaults to ``test_only`` for ``split`` and ``oracle`` and to
``exclude_test`` for every other type (see :mod:`flagbridge.cdp.filters`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, model_validator

from flagbridge.cdp.dataplan import (
    ActivatedEnvironment,
    CompiledPlan,
    PlanDocumentError,
    PlanEnforcement,
    PlanValidator,
)
from flagbridge.cdp.filters import CompiledFilter, Filter, UsersMode
from flagbridge.cdp.split_events import IdentityTrafficType, SplitMapper, SplitOptions
from flagbridge.errors import ConfigError
from flagbridge.rules import StrictModel, describe_config_errors

__all__ = [
    "CdpConfig",
    "CompiledDestination",
    "DataPlanConfig",
    "Destination",
    "DestinationType",
    "EventBridgeOptions",
    "FirehoseOptions",
    "IdentityTrafficType",
    "PlanEnforcement",
    "SnsOptions",
    "SplitOptions",
    "SqsOptions",
    "WebhookOptions",
    "parse_cdp_config",
]

DestinationType = Literal["split", "webhook", "sqs", "sns", "eventbridge", "firehose", "oracle"]
_SECRET_NAME = r"^[A-Za-z0-9/_+=.@:-]+$"


class DataPlanConfig(StrictModel):
    """One data plan version, as exported from mParticle (``version_document``) or written by hand."""

    plan_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    version: int = Field(ge=1)
    document: dict[str, Any] = Field(description="the version_document, or {data_points: [...]}")
    activated_environment: ActivatedEnvironment


class WebhookOptions(StrictModel):
    """Options of a ``type: webhook`` destination."""

    url: str = Field(pattern=r"^https?://\S+$")
    authorization_secret: str | None = Field(default=None, min_length=1, max_length=512, pattern=_SECRET_NAME)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)


class SqsOptions(StrictModel):
    """Options of a ``type: sqs`` destination."""

    queue_url: str = Field(pattern=r"^https?://\S+$")


class SnsOptions(StrictModel):
    """Options of a ``type: sns`` destination."""

    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$")


class EventBridgeOptions(StrictModel):
    """Options of a ``type: eventbridge`` destination."""

    event_bus_name: str = Field(min_length=1, max_length=1600)
    detail_type: str = Field(default="mParticle batch", min_length=1, max_length=128)
    source: str = Field(default="flagbridge.cdp", min_length=1, max_length=256)


class FirehoseOptions(StrictModel):
    """Options of a ``type: firehose`` destination."""

    stream_name: str = Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")


class _Destination(StrictModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")
    filter: Filter = Field(default_factory=Filter)


class SplitDestination(_Destination):
    """Send tester events to Split's Events API."""

    type: Literal["split"]
    options: SplitOptions


class WebhookDestination(_Destination):
    """POST the filtered batch JSON to an HTTP endpoint."""

    type: Literal["webhook"]
    options: WebhookOptions


class SqsDestination(_Destination):
    """Send the filtered batch JSON to an SQS queue."""

    type: Literal["sqs"]
    options: SqsOptions


class SnsDestination(_Destination):
    """Publish the filtered batch JSON to an SNS topic."""

    type: Literal["sns"]
    options: SnsOptions


class EventBridgeDestination(_Destination):
    """Put the filtered batch JSON on an EventBridge bus (as the event detail)."""

    type: Literal["eventbridge"]
    options: EventBridgeOptions


class FirehoseDestination(_Destination):
    """Put the filtered batch JSON on a Firehose delivery stream."""

    type: Literal["firehose"]
    options: FirehoseOptions


class OracleDestination(_Destination):
    """Feed the test oracle's counters (consumed by the oracle counter function, not by delivery)."""

    type: Literal["oracle"]
    options: dict[str, Any] = Field(default_factory=dict, max_length=0)


AnyDestination = (
    SplitDestination
    | WebhookDestination
    | SqsDestination
    | SnsDestination
    | EventBridgeDestination
    | FirehoseDestination
    | OracleDestination
)
"""Every destination model; a new destination type is one more model here (and its sink builder)."""

Destination = Annotated[AnyDestination, Field(discriminator="type")]


def default_users_mode(destination_type: str) -> UsersMode:
    """The ``filter.users`` used when a destination does not set it."""
    return "test_only" if destination_type in ("split", "oracle") else "exclude_test"


@dataclass(slots=True, frozen=True)
class CompiledDestination:
    """A destination with its filter (and Split mapper) compiled."""

    name: str
    type: DestinationType
    spec: AnyDestination
    filter: CompiledFilter
    split: SplitMapper | None


@dataclass(slots=True, eq=False)
class Lane:
    """The destinations of one ``(environment, is_tester)``: ``pairs`` is every destination with its batch-level
    filter reason (None: the batch may pass). ``decided`` is the router's decisions remembered by batch shape
    (:func:`flagbridge.cdp.router._decided`), None when a filter of the lane reads attributes (a shape does not
    decide then). The lane belongs to its configuration, so what it remembers goes with it on a reload."""

    pairs: tuple[tuple[CompiledDestination, str | None], ...]
    decided: dict[tuple[Any, ...], Any] | None


Lanes = dict[tuple[str, bool], Lane]
"""``(environment, is_tester)`` -> its :class:`Lane`."""


class CdpConfig(StrictModel):
    """The CDP -> destinations configuration (the ``cdp`` section of the configuration file)."""

    data_plans: list[DataPlanConfig] = Field(default_factory=list)
    plan_enforcement: PlanEnforcement = Field(default_factory=PlanEnforcement)
    destinations: list[Destination] = Field(default_factory=list)

    _validator: PlanValidator = PrivateAttr()
    _compiled: tuple[CompiledDestination, ...] = PrivateAttr(default=())
    _route_plan: tuple[PlanValidator, tuple[CompiledDestination, ...], Lanes] = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> CdpConfig:
        names = [d.name for d in self.destinations]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"destination names must be unique; repeated: {', '.join(repeated)}")
        versions = [(p.plan_id, p.version) for p in self.data_plans]
        repeated_versions = sorted({f"{i} v{v}" for i, v in versions if versions.count((i, v)) > 1})
        if repeated_versions:
            raise ValueError(f"data plan versions must be unique; repeated: {', '.join(repeated_versions)}")
        cache: dict[str, Any] = {}
        plans: list[CompiledPlan] = []
        for position, plan in enumerate(self.data_plans):
            try:
                plans.append(
                    CompiledPlan.compile(plan.plan_id, plan.version, plan.document, plan.activated_environment, cache)
                )
            except PlanDocumentError as exc:
                raise ValueError(f"data_plans[{position}] ({plan.plan_id} v{plan.version}): {exc}") from exc
        self._validator = PlanValidator(plans, self.plan_enforcement)
        self._compiled = tuple(
            CompiledDestination(
                name=d.name,
                type=d.type,
                spec=d,
                filter=d.filter.compile(default_users_mode(d.type)),
                split=SplitMapper(d.options) if isinstance(d, SplitDestination) else None,
            )
            for d in self.destinations
        )
        remembers = not any(d.filter.predicates for d in self._compiled)
        lanes: Lanes = {
            (environment, is_tester): Lane(
                tuple((d, d.filter.batch_reason(environment, is_tester)) for d in self._compiled),
                {} if remembers else None,
            )
            for environment in ("production", "development")
            for is_tester in (False, True)
        }
        self._route_plan = (self._validator, self._compiled, lanes)
        return self

    # The accessors read the private attributes straight from ``__pydantic_private__`` (a slot):
    # ``self._x`` on a pydantic model goes through ``BaseModel.__getattr__``, slow on the hot path.

    @property
    def plan_validator(self) -> PlanValidator:
        """The compiled data plans with the enforcement policy."""
        return self.__pydantic_private__["_validator"]  # type: ignore[index]

    @property
    def compiled_destinations(self) -> tuple[CompiledDestination, ...]:
        """Destinations with compiled filters, in configured order."""
        return self.__pydantic_private__["_compiled"]  # type: ignore[index]

    @property
    def route_plan(self) -> tuple[PlanValidator, tuple[CompiledDestination, ...], Lanes]:
        """``(plan_validator, compiled_destinations, lanes)`` in one lookup (for the router's hot path).

        ``lanes[(environment, is_tester)]`` (a :class:`Lane`) pairs every destination with its batch-level filter
        reason (:meth:`~flagbridge.cdp.filters.CompiledFilter.batch_reason`), decided once per configuration.
        """
        return self.__pydantic_private__["_route_plan"]  # type: ignore[index]


def parse_cdp_config(document: Any, source: str = "<cdp config>") -> CdpConfig:
    """Validate a parsed ``cdp`` section.

    Parameters
    ----------
    document
        The parsed YAML/JSON mapping (None means an empty section).
    source
        Named in error messages.

    Raises
    ------
    ConfigError
        Naming the offending key.
    """
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the cdp configuration must be a mapping")
    try:
        return CdpConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid cdp configuration at {describe_config_errors(exc)}") from exc
