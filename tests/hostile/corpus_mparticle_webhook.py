"""Hostile corpus for ``POST /mparticle/webhook`` (mParticle's outbound webhook: one batch per request).

The Authorization header must be exactly the value configured in mParticle's webhook connection (here
``Bearer local-mparticle-webhook``, compared verbatim): 401 when missing, 403 otherwise. Body framing and
malformed batches are answered as on ``/v2/events`` (400/413/415 with mParticle's ``errors`` list); a
structurally valid batch, however hostile its content, is 202 and enqueued exactly as received.
"""

from __future__ import annotations

import gzip
from typing import Any

from tests.conftest import PROFILE_TOKEN, WEBHOOK_TOKEN, load_payload
from tests.hostile.corpus_mparticle_events import (
    BASIC,
    MALFORMED,
    REQUEST_LIMIT,
    Builder,
    batch,
    framing_cases,
    hostile_batches,
    json_bytes,
    padded,
    path_cases,
    set_header,
)
from tests.hostile.support import (
    MPARTICLE_WEBHOOK_AUTH,
    Case,
    Route,
    check_batches_conservation,
    check_mparticle_refusal,
    mparticle_error_body_keys,
)

ROUTE = Route(handler="mparticle_ingest", method="POST", path="/mparticle/webhook")
ID_PREFIX = "mparticle_webhook"  # test ids: the three mParticle routes share one handler

B = Builder(ROUTE, MPARTICLE_WEBHOOK_AUTH, bulk=False, source="webhook")
TOKEN = MPARTICLE_WEBHOOK_AUTH.removeprefix("Bearer ")
SAMPLE = load_payload("mparticle_webhook_batch.json")


def webhook_batch(n: int = 0, **changes: Any) -> dict[str, Any]:
    """The sample outbound-webhook batch (array identities, ``batch_id``, ``message_id``) with ``changes``."""
    document = {**SAMPLE, "batch_id": SAMPLE["batch_id"] + n}
    document.update(changes)
    return document


CASES: list[Case] = [
    # ---- credentials: the configured Authorization value, verbatim -----------------------------
    B.unauthorized("no_authorization", None),
    B.unauthorized("empty_authorization", ""),
    B.unauthorized("split_token_in_query", None, query=f"token={WEBHOOK_TOKEN}"),
    B.unauthorized("token_in_other_header", None, headers={"X-Flagbridge-Token": TOKEN}),
    B.unauthorized("no_authorization_and_garbage_body", None, body=b"\xff\xfe garbage"),
    B.unauthorized("no_authorization_and_oversize_body", None, body=b"{" + b" " * REQUEST_LIMIT + b"}"),
    B.forbidden("wrong_token", "Bearer wrong-token"),
    B.forbidden("scheme_only", "Bearer"),
    B.forbidden("token_without_scheme", TOKEN),
    B.forbidden("lowercase_scheme", "bearer " + TOKEN),
    B.forbidden("other_scheme", "Token " + TOKEN),
    B.forbidden("double_space", "Bearer  " + TOKEN),
    B.forbidden("trailing_space", MPARTICLE_WEBHOOK_AUTH + " "),
    B.forbidden("token_prefix_only", MPARTICLE_WEBHOOK_AUTH[:-1]),
    B.forbidden("token_with_suffix", MPARTICLE_WEBHOOK_AUTH + "x"),
    B.forbidden("token_in_other_case", MPARTICLE_WEBHOOK_AUTH.upper()),
    B.forbidden("events_api_basic_credentials", BASIC),
    B.forbidden("split_webhook_token", f"Bearer {WEBHOOK_TOKEN}"),
    B.forbidden("profile_api_token", f"Bearer {PROFILE_TOKEN}"),
    B.forbidden("duplicated_authorization", MPARTICLE_WEBHOOK_AUTH, headers={"authorization": MPARTICLE_WEBHOOK_AUTH}),
    B.forbidden(
        "duplicated_authorization_right_and_wrong", "Bearer nope", headers={"authorization": MPARTICLE_WEBHOOK_AUTH}
    ),
    B.forbidden("huge_authorization", "Bearer " + "A" * 65_536),
    B.forbidden("authorization_with_nul", MPARTICLE_WEBHOOK_AUTH + "\x00"),
    B.forbidden("authorization_not_ascii", "Bearer t\u00f6k\u00e9n-\U0001f511"),
    B.forbidden("authorization_sql_injection", "Bearer ' OR '1'='1"),
    B.forbidden("lone_surrogate_in_header", "x", event_hook=set_header("authorization", "Bearer tok\ud800en")),
    B.forbidden("wrong_authorization_and_garbage_body", "Bearer nope", body=b"\xff\xfe garbage"),
    # ---- body framing ----------------------------------------------------------------------------
    *framing_cases(B),
    B.refused("json_array", 400, "not_an_object", body=json_bytes([webhook_batch(0)])),
    B.refused("json_null", 400, "not_an_object", body=b"null"),
    B.refused("json_string", 400, "not_an_object", body=b'"{}"'),
    B.refused("json_number", 400, "not_an_object", body=b"-1"),
    B.refused("gzip_of_array", 400, "not_an_object", body=gzip.compress(b"[]", mtime=0)),
    B.refused("batch_over_the_queue_limit", 413, "batch_too_large", body=json_bytes(padded(255_000))),
    # ---- malformed batches -----------------------------------------------------------------------
    *[B.malformed(name, bad) for name, bad in MALFORMED],
    B.malformed(
        "webhook_identity_object", webhook_batch(user_identities=[{"identity_type": "customer_id", "identity": {}}])
    ),
    B.malformed("webhook_identity_type_number", webhook_batch(user_identities=[{"identity_type": 1, "identity": "u"}])),
    B.malformed(
        "webhook_message_id_number", webhook_batch(events=[{"event_type": "session_start", "data": {"message_id": 1}}])
    ),
    # ---- methods and paths -----------------------------------------------------------------------
    *path_cases(B),
    # ---- accepted: enqueued exactly as received --------------------------------------------------
    B.accepted("sample_webhook_batch", [SAMPLE]),
    B.accepted("string_batch_id", [webhook_batch(batch_id="b-0001")]),
    B.accepted("huge_negative_batch_id", [webhook_batch(batch_id=-(2**63))]),
    B.accepted("null_identities", [webhook_batch(user_identities=[{"identity_type": "email", "identity": None}])]),
    B.accepted("webhook_without_events", [webhook_batch(events=[])]),
    B.accepted("system_notifications_only", [webhook_batch(events=[], system_notifications=[{"type": "x"}] * 50)]),
    B.accepted("events_api_shape", [batch(0)]),
    B.accepted("gzip_with_header", [SAMPLE], gzipped=True, headers={"Content-Encoding": "gzip"}),
    B.accepted("no_content_type", [SAMPLE], headers={"Content-Type": None}),
    *[B.accepted(name, [document]) for name, document in hostile_batches()],
]


def error_body_keys(case: Case) -> set[str]:
    return mparticle_error_body_keys(case)


def verify_refused(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    check_mparticle_refusal(case, body, aws)


def verify_accepted(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    check_batches_conservation(case, body, aws, B.source)
