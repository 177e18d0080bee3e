"""The tester segments' reconcile: Split Admin API calls for 10,000 registered testers, against the floor.

Split's Admin API adds keys to a segment and removes them through two endpoints, each taking at most
:data:`~flagbridge.oracle.split_admin.MAX_SEGMENT_KEYS_PER_CALL` keys a call, and lists a segment
:data:`~flagbridge.oracle.split_admin.SEGMENT_KEYS_PAGE` keys a page. The floor of a reconcile's writes is therefore
``ceil(keys to add / limit) + ceil(keys to remove / limit)`` (``ceil(changed keys / limit)`` whenever the change
is all adds or all removes), and of its reads ``ceil(keys in the segment / page)`` (at least one page). The real
path runs: :class:`~flagbridge.testers.segment.SegmentSync` with the Admin API client over HTTP
(:mod:`flagbridge.outbound`) to the local Split Admin receiver (:mod:`local.receivers`), on the in-memory registry
store. Three segments start from different states: empty (every registration missing), a partial overlap with
stale keys, and a segment holding many keys nobody registered.
"""

from __future__ import annotations

import math
from typing import Any

from local.bench.timing import Figure, Sizes

NOW = 1_767_225_700.0


def _scenario(testers: int, present: int, stale: int) -> dict[str, Any]:
    from flagbridge.config import TesterSegment
    from flagbridge.oracle.split_admin import (
        MAX_SEGMENT_KEYS_PER_CALL,
        SEGMENT_KEYS_PAGE,
        SplitAdminClient,
        admin_http,
    )
    from flagbridge.testers.registry import InMemoryTesterStore, TesterRegistry
    from flagbridge.testers.segment import SegmentSync
    from local.receivers import Receiver

    keys = [f"qa-{n:06d}" for n in range(testers)]
    store = InMemoryTesterStore()
    TesterRegistry(store, clock=lambda: NOW).register_pool("user", keys, 3600, "bench", "bench")
    receiver = Receiver().start()
    try:
        receiver.split_admin_key = "bench-credential"
        receiver.segments[("Production", "flagbridge_testers")] = keys[:present] + [f"stale-{n}" for n in range(stale)]
        client = SplitAdminClient(
            admin_http(), f"{receiver.url}/internal/api/v2", lambda: "bench-credential", auth="x-api-key"
        )
        target = TesterSegment(environment="Production", segment="flagbridge_testers", traffic_type="user")
        report = SegmentSync([target], client, store, lambda: NOW).reconcile("bench")
        if not report.ok or sorted(receiver.segment("Production", "flagbridge_testers")) != keys:
            raise RuntimeError(f"the reconcile did not make the segment equal to the registry: {report.document()}")
        (segment,) = report.targets
        calls = dict(receiver.segment_calls)
    finally:
        receiver.stop()
    to_add, to_remove, listed = testers - present, stale, present + stale
    return {
        "registered": testers,
        "segment_before": listed,
        "added": segment.added,
        "removed": segment.removed,
        "write_calls": calls["uploadKeys"] + calls["removeKeys"],
        "write_floor": math.ceil(to_add / MAX_SEGMENT_KEYS_PER_CALL) + math.ceil(to_remove / MAX_SEGMENT_KEYS_PER_CALL),
        "list_calls": calls["keys"],
        "list_floor": max(1, math.ceil(listed / SEGMENT_KEYS_PAGE)),
        "marked_synced": report.marked_synced,
    }


def figure_segment_reconcile(sizes: Sizes) -> list[Figure]:
    """Admin API write calls of reconciles of ``sizes.segment_testers`` testers, against the batch-limit floor."""
    from flagbridge.oracle.split_admin import MAX_SEGMENT_KEYS_PER_CALL

    testers = sizes.segment_testers
    scenarios = {
        "empty segment": _scenario(testers, 0, 0),
        "partial, with stale keys": _scenario(testers, testers * 7 // 10, testers * 4 // 10),
        "many unregistered keys": _scenario(testers, testers, testers * 5 // 2),
    }
    writes = sum(s["write_calls"] for s in scenarios.values())
    floor = sum(s["write_floor"] for s in scenarios.values())
    reads = sum(s["list_calls"] for s in scenarios.values())
    read_floor = sum(s["list_floor"] for s in scenarios.values())
    ratio = round(writes / floor, 3) if floor else None
    return [
        Figure(
            "segment_reconcile",
            f"Admin API write calls of 3 reconciles of {testers:,} registered testers",
            writes,
            floor,
            ratio,
            "calls",
            "= 1.0",
            ratio == 1.0 and reads == read_floor,
            {
                "batch_limit": MAX_SEGMENT_KEYS_PER_CALL,
                "list_calls": reads,
                "list_floor": read_floor,
                "scenarios": scenarios,
            },
        )
    ]
