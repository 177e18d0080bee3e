"""Oracle-lane messages -> counter deltas: which events count, for which treatment, as good, bad or invalid.

The router puts one message per routed mParticle batch on the oracle lane (``{"destination", "batch_key",
"test_user", "batch"}``), after the data plan, tester resolution and the lane's filter. For every configured
test and every event of the batch:

1. **cohort**: ``testers`` counts only batches the router resolved as a tester's; ``everyone`` counts all;
2. **attribution** to a treatment: the event attribute named by ``treatment_attribute`` if the test sets one;
   otherwise the user's treatment of the flag *at the event's time*, from the profile the impression feed keeps
   (:func:`assignment_at` over its assignment history). An event of a user never exposed to the flag (in the
   test's environment, before the event) counts under :data:`UNATTRIBUTED`: shown, never judged. An event of a
   user served the flag with label ``killed`` counts once under :data:`KILLED`: the evidence a kill landed;
3. **metrics**: an event the metric's ``events`` selector picks is counted (``n``); for a rate metric it is bad
   (``k``) when the ``bad`` selector also picks it; for a percentile metric its attribute goes into the
   histogram. An event whose deciding attribute is missing or not a number is counted as ``invalid`` instead.

Counters are keyed by (test, hour, flag version, treatment, metric): the hour places the window, the flag version
lets the evaluator start at the newest version by default. Each message contributes once: its ``ledger_id`` (a
digest of the router's batch key, which is stable across redelivery, replay and a sender's duplicate) is what
the store records on every counter it touches (:mod:`flagbridge.oracle.store`). Users are kept only as 64-bit
digests, for the sample-ratio check, and only for tests that declare a ``split``.
"""

from __future__ import annotations

import json
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, NamedTuple

from flagbridge.cdp._values import canonical, to_number
from flagbridge.cdp.batch import Event
from flagbridge.cdp.filters import CompiledFilter
from flagbridge.errors import FlagbridgeError
from flagbridge.oracle import histogram
from flagbridge.oracle.config import OracleConfig, OracleTest, PercentileMetric, RateMetric
from flagbridge.profiles.model import FlagState

UNATTRIBUTED = "(unattributed)"
KILLED = "(killed)"
ANY_METRIC = "*"
HOUR_MS = 3_600_000
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class CounterKey(NamedTuple):
    test: str
    hour: int
    """Start of the hour (epoch ms) of the events counted."""
    version: int
    """Flag version of the assignment (0: unknown, e.g. attributed by an event attribute)."""
    treatment: str
    metric: str


class UserSetKey(NamedTuple):
    test: str
    version: int
    treatment: str


@dataclass(slots=True)
class Delta:
    """What one or more messages add to one counter."""

    n: int = 0
    k: int = 0
    invalid: int = 0
    buckets: dict[int, int] = field(default_factory=dict)

    def add(self, other: Delta) -> None:
        self.n += other.n
        self.k += other.k
        self.invalid += other.invalid
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count


@dataclass(slots=True)
class Contribution:
    """Everything one lane message adds: counter deltas and user digests per treatment."""

    ledger_id: str
    deltas: dict[CounterKey, Delta] = field(default_factory=dict)
    users: dict[UserSetKey, set[str]] = field(default_factory=dict)
    events: int = 0


class LaneMessageError(FlagbridgeError, ValueError):
    """The message is not an oracle-lane message."""


def digest(text: str) -> str:
    """A 64-bit digest in 11 URL-safe characters (ledger ids, user digests: never the key itself)."""
    raw = blake2b(text.encode(), digest_size=8).digest()
    return b2a_base64(raw, newline=False).translate(_URLSAFE).decode().rstrip("=")


