"""Route one mParticle batch to its destinations: the pure orchestration of the CDP direction.

:func:`route_batch` runs, in order:

1. **normalise** the batch (:mod:`flagbridge.cdp.batch`); a malformed batch raises
   :class:`~flagbridge.cdp.batch.BatchFormatError` (the caller dead-letters it whole);
2. **plan validation** (:mod:`flagbridge.cdp.dataplan`): may remove attributes, drop events or drop
   the batch;
3. **test-user resolution** (:mod:`flagbridge.cdp.testusers`) on the batch *as received*, so plan
   blocking (e.g. of an unplanned ``is_test_user`` attribute) can never turn a tester into a
   non-tester and leak their data into business destinations;
4. **per-destination filters** (:mod:`flagbridge.cdp.filters`) on the events that survived the plan;
5. **per-destination payloads**: for ``split`` destinations, the mapped and checked Split events
   (:mod:`flagbridge.cdp.split_events`; chunk them with
   :func:`~flagbridge.cdp.split_requests.chunk_split_events` at send time, possibly across batches);
   for every other destination, the batch JSON (as received, after plan changes) with only the events
   that passed that destination's filter. A batch without any event is forwarded (with
   ``events: []``) when its batch-level filter parts (environment, users) pass; a batch whose events
   were all filtered out is not forwarded.

The result carries one :class:`~flagbridge.cdp.filters.Decision` per (event, destination), in
destination order then event order. Reasons: ``sent``; ``plan.<violation type>`` or
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
from typing import Any, Literal

from flagbridge.cdp.batch import Batch, Event, normalize_batch
from flagbridge.cdp.config import CdpConfig, DestinationType
from flagbridge.cdp.dataplan import PlanOutcome
from flagbridge.cdp.filters import SENT, Decision
from flagbridge.cdp.split_events import SplitEvent, SplitRejection
from flagbridge.cdp.testusers import TestUserDecision, TestUserResolver
from flagbridge.config import TestUserRule, TestUsersConfig

NOT_QUARANTINED_SPLIT_REASONS = frozenset({"split.unsupported_event_type"})


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


@dataclass(slots=True)
class RoutingResult:
    """Everything :func:`route_batch` decided for one batch."""

    batch: Batch
    batch_key: str
    test_user: TestUserDecision
    plan: PlanOutcome
    decisions: list[Decision]
    payloads: dict[str, DestinationPayload]
    quarantine: list[QuarantineRecord]
    split_rejections: dict[str, list[SplitRejection]]
    counts: dict[str, dict[str, int]]
    """``{destination: {reason: number of events}}`` for metrics."""

    def decisions_for(self, destination: str) -> list[Decision]:
        """Return the decisions of one destination, in event order."""
        return [d for d in self.decisions if d.destination == destination]


def _resolver(test_users: TestUserResolver | Sequence[TestUserRule] | TestUsersConfig | None) -> TestUserResolver:
    if isinstance(test_users, TestUserResolver):
        return test_users
    return TestUserResolver(test_users or ())


def route_batch(
    batch: Mapping[str, Any] | Batch,
    config: CdpConfig,
    marked_identities: Container[tuple[str, str]] = (),
    now_ms: int = 0,
    test_users: TestUserResolver | Sequence[TestUserRule] | TestUsersConfig | None = None,
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
        The shared test-user rules (``BridgeConfig.test_users``), or a prebuilt
        :class:`TestUserResolver` (preferred: build it once per configuration). None means no rules:
        nobody is a tester.

    Returns
    -------
    RoutingResult

    Raises
    ------
    BatchFormatError
        When the batch is malformed.
    """
    normalised = normalize_batch(batch)
    outcome = config.plan_validator.validate(normalised)
    test_user = _resolver(test_users).resolve(normalised, marked_identities)
    is_test = test_user.is_test_user
    surviving: Batch | None = outcome.batch
    by_index: dict[int, Event] = {e.index: e for e in surviving.events} if surviving is not None else {}
    all_events = normalised.events

    decisions: list[Decision] = []
    payloads: dict[str, DestinationPayload] = {}
    quarantine: list[QuarantineRecord] = []
    split_rejections: dict[str, list[SplitRejection]] = {}
    counts: dict[str, dict[str, int]] = {}
    key = normalised.dedup_key

    plan_doc = outcome.quarantine_document()
    if plan_doc is not None:
        removed = [v.as_dict() for v in outcome.violations if v.action != "allow"]
        quarantine.append(
            QuarantineRecord(
                "plan_blocked",
                outcome.batch_drop_reason or "plan.blocked",
                None,
                key,
                {"batch": plan_doc, "violations": removed, "plan": list(outcome.plan) if outcome.plan else None},
            )
        )

    for destination in config.compiled_destinations:
        name = destination.name
        tally: dict[str, int] = {}
        counts[name] = tally
        if surviving is None:
            reason = outcome.batch_drop_reason or "plan.blocked"
            for event in all_events:
                decisions.append(Decision(name, event.index, event.message_id, False, reason))
            if all_events:
                tally[reason] = len(all_events)
            continue
        compiled = destination.filter
        batch_reason = compiled.batch_reason(normalised.environment, is_test)
        passing: list[Event] = []
        dest_decisions: list[Decision] = []
        for event in all_events:
            kept = by_index.get(event.index)
            if kept is None:
                reason = outcome.dropped_events.get(event.index, "plan.blocked")
            elif batch_reason is not None:
                reason = batch_reason
            else:
                filtered = compiled.event_reason(kept)
                if filtered is None:
                    passing.append(kept)
                reason = filtered or SENT
            dest_decisions.append(Decision(name, event.index, event.message_id, reason == SENT, reason))

        mapper = destination.split
        if mapper is not None:
            sendable: list[SplitEvent] = []
            rejected: list[SplitRejection] = []
            refused: dict[int, str] = {}
            for event in passing:
                result = mapper.map_event(surviving, event, now_ms)
                sendable.extend(result.events)
                if result.rejections:
                    rejected.extend(result.rejections)
                    if not result.events:
                        refused[event.index] = result.rejections[0].reason
            if refused:
                dest_decisions = [
                    d._replace(sent=False, reason=refused[d.event_index]) if d.event_index in refused else d
                    for d in dest_decisions
                ]
            if rejected:
                split_rejections[name] = rejected
                envelopes = {e.index: e.envelope for e in passing}
                for rejection in rejected:
                    if rejection.reason in NOT_QUARANTINED_SPLIT_REASONS:
                        continue
                    quarantine.append(
                        QuarantineRecord(
                            "split_rejected",
                            rejection.reason,
                            name,
                            key,
                            {
                                "event_index": rejection.event_index,
                                "message_id": rejection.message_id,
                                "detail": rejection.detail,
                                "product_index": rejection.product_index,
                                "traffic_type": rejection.traffic_type,
                                "split_event": rejection.body,
                                "event": envelopes.get(rejection.event_index),
                            },
                        )
                    )
            if sendable:
                indexes = sorted({s.event_index for s in sendable})
                payloads[name] = DestinationPayload(name, destination.type, indexes, split_events=sendable)
        elif passing or (not all_events and batch_reason is None):
            payloads[name] = DestinationPayload(
                name, destination.type, [e.index for e in passing], batch=surviving.to_dict(passing)
            )
        for decision in dest_decisions:
            tally[decision.reason] = tally.get(decision.reason, 0) + 1
        decisions.extend(dest_decisions)

    return RoutingResult(
        batch=normalised,
        batch_key=key,
        test_user=test_user,
        plan=outcome,
        decisions=decisions,
        payloads=payloads,
        quarantine=quarantine,
        split_rejections=split_rejections,
        counts=counts,
    )
