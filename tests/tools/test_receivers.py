"""The local Split stand-in refuses what Split would: event rules word by word, and the segment endpoint's limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from local import receivers
from local.receivers import SEGMENT_PATH, Receiver, split_event_problems

GOOD = {"eventTypeId": "checkout.done", "key": "u-1", "trafficTypeName": "user", "timestamp": 1_700_000_000_000}


def test_a_good_event_has_no_problem() -> None:
    assert split_event_problems({**GOOD, "value": 1.5, "properties": {"a": "x", "b": None, "c": True}}) == []
    assert split_event_problems({**GOOD, "value": None, "properties": None}) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"eventTypeId": "-bad"}, "eventTypeId '-bad' does not match ^[a-zA-Z0-9][-_.a-zA-Z0-9]{0,62}$"),
        ({"eventTypeId": 7}, "eventTypeId 7 does not match ^[a-zA-Z0-9][-_.a-zA-Z0-9]{0,62}$"),
        ({"key": " "}, "key must be a non-empty string of at most 250 characters"),
        ({"key": "k" * 251}, "key must be a non-empty string of at most 250 characters"),
        ({"trafficTypeName": "User"}, "trafficTypeName must be a non-empty lowercase string"),
        ({"trafficTypeName": ""}, "trafficTypeName must be a non-empty lowercase string"),
        ({"timestamp": True}, "timestamp must be epoch milliseconds"),
        ({"timestamp": 1_700_000_000}, "timestamp must be epoch milliseconds"),
        ({"value": True}, "value must be a number or null"),
        ({"value": "1"}, "value must be a number or null"),
        ({"properties": []}, "properties must be an object"),
        ({"properties": {str(n): n for n in range(301)}}, "more than 300 properties"),
        ({"properties": {"nested": {"a": 1}}}, "property 'nested' is not flat"),
    ],
)
def test_each_broken_rule_is_named(change: dict[str, Any], problem: str) -> None:
    assert split_event_problems({**GOOD, **change}) == [problem]


def test_every_problem_is_listed() -> None:
    assert split_event_problems([]) == ["event is not an object"]
    assert len(split_event_problems({"properties": {"a": [1], "b": {}}})) == 6


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver().start()  # the segment endpoint is called in process, past the HTTP layer
    yield made
    made.stop()


def _segment(receiver: Receiver, method: str, action: str, body: Any = None, query: str = "") -> tuple[int, Any]:
    path = f"/internal/api/v2/segments/Production/testers/{action}{query}"
    match = SEGMENT_PATH.search(path.split("?")[0])
    assert match is not None
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return receiver._split_segment(method, path, {"x-api-key": "token"}, raw, match)


def test_segment_keys_are_added_listed_by_page_and_removed(receiver: Receiver) -> None:
    assert _segment(receiver, "PUT", "uploadKeys", {"keys": ["a", "b", "a"]}) == (
        200,
        {"name": "testers", "environment": "Production", "count": 2},
    )
    assert _segment(receiver, "PUT", "uploadKeys", {"keys": ["b", "c"]})[1]["count"] == 3
    assert _segment(receiver, "GET", "keys", query="?offset=1&limit=1") == (
        200,
        {"keys": [{"key": "b"}], "offset": 1, "limit": 1, "count": 3},
    )
    assert _segment(receiver, "PUT", "removeKeys", {"keys": ["a", "z"]})[1]["count"] == 2
    assert receiver.segment("Production", "testers") == ["b", "c"]
    assert receiver.segment_calls == {"uploadKeys": 2, "removeKeys": 1, "keys": 1}


def test_segment_calls_are_refused_as_split_would(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    def message(method: str, action: str, body: Any = None) -> tuple[int, str]:
        status, answer = _segment(receiver, method, action, body)
        return status, answer["message"]

    assert message("GET", "uploadKeys") == (405, "GET is not allowed on uploadKeys")
    assert message("PUT", "keys") == (405, "PUT is not allowed on keys")
    assert message("PUT", "uploadKeys", b"{") == (400, "invalid JSON")
    keys_rule = "keys must be an array of 1-250 character strings"
    assert message("PUT", "uploadKeys", {"keys": "a"}) == (400, keys_rule)
    assert message("PUT", "uploadKeys", {"keys": [""]}) == (400, keys_rule)
    assert message("PUT", "uploadKeys", ["a"]) == (400, keys_rule)
    monkeypatch.setattr(receivers, "SEGMENT_KEYS_PER_CALL", 2)
    monkeypatch.setattr(receivers, "SEGMENT_MAX_KEYS", 3)
    assert message("PUT", "uploadKeys", {"keys": ["a", "b", "c"]}) == (400, "at most 2 keys per call")
    assert _segment(receiver, "PUT", "uploadKeys", {"keys": ["a", "b"]})[0] == 200
    assert message("PUT", "uploadKeys", {"keys": ["c", "d"]}) == (400, "a segment holds at most 3 keys")
    receiver.segment_outage = 503
    assert message("PUT", "uploadKeys", {"keys": ["c"]}) == (503, "segment service unavailable")
    receiver.segment_outage = None
    assert _segment(receiver, "PUT", "uploadKeys", {"keys": ["c"]})[0] == 200
    assert receiver.segment("Production", "testers") == ["a", "b", "c"]
    assert receiver.segment_calls == {"uploadKeys": 8, "removeKeys": 0, "keys": 0}, "405s and outages not counted"
