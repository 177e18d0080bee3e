"""The registry of oracle metric kinds: ``type`` -> the :class:`~flagbridge.oracle.kinds.base.MetricKind`.

Every part of the oracle reaches a metric's kind through :func:`kind_of` (configuration, counting, judging,
notifications, the CLI table and the HTML report), so a new kind is one module beside ``rate.py`` and its entry
in :data:`KINDS` below. :func:`registered` adds one for a while (tests, experiments) and rebuilds the
configuration models so they parse it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from flagbridge.oracle.kinds.base import ChartRow, CountEvent, MetricKind
from flagbridge.oracle.kinds.percentile import PERCENTILE, PercentileMetric
from flagbridge.oracle.kinds.rate import RATE, RateMetric

__all__ = [
    "KINDS",
    "ChartRow",
    "CountEvent",
    "MetricKind",
    "PercentileMetric",
    "RateMetric",
    "kind_of",
    "metric_schema",
    "on_change",
    "registered",
]

KINDS: dict[str, MetricKind] = {kind.name: kind for kind in (RATE, PERCENTILE)}


_UNKNOWN = MetricKind()
"""How a verdict of a kind this code does not know (e.g. stored by a newer version) is shown: by its value."""


def kind_of(metric: Any) -> MetricKind:
    """The kind of a configured metric or of a ``type`` name (ValueError when unknown); of a verdict (its
    ``kind``), where an unknown kind is shown by its value."""
    if isinstance(metric, Mapping):
        return KINDS.get(str(metric.get("kind")), _UNKNOWN)
    name = metric if isinstance(metric, str) else metric.type
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown metric kind {name!r} (known: {', '.join(KINDS)})") from None


def metric_schema(_source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    """A metric of any registered kind, told apart by its ``type`` (pydantic's discriminated union)."""
    choices: dict[Any, core_schema.CoreSchema] = {name: handler(kind.model) for name, kind in KINDS.items()}
    return core_schema.tagged_union_schema(choices, discriminator="type")


_ON_CHANGE: list[Callable[[], None]] = []


def on_change(rebuild: Callable[[], None]) -> None:
    """Call ``rebuild`` whenever the registry changes (the configuration models rebuild their metric union)."""
    _ON_CHANGE.append(rebuild)


def _rebuild_models() -> None:
    for rebuild in _ON_CHANGE:
        rebuild()


@contextmanager
def registered(kind: MetricKind) -> Iterator[MetricKind]:
    """``kind`` known while the block runs (configurations loaded inside it may use its ``type``)."""
    if kind.name in KINDS:
        raise ValueError(f"metric kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    _rebuild_models()
    try:
        yield kind
    finally:
        del KINDS[kind.name]
        _rebuild_models()
