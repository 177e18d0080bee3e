"""Exposure state of one (user, flag) and the pure merge that folds impressions into it.

The merge is built for at-least-once, out-of-order delivery:

* Every impression has a fingerprint (its environment, treatment, time, flag version, label and
  bucketing key). Fingerprints seen within ``dedup_window_days`` of the newest exposure are kept on
  the state, so a redelivered impression is recognised and changes nothing (not even ``updated_at``).
  The fingerprint does not tell an empty label from none, so neither does the merge: a label ``""``
  is stored as no label (None).
* The current treatment (with its label, version, environment and identity type) is the one of the
  greatest impression in a total order (:func:`rank`): time, then flag version (no version before any
  version), then treatment, then label (no label before any label), and only for impressions equal
  in all of those, environment id, environment and identity type. An older
  impression arriving late never overwrites a newer treatment, and ties are decided the same way
  whatever the arrival order or batching.
* Counts, first/last seen and each assignment's aggregates are min/max/sum (an assignment's environment
  is the one of its earliest impression, the least on a tie), so the result does not depend on arrival
  order. The history keeps the ``assignment_history_size`` greatest assignments by (last seen, then the
  same version, treatment, label order), which is a total order on distinct assignments: which
  assignments it holds, and their last seen, do not depend on arrival order either. Bounds, as for the
  fingerprints: an assignment dropped from a full history and served again later comes back with the
  first seen and count of its exposures since then.

The store adds no ordering of its own: it writes the state this merge returns, conditional on the
revision it read, and a writer that loses re-reads and merges again (:mod:`flagbridge.profiles.store`),
so impressions split over SQS batches and processors end in the same state as in one batch.
"""

from __future__ import annotations

from binascii import b2a_base64 as _b2a_base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b as _blake2b
from typing import TYPE_CHECKING, Any, TypeVar, cast

from flagbridge.impressions.records import Row, row_of

if TYPE_CHECKING:
    from flagbridge.config import ProfilesConfig
    from flagbridge.impressions.models import QueuedImpression

DAY_MS = 86_400_000
_D = TypeVar("_D")
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_new = object.__new__
# A fresh 9-byte BLAKE2b: copying a prototype costs less than parsing the constructor's keyword arguments.
_new_digest = _blake2b(digest_size=9).copy


def fingerprint(impression: QueuedImpression) -> str:
    """A short, stable id of an impression within its (user, flag).

    The URL-safe base64 of a 9-byte BLAKE2b digest of the impression's environment, treatment, time, flag
    version, label and bucketing key joined by ``\\x1f`` (the format stored on profiles: never change it).
    """
    return fingerprint_row(row_of(impression))


def fingerprint_row(row: Row) -> str:
    """:func:`fingerprint` of an impression's :data:`~flagbridge.impressions.records.Row`."""
    (_, _, treatment, time, label, version, environment, environment_id, bucketing_key, _, _, _) = row
    material = (
        f"{environment_id or environment}\x1f{treatment}\x1f{time}"
        f"\x1f{'' if version is None else version}\x1f{label or ''}\x1f{bucketing_key or ''}"
    )
    digest = _new_digest()
    digest.update(material.encode())
    return _b2a_base64(digest.digest(), newline=False).translate(_URLSAFE).decode()


def _built(cls: type[_D], values: dict[str, Any]) -> _D:
    """``cls(**values)`` for the frozen dataclasses below, without their per-field ``object.__setattr__``.

    The merge builds one state per (user, flag) of every batch; a frozen dataclass's generated ``__init__``
    costs several times more than the rest of that work. ``values`` must name every field.
    """
    instance = object.__new__(cls)
    instance.__dict__.update(values)
    return instance


# Below every flag version (an int): an impression without a version is older than one with any version.
NO_VERSION = float("-inf")


def rank(time: int, version: int | None, treatment: str, label: str | None) -> tuple[int, float, str, str]:
    """The order in which the newest impression becomes the current treatment (see the module docstring).

    Total on (time, version, treatment, label): no version is below every version (never conflated with
    one), no label below every label (``""`` is no label, as in the fingerprint). :func:`merge_rows` inlines it.
    """
    return (time, NO_VERSION if version is None else version, treatment, label or "")


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
    """Fold impressions of a single (user, flag) into ``state``; pure and idempotent (:func:`merge_rows`)."""
    merged, new_impressions, duplicates = merge_rows(
        state, [row_of(impression) for impression in impressions], config, now_ms
    )
    return _built(MergeOutcome, {"state": merged, "new_impressions": new_impressions, "duplicates": duplicates})


