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
   histogram, and counted as at/above each of its two lines (``at_pass``, ``at_fail``: the verdict's exact
   shares). An event whose deciding attribute is missing or not a number is counted as ``invalid`` instead.

Counters are keyed by (test, hour, flag version, treatment, metric): the hour places the window, the flag version
lets the evaluator start at the newest version by default. Each message contributes once: its ``ledger_id`` (a
digest of the router's batch key, which is stable across redelivery, replay and a sender's duplicate) is what
the store records on every counter it touches (:mod:`flagbridge.oracle.store`). Users are kept only as 64-bit
digests, for the sample-ratio check, and only for tests that declare a ``split``.

Per SQS batch: each message is read as it is parsed into what counting needs (:meth:`Counter.read`: ledger id,
cohort, user ids, events), the profiles of all its users are read at once, then :class:`BatchCount` counts the
messages, building each user's attribution and each counter key once per batch. Selectors are compiled once per
configuration: events are routed by type and name once, then one pass per event runs every metric's count. A test
whose metrics are all rates and percentiles goes further: what an event does to every metric is found once per
event type, name and values of the attributes its selectors read (a plan), rates are tallied per plan, and a
percentile's values are gathered per counter and counted in one call per message.
"""

from __future__ import annotations

import json
import math
from binascii import b2a_base64
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, NamedTuple

from flagbridge.errors import FlagbridgeError
from flagbridge.oracle.config import OracleConfig, OracleTest
from flagbridge.oracle.kinds import CountEvent, kind_of
from flagbridge.oracle.kinds.percentile import PERCENTILE, PercentileMetric, compile_percentile_values
from flagbridge.oracle.kinds.rate import RATE, RateMetric
from flagbridge.oracle.tally import MEMO_LIMIT, Delta, EventMatcher
from flagbridge.profiles.model import FlagState
from flagbridge.values import canonical, to_number

__all__ = ["Delta"]

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
    return b2a_base64(raw, newline=False)[:11].translate(_URLSAFE).decode()  # 8 bytes: 11 characters and a "="


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


AttributeCheck = Callable[[Mapping[str, Any]], bool]
Route = tuple[tuple[AttributeCheck | None, tuple[tuple[int, CountEvent], ...]], ...]
"""The selector groups that take events of one type and name: (their attribute check, (position, count), ...)."""


RateEffects = tuple[tuple[int, int, int, int], ...]
"""(position, n, k, invalid) that one event adds to each rate metric that selects it."""
Plan = tuple[int, tuple[tuple[int, str], ...]] | None
"""What one event does to a test's metrics: (the id of its rate effects, -1 for none; the (position, attribute)
of each percentile metric that selects it); None when no metric selects it."""
ValuesCount = Callable[[list[Any]], Delta]
"""A percentile metric's count of the gathered values of its attribute (one per event, in order)."""


