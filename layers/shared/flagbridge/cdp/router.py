"""Route one mParticle batch to its destinations: the pure orchestration of the CDP direction.

:func:`route_batch` runs, in order:

1. **normalise** the batch (:mod:`flagbridge.cdp.batch`); a malformed batch raises
   :class:`~flagbridge.cdp.batch.BatchFormatError` (the caller dead-letters it whole);
2. **plan validation** (:mod:`flagbridge.cdp.dataplan`): may remove attributes, drop events or drop
   the batch;
3. **tester resolution** (:mod:`flagbridge.cdp.testers`) on the batch *as received*, so plan
   blocking (e.g. of an unplanned ``is_test_user`` attribute) can never turn a tester into a
   non-tester and leak their data into business destinations;
4. **per-destination filters** (:mod:`flagbridge.cdp.filters`) on the events that survived the plan;
5. **per-destination payloads**: for ``split`` destinations, the mapped and checked Split events
   (:mod:`flagbridge.cdp.split_events`; chunk them with
   :func:`~flagbridge.cdp.split_requests.chunk_split_events` at send time, possibly across batches);
   for every other destination, the batch JSON (as received, after plan changes) with only the events
   that passed that destination's filter. A batch without any event is forwarded (with
   ``events: []``) when its batch-level filter parts (environment, users) pass; a batch whose events
   were all filtered out is not forwarded. Destinations that send the same events share one document
   (read-only, like everything in the result).

The result carries one decision per (event, destination): compactly as ``reasons`` (one list per
destination, aligned with the batch's events) and expanded on demand as
:class:`~flagbridge.cdp.filters.Decision` objects (``decisions``, in destination order then event
order), so a caller that only needs counts and payloads does not pay for message ids.
Reasons: ``sent``; ``plan.<violation type>`` or
``plan.no_data_plan`` (blocked by the data plan); ``filter.*`` (see :mod:`flagbridge.cdp.filters`);
``split.*`` (the event produced no sendable Split event; the first rejection's reason). A Split decision
is ``sent`` when at least one Split event was produced; rejected products/identities of the same event
still appear in ``split_rejections`` and quarantine.

Quarantine records: ``plan_blocked`` (the original batch with ``context.data_plan.block_metadata`` and
the violations that removed data) and ``split_rejected`` (one per Split rejection, except
``split.unsupported_event_type``, which is routine: Split only takes some event types).
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Literal

from flagbridge.cdp.batch import Batch, Event, event_name_of, normalize_batch
from flagbridge.cdp.config import CdpConfig, CompiledDestination, DestinationType, Lane
from flagbridge.cdp.dataplan import PlanOutcome
from flagbridge.cdp.filters import SENT, CompiledFilter, Decision
from flagbridge.cdp.split_events import SplitEvent, SplitMapper, SplitRejection
from flagbridge.cdp.testers import TesterDecision, TesterResolver
from flagbridge.rules import TesterRule, TesterRules

NOT_QUARANTINED_SPLIT_REASONS = frozenset({"split.unsupported_event_type"})
_INDEX = attrgetter("index")


@dataclass(slots=True)
class DestinationPayload:
    """What to send to one destination for one batch."""

    destination: str
    type: DestinationType
    event_indexes: list[int]
    """Indexes (in the received batch) of the events included."""
    batch: dict[str, Any] | None = None
    """Non-Split destinations: the filtered batch document."""
    split_events: list[SplitEvent] = field(default_factory=list)
    """Split destinations: the Split events to send."""


@dataclass(slots=True)
class QuarantineRecord:
    """Data kept aside with the reason it was not delivered."""

    kind: Literal["plan_blocked", "split_rejected"]
    reason: str
    destination: str | None
    batch_key: str
    payload: dict[str, Any]


class RoutingResult:
    """Everything :func:`route_batch` decided for one batch.

    Attributes
    ----------
    batch
        The normalised batch as received.
    tester
        The tester decision.
    plan
        The data plan outcome.
    reasons
        ``{destination: [reason per event, in event order]}``: the compact decision log;
        :attr:`decisions` expands it.
    payloads
        ``{destination: DestinationPayload}`` for destinations with something to send.
    quarantine
        Records to keep aside, with reasons.
    split_rejections
        ``{Split destination: rejections}`` (including ``split.unsupported_event_type``).
    counts
        ``{destination: {reason: number of events}}`` for metrics.
    """

    __slots__ = (
        "_decisions",
        "batch",
        "counts",
        "payloads",
        "plan",
        "quarantine",
        "reasons",
        "split_rejections",
        "tester",
    )

    def __init__(
        self,
        batch: Batch,
        tester: TesterDecision,
        plan: PlanOutcome,
        reasons: dict[str, list[str]],
        payloads: dict[str, DestinationPayload],
        quarantine: list[QuarantineRecord],
        split_rejections: dict[str, list[SplitRejection]],
        counts: dict[str, dict[str, int]],
    ) -> None:
        self.batch = batch
        self.tester = tester
        self.plan = plan
        self.reasons = reasons
        self.payloads = payloads
        self.quarantine = quarantine
        self.split_rejections = split_rejections
        self.counts = counts
        self._decisions: list[Decision] | None = None

    @property
    def batch_key(self) -> str:
        """The batch's dedup key (see :func:`flagbridge.cdp.batch.batch_dedup_key`)."""
        return self.batch.dedup_key

    @property
    def decisions(self) -> list[Decision]:
        """One decision per (event, destination), in destination order then event order."""
        if self._decisions is None:
            events = self.batch.events
            self._decisions = [
                Decision(name, event.index, event.message_id, reason == SENT, reason)
                for name, reasons in self.reasons.items()
                for event, reason in zip(events, reasons, strict=True)
            ]
        return self._decisions

    def decisions_for(self, destination: str) -> list[Decision]:
        """Return the decisions of one destination, in event order."""
        events = self.batch.events
        return [
            Decision(destination, event.index, event.message_id, reason == SENT, reason)
            for event, reason in zip(events, self.reasons[destination], strict=True)
        ]