def merge_rows(
    state: FlagState | None, rows: Sequence[Row], config: ProfilesConfig, now_ms: int
) -> tuple[FlagState | None, int, int]:
    """The merge: fold one (user, flag)'s impressions, as :data:`~flagbridge.impressions.records.Row` tuples, into
    ``state``; returns ``(state, new_impressions, duplicates)`` (a plain tuple: the processor's loop unpacks it)."""
    if state is None and rows:  # the common case, without the general bookkeeping
        return _first_impression(rows[0], now_ms) if len(rows) == 1 else _new_state(rows, config, now_ms)
    return merge_into(state, rows, config, now_ms)


def merge_into(  # hot path: the merge, flattened (make bench); hypothesis-tested
    state: FlagState | None, rows: Sequence[Row], config: ProfilesConfig, now_ms: int
) -> tuple[FlagState | None, int, int]:
    """:func:`merge_rows` by its general path alone (any state, any rows): the reference its fast paths for a new
    (user, flag), :func:`_first_impression` and :func:`_new_state`, are tested against."""
    if not rows:
        return state, 0, 0
    exposures, first_seen, last_seen, best, tail, head, known, seen = _merge_start(state, rows)
    new = duplicates = 0
    first: Row | None = None
    # identity -> [first_seen, last_seen, count, environment] of assignments this merge touches
    touched: dict[tuple[str, str | None, int | None], list[Any]] = {}
    for row in rows:  # one pass: recognise the redeliveries (fingerprint_row, inline), fold in the others
        treatment, time, label, version, environment = row[2], row[3], row[4] or None, row[5], row[6]
        material = (
            f"{row[7] or environment}\x1f{treatment}\x1f{time}"
            f"\x1f{'' if version is None else version}\x1f{label or ''}\x1f{row[8] or ''}"
        )
        digest = _new_digest()
        digest.update(material.encode())
        fp = _b2a_base64(digest.digest(), newline=False).translate(_URLSAFE).decode()
        if fp in seen:
            duplicates += 1
            continue
        seen[fp] = time
        if first is None:
            first = row
        new += 1
        if time < first_seen:
            first_seen = time
        if time > last_seen:
            last_seen = time
        order = (time, NO_VERSION if version is None else version, treatment, label or "")
        if order >= best and (order > best or (row[7], environment, row[11]) > tail):  # rank(), then the rest
            best, head, tail = order, row, (row[7], environment, row[11])
        identity = (treatment, label, version)
        entry = touched.get(identity)
        if entry is None:
            previous = known.get(identity)
            if previous is None:
                touched[identity] = [time, time, 1, environment]
                continue
            entry = touched[identity] = [previous.first_seen, previous.last_seen, previous.count, previous.environment]
        if time < entry[0] or (time == entry[0] and environment < entry[3]):
            entry[0], entry[3] = time, environment  # the environment of the earliest exposure (the least on a tie)
        if time > entry[1]:
            entry[1] = time
        entry[2] += 1
    if first is None:
        return state, 0, duplicates
    history = _history(known, touched, config.assignment_history_size)
    seen, seen_floor = _prune(seen, state, first_seen, last_seen, config)

    merged = _new(FlagState)
    fields = merged.__dict__  # item stores cost less than update()'s keyword dictionary
    fields["traffic_type"] = first[10]
    fields["key"] = first[0]
    fields["flag"] = first[1]
    fields["first_seen"] = first_seen
    fields["last_seen"] = last_seen
    fields["exposures"] = exposures + new
    fields["assignments"] = history
    fields["seen"] = seen
    fields["seen_floor"] = seen_floor
    fields["rev"] = state.rev if state else 0
    fields["updated_at"] = now_ms
    if head is not None:
        fields["identity_type"] = head[11]
        fields["treatment"] = head[2]
        fields["label"] = head[4] or None
        fields["version"] = head[5]
        fields["environment"] = head[6]
        fields["environment_id"] = head[7]
        fields["current_time"] = head[3]
    else:
        current = cast(FlagState, state)  # no row outranked the state's current treatment: there is a state
        fields["identity_type"] = current.identity_type
        fields["treatment"] = current.treatment
        fields["label"] = current.label
        fields["version"] = current.version
        fields["environment"] = current.environment
        fields["environment_id"] = current.environment_id
        fields["current_time"] = current.current_time
    return merged, new, duplicates


