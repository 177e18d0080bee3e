"""Exposure state of one (user, flag) and the pure merge that folds impressions into it.

The merge is built for at-least-once, out-of-order delivery:

* Every impression has a fingerprint (its environment, treatment, time, flag version, label and
  bucketing key). Fingerprints seen within ``dedup_window_days`` of the newest exposure are kept on
  the state, so a redelivered impression is recognised and changes nothing (not even ``updated_at``).
* The current treatment is the one of the newest impression, ordered by (time, flag version,
  treatment, label): an older impression arriving late never overwrites a newer treatment.
* Counts, first/last seen and the assignment history are min/max/sum aggregates, so the result does
  not depend on arrival order.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from flagbridge.config import ProfilesConfig
from flagbridge.impressions.models import QueuedImpression

DAY_MS = 86_400_000


def fingerprint(impression: QueuedImpression) -> str:
    """A short, stable id of an impression within its (user, flag)."""
    material = "\x1f".join(
        (
            impression.environment_id or impression.environment,
            impression.treatment,
            str(impression.time),
            "" if impression.version is None else str(impression.version),
            impression.label or "",
            impression.bucketing_key or "",
        )
    )
    digest = hashlib.blake2b(material.encode(), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _order(time: int, version: int | None, treatment: str, label: str | None) -> tuple[int, int, str, str]:
    return (time, -1 if version is None else version, treatment, label or "")


@dataclass(frozen=True)
class Assignment:
    """One distinct (treatment, label, flag version) a user was served, with when and how often."""

    treatment: str
    label: str | None
    version: int | None
    environment: str
    first_seen: int
    last_seen: int
    count: int

    @property
    def identity(self) -> tuple[str, str | None, int | None]:
        return (self.treatment, self.label, self.version)


@dataclass(frozen=True)
class FlagState:
    """What a profile holds for one flag. ``rev`` is the optimistic-concurrency revision (0 = new)."""

    traffic_type: str
    key: str
    identity_type: str
    flag: str
    treatment: str
    label: str | None
    version: int | None
    environment: str
    environment_id: str
    current_time: int
    first_seen: int
    last_seen: int
    exposures: int
    assignments: tuple[Assignment, ...] = ()
    seen: dict[str, int] = field(default_factory=dict)
    seen_floor: int = 0
    rev: int = 0
    updated_at: int = 0

    @property
    def user_id(self) -> str:
        return f"{self.traffic_type}#{self.key}"


@dataclass(frozen=True)
class MergeOutcome:
    """The state after a merge, and how many of the offered impressions were new."""

    state: FlagState | None
    new_impressions: int
    duplicates: int

    @property
    def changed(self) -> bool:
        return self.new_impressions > 0


def merge_impressions(
    state: FlagState | None,
    impressions: Iterable[QueuedImpression],
    config: ProfilesConfig,
    now_ms: int,
) -> MergeOutcome:
    """Fold impressions of a single (user, flag) into ``state``; pure and idempotent."""
    seen = dict(state.seen) if state else {}
    assignments = {a.identity: a for a in state.assignments} if state else {}
    current = state
    new_count = duplicates = 0
    fresh: list[QueuedImpression] = []
    for impression in impressions:
        fp = fingerprint(impression)
        if fp in seen:
            duplicates += 1
            continue
        seen[fp] = impression.time
        fresh.append(impression)
    if not fresh:
        return MergeOutcome(state=state, new_impressions=0, duplicates=duplicates)

    first = fresh[0]
    exposures = current.exposures if current else 0
    first_seen = current.first_seen if current else first.time
    last_seen = current.last_seen if current else first.time
    best = (
        _order(current.current_time, current.version, current.treatment, current.label)
        if current
        else _order(first.time, first.version, first.treatment, first.label)
    )
    head: QueuedImpression | None = None if current else first
    for impression in fresh:
        new_count += 1
        exposures += 1
        first_seen = min(first_seen, impression.time)
        last_seen = max(last_seen, impression.time)
        rank = _order(impression.time, impression.version, impression.treatment, impression.label)
        if rank >= best:
            best, head = rank, impression
        identity = (impression.treatment, impression.label, impression.version)
        known = assignments.get(identity)
        if known is None:
            assignments[identity] = Assignment(
                impression.treatment,
                impression.label,
                impression.version,
                impression.environment,
                impression.time,
                impression.time,
                1,
            )
        else:
            assignments[identity] = replace(
                known,
                first_seen=min(known.first_seen, impression.time),
                last_seen=max(known.last_seen, impression.time),
                count=known.count + 1,
            )

    history = sorted(assignments.values(), key=lambda a: (a.last_seen, a.first_seen, a.treatment))
    history = history[-config.assignment_history_size :]
    seen, seen_floor = _prune(seen, state.seen_floor if state else 0, last_seen, config)

    if head is not None:
        treatment, label, version = head.treatment, head.label, head.version
        environment, environment_id, current_time = head.environment, head.environment_id, head.time
    else:
        assert current is not None
        treatment, label, version = current.treatment, current.label, current.version
        environment, environment_id, current_time = current.environment, current.environment_id, current.current_time

    merged = FlagState(
        traffic_type=first.traffic_type,
        key=first.key,
        identity_type=head.identity_type
        if head is not None
        else current.identity_type
        if current
        else first.identity_type,
        flag=first.flag,
        treatment=treatment,
        label=label,
        version=version,
        environment=environment,
        environment_id=environment_id,
        current_time=current_time,
        first_seen=first_seen,
        last_seen=last_seen,
        exposures=exposures,
        assignments=tuple(history),
        seen=seen,
        seen_floor=seen_floor,
        rev=current.rev if current else 0,
        updated_at=now_ms,
    )
    return MergeOutcome(state=merged, new_impressions=new_count, duplicates=duplicates)


def _prune(seen: dict[str, int], floor: int, newest: int, config: ProfilesConfig) -> tuple[dict[str, int], int]:
    """Drop fingerprints older than the dedup window or beyond the entry cap; return the new floor."""
    horizon = newest - config.dedup_window_days * DAY_MS
    kept = {fp: time for fp, time in seen.items() if time >= horizon}
    if len(kept) != len(seen):
        floor = max(floor, max(time for time in seen.values() if time < horizon))
    if len(kept) > config.dedup_max_entries:
        ordered = sorted(kept.items(), key=lambda entry: (entry[1], entry[0]))
        dropped = ordered[: len(kept) - config.dedup_max_entries]
        floor = max(floor, dropped[-1][1])
        kept = dict(ordered[len(dropped) :])
    return kept, floor


@dataclass(frozen=True)
class TestMark:
    """A user's test-user status: which rule marked them and when."""

    rule: str
    marked_at: int