def _resolver(test_users: TesterResolver | Sequence[TesterRule] | TesterRules | None) -> TesterResolver:
    if isinstance(test_users, TesterResolver):
        return test_users
    return TesterResolver(test_users or ())


def route_batch(
    batch: Mapping[str, Any] | Batch,
    config: CdpConfig,
    marked_identities: Container[tuple[str, str]] = (),
    now_ms: int = 0,
    test_users: TesterResolver | Sequence[TesterRule] | TesterRules | None = None,
    registered_identities: Container[tuple[str, str]] = (),
) -> RoutingResult:
    """Validate, classify, filter and fan out one mParticle batch.

    Parameters
    ----------
    batch
        The parsed batch (any accepted format) or an already normalised :class:`Batch`.
    config
        The CDP configuration (plans, enforcement, destinations; compiled at load).
    marked_identities
        ``(identity_type, value)`` pairs the profile store marks as testers (for ``profile_mark`` rules).
    now_ms
        Current time, epoch milliseconds (for Split's age limit).
    test_users
        The shared tester rules (``BridgeConfig.test_users``), or a prebuilt
        :class:`TesterResolver` (preferred: build it once per configuration). None means no rules:
        nobody is a tester.
    registered_identities
        ``(identity_type, value)`` pairs the tester registry holds (testers after the rules).

    Returns
    -------
    RoutingResult

    Raises
    ------
    BatchFormatError
        When the batch is malformed.
    """
    normalised = normalize_batch(batch)
    validator, destinations, lanes = config.route_plan
    outcome = validator.validate(normalised)
    resolver = test_users if isinstance(test_users, TesterResolver) else _resolver(test_users)
    tester = resolver.resolve(normalised, marked_identities, registered_identities)
    is_tester = tester.is_tester
    surviving: Batch | None = outcome.batch
    all_events = normalised.events  # all_events[i].index == i: malformed batches never get here
    n_events = len(all_events)
    dropped_events = outcome.dropped_events
    environment = normalised.environment

    reasons: dict[str, list[str]] = {}
    payloads: dict[str, DestinationPayload] = {}
    quarantine: list[QuarantineRecord] = []
    split_rejections: dict[str, list[SplitRejection]] = {}
    counts: dict[str, dict[str, int]] = {}

    plan_doc = outcome.quarantine_document()
    if plan_doc is not None:
        removed = [v.as_dict() for v in outcome.violations if v.action != "allow"]
        quarantine.append(
            QuarantineRecord(
                "plan_blocked",
                outcome.batch_drop_reason or "plan.blocked",
                None,
                normalised.dedup_key,
                {"batch": plan_doc, "violations": removed, "plan": list(outcome.plan) if outcome.plan else None},
            )
        )

    if surviving is None:
        drop_reason = outcome.batch_drop_reason or "plan.blocked"
        for destination in destinations:
            name = destination.name
            reasons[name] = [drop_reason] * n_events
            counts[name] = {drop_reason: n_events} if n_events else {}
        return RoutingResult(normalised, tester, outcome, reasons, payloads, quarantine, split_rejections, counts)

    lane = lanes.get((environment, is_tester))
    out: _Out = (payloads, quarantine, split_rejections, {})
    if lane is None:  # a hand-built batch's environment: decided here, event by event (its lane is not kept)
        pairs = tuple((d, d.filter.batch_reason(environment, is_tester)) for d in destinations)
        _fan_out_general(pairs, surviving, n_events, dropped_events, now_ms, reasons, counts, out)
    else:
        _fan_out(lane, surviving, n_events, dropped_events, now_ms, reasons, counts, out)

    return RoutingResult(normalised, tester, outcome, reasons, payloads, quarantine, split_rejections, counts)


