"""Ingest of a webhook body: per-item validation, mapping, packing into SQS-sized messages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flagbridge.body import parse_json
from flagbridge.config import load_config
from flagbridge.errors import RequestError
from flagbridge.impressions import ingest as ingest_module
from flagbridge.impressions.ingest import ingest_impressions, ingest_valid_body
from flagbridge.quarantine import InMemoryQuarantine
from flagbridge.queues import SQS_MAX_PAYLOAD_BYTES, InMemorySender, pack_records
from flagbridge.settings import PACKAGED_CONFIG
from tests.conftest import load_payload, queued_records

CONFIG = load_config(PACKAGED_CONFIG)


def impression(**overrides: Any) -> dict[str, Any]:
    base = {
        "key": "u-1",
        "split": "flag_a",
        "environmentId": "env-prod-0001",
        "environmentName": "Production",
        "treatment": "on",
        "time": 1767225600000,
        "label": "default rule",
        "splitVersionNumber": 1767000000000,
        "properties": None,
    }
    return {**base, **overrides}


def run(document: Any) -> tuple[Any, InMemorySender, InMemoryQuarantine]:
    sender, quarantine = InMemorySender(), InMemoryQuarantine()
    result = ingest_impressions(document, request_id="r-1", config=CONFIG, sender=sender, quarantine=quarantine)
    return result, sender, quarantine


def queued(sender: InMemorySender) -> list[dict[str, Any]]:
    return [item for body in sender.bodies for item in queued_records(body)]


def test_sample_payload_conserves_every_item() -> None:
    payload = load_payload("split_impressions.json")
    result, sender, quarantine = run(payload)
    (document,) = quarantine.objects.values()
    assert result.accepted + result.quarantined == len(payload)
    assert len(queued(sender)) == result.accepted
    assert len(document["items"]) == result.quarantined


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"time": 1767225600}, "time"),  # seconds, not ms
        ({"time": "1767225600000"}, "time"),
        ({"key": ""}, "key"),
        ({"key": 42}, "key"),
        ({"treatment": None}, "treatment"),
        ({"splitVersionNumber": -1}, "splitVersionNumber"),
        ({"properties": "not json"}, "properties"),
        ({"properties": "[1, 2]"}, "properties"),
    ],
)
def test_invalid_items_are_quarantined_with_the_field_named(bad: dict[str, Any], field: str) -> None:
    result, _, quarantine = run([impression(), impression(**bad)])
    assert (result.accepted, result.quarantined) == (1, 1)
    (document,) = quarantine.objects.values()
    assert document["items"][0]["index"] == 1
    assert field in document["items"][0]["detail"]


def test_extra_fields_and_json_properties_are_tolerated() -> None:
    result, sender, _ = run([impression(futureField={"x": 1}, properties='{"page": "/cart"}')])
    assert result.accepted == 1
    assert queued(sender)[0]["properties"] == '{"page": "/cart"}'


def test_non_object_items_and_non_arrays() -> None:
    result, _, _ = run([impression(), "string", 3, None])
    assert result.quarantined == 3
    with pytest.raises(RequestError) as error:
        run({"key": "u-1"})
    assert (error.value.status, error.value.code) == (400, "not_an_array")


def test_item_count_limit_is_413() -> None:
    config = CONFIG.model_copy(update={"limits": CONFIG.limits.model_copy(update={"max_impressions_per_request": 2})})
    with pytest.raises(RequestError) as error:
        ingest_impressions(
            [impression()] * 3, request_id="r", config=config, sender=InMemorySender(), quarantine=InMemoryQuarantine()
        )
    assert error.value.status == 413


def test_mapping_picks_traffic_type_by_environment_and_key_pattern() -> None:
    _, sender, _ = run([impression(key="anon-7"), impression(key="u-9"), impression(environmentName="Staging")])
    assert [(i["traffic_type"], i["identity_type"]) for i in queued(sender)] == [
        ("anonymous", "other_id_2"),
        ("user", "customer_id"),
        ("user", "customer_id"),
    ]


def test_large_batches_are_packed_within_sqs_limits() -> None:
    items = [
        impression(key=f"u-{i}", time=1767225600000 + i, properties='{"p":"' + "x" * 300 + '"}') for i in range(10_000)
    ]
    result, sender, _ = run(items)
    assert result.accepted == 10_000
    assert all(len(body.encode()) <= SQS_MAX_PAYLOAD_BYTES for body in sender.bodies)
    assert [i["key"] for i in queued(sender)] == [f"u-{i}" for i in range(10_000)]


def _packed_one_by_one(records: list[str], prefix: str, suffix: str, max_message_bytes: int) -> list[str]:
    """pack_records' contract, record by record: each message takes the next records while they fit."""
    bodies: list[list[str]] = []
    overhead = len(prefix.encode()) + len(suffix.encode()) + 2
    for record in records:
        size = len(record.encode()) + 1
        if size + overhead > max_message_bytes:
            raise ValueError(f"a record of {size} bytes does not fit in one message")
        if not bodies or overhead + sum(len(r.encode()) + 1 for r in bodies[-1]) + size > max_message_bytes:
            bodies.append([])
        bodies[-1].append(record)
    return [prefix + "[" + ",".join(body) + "]" + suffix for body in bodies]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(alphabet="ab€😀", max_size=30), max_size=40),
    st.integers(min_value=5, max_value=200),
    st.sampled_from([("{", "}"), ('{"a":', ',"b":1}'), ("é", "")]),
)
def test_pack_records_packs_as_record_by_record(records: list[str], limit: int, envelope: tuple[str, str]) -> None:
    try:
        expected: list[str] | str = _packed_one_by_one(records, *envelope, limit)
    except ValueError as exc:
        expected = str(exc)
    try:
        packed: list[str] | str = pack_records(records, *envelope, max_message_bytes=limit)
    except ValueError as exc:
        packed = str(exc)
    assert packed == expected


