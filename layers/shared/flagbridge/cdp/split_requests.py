"""Chunk Split events into ``POST /api/events/bulk`` bodies.

Chunking
--------
:func:`chunk_split_events` packs events, in order, into request bodies (JSON arrays, compact UTF-8,
no spaces) of at most ``max_events`` events (default 5000, the Python SDK's bulk size) and **strictly
under** ``max_bytes`` bytes (default 1,000,000: Split advises keeping payloads under 1 MB). Each event
is serialised once and the body size is tracked incrementally (``[`` + events joined by ``,`` +
``]``). An event whose own array (``[event]``) would not fit under ``max_bytes`` is rejected with
reason ``split.event_too_large`` instead of being sent.

Retry delays (backoff with full jitter, ``Retry-After``) are :mod:`flagbridge.backoff`'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from flagbridge.cdp.split_events import SplitEvent, SplitRejection

MAX_EVENTS_PER_REQUEST = 5000
MAX_REQUEST_BYTES = 1_000_000


@dataclass(slots=True)
class SplitRequest:
    """One bulk request: the body bytes and the events it carries."""

    body: bytes
    events: list[SplitEvent] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of events in the body."""
        return len(self.events)


@dataclass(slots=True)
class ChunkResult:
    """Request bodies to send, and events that can never be sent (too large)."""

    requests: list[SplitRequest]
    rejections: list[SplitRejection]


def _encode(event: SplitEvent) -> bytes:
    return json.dumps(event.body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def chunk_split_events(
    events: Iterable[SplitEvent],
    max_events: int = MAX_EVENTS_PER_REQUEST,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> ChunkResult:
    """Pack Split events into bulk request bodies.

    Parameters
    ----------
    events
        Sendable events, in the order they should be sent.
    max_events
        Maximum events per request (1..5000).
    max_bytes
        Every body is strictly shorter than this many bytes.

    Returns
    -------
    ChunkResult
        ``requests`` in order; ``rejections`` (``split.event_too_large``) for events that cannot fit
        even alone.
    """
    if not 1 <= max_events <= MAX_EVENTS_PER_REQUEST:
        raise ValueError(f"max_events must be within 1..{MAX_EVENTS_PER_REQUEST}")
    if max_bytes < 3:
        raise ValueError("max_bytes is too small")
    requests: list[SplitRequest] = []
    rejections: list[SplitRejection] = []
    parts: list[bytes] = []
    members: list[SplitEvent] = []
    size = 2  # "[" and "]"

    def flush() -> None:
        nonlocal parts, members, size
        if members:
            requests.append(SplitRequest(b"[" + b",".join(parts) + b"]", members))
        parts, members, size = [], [], 2

    for event in events:
        encoded = _encode(event)
        if len(encoded) + 2 >= max_bytes:
            rejections.append(
                SplitRejection(
                    event.event_index,
                    event.message_id,
                    "split.event_too_large",
                    f"serialised event of {len(encoded)} bytes does not fit a request under {max_bytes} bytes",
                    event.product_index,
                    event.body.get("trafficTypeName"),
                    event.body,
                )
            )
            continue
        added = len(encoded) + (1 if members else 0)
        if members and (len(members) >= max_events or size + added >= max_bytes):
            flush()
            added = len(encoded)
        parts.append(encoded)
        members.append(event)
        size += added
    flush()
    return ChunkResult(requests, rejections)


def request_counts(requests: Sequence[SplitRequest]) -> list[int]:
    """Return the number of events per request (handy for logs and metrics)."""
    return [request.count for request in requests]