_Out = tuple[
    dict[str, DestinationPayload],
    list[QuarantineRecord],
    dict[str, list[SplitRejection]],
    dict[tuple[int, ...], dict[str, Any]],
]
"""Payloads, quarantine, Split rejections, and the documents already built for the batch by the indexes of their
events (destinations that send the same events share one)."""


def _fan_out(
    lane: Lane,
    surviving: Batch,
    n_events: int,
    dropped_events: Mapping[int, str],
    now_ms: int,
    reasons: dict[str, list[str]],
    counts: dict[str, dict[str, int]],
    out: _Out,
) -> None:
    """Every destination's reasons, counts and payload, for the batch the plan left.

    Relies on what :func:`~flagbridge.cdp.batch.normalize_batch` guarantees (``events[i].index == i`` in the
    received batch, the plan only removes events): a destination's reasons are its filter's decisions in event
    order, with the plan's reasons in the gaps. Those decisions depend only on the lane and the batch's shape
    (:func:`_shape`), so they are remembered per shape (:func:`_decided`); payloads and Split events are built
    for every batch. :func:`_fan_out_general` decides event by event, for any batch;
    ``tests/unit/cdp/test_cdp_router_fast_path.py`` checks that both agree.
    """
    payloads, _, _, documents = out
    events = surviving.events
    for destination, decided_reasons, positions, key, tally in _decided(lane, events, n_events, dropped_events):
        name = destination.name
        dest_reasons = list(decided_reasons)
        reasons[name] = dest_reasons
        if positions is None:  # the batch is filtered out, or the plan left no event
            counts[name] = dict(tally)
            continue
        passing = events if len(positions) == len(events) else [events[position] for position in positions]
        mapper = destination.split
        if mapper is None:
            if passing or not n_events:
                document = documents.get(key)
                if document is None:
                    document = documents[key] = surviving.to_dict(passing)
                payloads[name] = DestinationPayload(name, destination.type, list(key), document, [])
            counts[name] = dict(tally)
            continue
        if passing:
            _route_split_lane(name, mapper, surviving, passing, now_ms, dest_reasons, out)
        counts[name] = _tally(dest_reasons)  # Split rejections may have rewritten reasons