class _CompiledTest:
    """A test's metrics grouped by their ``events`` selector (the default metrics share one), each metric's count
    compiled by its kind, and the groups that take each event type and name (found once, kept in ``routes``).

    When every metric is a rate or a percentile (``keyed`` is not None), what an event does is decided by its type,
    name and the values of the ``keyed`` attributes alone, apart from a percentile's own value: that decision (a
    :data:`Plan`, found by the general path once) is kept per (type, name, values, their types) in ``plans``, and
    a rate's count is a tally of its plan, multiplied out once per message; a percentile's values are gathered in
    the row and counted once per message (``values_counts``)."""

    __slots__ = (
        "_effect_ids", "by_attribute", "effects", "groups", "keyed", "metric_names", "percentiles", "plans", "routes",
        "split", "test", "testers_only", "values_counts",
    )  # fmt: skip

    def __init__(self, test: OracleTest) -> None:
        self.test = test
        self.metric_names = [metric.name for metric in test.metrics]
        groups: dict[str, tuple[EventMatcher, list[tuple[int, CountEvent]]]] = {}
        for position, metric in enumerate(test.metrics):
            key = metric.events.model_dump_json()
            if key not in groups:
                groups[key] = (EventMatcher(metric.events), [])
            groups[key][1].append((position, kind_of(metric).compile(metric)))
        self.groups = [(matcher, tuple(metrics)) for matcher, metrics in groups.values()]
        self.routes: dict[tuple[Any, str], Route] = {}
        self.testers_only = test.cohort == "testers"
        self.split = test.split is not None
        self.by_attribute = test.treatment_attribute is not None
        self.keyed = _keyed_attributes(test)
        percentiles = [(p, m) for p, m in enumerate(test.metrics) if kind_of(m) is PERCENTILE]
        self.percentiles = {p: m.attribute for p, m in percentiles if isinstance(m, PercentileMetric)}
        """Position -> the attribute of each percentile metric."""
        self.values_counts: dict[int, ValuesCount] = {
            p: compile_percentile_values(m) for p, m in percentiles if isinstance(m, PercentileMetric)
        }
        self.plans: dict[Hashable, Plan] = {}
        self.effects: list[RateEffects] = []
        """Rate effects by id (a plan names them by their position here)."""
        self._effect_ids: dict[RateEffects, int] = {}

    def route(self, event_type: Any, name: str, data: dict[str, Any]) -> Route:
        """The groups whose event type and name rules take this event (remembered per type and name)."""
        route = tuple(
            (matcher.accepts, metrics) for matcher, metrics in self.groups if matcher.takes_name(event_type, name, data)
        )
        if len(self.routes) < MEMO_LIMIT and isinstance(event_type, Hashable):
            self.routes[(event_type, name)] = route
        return route

    def plan(self, event_type: Any, name: str, data: dict[str, Any], attributes: Mapping[str, Any]) -> Plan:
        """What the event does to the metrics, by the general path (each rate counted on a scratch delta); kept
        in ``plans`` when its key can stand for every event that has it (no float, whose equal values may read
        differently, and nothing unhashable)."""
        try:
            route = self.routes[event_type, name]
        except (KeyError, TypeError):
            route = self.route(event_type, name, data)
        effects: list[tuple[int, int, int, int]] = []
        calls: list[tuple[int, str]] = []
        for accepts, metrics in route:
            if accepts is not None and not accepts(attributes):
                continue
            for position, count in metrics:
                if position in self.percentiles:
                    calls.append((position, self.percentiles[position]))
                    continue
                scratch = Delta()
                count(scratch, event_type, name, data, attributes)
                effects.append((position, scratch.n, scratch.k, scratch.invalid))
        plan: Plan = None
        if effects or calls:
            plan = (self._effect_id(tuple(effects)) if effects else -1, tuple(calls))
        values = tuple(map(attributes.get, self.keyed or ()))
        types = tuple(map(type, values))
        keeps = float not in types and len(self.plans) < MEMO_LIMIT and isinstance(event_type, Hashable)
        if keeps and all(isinstance(value, Hashable) for value in values):
            self.plans[(event_type, name, *values, *types)] = plan
        return plan

    def _effect_id(self, effects: RateEffects) -> int:
        found = self._effect_ids.get(effects)
        if found is None:
            found = self._effect_ids[effects] = len(self.effects)
            self.effects.append(effects)
        return found


def _keyed_attributes(test: OracleTest) -> tuple[str, ...] | None:
    """The attributes whose values (with the event's type and name) decide every metric's selection and every
    rate's outcome; None when a metric is of another kind (its count may read anything: the general path)."""
    keyed: set[str] = set()
    for metric in test.metrics:
        kind = kind_of(metric)
        if kind is RATE and isinstance(metric, RateMetric):
            keyed.update(p.attribute for p in metric.bad.attributes)
        elif kind is not PERCENTILE:
            return None
        keyed.update(p.attribute for p in metric.events.attributes)
    return tuple(sorted(keyed))