def _history(
    known: dict[tuple[str, str | None, int | None], Assignment],
    touched: dict[tuple[str, str | None, int | None], list[Any]],
    size: int,
) -> tuple[Assignment, ...]:
    """The assignment history after a merge: the ``size`` greatest of the ``known`` assignments updated with the
    ``touched`` ones (identity -> [first seen, last seen, count, environment])."""
    assignments = dict(known)
    for identity, (first_seen, last_seen, count, environment) in touched.items():
        assignment = assignments[identity] = _new(Assignment)
        fields = assignment.__dict__  # item stores cost less than update()'s keyword dictionary
        fields["treatment"] = identity[0]
        fields["label"] = identity[1]
        fields["version"] = identity[2]
        fields["environment"] = environment
        fields["first_seen"] = first_seen
        fields["last_seen"] = last_seen
        fields["count"] = count
    if len(assignments) == 1:
        return tuple(assignments.values())
    return tuple(sorted(assignments.values(), key=_history_order)[-size:])


# exposures, first seen, last seen, rank, its tie-breaker, the row holding it, assignments by identity, fingerprints
_Start = tuple[
    int, int, int, tuple[int, float, str, str], tuple[str, str, str], Row | None, dict[Any, Assignment], dict[str, int]
]


def _merge_start(state: FlagState | None, rows: Sequence[Row]) -> _Start:
    """What :func:`merge_rows` folds into: exposures, first and last seen, the current rank and its tie-breaker, the
    row that holds it (None: the state's), the state's assignments by identity, and a copy of its fingerprints.

    Without a state, the first row is all of it (it cannot be a redelivery: nothing was seen yet)."""
    if state is not None:
        best = rank(state.current_time, state.version, state.treatment, state.label)
        tail = (state.environment_id, state.environment, state.identity_type)
        known = {a.identity: a for a in state.assignments}
        return state.exposures, state.first_seen, state.last_seen, best, tail, None, known, dict(state.seen)
    first = rows[0]
    best = rank(first[3], first[5], first[2], first[4])
    return 0, first[3], first[3], best, (first[7], first[6], first[11]), first, {}, {}


def _new_state(  # hot path: the merge of a new (user, flag), flattened (make bench); equivalence-tested
    rows: Sequence[Row], config: ProfilesConfig, now_ms: int
) -> tuple[FlagState, int, int]:
    """``merge_rows(None, rows, ...)`` for two rows or more: no stored fingerprints, assignments or rank to start
    from, so the loop of :func:`merge_into` without them (the first row is new, and the current one until outranked).
    """
    head = rows[0]
    first_seen = last_seen = head[3]
    best = (first_seen, NO_VERSION if head[5] is None else head[5], head[2], head[4] or "")
    tail = (head[7], head[6], head[11])
    seen: dict[str, int] = {}
    touched: dict[tuple[str, str | None, int | None], list[Any]] = {}  # as in merge_into
    for row in rows:
        treatment, time, label, version, environment = row[2], row[3], row[4] or None, row[5], row[6]
        material = (
            f"{row[7] or environment}\x1f{treatment}\x1f{time}"
            f"\x1f{'' if version is None else version}\x1f{label or ''}\x1f{row[8] or ''}"
        )
        digest = _new_digest()
        digest.update(material.encode())
        fp = _b2a_base64(digest.digest(), newline=False).translate(_URLSAFE).decode()
        if fp in seen:
            continue
        seen[fp] = time
        if time < first_seen:
            first_seen = time
        elif time > last_seen:
            last_seen = time
        order = (time, NO_VERSION if version is None else version, treatment, label or "")
        if order >= best and (order > best or (row[7], environment, row[11]) > tail):
            best, head, tail = order, row, (row[7], environment, row[11])
        identity = (treatment, label, version)
        entry = touched.get(identity)
        if entry is None:
            touched[identity] = [time, time, 1, environment]
            continue
        if time < entry[0] or (time == entry[0] and environment < entry[3]):
            entry[0], entry[3] = time, environment
        if time > entry[1]:
            entry[1] = time
        entry[2] += 1
    new = len(seen)
    if new > config.dedup_max_entries or first_seen < last_seen - config.dedup_window_days * DAY_MS:
        seen, seen_floor = _prune(seen, None, first_seen, last_seen, config)
    else:
        seen_floor = 0
    first = rows[0]
    merged = _new(FlagState)
    fields = merged.__dict__  # item stores cost less than update()'s keyword dictionary
    fields["traffic_type"] = first[10]
    fields["key"] = first[0]
    fields["flag"] = first[1]
    fields["first_seen"] = first_seen
    fields["last_seen"] = last_seen
    fields["exposures"] = new
    fields["assignments"] = _new_history(touched, config.assignment_history_size)
    fields["seen"] = seen
    fields["seen_floor"] = seen_floor
    fields["rev"] = 0
    fields["updated_at"] = now_ms
    fields["identity_type"] = head[11]
    fields["treatment"] = head[2]
    fields["label"] = head[4] or None
    fields["version"] = head[5]
    fields["environment"] = head[6]
    fields["environment_id"] = head[7]
    fields["current_time"] = head[3]
    return merged, new, len(rows) - new