_Pairs = tuple[tuple[CompiledDestination, str | None], ...]
_Decided = tuple[CompiledDestination, tuple[str, ...], tuple[int, ...] | None, tuple[int, ...], dict[str, int]]
"""One destination's decision for a batch shape: its reasons, the positions (in the events the plan left) of the
events it passes (None: nothing to send, not even an empty batch), the received indexes of those events, and the
counts of its reasons before Split mapping."""
_DECIDED_LIMIT = 4096
"""How many batch shapes a lane remembers (the shapes come from the batches: a bounded few)."""


def _shape(events: list[Event], n_events: int, dropped_events: Mapping[int, str]) -> tuple[Any, ...] | None:
    """What a lane's decisions depend on when no filter reads attributes: the number of events, the plan's reasons
    of the dropped ones, and the position, type and filter name of each event left (None: a name that is not a
    string, from a hand-built batch: not remembered)."""
    names: list[Any] = []
    for event in events:
        event_type = event.event_type
        name = event_name_of(event_type, event.data)
        if type(name) is not str:
            return None
        names.append(event_type)
        names.append(name)
    return (n_events, tuple(dropped_events.items()) if dropped_events else (), tuple(map(_INDEX, events)), tuple(names))


def _decided(lane: Lane, events: list[Event], n_events: int, dropped_events: Mapping[int, str]) -> list[_Decided]:
    """:func:`_decide`, remembered per :func:`_shape` in the lane while no filter of the lane reads attributes."""
    remembered = lane.decided
    if remembered is None:
        return _decide(lane.pairs, events, n_events, dropped_events)
    shape = _shape(events, n_events, dropped_events)
    if shape is None:
        return _decide(lane.pairs, events, n_events, dropped_events)
    decided: list[_Decided] | None = remembered.get(shape)
    if decided is None:
        decided = _decide(lane.pairs, events, n_events, dropped_events)
        if len(remembered) < _DECIDED_LIMIT:
            remembered[shape] = decided
    return decided


def _decide(lane: _Pairs, events: list[Event], n_events: int, dropped_events: Mapping[int, str]) -> list[_Decided]:
    """Every destination's reasons, passing events and counts (see :data:`_Decided`) for a batch the plan left."""
    if not events and dropped_events:  # the plan dropped every event: each destination has the plan's reasons
        plan_reasons = tuple(dropped_events.get(index, "plan.blocked") for index in range(n_events))
        plan_tally = _tally(list(plan_reasons))
        return [(destination, plan_reasons, None, (), plan_tally) for destination, _ in lane]
    gaps: _Gaps | None = _gaps(events, n_events, dropped_events) if dropped_events else None
    filled: _Filled = {}
    decided: list[_Decided] = []
    for destination, batch_reason in lane:
        if batch_reason is not None:  # the whole batch is filtered out: nothing to build
            if gaps is None:
                decided.append(
                    (destination, (batch_reason,) * n_events, None, (), {batch_reason: n_events} if n_events else {})
                )
            else:
                merged, tally = _filled_once(gaps, (batch_reason,) * len(events), filled)
                decided.append((destination, tuple(merged), None, (), tally))
            continue
        compiled = destination.filter
        if compiled.has_event_rules:
            dest_reasons, passing = compiled.decide(events)
        else:
            dest_reasons, passing = [SENT] * len(events), events
        merged_tally: dict[str, int] | None = None
        if gaps is not None:
            dest_reasons, merged_tally = _filled_once(gaps, tuple(dest_reasons), filled)
        if len(passing) == len(events):
            positions = tuple(range(len(events)))
        else:
            position_of = {id(event): position for position, event in enumerate(events)}
            positions = tuple(position_of[id(event)] for event in passing)
        key = tuple(range(n_events)) if len(passing) == n_events else tuple(map(_INDEX, passing))
        tally = _counts(dest_reasons, merged_tally, len(passing) == n_events) if destination.split is None else {}
        decided.append((destination, tuple(dest_reasons), positions, key, tally))
    return decided