_NO_ATTRIBUTES: Mapping[str, Any] = {}
_NOT_KEPT: Any = object()
"""No plan kept yet: identical to no event's value."""
PreparedEvent = tuple[Any, str, dict[str, Any], Mapping[str, Any], int]
"""(event type, name, data, custom attributes, time) of one event."""


def _event_time(data: Mapping[str, Any], fallback: int) -> int:
    value = data.get("timestamp_unixtime_ms")
    if value is None:
        return fallback
    if type(value) is not int:
        value = to_number(value)
    return int(value) if value is not None and value > 0 else fallback


def _prepared_events(
    doc: Mapping[str, Any], batch_time: int
) -> list[tuple[Any, str, dict[str, Any], Mapping[str, Any], int]]:
    """(event type, name, data, custom attributes, time) of each well-formed event of a batch document."""
    prepared: list[PreparedEvent] = []
    append = prepared.append
    for envelope in doc.get("events", []):
        if not isinstance(envelope, dict):
            continue
        data = envelope.get("data")
        if data is None:
            data = {}
        elif not isinstance(data, dict):
            continue
        event_type = envelope.get("event_type")
        if event_type == "custom_event":
            name = data.get("event_name", "")
        elif event_type == "screen_view":
            name = data.get("screen_name", "")
        else:
            name = event_type
        if type(name) is not str:  # str() of a str is itself: called only for anything else
            name = str(name)
        attributes = data.get("custom_attributes")
        if not isinstance(attributes, dict):
            attributes = _NO_ATTRIBUTES
        at_ms = data.get("timestamp_unixtime_ms")
        if type(at_ms) is not int or at_ms <= 0:
            at_ms = _event_time(data, batch_time)
        append((event_type, name, data, attributes, at_ms))
    return prepared


Attribution = tuple[str, int, str | None]
Attributor = tuple[float, Attribution, Callable[[int, Mapping[str, Any]], Attribution]]
"""(boundary, answer, attribute) for the events of one message and one test: an event after the boundary (epoch
ms) takes the answer; any other, ``attribute(at_ms, attributes) -> (treatment, version, label)``."""
_UNATTRIBUTED: Attribution = (UNATTRIBUTED, 0, None)
StateLookup = Callable[[str, str], FlagState | None]
"""``(user id, flag) -> FlagState`` (None when the user has no exposure to the flag)."""


def _profile_attribution(test: OracleTest, user_states: Sequence[FlagState]) -> Attributor:
    """The attribution of one message's users for one test (attributes unused).

    Most events come after the user's newest exposure: those take the newest assignment without a search.
    """
    if not user_states:
        return -math.inf, _UNATTRIBUTED, _unattributed
    state = user_states[0]
    candidates = [a for a in state.assignments if a.environment == test.environment]
    if len(user_states) == 1 and candidates and test.environment != state.environment_id:
        newest = candidates[0] if len(candidates) == 1 else max(candidates, key=lambda a: (a.last_seen, a.version or 0))
        boundary, answer = newest.last_seen, (newest.treatment, newest.version or 0, newest.label)
    else:
        boundary, answer = 2**63, _UNATTRIBUTED

    def attribute(at_ms: int, attributes: Mapping[str, Any]) -> Attribution:
        for candidate in user_states:
            assigned = assignment_at(candidate, test.environment, at_ms)
            if assigned is not None:
                return assigned
        return _UNATTRIBUTED

    return boundary, answer, attribute