def test_pack_records_refuses_a_record_larger_than_a_message() -> None:
    with pytest.raises(ValueError):
        pack_records(["x" * 100], "{", "}", max_message_bytes=50)
    assert pack_records([], "{", "}") == []


# ---- the fast path (validation straight from the bytes) agrees with the reference path ----------------------

_TEXT = st.text(alphabet=st.sampled_from(["a", "Z", "é", "€", "😀", "\u0000", '"']), max_size=6)
_LONG_KEYS = st.sampled_from(["k" * 1024, "k" * 1025, "€" * 341, "€" * 342, "😀" * 256, "😀" * 257, "a" * 256])
_LONG_SPLITS = st.sampled_from(["f" * 512, "f" * 513, "€" * 170, "€" * 171, "😀" * 128, "😀" * 129])
_PROPERTIES = st.sampled_from([None, "", "{}", '{"plan":"pro"}', "null", "[1]", "1", "not json", "{", 5])


@st.composite
def _impressions(draw: st.DrawFn) -> dict[str, Any]:
    item = impression(
        key=draw(st.one_of(_TEXT.map(lambda text: "u-" + text), _LONG_KEYS, st.just(""))),
        split=draw(st.one_of(_TEXT.map(lambda text: "flag_" + text), _LONG_SPLITS)),
        properties=draw(_PROPERTIES),
        environmentName=draw(st.sampled_from(["Production", "Staging", "Unknown"])),
    )
    optional = ["environmentId", "label", "splitVersionNumber", "properties", "bucketingKey", "machineName"]
    for name in draw(st.lists(st.sampled_from(optional), unique=True)):
        item.pop(name, None)  # absent: the model's default applies
    if draw(st.booleans()):
        item["bucketingKey"] = draw(st.one_of(st.none(), _TEXT))
    if draw(st.booleans()):
        finite = st.floats(allow_nan=False, allow_infinity=False)
        item["extraField"] = draw(st.one_of(st.none(), st.integers(), finite, _TEXT))
    return item


@settings(max_examples=300, deadline=None)
@given(st.lists(_impressions(), min_size=1, max_size=6))
def test_the_fast_path_enqueues_exactly_what_the_reference_path_does(items: list[dict[str, Any]]) -> None:
    data = json.dumps(items, ensure_ascii=False).encode("utf-8")
    fast_sender, reference_sender = InMemorySender(), InMemorySender()
    quarantine = InMemoryQuarantine()
    fast = ingest_valid_body(
        data, request_id="r-1", config=CONFIG, sender=fast_sender, quarantine=quarantine, now_ms=1767225600000
    )
    reference = ingest_impressions(
        parse_json(data),
        request_id="r-1",
        config=CONFIG,
        sender=reference_sender,
        quarantine=InMemoryQuarantine(),
        now_ms=1767225600000,
    )
    if fast is None:  # declined: nothing sent, nothing quarantined
        assert fast_sender.bodies == [] and quarantine.objects == {}
        return
    assert reference.quarantined == 0
    assert fast.summary() == reference.summary()
    assert fast_sender.bodies == reference_sender.bodies