def _counts(dest_reasons: list[str], tally: dict[str, int] | None, all_sent: bool) -> dict[str, int]:
    """A non-Split destination's counts: all sent, the tally of the merge with the plan's reasons, or counted."""
    if all_sent:
        return {SENT: len(dest_reasons)} if dest_reasons else {}
    return tally if tally is not None else _tally(dest_reasons)


_Gaps = tuple[list[str], list[int]]
"""The reasons of a batch with the plan's reason at every dropped event (``""`` elsewhere), and the indexes of the
events the plan left."""


def _gaps(events: list[Event], n_events: int, dropped_events: Mapping[int, str]) -> _Gaps:
    template = [dropped_events.get(index, "plan.blocked") for index in range(n_events)]
    positions = list(map(_INDEX, events))
    for index in positions:
        template[index] = ""
    return template, positions


_Filled = dict[tuple[str, ...], tuple[list[str], dict[str, int]]]
"""The :func:`_filled` results of a batch, by the reasons of the events the plan left."""


def _filled_once(gaps: _Gaps, event_reasons: tuple[str, ...], filled: _Filled) -> tuple[list[str], dict[str, int]]:
    """:func:`_filled`, computed once per batch for destinations that decide alike (each gets its own copies)."""
    done = filled.get(event_reasons)
    if done is None:
        done = filled[event_reasons] = _filled(gaps, event_reasons)
    return list(done[0]), dict(done[1])


