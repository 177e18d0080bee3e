"""The compiled counter against a straightforward one: the same contributions over a corpus of lane messages.

The reference below reads every event through the public pieces one at a time (the selectors compiled as filters
over :class:`~flagbridge.cdp.batch.Event`, :func:`assignment_at` per event and user, a fresh counter key per
event); the counter under test compiles selectors once, routes events by type and name, builds attribution and
counter keys once per SQS batch. The corpus: the shipped oracle-lane events, the benchmark's messages, and
generated variants (hostile shapes, every attribute type, several hours, killed and unexposed users, testers and
not) counted one by one and as one batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagbridge.cdp.batch import Event
from flagbridge.config import load_config
from flagbridge.oracle import histogram
from flagbridge.oracle.config import parse_oracle_config
from flagbridge.oracle.counting import (
    ANY_METRIC,
    HOUR_MS,
    KILLED,
    UNATTRIBUTED,
    Contribution,
    Counter,
    CounterKey,
    Delta,
    UserSetKey,
    assignment_at,
    digest,
)
from flagbridge.oracle.kinds import kind_of
from flagbridge.oracle.tally import number_of
from flagbridge.profiles.model import Assignment, FlagState
from flagbridge.values import canonical, to_number

T0 = 1_767_225_600_000
ROOT = Path(__file__).resolve().parents[3]
TRAFFIC_TYPES = {"customer_id": ["user"], "email": ["user", "account"], "mpid": ["device"]}
Lookup = Callable[[str, str], FlagState | None]

CONFIGS: list[dict[str, Any]] = [
    {"tests": [{"name": "checkout", "flag": "new_checkout", "environment": "Production"}]},
    {"tests": [
        {"name": "by-arm", "flag": "new_checkout", "environment": "Production", "treatment_attribute": "arm",
         "cohort": "everyone", "split": {"on": 50, "off": 50}},
        {"name": "search", "flag": "new_search", "environment": "env-1", "split": {"on": 50, "off": 50},
         "metrics": [
             {"name": "slow", "type": "rate", "events": {"event_types": {"include": ["custom_event", "screen_view"]},
                                                         "event_names": {"exclude": ["home*"]}},
              "bad": {"attributes": [{"attribute": "latency_ms", "op": "gte", "value": 500},
                                     {"attribute": "route", "op": "exists"}]},
              "pass_below": 0.1, "fail_at": 0.3},
             {"name": "size p90", "type": "percentile", "attribute": "size", "percentile": 90,
              "events": {"attributes": [{"attribute": "status", "op": "in", "value": [200, "201", True]}]},
              "pass_below": 10, "fail_at": 50},
             {"name": "errors", "type": "rate",
              "events": {"event_names": {"include": ["api_*", "checkout"]},
                         "attributes": [{"attribute": "route", "op": "exists"},
                                        {"attribute": "flagbridge_run", "op": "not_exists"},
                                        {"attribute": "latency_ms", "op": "lt", "value": 5000}]},
              "bad": {"attributes": [{"attribute": "status", "op": "gt", "value": 399}]},
              "pass_below": 0.01, "fail_at": 0.05},
         ]},
    ]},
]  # fmt: skip


@cache
def _configs() -> list[Any]:
    """The configurations above and the shipped one (its selectors leave the demo's own runs out)."""
    shipped = load_config(ROOT / "layers" / "shared" / "config" / "flagbridge.yaml").oracle
    return [*(parse_oracle_config(raw) for raw in CONFIGS), shipped]


def _selected(selector: Any, event: Event) -> bool:
    return bool(selector.compile().event_reason(event) is None)


def _reference_metric(metric: Any, event: Event, delta: Delta) -> None:
    """One selected event into ``delta``, read the plain way (rate: every need, then ``bad``)."""
    attributes = event.custom_attributes
    if metric.type == "rate":
        for predicate in metric.bad.attributes:
            if predicate.op in ("exists", "not_exists"):
                continue
            value = attributes.get(predicate.attribute)
            numeric = predicate.op in ("gt", "gte", "lt", "lte")
            if value is None or (number_of(value) is None if numeric else canonical(value) is None):
                delta.invalid += 1
                return
        delta.n += 1
        delta.k += _selected(metric.bad, event)
    elif metric.type == "percentile":
        raw = attributes.get(metric.attribute)
        number = None if raw is None else number_of(raw)
        if number is None:
            delta.invalid += 1
            return
        delta.n += 1
        index = histogram.bucket_of(number)
        delta.buckets[index] = delta.buckets.get(index, 0) + 1
        delta.classified += 1
        delta.at_pass += number >= metric.pass_below
        delta.at_fail += number >= metric.fail_at
    else:
        kind_of(metric).compile(metric)(delta, event.event_type, event.name, event.data, attributes)


def _time(data: Mapping[str, Any], fallback: int) -> int:
    value = to_number(data.get("timestamp_unixtime_ms"))
    return int(value) if value is not None and value > 0 else fallback


def _reference_attribution(test: Any, users: list[str], states: Lookup, at_ms: int, attributes: Any) -> Any:
    if test.treatment_attribute is not None:
        named = canonical(attributes.get(test.treatment_attribute))
        return (named, 0, None) if named else (UNATTRIBUTED, 0, None)
    for user in users:
        state = states(user, test.flag)
        assigned = None if state is None else assignment_at(state, test.environment, at_ms)
        if assigned is not None:
            return assigned
    return (UNATTRIBUTED, 0, None)


def _events(doc: Mapping[str, Any]) -> list[Event]:
    events = []
    for envelope in doc.get("events", []):
        if not isinstance(envelope, dict):
            continue
        data = {} if envelope.get("data") is None else envelope["data"]
        if isinstance(data, dict):
            events.append(Event(0, envelope.get("event_type"), data, {}))
    return events


def reference(counter: Counter, config: Any, body: str, states: Lookup, now: int) -> Contribution:
    """What one lane message contributes, event by event and metric by metric."""
    message = json.loads(body)
    doc = message["batch"]
    key = message.get("batch_key")
    contribution = Contribution(digest(key if isinstance(key, str) and key else json.dumps(doc, sort_keys=True)))
    events = _events(doc)
    contribution.events = len(events)
    users = counter.user_ids(message)
    batch_time = _time(doc, now)
    for test in config.tests:
        if test.cohort == "testers" and message.get("test_user") is not True:
            continue
        for event in events:
            at_ms = _time(event.data, batch_time)
            hour = at_ms - at_ms % HOUR_MS
            attributes = event.custom_attributes
            treatment, version, label = _reference_attribution(test, users, states, at_ms, attributes)
            if label == "killed":
                contribution.deltas.setdefault(CounterKey(test.name, hour, version, KILLED, ANY_METRIC), Delta()).n += 1
                continue
            for metric in test.metrics:
                if _selected(metric.events, Event(0, str(event.event_type), event.data, {})):
                    counter_key = CounterKey(test.name, hour, version, treatment, metric.name)
                    _reference_metric(metric, event, contribution.deltas.setdefault(counter_key, Delta()))
            if test.split is not None and treatment != UNATTRIBUTED and users:
                digests = contribution.users.setdefault(UserSetKey(test.name, version, treatment), set())
                digests.add(digest(users[0]))
    return contribution


def _assert_same(counter: Counter, config: Any, bodies: list[str], states: Lookup, now: int) -> None:
    expected = [reference(counter, config, body, states, now) for body in bodies]
    one_by_one = [counter.count(counter.parse(body), states, now) for body in bodies]
    batch = counter.batch(states)
    as_batch = [batch.count(counter.read(body, now)) for body in bodies]
    assert one_by_one == expected
    assert as_batch == expected


def _state(user: str, flag: str, assignments: list[tuple[str, int, int, int, str | None, str]]) -> FlagState:
    history = tuple(Assignment(t, label, v, env, at, at + span, 1) for t, v, at, span, label, env in assignments)
    newest = max(history, key=lambda a: a.last_seen)
    return FlagState(
        traffic_type=user.split("#")[0], key=user.split("#")[1], identity_type="customer_id", flag=flag,
        treatment=newest.treatment, label=newest.label, version=newest.version, environment=newest.environment,
        environment_id="env-1", current_time=newest.last_seen, first_seen=min(a.first_seen for a in history),
        last_seen=newest.last_seen, exposures=len(history), assignments=history,
    )  # fmt: skip


def _shipped_bodies() -> list[str]:
    bodies = []
    for name in ("sqs_oracle_lane.json", "sqs_destination_oracle.json"):
        bodies += [record["body"] for record in json.loads((ROOT / "events" / name).read_text())["Records"]]
    return bodies


def test_the_shipped_lane_events_and_the_benchmark_count_as_the_reference() -> None:
    from local.bench.oracle import _states, lane_messages

    bench_states = _states()
    shipped = {f"user#{u}": _state(f"user#{u}", "new_checkout", [("on", 3, T0 - HOUR_MS, HOUR_MS, None, "Production")])
               for u in ("qa-bot-01", "qa-bot-02", "qa-1")}  # fmt: skip
    states: Lookup = lambda user, flag: shipped.get(user) or bench_states.get((user, flag))  # noqa: E731
    bodies = _shipped_bodies() + lane_messages(400)
    for config in _configs():
        _assert_same(Counter(config, TRAFFIC_TYPES), config, bodies, states, T0)


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-3, max_value=1200), st.sampled_from([0.0, -0.0, 500.0, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["500", "503", "0", "abc", "", " 7", "1e3", "on"]),
    st.lists(st.integers(), max_size=1), st.just({"a": 1}),
)  # fmt: skip
_NAMES = st.sampled_from(["flagbridge_test_request", "api_response", "api_search", "checkout", "home", "home_page"])
_TYPES = st.sampled_from(["custom_event", "screen_view", "commerce_event", None, 7])
_TIMES = st.one_of(st.none(), st.integers(min_value=-5, max_value=3 * HOUR_MS).map(lambda d: T0 + d),
                   st.just("1767225601000"), st.just(-1), st.just("later"))  # fmt: skip


