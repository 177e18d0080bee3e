"""Validating a batch against the active plan version and applying the enforcement actions (the outcome)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flagbridge.cdp.batch import Batch, Event
from flagbridge.cdp.dataplan.model import (
    NO_DATA_PLAN,
    PlanAction,
    PlanDocumentError,
    PlanEnforcement,
    Violation,
    ViolationType,
)
from flagbridge.cdp.dataplan.plan import NOT_PLANNABLE, UNMATCHED, CompiledPlan
from flagbridge.cdp.dataplan.schema import Finding, actual_text, json_pointer, walk_schema


@dataclass(slots=True)
class PlanOutcome:
    """The result of validating one batch against its data plan.

    Attributes
    ----------
    batch
        The batch to forward (attributes removed, blocked events left out); None when the whole batch
        was dropped.
    original
        The batch as received (for quarantine).
    plan
        ``(plan_id, version)`` that validated the batch, or None when it was not validated.
    violations
        Every violation found, with the action applied.
    dropped_events
        ``{event index: reason}`` for events removed by the plan (reason ``plan.<violation type>``).
    batch_drop_reason
        ``plan.no_data_plan`` or ``plan.<violation type>`` when the whole batch was dropped.
    block_metadata
        mParticle's quarantine ``block_metadata`` when anything was removed, else None.
    """

    batch: Batch | None
    original: Batch
    plan: tuple[str, int] | None = None
    violations: list[Violation] = field(default_factory=list)
    dropped_events: dict[int, str] = field(default_factory=dict)
    batch_drop_reason: str | None = None
    block_metadata: dict[str, Any] | None = None

    def quarantine_document(self) -> dict[str, Any] | None:
        """Return the original batch with ``context.data_plan.block_metadata``, or None if nothing was blocked."""
        if self.block_metadata is None and self.batch_drop_reason is None:
            return None
        doc = dict(self.original.doc)
        context = dict(doc.get("context") or {})
        data_plan = dict(context.get("data_plan") or {})
        data_plan["block_metadata"] = self.block_metadata or _empty_block_metadata()
        context["data_plan"] = data_plan
        doc["context"] = context
        return doc


_UNSELECTED: Any = object()
_SELECTED_LIMIT = 256
_new_tuple = tuple.__new__
"""Builds a :class:`Violation` from all its fields without the named tuple's Python-level ``__new__``."""


def _empty_block_metadata() -> dict[str, Any]:
    return {
        "dto_version": 1,
        "blocked_event_ids": [],
        "blocked_event_attributes": [],
        "blocked_user_attributes": [],
        "blocked_user_identities": [],
        "blocked_device_identities": [],
    }


def _is_removable(path: tuple[str | int, ...]) -> bool:
    return len(path) >= 2 and path[-2] == "custom_attributes"


def _remove_paths(root: dict[str, Any], paths: Sequence[tuple[str | int, ...]]) -> dict[str, Any]:
    """Return a copy of ``root`` without the members at ``paths`` (copies only along the paths, once)."""
    new_root = dict(root)
    copied: dict[tuple[str | int, ...], Any] = {(): new_root}
    for path in paths:
        container: Any = new_root
        for depth in range(1, len(path)):
            prefix = path[:depth]
            existing = copied.get(prefix)
            if existing is None:
                child = container[path[depth - 1]]
                existing = list(child) if isinstance(child, list) else dict(child)
                container[path[depth - 1]] = existing
                copied[prefix] = existing
            container = existing
        if isinstance(container, dict):
            container.pop(path[-1], None)
    return new_root