def test_the_fast_path_takes_the_usual_body_and_declines_an_oversized_key() -> None:
    usual = json.dumps([impression(key=f"u-{n}") for n in range(3)]).encode()
    too_big = json.dumps([impression(), impression(key="€" * 342)]).encode()  # 342 chars, 1026 bytes
    for data, taken in ((usual, True), (too_big, False)):
        result = ingest_valid_body(
            data, request_id="r-1", config=CONFIG, sender=InMemorySender(), quarantine=InMemoryQuarantine()
        )
        assert (result is not None) is taken


@pytest.mark.parametrize(
    ("items", "taken"),
    [
        ([impression(key="u-\ufffe", label="a\uffffb"), impression(key="u-2", bucketingKey="b-\ufffe")], True),
        ([impression(properties='{"plan":"pro"}'), impression(key="u-3", properties='{"plan":"pro"}')], True),
        ([impression(key="k" * 300, split="f" * 200), impression(key="€" * 300)], True),  # long, within the limits
        ([impression(), impression(extra=[1])], False),  # a nested unknown field: json.loads' reading decides
        ([impression(environmentName="Unknown")], False),  # unmapped: the quarantine keeps it as received
    ],
)
def test_the_fast_path_agrees_on_escapes_repeated_properties_and_long_columns(
    items: list[dict[str, Any]], taken: bool
) -> None:
    data = json.dumps(items, ensure_ascii=False).encode("utf-8")
    fast_sender, reference_sender = InMemorySender(), InMemorySender()
    fast = ingest_valid_body(
        data, request_id="r-1", config=CONFIG, sender=fast_sender, quarantine=InMemoryQuarantine(), now_ms=1
    )
    reference = ingest_impressions(
        parse_json(data),
        request_id="r-1",
        config=CONFIG,
        sender=reference_sender,
        quarantine=InMemoryQuarantine(),
        now_ms=1,
    )
    assert (fast is not None) is taken
    if fast is None:
        assert fast_sender.bodies == []
        return
    assert fast.summary() == reference.summary()
    assert fast_sender.bodies == reference_sender.bodies
    assert all("\ufffe" not in body and "\uffff" not in body for body in fast_sender.bodies)  # escaped for SQS


# ---- the usual reading skips unknown fields: their absence is told from the body's bytes ---------------------

# A JSON string written in any of the ways JSON allows: raw, or a character escaped as \" \\ \uXXXX.
_CHARS = st.sampled_from(["a", ":", '"', "\\", "é", "{", "}"])


@st.composite
def _json_string(draw: st.DrawFn, text: str | None = None) -> str:
    if text is None:
        text = "".join(draw(st.lists(_CHARS, max_size=4)))
    out = []
    for char in text:
        how = draw(st.sampled_from(["plain", "escape", "unicode"]))
        if how == "unicode":
            out.append(f"\\u{ord(char):04{draw(st.sampled_from(['x', 'X']))}}")
        elif char in '"\\':
            out.append("\\" + char)
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


_RISKY_VALUES = st.sampled_from(
    ["NaN", "-Infinity", "1e400", "1.5", "12", "true", "null", "[NaN]", '{"a":1e999}', "[]"]
)


