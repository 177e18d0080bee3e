"""The processor's strict decoding of queued messages agrees with the pydantic model on every body.

Both versions of the impressions queue's messages: version 2 (records as arrays of the values named by
``fields``, what the webhook writes) and version 1 (records as objects, messages from before).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flagbridge.impressions.models import (
    ImpressionMessage,
    QueuedImpression,
    describe_validation_error,
    queued_record_json,
)
from flagbridge.impressions.records import FIELDS, decode_message, row_of

RECORD: dict[str, Any] = {
    "key": "u-1",
    "flag": "flag_a",
    "treatment": "on",
    "time": 1767225600000,
    "label": "default rule",
    "version": 3,
    "environment": "Production",
    "environment_id": "env-1",
    "bucketing_key": None,
    "properties": None,
    "traffic_type": "user",
    "identity_type": "customer_id",
}


def message(*records: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "source": "split-webhook",
        "request_id": "r-1",
        "received_at": 1,
        **envelope,
        "impressions": list(records),
    }


def body(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


BODIES = [
    body(message(RECORD)),
    body(message(RECORD, {**RECORD, "key": "ключ-😀", "label": None, "version": None, "properties": '{"a":1}'})),
    body(message()),
    body(message(RECORD, chunk=2)),
    body(message({**RECORD, "extra": [[[]]]})),  # unknown key: the model ignores it
    body(message(RECORD)).replace('{"key":', '{"deep":' + "[" * 300 + "]" * 300 + ',"key":'),  # too deep for it
    body(message({k: v for k, v in RECORD.items() if k != "label"})),  # a default
    body(message({**RECORD, "time": 1.0})),  # coerced by the model
    body(message({**RECORD, "time": "17"})),
    body(message({**RECORD, "time": True})),
    body(message({**RECORD, "version": 2.5})),
    body(message({**RECORD, "key": 5})),
    body(message({**RECORD, "properties": {"a": 1}})),
    body(message(RECORD, received_at="x")),
    body(message(RECORD, extra={"nested": 1})),
    body({"request_id": "r", "received_at": 1, "impressions": [RECORD, "not an object"]}),
    body({"request_id": "r", "received_at": 1, "impressions": {"0": RECORD}}),
    body({"received_at": 1, "impressions": [RECORD]}),
    body([RECORD]),
    body(message(RECORD)).replace('"u-1"', '"\\ud800"'),  # lone surrogate: json.loads takes it, the model not
    body(message(RECORD)).replace('"u-1"', '"\\ud83d\\ude00"'),
    body(message(RECORD)).replace('"u-1"', '"\\u0001"'),
    body(message(RECORD)).replace('"u-1"', '"\ud800"'),
    body(message(RECORD)).replace("1767225600000", "NaN"),
    body(message(RECORD)) + " x",
    "not json",
    "",
    "[" * 300 + "]" * 300,
]


ROW = [RECORD[name] for name in FIELDS]
UNICODE = {**RECORD, "key": "ключ-😀", "label": None, "version": None, "properties": '{"a":1}'}


def message_v2(*records: Any, **envelope: Any) -> dict[str, Any]:
    return {
        "v": 2,
        "source": "split-webhook",
        "request_id": "r-1",
        "received_at": 1,
        "fields": list(FIELDS),
        **envelope,
        "impressions": list(records),
    }


def row(record: dict[str, Any], **changes: Any) -> list[Any]:
    """A version 2 record: the values of a version 1 record (with ``changes``) in the order of FIELDS."""
    changed = {**record, **changes}
    return [changed[name] for name in FIELDS]


def swapped(index: int, value: Any) -> list[Any]:
    values = list(ROW)
    values[index] = value
    return values


BODIES_V2 = [
    body(message_v2(ROW)),
    body(message_v2(ROW, row(UNICODE))),
    body(message_v2()),
    body(message_v2(ROW, chunk=2)),
    body(message_v2(ROW, ROW)),
    # fields: missing, null, another order, fewer, more, other names, not a list
    body({k: v for k, v in message_v2(ROW).items() if k != "fields"}),
    body(message_v2(ROW, fields=None)),
    body(message_v2(ROW, fields=["flag", "key", *FIELDS[2:]])),
    body(message_v2(ROW[:-1], fields=list(FIELDS[:-1]))),
    body(message_v2([*ROW, "x"], fields=[*FIELDS, "extra"])),
    body(message_v2(ROW, fields=[name.upper() for name in FIELDS])),
    body(message_v2(ROW, fields=",".join(FIELDS))),
    body(message_v2(fields=[])),
    # records of the wrong length, or not arrays
    body(message_v2(ROW[:-1])),
    body(message_v2([*ROW, None])),
    body(message_v2([*ROW, [[[]]]])),  # an extra, nested value
    body(message_v2(ROW, ROW[:11])),
    body(message_v2([])),
    body(message_v2(RECORD)),
    body(message_v2(ROW, RECORD)),
    body(message_v2("not an array")),
    body(message_v2(None)),
    body(message_v2(12)),
    # values of other types: coerced or refused by the model
    body(message_v2(row(RECORD, time=1.0))),
    body(message_v2(row(RECORD, time="17"))),
    body(message_v2(row(RECORD, time=True))),
    body(message_v2(row(RECORD, time=None))),
    body(message_v2(row(RECORD, version=2.5))),
    body(message_v2(row(RECORD, version=False))),
    body(message_v2(row(RECORD, key=5))),
    body(message_v2(row(RECORD, key=None))),
    body(message_v2(row(RECORD, properties={"a": 1}))),
    body(message_v2(row(RECORD, label=["nested"]))),
    body(message_v2(swapped(0, [[["deep"]]]))),
    body(message_v2(row(RECORD, time=10**30))),
    # the envelope
    body(message_v2(ROW, v="2")),
    body(message_v2(ROW, v=2.0)),
    body(message_v2(ROW, v=3)),
    body(message_v2(ROW, v=0)),
    body(message_v2(ROW, v=1)),  # arrays in a version 1 message
    body({k: v for k, v in message_v2(ROW).items() if k != "v"}),  # no v: version 1
    body(message(RECORD, fields=list(FIELDS))),  # version 1 with fields: ignored by the model
    body(message(RECORD, v=3)),
    body(message_v2(ROW, received_at="x")),
    body(message_v2(ROW, extra={"nested": 1})),
    body(message_v2(ROW)).replace('"v":2', '"deep":' + "[" * 300 + "]" * 300 + ',"v":2'),  # too deep for the model
    body({k: v for k, v in message_v2(ROW).items() if k != "request_id"}),
    body({**message_v2(), "impressions": {"0": ROW}}),
    # surrogates, escapes, non-finite numbers, bad JSON, deep nesting inside a record
    body(message_v2(ROW)).replace('"u-1"', '"\\ud800"'),  # lone surrogate: json.loads takes it, the model not
    body(message_v2(ROW)).replace('"u-1"', '"\\udc00"'),
    body(message_v2(ROW)).replace('"u-1"', '"\\ud83d\\ude00"'),
    body(message_v2(ROW)).replace('"u-1"', '"\\u0001"'),
    body(message_v2(ROW)).replace('"u-1"', '"\ud800"'),
    body(message_v2(ROW)).replace('"u-1"', '"\\ufffe\\uffff"'),
    body(message_v2(ROW)).replace("1767225600000", "NaN"),
    body(message_v2(ROW)).replace("1767225600000", "1e3"),
    body(message_v2(ROW)).replace('"on"', "[" * 300 + "]" * 300),
    body(message_v2(ROW))[:-3],
    body(message_v2(ROW)) + " x",
]


@pytest.mark.parametrize("text", BODIES + BODIES_V2)
def test_decoding_matches_the_model(text: str) -> None:
    try:
        expected = [row_of(impression) for impression in ImpressionMessage.model_validate_json(text).impressions]
    except ValidationError:
        expected = None
    rows = decode_message(text)
    if rows is not None:  # read without the model: exactly what the model reads
        assert rows == expected
        assert all(type(row) is tuple for row in rows)
    # else: the processor falls back to the model, whatever it says


def test_our_own_messages_take_the_fast_path() -> None:
    assert decode_message(BODIES[0]) == [tuple(RECORD.values())]
    assert decode_message(BODIES[1]) is not None
    assert decode_message(body(message())) == []
    assert decode_message(BODIES_V2[0]) == [tuple(ROW)]
    assert decode_message(BODIES_V2[1]) is not None
    assert decode_message(body(message_v2())) == []


@pytest.mark.parametrize(
    "records",
    [
        [RECORD],
        [RECORD, UNICODE],
        [],
        [{**RECORD, "key": f"u-{n}", "time": RECORD["time"] + n, "bucketing_key": "b" * n} for n in range(50)],
        [{**RECORD, "key": 'quote " backslash \\ tab \t', "properties": '{"p":"\u00e9"}'}],
    ],
)
def test_a_version_2_message_decodes_as_its_version_1_counterpart(records: list[dict[str, Any]]) -> None:
    v1 = body(message(*records))
    v2 = body(message_v2(*(row(record) for record in records)))
    assert len(v2) < len(v1) or len(records) < 2  # the fields are named once: smaller from two records on
    rows = decode_message(v2)
    assert rows is not None
    assert rows == decode_message(v1) == [tuple(record[name] for name in FIELDS) for record in records]
    model = ImpressionMessage.model_validate_json(v2)
    assert model.fields == FIELDS
    assert [row_of(impression) for impression in model.impressions] == rows


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (body(message_v2(ROW, fields=["flag", "key", *FIELDS[2:]])), "fields: Value error, must be ["),
        (body({k: v for k, v in message_v2(ROW).items() if k != "fields"}), "fields: Value error, required"),
        (body(message_v2(ROW[:-1])), "impressions: Value error, a version 2 record is an array of the 12 values"),
        (body(message_v2(ROW, [*ROW, None])), "record 1 holds 13 values"),
        (body(message_v2(ROW, RECORD, "x")), "record 1 is an object; record 2 is a string"),
        (
            body(message_v2(*[[]] * 5)),
            "record 0 holds 0 values; record 1 holds 0 values; record 2 holds 0 values (and 2",
        ),
        (body(message_v2(swapped(3, "soon"))), "impressions.0.time: Input should be a valid integer"),
        (body(message_v2(ROW, swapped(6, None))), "impressions.1.environment: Input should be a valid string"),
        (body(message_v2(ROW, v=3)), "v: Value error, unknown message version 3"),
        (body(message(RECORD, v=3)), "v: Value error, unknown message version 3"),
        (body(message(ROW)), "impressions.0: Input should be an object"),  # arrays need "v": 2
    ],
)
def test_the_model_names_what_is_wrong_with_a_message(text: str, reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ImpressionMessage.model_validate_json(text)
    assert reason in describe_validation_error(refused.value)
    assert decode_message(text) is None


def test_queued_impression_fields_are_the_record_order() -> None:
    assert tuple(QueuedImpression.model_fields) == FIELDS


_TEXT = st.text(alphabet=st.sampled_from(["a", "é", "😀", "\u0000", "\u001f", '"', "\\", "\u2028", "\ufffe"]))


@settings(max_examples=200, deadline=None)
@given(
    key=_TEXT.filter(bool),
    label=st.one_of(st.none(), _TEXT),
    version=st.one_of(st.none(), st.integers(min_value=0, max_value=2**70)),
    bucketing_key=st.one_of(st.none(), _TEXT),
    properties=st.sampled_from([None, "{}", '{"plan":"pro","n":"é"}']),
    environment_id=_TEXT,
)
def test_the_record_builder_is_json_dumps_of_the_values(
    key: str,
    label: str | None,
    version: int | None,
    bucketing_key: str | None,
    properties: str | None,
    environment_id: str,
) -> None:
    values = [key, "flag_é", "on", 1767225600000, label, version, "Production", environment_id, bucketing_key]
    values += [properties, "user", "customer_id"]
    record = queued_record_json(*values)
    assert record == json.dumps(values, separators=(",", ":"), ensure_ascii=False)
    assert decode_message(body(message_v2()).replace("[]}", f"[{record}]}}")) == [tuple(values)]