class PlanValidator:
    """Validates batches against compiled plans and applies the enforcement actions."""

    def __init__(self, plans: Sequence[CompiledPlan], enforcement: PlanEnforcement) -> None:
        self.enforcement = enforcement
        self._plans: dict[str, list[CompiledPlan]] = {}
        for plan in plans:
            self._plans.setdefault(plan.plan_id, []).append(plan)
        for versions in self._plans.values():
            versions.sort(key=lambda p: p.version, reverse=True)
        self._selected: dict[tuple[str, int | None, str], CompiledPlan | None] = {}
        self._actions = {
            (kind, level, removable): self._decide_action(kind, level, removable)
            for kind in ("unplanned", "missing_required", "invalid_value")
            for level in ("event", "attribute", "user")
            for removable in (False, True)
        }

    def select(self, batch: Batch) -> CompiledPlan | None:
        """Return the plan version that applies to ``batch``, or None (batch not validated)."""
        if batch.plan_id is None:
            return None
        key = (batch.plan_id, batch.plan_version, batch.environment)
        chosen = self._selected.get(key, _UNSELECTED)
        if chosen is _UNSELECTED:
            chosen = self._select(batch)
            if len(self._selected) < _SELECTED_LIMIT:  # the tags come from the batches: keep a bounded few
                self._selected[key] = chosen
        return chosen

    def _select(self, batch: Batch) -> CompiledPlan | None:
        assert batch.plan_id is not None
        for plan in self._plans.get(batch.plan_id, ()):
            if batch.plan_version is not None and plan.version != batch.plan_version:
                continue
            if plan.active_in(batch.environment):
                return plan
        return None

    def _action(self, kind: ViolationType, level: Literal["event", "attribute", "user"], removable: bool) -> PlanAction:
        """The action for a violation (decided once per configuration, see :meth:`_decide_action`)."""
        return self._actions[kind, level, removable]

    def _decide_action(
        self, kind: ViolationType, level: Literal["event", "attribute", "user"], removable: bool
    ) -> PlanAction:
        e = self.enforcement
        if kind == "unplanned":
            action = (e.on_unplanned_event or e.on_unplanned) if level == "event" else e.on_unplanned
        elif kind == "missing_required":
            action = e.on_missing_required
        else:
            action = e.on_invalid_value
        if level == "user":
            return "drop_attribute" if action == "drop_event" else action
        if action == "drop_attribute" and (level == "event" or not removable):
            return "drop_event"
        return action

    def validate(self, batch: Batch) -> PlanOutcome:  # noqa: C901 (hot path: every batch, flattened (make bench))
        """Validate ``batch`` and apply the configured actions.

        Parameters
        ----------
        batch
            A normalised batch.

        Returns
        -------
        PlanOutcome
            The batch to forward (or None when dropped), violations and block metadata.
        """
        plan = self.select(batch)
        if plan is None:
            if self.enforcement.require_plan:
                return PlanOutcome(None, batch, None, [], {}, NO_DATA_PLAN, None)
            return PlanOutcome(batch, batch, None, [], {}, None, None)

        # First pass, allocation-free for valid data: which events (and user sections) have findings.
        flagged: list[tuple[Event, Any]] | None = None
        match_node = plan.match_node
        for event in batch.events:
            node = match_node(event)
            if node is None or node is NOT_PLANNABLE:
                continue
            if node is UNMATCHED or not node.ok(event.envelope):
                if flagged is None:
                    flagged = []
                flagged.append((event, node))
        user_node = plan.user_attributes
        user_ok = user_node is UNMATCHED or user_node is None or user_node.ok(batch.user_attributes)
        identities_node = plan.user_identities
        identities_ok = identities_node is UNMATCHED or identities_node is None
        if flagged is None and user_ok and identities_ok:
            # every field positionally (batch, original, plan, violations, dropped_events, batch_drop_reason,
            # block_metadata): the usual outcome, built without keyword matching or default factories
            return PlanOutcome(batch, batch, (plan.plan_id, plan.version), [], {}, None, None)

        actions = self._actions
        violations: list[Violation] = []
        drop_batch: str | None = None
        dropped: dict[int, str] = {}
        removals: dict[int, list[tuple[str | int, ...]]] = {}
        findings: list[Finding] = []
        for event, node in flagged or ():
            matched = plan.match_event(event)
            assert matched is not None
            label = matched[0]
            if node is UNMATCHED:
                action = actions["unplanned", "event", False]
                violations.append(
                    _new_tuple(Violation, (
                        "unplanned", event.name, "#", f"a data point for {label}", event.event_type, action,
                        event.index, event.event_id, label,
                    ))
                )  # fmt: skip
                drop_batch, _ = self._apply(action, "unplanned", event.index, (), dropped, removals, drop_batch)
                continue
            findings.clear()
            walk_schema(node, event.envelope, (), findings)
            for kind, path, expected, actual in findings:
                action = actions[kind, "attribute", _is_removable(path)]
                key = str(path[-1]) if path else event.name
                violations.append(
                    _new_tuple(
                        Violation,
                        (
                            kind,
                            key,
                            json_pointer(path),
                            expected,
                            actual_text(actual),
                            action,
                            event.index,
                            event.event_id,
                            label,
                        ),
                    )
                )
                drop_batch, _ = self._apply(action, kind, event.index, path, dropped, removals, drop_batch)

        user_removals: dict[str, list[str]] = {"user_attributes": [], "user_identities": []}
        for section in ("user_attributes", "user_identities"):
            node = plan.user_attributes if section == "user_attributes" else plan.user_identities
            if node is UNMATCHED or node is None or (section == "user_attributes" and user_ok):
                continue
            value: Any = (
                batch.user_attributes
                if section == "user_attributes"
                else {k: v for k, v in batch.identities if k != "mpid"}
            )
            if node.ok(value):
                continue
            findings.clear()
            walk_schema(node, value, (), findings)
            for kind, path, expected, actual in findings:
                action = actions[kind, "user", True]
                violations.append(
                    _new_tuple(Violation, (
                        kind, str(path[0]) if path else section, json_pointer((section, *path)), expected,
                        actual_text(actual), action, None, None, section,
                    ))
                )  # fmt: skip
                if action == "drop_batch" and drop_batch is None:
                    drop_batch = f"plan.{kind}"
                elif action == "drop_attribute" and path:
                    user_removals[section].append(str(path[0]))

        if drop_batch is not None:
            metadata = _empty_block_metadata()
            metadata["blocked_event_ids"] = [event.event_id for event in batch.events]
            return PlanOutcome(
                batch=None,
                original=batch,
                plan=(plan.plan_id, plan.version),
                violations=violations,
                dropped_events={event.index: drop_batch for event in batch.events},
                batch_drop_reason=drop_batch,
                block_metadata=metadata,
            )
        if (
            not dropped
            and not removals
            and not user_removals["user_attributes"]
            and not user_removals["user_identities"]
        ):
            return PlanOutcome(batch, batch, (plan.plan_id, plan.version), violations, {}, None, None)
        return self._build(batch, plan, violations, dropped, removals, user_removals)

    @staticmethod
    def _apply(
        action: PlanAction,
        kind: ViolationType,
        index: int,
        path: tuple[str | int, ...],
        dropped: dict[int, str],
        removals: dict[int, list[tuple[str | int, ...]]],
        drop_batch: str | None,
    ) -> tuple[str | None, None]:
        if action == "drop_batch":
            return drop_batch or f"plan.{kind}", None
        if action == "drop_event":
            dropped.setdefault(index, f"plan.{kind}")
        elif action == "drop_attribute":
            removals.setdefault(index, []).append(path)
        return drop_batch, None

    @staticmethod
    def _build(
        batch: Batch,
        plan: CompiledPlan,
        violations: list[Violation],
        dropped: dict[int, str],
        removals: dict[int, list[tuple[str | int, ...]]],
        user_removals: dict[str, list[str]],
    ) -> PlanOutcome:
        metadata = _empty_block_metadata()
        events = _kept_events(batch, dropped, removals, metadata)
        blocked_attributes = sorted(set(user_removals["user_attributes"]))
        blocked_identities = sorted(set(user_removals["user_identities"]))
        doc, user_attributes, identities = _without_blocked_user_data(batch, blocked_attributes, blocked_identities)
        metadata["blocked_user_attributes"] = blocked_attributes
        metadata["blocked_user_identities"] = blocked_identities
        new_batch = Batch(  # every field positionally (see normalize_batch)
            doc,
            events,
            batch.environment,
            identities,
            user_attributes,
            batch.plan_id,
            batch.plan_version,
            batch.source_format,
            batch.dedup_key,  # the key of the batch as received, not of the modified copy
            batch._event_digests,  # shared, as dataclasses.replace() would
        )
        return PlanOutcome(new_batch, batch, (plan.plan_id, plan.version), violations, dropped, None, metadata)