def _unattributed(at_ms: int, attributes: Mapping[str, Any]) -> Attribution:
    return _UNATTRIBUTED


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

    def read(self, body: str, now_ms: int) -> LaneMessage:
        """A lane message read for counting (LaneMessageError when it is not one): the parsed document is not
        kept, so an SQS batch holds only what its count reads while its profiles are read."""
        return self.prepare(self.parse(body), now_ms)

    def prepare(self, message: Mapping[str, Any], now_ms: int, users: list[str] | None = None) -> LaneMessage:
        """What counting reads of a parsed lane message (``users``: its :meth:`user_ids`, when already read)."""
        doc: Mapping[str, Any] = message["batch"]
        batch_key = message.get("batch_key")
        ledger_id = digest(batch_key if isinstance(batch_key, str) and batch_key else json.dumps(doc, sort_keys=True))
        return LaneMessage(
            ledger_id,
            message.get("test_user") is True,
            _user_ids(doc, self._traffic_types) if users is None else users,
            _prepared_events(doc, _event_time(doc, now_ms)),
        )

    def batch(self, states: StateLookup) -> BatchCount:
        """A count of the messages of one SQS batch, whose profiles ``states`` reads."""
        return BatchCount(self._tests, states)

    def count(
        self, message: Mapping[str, Any], states: StateLookup, now_ms: int, users: list[str] | None = None
    ) -> Contribution:
        """The contribution of one parsed lane message (``users``: its :meth:`user_ids`, when already read)."""
        return self.batch(states).count(self.prepare(message, now_ms, users))


class LaneMessage(NamedTuple):
    """What counting reads of one lane message."""

    ledger_id: str
    tester: bool
    """The router resolved the batch as a tester's."""
    users: list[str]
    """Profile user ids (``traffic_type#key``)."""
    events: list[PreparedEvent]
    """Its well-formed events, each (event type, name, data, custom attributes, time)."""


Rows = dict[tuple[int, int, str], list[Delta | None]]
"""(hour, version, treatment) -> one Delta per metric (None until the metric counts an event there)."""


class BatchCount:
    """Counts the messages of one SQS batch against one profile read: each user's attribution, each counter key
    and each user digest are built once per batch, not once per message."""

    __slots__ = ("_attributions", "_digests", "_keys", "_states", "_tests")

    def __init__(self, tests: list[_CompiledTest], states: StateLookup) -> None:
        self._tests = tests
        self._states = states
        self._attributions: list[dict[str | tuple[str, ...] | None, Attributor]] = [{} for _ in tests]
        self._keys: list[dict[tuple[int, int, str], tuple[CounterKey, ...]]] = [{} for _ in tests]
        self._digests: dict[str, str] = {}

    def count(self, message: LaneMessage) -> Contribution:
        """The contribution of one lane message."""
        events, users = message.events, message.users
        contribution = Contribution(message.ledger_id, {}, {}, len(events))
        for index, compiled in enumerate(self._tests):
            if compiled.testers_only and not message.tester:
                continue
            counting = _count_events if compiled.keyed is None else _count_planned
            rows, killed, user_sets = counting(compiled, events, self._attribution(index, compiled, users))
            self._collect(index, compiled, rows, killed, contribution)
            if users and user_sets:
                self._add_users(compiled.test.name, users[0], user_sets, contribution)
        return contribution

    def _attribution(self, index: int, compiled: _CompiledTest, users: list[str]) -> Attributor:
        known = self._attributions[index]
        key = None if compiled.by_attribute else users[0] if len(users) == 1 else tuple(users)
        attribution = known.get(key)
        if attribution is None:
            attribution = known[key] = _attribution(compiled.test, users, self._states)
        return attribution

    def _collect(
        self, index: int, compiled: _CompiledTest, rows: Rows, killed: dict[tuple[int, int], int], to: Contribution
    ) -> None:
        deltas = to.deltas
        keys_of = self._keys[index]
        for row_key, row in rows.items():
            keys = keys_of.get(row_key)
            if keys is None:
                hour, version, treatment = row_key
                test = compiled.test.name
                keys = tuple(CounterKey(test, hour, version, treatment, name) for name in compiled.metric_names)
                keys_of[row_key] = keys
            for position, delta in enumerate(row):  # a row and its keys: one per metric
                if delta is not None:
                    deltas[keys[position]] = delta
        for (hour, version), count in killed.items():
            deltas[CounterKey(compiled.test.name, hour, version, KILLED, ANY_METRIC)] = Delta(n=count)

    def _add_users(self, test: str, user: str, user_sets: set[tuple[int, str]], to: Contribution) -> None:
        user_digest = self._digests.get(user)
        if user_digest is None:
            user_digest = self._digests[user] = digest(user)
        for version, treatment in user_sets:
            to.users.setdefault(UserSetKey(test, version, treatment), set()).add(user_digest)