@st.composite
def _written_impression(draw: st.DrawFn) -> str:
    """An impression written by hand: spacing, escapes, unknown or repeated fields with values json.loads refuses."""
    properties = draw(st.sampled_from(['{"plan":"pro"}', '{"a":"b:c","q":"\\""}', "{}", None]))
    fields: list[tuple[str, str]] = [
        ("key", draw(_json_string(draw(st.sampled_from(["u-1", "u:2", 'u"3', "u-4\\"]))))),
        ("split", draw(_json_string("flag_a"))),
        ("environmentName", draw(_json_string("Production"))),
        ("treatment", draw(_json_string(draw(st.sampled_from(["on", "a:b"]))))),
        ("time", "1767225600000"),
        ("label", draw(_json_string())),
        ("properties", "null" if properties is None else draw(_json_string(properties))),
    ]
    if draw(st.booleans()):
        fields.append(("environmentId", draw(_json_string("env-prod-0001"))))
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["extra", "a:b", 'q"', "label", "machineIp"]))
        fields.append((name, draw(st.one_of(_RISKY_VALUES, _json_string()))))
    fields = draw(st.permutations(fields))
    gap = st.sampled_from(["", " ", "\n"])
    parts = [f"{draw(_json_string(name))}{draw(gap)}:{draw(gap)}{value}" for name, value in fields]
    return "{" + ",".join(parts) + "}"


@settings(max_examples=400, deadline=None)
@given(st.lists(_written_impression(), min_size=1, max_size=3))
def test_the_fast_path_agrees_with_json_loads_on_hand_written_bodies(items: list[str]) -> None:
    data = ("[" + ",".join(items) + "]").encode()
    fast_sender, reference_sender = InMemorySender(), InMemorySender()
    fast = ingest_valid_body(
        data, request_id="r-1", config=CONFIG, sender=fast_sender, quarantine=InMemoryQuarantine(), now_ms=1
    )
    if fast is None:
        assert fast_sender.bodies == []
        return
    reference = ingest_impressions(  # parse_json refusing what the fast path took fails the test here
        parse_json(data),
        request_id="r-1",
        config=CONFIG,
        sender=reference_sender,
        quarantine=InMemoryQuarantine(),
        now_ms=1,
    )
    assert reference.quarantined == 0
    assert fast.summary() == reference.summary()
    assert fast_sender.bodies == reference_sender.bodies


_USUAL = '{"key":"u-1","split":"flag_a","environmentName":"Production","treatment":"on","time":1767225600000'


@pytest.mark.parametrize(
    ("body", "usual", "taken"),
    [
        (f"[{_USUAL}}}]", True, True),
        (f'[{_USUAL},"properties":"{{\\"plan\\":\\"pro\\",\\"n\\":1}}"}}]', True, True),  # quotes, colons in properties
        (f'[{_USUAL},"label":"rule: \\"beta\\""}}]', True, True),  # ... and in another field
        (f'[{_USUAL}, "label" : "x"}}]', True, True),  # spacing
        (f'[{_USUAL},"extra":1}}]', False, True),  # an unknown field: read with it
        (f'[{_USUAL},"key":"u-2"}}]', False, False),  # a repeated field: left to json.loads
        (f'[{_USUAL},"extra":NaN,"extra":1}}]', False, False),  # ... which refuses this one
        # an unknown field whose colon the escaped colon of a value would stand for, were it not for the backslash
        (f'[{_USUAL},"label":"a\\u003a","x":NaN}}]', False, False),
        (f'[{_USUAL},"label":"a\\u003a\\"","x":NaN}}]', False, False),
    ],
)
def test_the_usual_reading_takes_only_bodies_without_unknown_fields(body: str, usual: bool, taken: bool) -> None:
    data = body.encode()
    assert (ingest_module._usual_impressions(data) is not None) is usual
    result = ingest_valid_body(
        data, request_id="r-1", config=CONFIG, sender=InMemorySender(), quarantine=InMemoryQuarantine()
    )
    assert (result is not None) is taken


_SPARSE = b"a" * 20_000 + b'\\"\\"\\\\' + b"b" * 3000 + b"\\"  # 5 backslashes, in two clusters


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"\\", b":", b'"', b"\\\\", b"a" * 40, b"x" * 300]), max_size=80).map(b"".join),
    expected=st.integers(0, 40) | st.just(10_000),
)
@example(data=_SPARSE, expected=5)  # sparse clusters: counted around each
@example(data=_SPARSE, expected=60)  # fewer than expected
@example(data=_SPARSE, expected=4)  # one more than expected: counted whole
def test_backslashes_are_counted_as_bytes_count_does(data: bytes, expected: int) -> None:
    """The backslash count of the usual reading, counted around those found while few, equals bytes.count whatever the
    expected number (dense, sparse, fewer or more than expected)."""
    assert ingest_module._backslashes(data, expected) == data.count(b"\\")