def _kept_events(
    batch: Batch,
    dropped: dict[int, str],
    removals: dict[int, list[tuple[str | int, ...]]],
    metadata: dict[str, Any],
) -> list[Event]:
    """The events not dropped, each without its removed attributes; both recorded in ``metadata``."""
    events: list[Event] = []
    for event in batch.events:
        if event.index in dropped:
            metadata["blocked_event_ids"].append(event.event_id)
            continue
        paths = removals.get(event.index)
        if not paths:
            events.append(event)
            continue
        envelope = _remove_paths(event.envelope, paths)
        metadata["blocked_event_attributes"].append(
            {
                "event_id": event.event_id,
                "event_attributes": ["./" + "/".join(str(p) for p in path) for path in paths],
            }
        )
        events.append(Event(event.index, event.event_type, envelope["data"], envelope, event.message_id, batch))
    return events


def _without_blocked_user_data(
    batch: Batch, blocked_attributes: list[str], blocked_identities: list[str]
) -> tuple[dict[str, Any], dict[str, Any], tuple[tuple[str, str], ...]]:
    """The batch document, user attributes and identities without the blocked ones."""
    doc = batch.doc
    user_attributes = batch.user_attributes
    identities = batch.identities
    if blocked_attributes:
        user_attributes = {k: v for k, v in user_attributes.items() if k not in blocked_attributes}
        doc = {**doc, "user_attributes": user_attributes}
    if blocked_identities:
        identities = tuple(pair for pair in identities if pair[0] not in blocked_identities)
        raw = doc.get("user_identities")
        if isinstance(raw, dict):
            doc = {**doc, "user_identities": {k: v for k, v in raw.items() if k not in blocked_identities}}
        elif isinstance(raw, list):
            kept = [item for item in raw if item.get("identity_type") not in blocked_identities]
            doc = {**doc, "user_identities": kept}
        if "mpid" in blocked_identities:
            doc = {k: v for k, v in doc.items() if k != "mpid"}
    return doc, user_attributes, identities


def load_plan_document(text: str) -> dict[str, Any]:
    """Parse a plan version document from JSON text (as exported by mParticle's Data Planning API)."""
    document = json.loads(text)
    if not isinstance(document, dict):
        raise PlanDocumentError("a plan document must be a JSON object")
    return document