def _new_history(touched: dict[tuple[str, str | None, int | None], list[Any]], size: int) -> tuple[Assignment, ...]:
    """``_history({}, touched, size)``, each assignment paired with its :func:`_history_order` key as it is built
    (the keys of distinct identities differ, so the pairs sort by their keys alone)."""
    keyed = []
    for (treatment, label, version), (first_seen, last_seen, count, environment) in touched.items():
        assignment = _new(Assignment)
        fields = assignment.__dict__  # item stores cost less than update()'s keyword dictionary
        fields["treatment"] = treatment
        fields["label"] = label
        fields["version"] = version
        fields["environment"] = environment
        fields["first_seen"] = first_seen
        fields["last_seen"] = last_seen
        fields["count"] = count
        order = (last_seen, NO_VERSION if version is None else version, treatment, label is not None, label or "")
        keyed.append((order, assignment))
    if len(keyed) > 1:
        keyed.sort()
    return tuple([assignment for _, assignment in keyed[-size:]])


def _first_impression(row: Row, now_ms: int) -> tuple[FlagState, int, int]:
    """``merge_rows(None, [row], ...)``: a new state holding one exposure (see :func:`_built`)."""
    key, flag, treatment, time, label, version, environment, environment_id, bucketing_key, _, traffic_type, _ = row
    label = label or None  # "" is no label, as in the fingerprint
    material = (
        f"{environment_id or environment}\x1f{treatment}\x1f{time}"
        f"\x1f{'' if version is None else version}\x1f{label or ''}\x1f{bucketing_key or ''}"
    )  # fingerprint_row(row), inline: this runs for most pairs of every batch
    digest = _new_digest()
    digest.update(material.encode())
    fp = _b2a_base64(digest.digest(), newline=False).translate(_URLSAFE).decode()
    assignment = _new(Assignment)
    fields = assignment.__dict__  # item stores cost less than update()'s keyword dictionary
    fields["treatment"] = treatment
    fields["label"] = label
    fields["version"] = version
    fields["environment"] = environment
    fields["first_seen"] = time
    fields["last_seen"] = time
    fields["count"] = 1
    state = _new(FlagState)
    fields = state.__dict__
    fields["traffic_type"] = traffic_type
    fields["key"] = key
    fields["identity_type"] = row[11]
    fields["flag"] = flag
    fields["treatment"] = treatment
    fields["label"] = label
    fields["version"] = version
    fields["environment"] = environment
    fields["environment_id"] = environment_id
    fields["current_time"] = time
    fields["first_seen"] = time
    fields["last_seen"] = time
    fields["exposures"] = 1
    fields["assignments"] = (assignment,)
    fields["seen"] = {fp: time}  # within the window and the cap (dedup_max_entries >= 10)
    fields["seen_floor"] = 0
    fields["rev"] = 0
    fields["updated_at"] = now_ms
    return state, 1, 0


def _history_order(assignment: Assignment) -> tuple[int, float, str, bool, str]:
    """Last seen, then :func:`rank`'s order of the identity: total on an assignment history (identities are distinct).

    Not first seen or count: they can only be told exactly while an assignment stays in the history."""
    version, label = assignment.version, assignment.label
    return (
        assignment.last_seen,
        NO_VERSION if version is None else version,
        assignment.treatment,
        label is not None,
        label or "",
    )


def _prune(
    seen: dict[str, int], state: FlagState | None, oldest: int, newest: int, config: ProfilesConfig
) -> tuple[dict[str, int], int]:
    """Drop fingerprints older than the dedup window or beyond the entry cap; return the new floor.

    ``seen`` is the merged fingerprints of ``state`` (None: a new state, whose fingerprints are the merged
    impressions', so that none is older than their first seen, ``oldest``) and ``newest`` the last seen."""
    floor = state.seen_floor if state else 0
    horizon = newest - config.dedup_window_days * DAY_MS
    if state is not None:
        oldest = min(seen.values(), default=horizon)
    if len(seen) <= config.dedup_max_entries and oldest >= horizon:
        return seen, floor  # nothing to drop (the common case)
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
    """A user's tester status: which rule marked them and when (epoch ms), and until when for a mark that
    came from the tester registry (``expires_at``, epoch ms; None: a configured rule's mark, for good)."""

    rule: str
    marked_at: int
    expires_at: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.expires_at is None or self.expires_at > now_ms
