"""Hostile corpus for ``POST /mparticle/v2/bulkevents`` (mParticle's bulk Events API: up to 100 batches).

Same credentials (HTTP Basic) and body framing as ``/v2/events``; the body is a JSON array. Malformed,
oversize or garbage batches among good ones do not fail the request: 202, the good batches enqueued as
received and the others quarantined with their reasons (and listed in the reply's ``errors``). A body that
is not an array, or holds more than 100 batches, is refused as a whole.
"""

from __future__ import annotations

import gzip
from typing import Any

from tests.hostile.corpus_mparticle_events import (
    BASIC,
    MALFORMED,
    Builder,
    basic_auth_cases,
    batch,
    framing_cases,
    hostile_batches,
    json_bytes,
    padded,
    path_cases,
)
from tests.hostile.support import (
    Case,
    Route,
    check_batches_conservation,
    check_mparticle_refusal,
    mparticle_error_body_keys,
)

ROUTE = Route(handler="mparticle_ingest", method="POST", path="/mparticle/v2/bulkevents")
ID_PREFIX = "mparticle_bulkevents"  # test ids: the three mParticle routes share one handler

B = Builder(ROUTE, BASIC, bulk=True, source="bulk_events_api")

CASES: list[Case] = [
    *basic_auth_cases(B),
    *framing_cases(B),
    # ---- not an array, or too many batches: refused as a whole -----------------------------------
    B.refused("json_object", 400, "not_an_array", body=json_bytes(batch(0))),
    B.refused("json_empty_object", 400, "not_an_array", body=b"{}"),
    B.refused("json_null", 400, "not_an_array", body=b"null"),
    B.refused("json_string", 400, "not_an_array", body=b'"[]"'),
    B.refused("json_number", 400, "not_an_array", body=b"42"),
    B.refused("json_true", 400, "not_an_array", body=b"true"),
    B.refused("gzip_of_object", 400, "not_an_array", body=gzip.compress(b"{}", mtime=0)),
    B.refused("batches_wrapped_in_an_object", 400, "not_an_array", body=json_bytes({"batches": [batch(0)]})),
    B.refused("101_batches", 413, "too_many_batches", body=json_bytes([{}] * 101)),
    B.refused("10000_garbage_items", 413, "too_many_batches", body=b"[" + b"0," * 9_999 + b"0]"),
    *path_cases(B),
    # ---- arrays: every batch enqueued or quarantined, 202 ---------------------------------------
    B.accepted("empty_array", []),
    B.accepted("one_batch", [batch(0)]),
    B.accepted("100_batches", [batch(n) for n in range(100)]),
    B.accepted("100_empty_batches", [{}] * 100),
    B.accepted("same_batch_twice", [batch(0), batch(0)]),
    B.accepted("all_hostile_but_valid_batches", [document for _, document in hostile_batches()][:10]),
    B.accepted(
        "garbage_items",
        [1, "a", None, True, 2.5, [], [batch(0)], ""],
        accepted=0,
        reasons={"invalid_batch": 8},
    ),
    B.accepted(
        "every_malformed_batch",
        [bad for _, bad in MALFORMED],
        accepted=0,
        reasons={"invalid_batch": len(MALFORMED)},
    ),
    B.accepted(
        "mixed_good_garbage_and_malformed",
        [batch(0), None, batch(1, environment="qa"), batch(2), {"events": 1}, batch(3)],
        accepted=3,
        reasons={"invalid_batch": 3},
    ),
    B.accepted(
        "batch_over_the_queue_limit_among_good",
        [batch(0), padded(252_000), batch(2)],
        accepted=2,
        reasons={"batch_too_large": 1},
    ),
    B.accepted(
        "gzip_mixed",
        [batch(0), {"environment": 7}, batch(2)],
        accepted=2,
        reasons={"invalid_batch": 1},
        gzipped=True,
        headers={"Content-Encoding": "gzip"},
    ),
    B.accepted("lowercase_basic_scheme", [batch(0)], authorization=BASIC.replace("Basic", "basic")),
    B.accepted("no_content_type", [batch(0)], headers={"Content-Type": None}),
    B.accepted("gzip_without_header", [batch(0), batch(1)], gzipped=True),
    *[B.malformed(name, bad) for name, bad in MALFORMED],
]


def error_body_keys(case: Case) -> set[str]:
    return mparticle_error_body_keys(case)


def verify_refused(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    check_mparticle_refusal(case, body, aws)


def verify_accepted(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    check_batches_conservation(case, body, aws, B.source)