def _filled(gaps: _Gaps, event_reasons: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """The reasons of every received event (``event_reasons`` are those of the events the plan left), and counts."""
    template, positions = gaps
    merged = list(template)
    for position, index in enumerate(positions):
        merged[index] = event_reasons[position]
    return merged, _tally(merged)


def _tally(reasons: list[str]) -> dict[str, int]:
    tally: dict[str, int] = {}
    for reason in reasons:
        tally[reason] = tally.get(reason, 0) + 1
    return tally


def _fan_out_general(
    lane: tuple[tuple[CompiledDestination, str | None], ...],
    surviving: Batch,
    n_events: int,
    dropped_events: Mapping[int, str],
    now_ms: int,
    reasons: dict[str, list[str]],
    counts: dict[str, dict[str, int]],
    out: _Out,
) -> None:
    """Every destination's reasons, counts and payload, for any batch the plan left (events dropped or not)."""
    for destination, batch_reason in lane:
        name = destination.name
        if batch_reason is not None and not dropped_events:  # the whole batch is filtered out: nothing to build
            reasons[name] = [batch_reason] * n_events
            counts[name] = {batch_reason: n_events} if n_events else {}
            continue
        reasons[name], counts[name] = _route_destination(
            destination, surviving, n_events, dropped_events, (batch_reason, now_ms), out
        )


def _route_destination(
    destination: CompiledDestination,
    surviving: Batch,
    n_events: int,
    dropped_events: Mapping[int, str],
    context: tuple[str | None, int],
    out: _Out,
) -> tuple[list[str], dict[str, int]]:
    """Filter one destination's events of the batch the plan left; its payload, quarantine and Split rejections
    go to ``out``. Returns the reason of every event (by index) and their counts.

    ``context`` is ``(the destination's batch-level filter reason, now_ms)``; the last member of ``out`` holds the
    documents already built for this batch, by the indexes of their events (destinations that send the same events
    share one).
    """
    batch_reason, now_ms = context
    payloads, quarantine, split_rejections, documents = out
    name = destination.name
    dest_reasons, passing, uniform = _destination_reasons(
        destination.filter, surviving.events, n_events, dropped_events, batch_reason
    )
    mapper = destination.split
    if mapper is not None:
        if passing:
            uniform = None  # Split rejections may rewrite reasons
            _route_split(name, mapper, surviving, passing, now_ms, dest_reasons, payloads, split_rejections)
            for rejection in split_rejections.get(name, ()):
                if rejection.reason not in NOT_QUARANTINED_SPLIT_REASONS:
                    quarantine.append(_split_quarantine(name, surviving, rejection))
    elif passing or (not n_events and batch_reason is None):
        indexes = [e.index for e in passing]
        key = tuple(indexes)
        document = documents.get(key)
        if document is None:
            document = documents[key] = surviving.to_dict(passing)
        payloads[name] = DestinationPayload(name, destination.type, indexes, batch=document)
    if uniform is not None:
        return dest_reasons, ({uniform: n_events} if n_events else {})
    tally: dict[str, int] = {}
    for reason in dest_reasons:
        tally[reason] = tally.get(reason, 0) + 1
    return dest_reasons, tally


def _destination_reasons(
    compiled: CompiledFilter,
    surviving_events: list[Event],
    n_events: int,
    dropped_events: Mapping[int, str],
    batch_reason: str | None,
) -> tuple[list[str], list[Event], str | None]:
    """One destination's reason per received event, the events it passes, and the reason all share (or None)."""
    if batch_reason is not None and not dropped_events:
        return [batch_reason] * n_events, [], batch_reason
    if not dropped_events and not compiled.has_event_rules:
        return [SENT] * n_events, list(surviving_events), SENT
    dest_reasons: list[str] = []
    passing: list[Event] = []
    event_reason = compiled.event_reason
    for event in surviving_events:
        while len(dest_reasons) < event.index:  # events the plan dropped
            dest_reasons.append(dropped_events.get(len(dest_reasons), "plan.blocked"))
        if batch_reason is not None:
            dest_reasons.append(batch_reason)
            continue
        filtered = event_reason(event)
        if filtered is None:
            passing.append(event)
            dest_reasons.append(SENT)
        else:
            dest_reasons.append(filtered)
    while len(dest_reasons) < n_events:
        dest_reasons.append(dropped_events.get(len(dest_reasons), "plan.blocked"))
    return dest_reasons, passing, None


def _route_split_lane(
    name: str,
    mapper: SplitMapper,
    batch: Batch,
    passing: list[Event],
    now_ms: int,
    dest_reasons: list[str],
    out: _Out,
) -> None:
    """:func:`_route_split`, then quarantine the destination's Split rejections (except the routine ones)."""
    payloads, quarantine, split_rejections, _ = out
    _route_split(name, mapper, batch, passing, now_ms, dest_reasons, payloads, split_rejections)
    for rejection in split_rejections.get(name, ()):
        if rejection.reason not in NOT_QUARANTINED_SPLIT_REASONS:
            quarantine.append(_split_quarantine(name, batch, rejection))


def _route_split(
    name: str,
    mapper: SplitMapper,
    batch: Batch,
    passing: list[Event],
    now_ms: int,
    dest_reasons: list[str],
    payloads: dict[str, DestinationPayload],
    split_rejections: dict[str, list[SplitRejection]],
) -> None:
    sendable: list[SplitEvent] = []
    rejected: list[SplitRejection] = []
    targets = mapper.targets(batch)  # the batch's identities, read once for all its events
    for event in passing:
        result = mapper.map_event(batch, event, now_ms, targets)
        if result.events:
            sendable.extend(result.events)
        if result.rejections:
            rejected.extend(result.rejections)
            if not result.events:
                dest_reasons[event.index] = result.rejections[0].reason
    if rejected:
        split_rejections[name] = rejected
    if sendable:
        indexes = sorted({s.event_index for s in sendable})
        payloads[name] = DestinationPayload(name, "split", indexes, None, sendable)


def _split_quarantine(name: str, batch: Batch, rejection: SplitRejection) -> QuarantineRecord:
    return QuarantineRecord(
        "split_rejected",
        rejection.reason,
        name,
        batch.dedup_key,
        {
            "event_index": rejection.event_index,
            "message_id": rejection.message_id,
            "detail": rejection.detail,
            "product_index": rejection.product_index,
            "traffic_type": rejection.traffic_type,
            "split_event": rejection.body,
            "event": next((e.envelope for e in batch.events if e.index == rejection.event_index), None),
        },
    )