def assignment_at(state: FlagState, environment: str, at_ms: int) -> tuple[str, int, str | None] | None:
    """The (treatment, version, label) a user was served at ``at_ms`` in ``environment``, per the profile.

    The assignment whose [first seen, last seen] holds the time (the latest to start, if several); else the
    one seen last before it; None when the user was not exposed in that environment before ``at_ms``.
    """
    everywhere = environment == state.environment_id
    candidates = [a for a in state.assignments if everywhere or a.environment == environment]
    if not candidates:
        if state.environment != environment and not everywhere:
            return None
        if state.first_seen > at_ms:
            return None
        return state.treatment, state.version or 0, state.label
    holding = [a for a in candidates if a.first_seen <= at_ms <= a.last_seen]
    if holding:
        chosen = max(holding, key=lambda a: (a.first_seen, a.version or 0))
    else:
        before = [a for a in candidates if a.last_seen < at_ms]
        if not before:
            return None
        chosen = max(before, key=lambda a: (a.last_seen, a.version or 0))
    return chosen.treatment, chosen.version or 0, chosen.label


def traffic_types_by_identity(mappings: Iterable[Any]) -> dict[str, list[str]]:
    """Identity type -> the traffic types whose profiles hold its keys (from ``identity_mapping``)."""
    types: dict[str, list[str]] = {}
    for mapping in mappings:
        known = types.setdefault(mapping.identity_type, [])
        if mapping.traffic_type not in known:
            known.append(mapping.traffic_type)
    return types


def _user_ids(doc: Mapping[str, Any], traffic_types: Mapping[str, Sequence[str]]) -> list[str]:
    """Profile user ids (``traffic_type#key``) of a batch, through the identity mapping."""
    raw = doc.get("user_identities")
    pairs: list[tuple[str, str]] = []
    if isinstance(raw, dict):
        pairs = [("customer_id" if k == "customerid" else str(k), str(v)) for k, v in raw.items() if v is not None]
    elif isinstance(raw, list):
        pairs = [
            (str(item.get("identity_type")), str(item.get("identity")))
            for item in raw
            if isinstance(item, dict) and item.get("identity") is not None
        ]
    if doc.get("mpid") is not None:
        pairs.append(("mpid", str(doc["mpid"])))
    return [f"{traffic}#{value}" for kind, value in pairs for traffic in traffic_types.get(kind, ())]


class _CompiledMetric:
    __slots__ = ("bad", "events", "metric", "needs")

    def __init__(self, metric: RateMetric | PercentileMetric) -> None:
        self.metric = metric
        self.events: CompiledFilter = metric.events.compile()
        self.bad: CompiledFilter | None = None
        self.needs: list[tuple[str, bool]] = []
        """(attribute, must be a number) that must be readable for the event to be judged."""
        if isinstance(metric, RateMetric):
            self.bad = metric.bad.compile()
            for predicate in metric.bad.attributes:
                if predicate.op not in ("exists", "not_exists"):
                    self.needs.append((predicate.attribute, predicate.op in ("gt", "gte", "lt", "lte")))
        else:
            self.needs.append((metric.attribute, True))


class _CompiledTest:
    __slots__ = ("metrics", "test")

    def __init__(self, test: OracleTest) -> None:
        self.test = test
        self.metrics = [_CompiledMetric(m) for m in test.metrics]


def _event_time(data: Mapping[str, Any], fallback: int) -> int:
    value = to_number(data.get("timestamp_unixtime_ms"))
    return int(value) if value is not None and value > 0 else fallback


def _count_event(delta: Delta, compiled: _CompiledMetric, event: Event) -> None:
    attributes = event.custom_attributes
    for attribute, numeric in compiled.needs:
        value = attributes.get(attribute)
        if value is None or (numeric and to_number(value) is None) or (not numeric and canonical(value) is None):
            delta.invalid += 1
            return
    delta.n += 1
    if compiled.bad is not None:
        if compiled.bad.event_reason(event) is None:
            delta.k += 1
    else:
        number = to_number(attributes.get(compiled.needs[0][0]))
        assert number is not None
        index = histogram.bucket_of(number)
        delta.buckets[index] = delta.buckets.get(index, 0) + 1


StateLookup = Callable[[str, str], FlagState | None]
"""``(user id, flag) -> FlagState`` (None when the user has no exposure to the flag)."""


