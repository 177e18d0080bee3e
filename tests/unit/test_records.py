"""The processor's strict decoding of queued messages agrees with the pydantic model on every body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from flagbridge.impressions.models import ImpressionMessage
from flagbridge.impressions.records import decode_message, row_of

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


@pytest.mark.parametrize("text", BODIES)
def test_decoding_matches_the_model(text: str) -> None:
    try:
        expected = [row_of(impression) for impression in ImpressionMessage.model_validate_json(text).impressions]
    except ValidationError:
        expected = None
    rows = decode_message(text)
    if rows is not None:  # read without the model: exactly what the model reads
        assert rows == expected
    # else: the processor falls back to the model, whatever it says


def test_our_own_messages_take_the_fast_path() -> None:
    assert decode_message(BODIES[0]) == [tuple(RECORD.values())]
    assert decode_message(BODIES[1]) is not None
    assert decode_message(body(message())) == []
