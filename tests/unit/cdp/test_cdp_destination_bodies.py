"""Destination-queue bodies: a batch document shared by several destinations is serialised once, same bytes."""

from __future__ import annotations

import json

from flagbridge.cdp.router import route_batch
from flagbridge.forwarding.router_service import destination_body, destination_message
from tests.unit.cdp.router_corpus import MARKED, NOW_MS, REGISTERED, configurations, corpus


def test_bodies_are_the_messages_as_compact_json() -> None:
    config, resolver = configurations()["packaged"]
    shared = 0
    for document in corpus():
        routed = route_batch(document, config, MARKED, NOW_MS, resolver, REGISTERED)
        serialised: dict[int, str] = {}
        for destination in routed.payloads:
            expected = json.dumps(destination_message(routed, destination), separators=(",", ":"), ensure_ascii=False)
            assert destination_body(routed, destination, serialised) == expected
        documents = [p.batch for p in routed.payloads.values() if p.batch is not None]
        shared += len(documents) - len({id(d) for d in documents})
    assert shared > 0, "the corpus has destinations that send the same events"
