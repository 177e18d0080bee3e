"""Chunking Split events into bulk requests; retry backoff."""

from __future__ import annotations

import json
import random
from email.utils import formatdate

import pytest

from flagbridge.backoff import backoff_delay, parse_retry_after
from flagbridge.cdp.split_events import SplitEvent
from flagbridge.cdp.split_requests import chunk_split_events, request_counts


def split_event(i: int, padding: int = 0) -> SplitEvent:
    body = {
        "eventTypeId": "add_to_plan",
        "trafficTypeName": "user",
        "key": f"u-{i}",
        "timestamp": 1_767_225_600_000 + i,
        "value": None,
        "properties": {"pad": "x" * padding} if padding else {"i": i},
    }
    return SplitEvent(body, i, f"m-{i}", None, f"d-{i}")


def test_12000_small_events_make_three_requests_of_at_most_5000() -> None:
    result = chunk_split_events(split_event(i) for i in range(12_000))
    assert request_counts(result.requests) == [5000, 5000, 2000]
    assert result.rejections == []
    decoded = [json.loads(r.body) for r in result.requests]
    assert [e["key"] for body in decoded for e in body] == [f"u-{i}" for i in range(12_000)], "order kept"


def test_large_events_are_split_under_one_megabyte() -> None:
    events = [split_event(i, padding=50_000) for i in range(50)]  # ~50 KB each, ~2.5 MB in total
    result = chunk_split_events(events)
    assert len(result.requests) == 3
    for request in result.requests:
        assert len(request.body) < 1_000_000
        assert len(json.loads(request.body)) == request.count
    assert sum(r.count for r in result.requests) == 50
    # packed greedily: every request but the last is too full to take the next event
    first_next = len(json.dumps(events[0].body, separators=(",", ":")))
    assert len(result.requests[0].body) + 1 + first_next >= 1_000_000


def test_size_accounting_is_exact_at_the_boundary() -> None:
    events = [split_event(i) for i in range(10)]
    encoded = [json.dumps(e.body, separators=(",", ":")).encode() for e in events]
    exact = 2 + sum(len(e) for e in encoded) + 9  # "[" "]" and 9 commas
    assert len(chunk_split_events(events, max_bytes=exact + 1).requests) == 1
    assert len(chunk_split_events(events, max_bytes=exact).requests) == 2, "bodies stay strictly under max_bytes"


def test_an_event_bigger_than_the_limit_is_rejected_not_sent() -> None:
    events = [split_event(0), split_event(1, padding=1_000_100), split_event(2)]
    result = chunk_split_events(events)
    assert [r.reason for r in result.rejections] == ["split.event_too_large"]
    assert result.rejections[0].event_index == 1
    assert request_counts(result.requests) == [2]


def test_non_ascii_is_measured_in_utf8_bytes() -> None:
    events = [split_event(i, padding=0) for i in range(2)]
    for e in events:
        e.body["properties"] = {"p": "é" * 1000}
    one = len(json.dumps(events[0].body, separators=(",", ":"), ensure_ascii=False).encode())
    result = chunk_split_events(events, max_bytes=one + 3 + one // 2)
    assert request_counts(result.requests) == [1, 1]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        chunk_split_events([], max_events=5001)


def test_empty_input() -> None:
    assert chunk_split_events([]).requests == []


class FixedRandom:
    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def test_full_jitter_exponential_backoff() -> None:
    top = FixedRandom(1.0)
    assert [backoff_delay(n, 0.5, 8.0, None, top) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_delay(3, 0.5, 8.0, None, FixedRandom(0.0)) == 0.0
    rng = random.Random(7)
    delays = [backoff_delay(4, 1.0, 30.0, None, rng) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 100, "jittered"
    assert backoff_delay(10_000, 1.0, 30.0, None, top) == 30.0, "huge attempts do not overflow"


def test_retry_after_seconds_is_honoured_even_above_the_cap() -> None:
    assert backoff_delay(1, 0.5, 8.0, "3", FixedRandom(1.0)) == 3.0
    assert backoff_delay(1, 0.5, 8.0, "120", FixedRandom(1.0)) == 120.0


def test_retry_after_http_date() -> None:
    now = 1_767_225_600.0
    header = formatdate(now + 42, usegmt=True)
    assert backoff_delay(1, 0.5, 8.0, header, FixedRandom(1.0), now_s=now) == pytest.approx(42.0)
    past = formatdate(now - 100, usegmt=True)
    assert parse_retry_after(past, now) == 0.0


def test_unparseable_retry_after_falls_back_to_backoff() -> None:
    assert backoff_delay(2, 0.5, 8.0, "soon", FixedRandom(1.0)) == 1.0
    assert parse_retry_after("", None) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0.0
