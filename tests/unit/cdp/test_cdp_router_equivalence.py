"""The router's output over a corpus of batches is exactly what the router before the hot-path rework produced.

``data/router_equivalence.json`` holds a digest of every routing result (reasons, counts, decisions, payload
documents, Split events, quarantine, rejections) of :mod:`tests.unit.cdp.router_corpus`, recorded with the
router, Split mapper and plan validator of commit 0dd4f4c. A mismatch names the configuration and the batch; to
see the difference, route that batch with both versions and compare their
:func:`~tests.unit.cdp.router_corpus.routing_snapshot`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flagbridge.cdp.router import route_batch
from tests.unit.cdp.router_corpus import RECORDED, digest, route_corpus

EXPECTED_REASONS = {
    "sent",
    "filter.users:exclude_test",
    "filter.users:test_only",
    "filter.environments:development",
    "filter.event_types:include",
    "filter.event_types:exclude:screen_view",
    "filter.event_names:include",
    "filter.event_names:exclude:debug_*",
    "filter.attributes:plan:in",
    "filter.attributes:seats:gte",
    "filter.attributes:coupon:not_exists",
    "plan.unplanned",
    "plan.invalid_value",
    "plan.missing_required",
    "split.too_old",
    "split.invalid_key",
    "split.key_too_long",
    "split.no_mapped_identity",
    "split.invalid_event_type_id",
    "split.unsupported_event_type",
    "split.too_many_properties",
    "split.properties_too_large",
}


@pytest.fixture(scope="module")
def routed() -> dict[str, list[Any]]:
    return route_corpus(route_batch)


def test_routing_results_match_the_recorded_ones(routed: dict[str, list[Any]]) -> None:
    recorded = json.loads(RECORDED.read_text(encoding="utf-8"))
    assert set(routed) == set(recorded)
    for name, rows in routed.items():
        assert len(rows) == len(recorded[name])
        mismatched = [index for index, row in enumerate(rows) if digest(row) != recorded[name][index]]
        assert not mismatched, f"configuration {name}: batches {mismatched[:20]} route differently"


def test_the_corpus_reaches_every_kind_of_decision(routed: dict[str, list[Any]]) -> None:
    seen = {
        reason for rows in routed.values() for row in rows for counts in row["counts"].values() for reason in counts
    }
    assert seen >= EXPECTED_REASONS
    quarantined = {item[0] for rows in routed.values() for row in rows for item in row["quarantine"]}
    assert quarantined == {"plan_blocked", "split_rejected"}
    shapes = {type(row["payloads"].get("warehouse", {}).get("batch", {}).get("user_identities")).__name__
              for row in routed["packaged"]}  # fmt: skip
    assert {"dict", "list"} <= shapes