@st.composite
def _event(draw: Any) -> Any:
    shape = draw(st.integers(min_value=0, max_value=19))
    if shape == 0:
        return draw(st.sampled_from(["text", 3, None, ["list"]]))
    if shape == 1:
        return {"event_type": draw(_TYPES), "data": draw(st.sampled_from([None, "broken", 5]))}
    names = {"event_name": draw(_NAMES)} if draw(st.booleans()) else {"screen_name": draw(_NAMES)}
    attributes = {
        key: draw(_VALUES)
        for key in ("status", "latency_ms", "size", "route", "arm", "flagbridge_run")
        if draw(st.booleans())
    }
    data: dict[str, Any] = {**names, "custom_attributes": attributes if shape != 2 else "not a dict"}
    time = draw(_TIMES)
    if time is not None:
        data["timestamp_unixtime_ms"] = time
    return {"event_type": draw(_TYPES), "data": data}


@st.composite
def _body(draw: Any) -> str:
    identities = draw(st.sampled_from([{"customer_id": "qa-1"}, {"customerid": "qa-2"}, {"email": "a@b.c"},
                                       [{"identity_type": "customer_id", "identity": "qa-2"}], {}, None]))  # fmt: skip
    batch: dict[str, Any] = {"user_identities": identities, "events": draw(st.lists(_event(), max_size=8))}
    if draw(st.booleans()):
        batch["mpid"] = draw(st.sampled_from([42, "-7"]))
    if draw(st.booleans()):
        batch["timestamp_unixtime_ms"] = draw(_TIMES)
    message: dict[str, Any] = {"destination": "oracle", "test_user": draw(st.sampled_from([True, False, "true"])),
                               "batch": batch}  # fmt: skip
    key = draw(st.sampled_from(["srid:a", "srid:b", "", None, 5]))
    if key is not None:
        message["batch_key"] = key
    return json.dumps(message)


