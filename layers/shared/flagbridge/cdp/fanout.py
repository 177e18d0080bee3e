"""A configuration's destinations compiled for the router's single pass over a batch.

:class:`FanOut` is built once per configuration, when :class:`~flagbridge.cdp.config.CdpConfig` is loaded. It answers
for every destination at once, in configured order: the batch-level reason of each filter (a table over the
environment and the tester decision, filled at load), and the reason of each filter for one event (the event-type
and event-name parts memoised per ``(event type, name)``, the attribute predicates evaluated only for the
destinations that have them and that the other parts let through). The semantics are those of
:class:`~flagbridge.cdp.filters.CompiledFilter`, whose checks fill the tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from flagbridge.cdp.batch import Event
from flagbridge.cdp.filters import CompiledFilter
from flagbridge.cdp.split_events import SplitMapper

if TYPE_CHECKING:
    from flagbridge.cdp.config import CompiledDestination, DestinationType

_MEMO_LIMIT = 4096  # distinct (event type, name) rows remembered
_ENVIRONMENTS = ("production", "development")

Reasons = tuple[str | None, ...]
"""One filter reason (None: passes) per destination, in configured order."""


class Lane(NamedTuple):
    """One destination as the router's pass needs it."""

    name: str
    type: DestinationType
    split: SplitMapper | None
    rules: bool
    """Whether its filter has event-level parts (types, names, attributes)."""


class FanOut:
    """Every destination's filter, evaluated once per batch and once per event for all of them."""

    __slots__ = ("_batch", "_filters", "_memo", "_predicated", "lanes", "ruled")

    def __init__(self, destinations: Iterable[CompiledDestination]) -> None:
        chosen = tuple(destinations)
        self.lanes = tuple(Lane(d.name, d.type, d.split, d.filter.has_event_rules) for d in chosen)
        self._filters: tuple[CompiledFilter, ...] = tuple(d.filter for d in chosen)
        self.ruled = tuple(position for position, lane in enumerate(self.lanes) if lane.rules)
        """Positions of the destinations with event-level rules."""
        self._predicated = tuple(
            (position, tuple(compiled.predicates))
            for position, compiled in enumerate(self._filters)
            if compiled.predicates
        )
        self._batch = {
            (environment, is_test): self._batch_row(environment, is_test)
            for environment in _ENVIRONMENTS
            for is_test in (False, True)
        }
        self._memo: dict[tuple[str, str], Reasons] = {}

    def _batch_row(self, environment: str, is_test: bool) -> Reasons:
        return tuple(compiled.batch_reason(environment, is_test) for compiled in self._filters)

    def batch_reasons(self, environment: str, is_test: bool) -> Reasons:
        """Each destination's reason to filter out every event of a batch, or None where the batch may pass."""
        row = self._batch.get((environment, is_test))
        return row if row is not None else self._batch_row(environment, is_test)

    def event_reasons(self, event: Event) -> Reasons:
        """Each destination's reason to filter out ``event`` (batch-level parts excluded), or None where it passes."""
        event_type = event.event_type
        if event_type == "custom_event":
            name = str(event.data.get("event_name", ""))
        elif event_type == "screen_view":
            name = str(event.data.get("screen_name", ""))
        else:
            name = event_type
        key = (event_type, name)
        row = self._memo.get(key)
        if row is None:
            row = tuple(
                compiled.type_and_name_reason(event_type, name) if compiled.has_event_rules else None
                for compiled in self._filters
            )
            if len(self._memo) < _MEMO_LIMIT:
                self._memo[key] = row
        if not self._predicated:
            return row
        attributes = event.custom_attributes
        patched: list[str | None] | None = None
        for position, predicates in self._predicated:
            if row[position] is None:
                for attribute, check, message in predicates:
                    if not check(attributes.get(attribute)):
                        if patched is None:
                            patched = list(row)
                        patched[position] = message
                        break
        return row if patched is None else tuple(patched)