def _count_events(
    compiled: _CompiledTest, events: list[PreparedEvent], attributor: Attributor
) -> tuple[Rows, dict[tuple[int, int], int], set[tuple[int, str]]]:
    """One pass over a message's events for every metric of one test: (rows, killed per (hour, version), the
    (version, treatment) user sets the message's user joins)."""
    routes, route_of, split = compiled.routes, compiled.route, compiled.split
    rows: Rows = {}
    killed: dict[tuple[int, int], int] = {}
    user_sets: set[tuple[int, str]] = set()
    width, last = len(compiled.metric_names), (-1, -1, "")
    last_row: list[Delta | None] = []
    boundary, answer, attribute = attributor
    for event_type, name, data, attributes, at_ms in events:
        treatment, version, label = answer if at_ms > boundary else attribute(at_ms, attributes)
        hour = at_ms - at_ms % HOUR_MS
        if label == "killed":
            killed[(hour, version)] = killed.get((hour, version), 0) + 1
            continue
        if split and treatment != UNATTRIBUTED:
            user_sets.add((version, treatment))
        try:
            route = routes[event_type, name]
        except (KeyError, TypeError):  # not seen yet, or a type that is no key (a list): found, kept if it can be
            route = route_of(event_type, name, data)
        row: list[Delta | None] | None = None
        for accepts, metrics in route:
            if accepts is not None and not accepts(attributes):
                continue
            if row is None:
                # the events of one message mostly share their hour and treatment: the last row again
                if hour == last[0] and treatment is last[2] and version == last[1]:
                    row = last_row
                else:
                    last = (hour, version, treatment)
                    row = rows.get(last)
                    if row is None:
                        row = rows[last] = [None] * width
                    last_row = row
            for position, count in metrics:
                delta = row[position]
                if delta is None:
                    delta = row[position] = Delta()
                count(delta, event_type, name, data, attributes)
    return rows, killed, user_sets