_ASSIGNMENT = st.tuples(
    st.sampled_from(["on", "off"]), st.integers(min_value=0, max_value=3),
    st.integers(min_value=-HOUR_MS, max_value=2 * HOUR_MS).map(lambda d: T0 + d),
    st.integers(min_value=0, max_value=HOUR_MS), st.sampled_from([None, "rule", "killed"]),
    st.sampled_from(["Production", "Staging"]),
)  # fmt: skip


# users' assignment histories (user key -> its assignments), the same for both flags
_PROFILES = st.dictionaries(
    st.sampled_from(["user#qa-1", "user#qa-2", "user#a@b.c", "account#a@b.c", "device#42"]),
    st.lists(_ASSIGNMENT, min_size=1, max_size=3),
    max_size=4,
)


def _states(profiles: Any) -> dict[tuple[str, str], Any]:
    """The stored flag states of generated profiles, by (user, flag)."""
    return {(user, flag): _state(user, flag, history) for user, history in profiles.items()
            for flag in ("new_checkout", "new_search")}  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(CONFIGS) + 1)),
    st.lists(_body(), min_size=1, max_size=6),
    _PROFILES,
)
def test_generated_lane_messages_count_as_the_reference(which: int, bodies: list[str], profiles: Any) -> None:
    config = _configs()[which]
    states = _states(profiles)
    _assert_same(Counter(config, TRAFFIC_TYPES), config, bodies, lambda user, flag: states.get((user, flag)), T0)
