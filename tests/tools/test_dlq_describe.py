"""What ``flagbridge dlq show`` says of each kind of DLQ message, without its personal data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flagbridge_ops.dlq import describe_body

_LANE = {"v": 1, "destination": "analytics", "type": "webhook", "batch_key": "srid:req-1"}


def _described(document: Any) -> dict[str, Any]:
    body = json.dumps(document)
    described = describe_body(body)
    assert described.pop("bytes") == len(body.encode())
    return described


def test_bodies_that_are_not_json_objects() -> None:
    assert describe_body("é{") == {"bytes": 3, "kind": "not_json"}
    assert _described([1, 2]) == {"kind": "list"}
    assert _described("text") == {"kind": "str"}


def test_a_refused_delivery_counts_the_refused_events_else_the_message_events() -> None:
    split = {"type": "split", "split_events": [{"body": "a"}, {"body": "b"}, {"body": "c"}]}
    refused = {"reason": "destination.refused", "destination": "split", "status": 400, "response": "x" * 200}
    described = _described({**refused, "message": split, "batch_key": "k", "events": ["a"]})
    assert described == {
        "kind": "refused_delivery",
        "destination": "split",
        "reason": "destination.refused",
        "status": 400,
        "response": "x" * 119 + "…",
        "batch_key": "k",
        "events": 1,
    }
    assert _described({**refused, "message": split})["events"] == 3
    assert _described({**refused, "message": "odd", "response": None})["response"] == ""


def test_a_lane_message_counts_split_events_or_its_batch_events() -> None:
    batch = {"user_identities": {"email": "someone@mail.example.com"}, "events": [{}, {}]}
    assert _described({**_LANE, "batch": batch}) == {
        "kind": "lane_message",
        "destination": "analytics",
        "type": "webhook",
        "batch_key": "srid:req-1",
        "events": 2,
    }
    assert _described({**_LANE, "type": "split", "split_events": [{}]})["events"] == 1
    assert _described({**_LANE, "batch": "odd"})["events"] == 0


def test_an_impressions_chunk() -> None:
    assert _described({"request_id": "r-1", "impressions": [{}, {}]}) == {
        "kind": "impressions",
        "request_id": "r-1",
        "chunk": 0,
        "impressions": 2,
    }
    assert _described({"request_id": "r-1", "chunk": 2, "impressions": None})["impressions"] == 0


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"v": 1, "source": "events_api", "request_id": "r-2", "batch": {"source_request_id": "s", "events": [{}]}},
            {"ingest": "events_api", "request_id": "r-2", "source_request_id": "s", "batch_id": None, "events": 1},
        ),
        (
            {"batch_id": 7, "user_identities": {"customer_id": "c"}},
            {"ingest": "raw", "request_id": None, "source_request_id": None, "batch_id": 7, "events": 0},
        ),
    ],
)
def test_a_batch_wrapped_by_the_ingest_or_raw(document: dict[str, Any], expected: dict[str, Any]) -> None:
    assert _described(document) == {"kind": "batch", **expected}


def test_anything_else_names_its_first_fields_only() -> None:
    document = {f"field_{n:02}": n for n in range(12)}
    assert _described(document) == {"kind": "unknown", "fields": [f"field_{n:02}" for n in range(10)]}
    assert _described({"v": 1, "batch": {"other": 1}}) == {"kind": "unknown", "fields": ["batch", "v"]}
