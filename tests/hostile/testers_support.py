"""What the three tester registry corpora share: the token cases, request builders and the audit checks.

A refusal must write nothing: the count of audit entries in the testers table (every change writes one) is
the same before and after it. An acceptance writes exactly one audit entry (PUT, DELETE) or none (GET).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import PROFILE_TOKEN, TESTERS_TABLE, TESTERS_TOKEN, WEBHOOK_TOKEN
from tests.hostile.support import Case

BEARER = f"Bearer {TESTERS_TOKEN}"
BASE_HEADERS = {"Host": "bridge.example.com", "User-Agent": "curl/8.5.0"}
JSON = {"Content-Type": "application/json"}


def case(
    name: str,
    status: int,
    error: str | None = None,
    *,
    path: str,
    authorization: str | None = BEARER,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> Case:
    merged = dict(BASE_HEADERS)
    if authorization is not None:
        merged["Authorization"] = authorization
    merged.update(headers or {})
    return Case(name=name, status=status, error=error, path=path, headers=merged, **kwargs)


def later(seconds: float, **extra: Any) -> Callable[[], bytes]:
    """A registration body expiring ``seconds`` from when the case runs (the registry uses the real clock)."""

    def body() -> bytes:
        return json.dumps({"expiresAt": time.time() + seconds, "reason": "hostile suite", **extra}).encode()

    return body


def raw(document: Any) -> bytes:
    return json.dumps(document).encode()


def _set_authorization(value: str) -> Callable[[dict[str, Any]], None]:
    def hook(event: dict[str, Any]) -> None:
        event["headers"]["authorization"] = value

    return hook


def token_cases(path: str, **kwargs: Any) -> list[Case]:
    """Credentials: 401 before anything is read or written (26 cases)."""

    def unauthorized(name: str, authorization: str | None, **more: Any) -> Case:
        return case(name, 401, "unauthorized", path=path, authorization=authorization, **{**kwargs, **more})

    return [
        unauthorized("no_authorization", None),
        unauthorized("empty_authorization", ""),
        unauthorized("scheme_only", "Bearer"),
        unauthorized("scheme_and_spaces", "Bearer    "),
        unauthorized("wrong_token", "Bearer nope"),
        unauthorized("token_prefix", f"Bearer {TESTERS_TOKEN[:-1]}"),
        unauthorized("token_with_suffix", f"Bearer {TESTERS_TOKEN}x"),
        unauthorized("token_other_case", f"Bearer {TESTERS_TOKEN.upper()}"),
        unauthorized("token_without_scheme", TESTERS_TOKEN),
        unauthorized("scheme_typo", f"Bearr {TESTERS_TOKEN}"),
        unauthorized("scheme_glued_to_token", f"Bearer{TESTERS_TOKEN}"),
        unauthorized("basic_scheme", "Basic " + base64.b64encode(f"u:{TESTERS_TOKEN}".encode()).decode()),
        unauthorized("profile_token", f"Bearer {PROFILE_TOKEN}"),
        unauthorized("webhook_token", f"Bearer {WEBHOOK_TOKEN}"),
        unauthorized("token_in_query_only", None, query=f"token={TESTERS_TOKEN}"),
        unauthorized("token_in_other_header", None, headers={"X-Flagbridge-Token": TESTERS_TOKEN}),
        unauthorized("duplicated_authorization", BEARER, headers={"authorization": BEARER}),
        unauthorized("right_and_wrong", BEARER, headers={"authorization": "Bearer nope"}),
        unauthorized("huge_token", "Bearer " + "A" * 65_536),
        unauthorized("token_not_ascii", "Bearer t\u00f6k\u00e9n-\U0001f511"),
        unauthorized("token_with_nul", f"Bearer {TESTERS_TOKEN}\u0000"),
        unauthorized("token_with_crlf", f"Bearer {TESTERS_TOKEN}\r\nX-Injected: 1"),
        unauthorized("token_sql_injection", "Bearer ' OR '1'='1"),
        unauthorized("json_of_tokens_as_token", 'Bearer {"testers-api-token": "' + TESTERS_TOKEN + '"}'),
        unauthorized("token_name_as_token", "Bearer testers-api-token"),
        unauthorized("lone_surrogate", None, event_hook=_set_authorization("Bearer tok\udc80en\ud800")),
    ]


def audit_count(aws: dict[str, Any]) -> int:
    scan = aws["ddb"].scan(
        TableName=TESTERS_TABLE,
        FilterExpression="begins_with(sk, :audit)",
        ExpressionAttributeValues={":audit": {"S": "AUDIT#"}},
        Select="COUNT",
    )
    return int(scan["Count"])


def remember_audits(aws: dict[str, Any]) -> int:
    """The audit entries written so far; the corpora keep the count between cases in ``aws``."""
    count = audit_count(aws)
    aws["testers_audits"] = count
    return count


def check_nothing_written(aws: dict[str, Any]) -> None:
    assert audit_count(aws) == aws.get("testers_audits", 0), "a refused request changed the registry"


def check_one_change(aws: dict[str, Any]) -> None:
    before = aws.get("testers_audits", 0)
    assert remember_audits(aws) == before + 1, "an accepted change must write exactly one audit entry"