class Counter:
    """Counts lane messages for the configured tests (compiled once per container)."""

    def __init__(self, config: OracleConfig, traffic_types: Mapping[str, Sequence[str]]) -> None:
        self._tests = [_CompiledTest(t) for t in config.tests]
        self._traffic_types = traffic_types

    @property
    def profile_flags(self) -> list[str]:
        """Flags whose profiles attribution reads (tests without a treatment attribute)."""
        return sorted({t.test.flag for t in self._tests if t.test.treatment_attribute is None})

    def parse(self, body: str) -> dict[str, Any]:
        """A lane message as a dict; LaneMessageError when it is not one."""
        try:
            message = json.loads(body)
        except ValueError as exc:
            raise LaneMessageError("not JSON") from exc
        if not isinstance(message, dict) or not isinstance(message.get("batch"), dict):
            raise LaneMessageError("not an oracle-lane message (no batch)")
        events = message["batch"].get("events", [])
        if not isinstance(events, list):
            raise LaneMessageError("batch.events is not a list")
        return message

    def user_ids(self, message: Mapping[str, Any]) -> list[str]:
        return _user_ids(message["batch"], self._traffic_types)

    def count(self, message: Mapping[str, Any], states: StateLookup, now_ms: int) -> Contribution:
        """The contribution of one parsed lane message."""
        doc: Mapping[str, Any] = message["batch"]
        batch_key = message.get("batch_key")
        ledger_id = digest(batch_key if isinstance(batch_key, str) and batch_key else json.dumps(doc, sort_keys=True))
        contribution = Contribution(ledger_id)
        batch_time = _event_time(doc, now_ms)
        users = _user_ids(doc, self._traffic_types)
        is_tester = message.get("test_user") is True
        events = [
            Event(index, str(envelope.get("event_type")), envelope.get("data") or {}, envelope)
            for index, envelope in enumerate(doc.get("events", []))
            if isinstance(envelope, dict) and isinstance(envelope.get("data", {}), dict)
        ]
        contribution.events = len(events)
        for compiled in self._tests:
            test = compiled.test
            if test.cohort == "testers" and not is_tester:
                continue
            user_states = (
                [s for s in (states(user, test.flag) for user in users) if s is not None]
                if test.treatment_attribute is None
                else []
            )
            for event in events:
                at_ms = _event_time(event.data, batch_time)
                treatment, version, label = self._attribute(test, event, user_states, at_ms)
                hour = at_ms - at_ms % HOUR_MS
                if label == "killed":
                    key = CounterKey(test.name, hour, version, KILLED, ANY_METRIC)
                    contribution.deltas.setdefault(key, Delta()).n += 1
                    continue
                for metric in compiled.metrics:
                    if metric.events.event_reason(event) is not None:
                        continue
                    key = CounterKey(test.name, hour, version, treatment, metric.metric.name)
                    delta = contribution.deltas.get(key)
                    if delta is None:
                        delta = contribution.deltas[key] = Delta()
                    _count_event(delta, metric, event)
                if test.split is not None and treatment != UNATTRIBUTED and users:
                    contribution.users.setdefault(UserSetKey(test.name, version, treatment), set()).add(
                        digest(users[0])
                    )
        return contribution

    @staticmethod
    def _attribute(
        test: OracleTest, event: Event, user_states: Sequence[FlagState], at_ms: int
    ) -> tuple[str, int, str | None]:
        if test.treatment_attribute is not None:
            named = canonical(event.custom_attributes.get(test.treatment_attribute))
            return (named, 0, None) if named else (UNATTRIBUTED, 0, None)
        for state in user_states:
            found = assignment_at(state, test.environment, at_ms)
            if found is not None:
                return found
        return UNATTRIBUTED, 0, None


def merge_contributions(contributions: Iterable[Contribution]) -> dict[CounterKey, Delta]:
    """The summed deltas of several contributions (what one SQS batch adds, counter by counter)."""
    merged: dict[CounterKey, Delta] = {}
    for contribution in contributions:
        for key, delta in contribution.deltas.items():
            merged.setdefault(key, Delta()).add(delta)
    return merged