def _count_planned(
    compiled: _CompiledTest, events: list[PreparedEvent], attributor: Attributor
) -> tuple[Rows, dict[tuple[int, int], int], set[tuple[int, str]]]:
    """:func:`_count_events` by the test's plans: per event, its plan looked up by its key; the rate effects
    tallied per row and plan, multiplied out at the end (integer counts: the same sums in any order)."""
    plans, plan_of, keyed, split = compiled.plans, compiled.plan, compiled.keyed or (), compiled.split
    width_keyed = len(keyed)
    first_name, second_name = (*keyed, "", "")[:2]
    # the event type, name and keyed values of the last plan found kept (values by identity): one message's events
    # mostly share them, and take that plan again without building and hashing its key
    kept_type: Any = _NOT_KEPT
    kept_name: Any = _NOT_KEPT
    kept_first: Any = _NOT_KEPT
    kept_second: Any = _NOT_KEPT
    kept: Plan = None
    rows: Rows = {}
    tallies: dict[tuple[int, int, str], dict[int, int]] = {}
    killed: dict[tuple[int, int], int] = {}
    user_sets: set[tuple[int, str]] = set()
    width, last_hour, last_version, last_treatment = len(compiled.metric_names), -1, -1, ""
    row: list[Any] = []
    """Deltas of the row's rates (filled at the end) and the gathered values of its percentiles (counted then)."""
    tally: dict[int, int] = {}
    boundary, answer, attribute = attributor
    for event_type, name, data, attributes, at_ms in events:
        treatment, version, label = answer if at_ms > boundary else attribute(at_ms, attributes)
        hour = at_ms - at_ms % HOUR_MS
        if label == "killed":
            killed[(hour, version)] = killed.get((hour, version), 0) + 1
            continue
        if split and treatment != UNATTRIBUTED:
            user_sets.add((version, treatment))
        try:
            if width_keyed == 2:  # the usual keys built flat, without a tuple of values and one of types
                first, second = attributes.get(first_name), attributes.get(second_name)
                if first is kept_first and second is kept_second and name == kept_name and event_type == kept_type:
                    plan = kept  # the key the dict would find it by: equal type and name, the same values
                else:
                    plan = kept = plans[event_type, name, first, second, type(first), type(second)]
                    kept_type, kept_name, kept_first, kept_second = event_type, name, first, second
            elif width_keyed == 1:
                first = attributes.get(first_name)
                plan = plans[event_type, name, first, type(first)]
            else:
                values = tuple(map(attributes.get, keyed))
                plan = plans[(event_type, name, *values, *map(type, values))]
        except (KeyError, TypeError):  # not seen yet, or a key that cannot be kept
            plan = plan_of(event_type, name, data, attributes)
        if plan is None:
            continue
        # the events of one message mostly share their hour and treatment: the last row again
        if hour != last_hour or treatment is not last_treatment or version != last_version:
            last_hour, last_version, last_treatment = hour, version, treatment
            last = (hour, version, treatment)
            row = rows.get(last)  # type: ignore[assignment]
            if row is None:
                row = rows[last] = [None] * width
                tallies[last] = {}
            tally = tallies[last]
        effects, calls = plan
        if effects >= 0:
            tally[effects] = tally.get(effects, 0) + 1
        for position, read in calls:  # a percentile's values gathered, counted at the end
            gathered = row[position]
            if gathered is None:
                gathered = row[position] = []
            gathered.append(attributes.get(read))
    _multiply_out(compiled, rows, tallies)
    return rows, killed, user_sets


def _multiply_out(compiled: _CompiledTest, rows: Rows, tallies: dict[tuple[int, int, str], dict[int, int]]) -> None:
    """Each row's gathered percentile values and tallied rate effects into its deltas."""
    effects, values_counts = compiled.effects, compiled.values_counts
    for row_key, tally in tallies.items():
        row = rows[row_key]
        for position, count_values in values_counts.items():
            gathered: Any = row[position]
            if gathered is not None:
                row[position] = count_values(gathered)
        for effect, times in tally.items():
            for position, n, k, invalid in effects[effect]:
                delta = row[position]
                if delta is None:
                    row[position] = Delta(n * times, k * times, invalid * times, {})
                else:
                    delta.n += n * times
                    delta.k += k * times
                    delta.invalid += invalid * times


def _attribution(test: OracleTest, users: list[str], states: StateLookup) -> Attributor:
    """The attribution of the events of one message for one test."""
    named_by = test.treatment_attribute
    if named_by is not None:

        def by_attribute(at_ms: int, attributes: Mapping[str, Any]) -> Attribution:
            named = canonical(attributes.get(named_by))
            return (named, 0, None) if named else _UNATTRIBUTED

        return math.inf, _UNATTRIBUTED, by_attribute
    flag = test.flag
    return _profile_attribution(test, [state for user in users if (state := states(user, flag)) is not None])


def merge_contributions(contributions: Iterable[Contribution]) -> dict[CounterKey, Delta]:
    """The summed deltas of several contributions (what one SQS batch adds, counter by counter)."""
    merged: dict[CounterKey, Delta] = {}
    for contribution in contributions:
        for key, delta in contribution.deltas.items():
            merged.setdefault(key, Delta()).add(delta)
    return merged
