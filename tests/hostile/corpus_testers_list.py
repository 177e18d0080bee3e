"""Hostile corpus for ``GET /testers`` (list the registered testers, bearer-protected, paginated).

Refusals: credentials (401), page sizes (400 ``invalid_limit``) and cursors this API did not make (400
``invalid_cursor``), methods and paths (404). A list never writes, and never shows an expired tester.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from flagbridge.testers.registry import encode_cursor
from tests.hostile.support import Case, Route
from tests.hostile.testers_support import case, check_nothing_written, remember_audits, token_cases

ROUTE = Route(handler="tester_registry", method="GET", path="/testers")
ID_PREFIX = "testers_list"
PATH = "/testers"


def prepare(aws: dict[str, Any], lambda_context: Any) -> None:
    from flagbridge import runtime

    runtime.tester_registry().register_pool("user", [f"list-{i}" for i in range(5)], 3600, "hostile", "test:prepare")
    remember_audits(aws)


def listed(name: str, query: str = "", **kwargs: Any) -> Case:
    return case(name, 200, path=PATH, query=query, **kwargs)


def bad_limit(name: str, value: str) -> Case:
    return case(name, 400, "invalid_limit", path=PATH, query=f"limit={value}")


def bad_cursor(name: str, value: str) -> Case:
    return case(name, 400, "invalid_cursor", path=PATH, query=f"cursor={value}")


def _b64(document: Any) -> str:
    text = document if isinstance(document, str) else json.dumps(document)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


CASES: list[Case] = [
    *token_cases(PATH),
    # ---- accepted ---------------------------------------------------------------------------------------
    listed("first_page"),
    listed("limit_1", "limit=1"),
    listed("limit_100", "limit=100"),
    listed("limit_with_spaces", "limit=%205%20"),
    listed("empty_limit_is_the_default", "limit="),
    listed("empty_cursor_is_the_first_page", "cursor="),
    listed("cursor_of_this_api", "cursor=" + encode_cursor("user#list-1")),
    listed("cursor_after_everything", "cursor=" + encode_cursor("zzz#" + "z" * 250)),
    listed("cursor_of_unknown_user", "cursor=" + encode_cursor("user#nobody")),
    listed("padded_cursor", "cursor=" + encode_cursor("user#list-2") + "%3D%3D"),
    listed("unknown_query_is_ignored", "a=%ZZ&&&=&trafficType=*&" + "x=y&" * 300),
    listed("body_is_ignored", body=b'{"limit": 100000}'),
    listed("lower_case_scheme", authorization="bearer local-testers-token"),
    # ---- page sizes --------------------------------------------------------------------------------------
    bad_limit("limit_0", "0"),
    bad_limit("limit_negative", "-1"),
    bad_limit("limit_101", "101"),
    bad_limit("limit_huge", "9" * 40),
    bad_limit("limit_words", "ten"),
    bad_limit("limit_fraction", "1.5"),
    bad_limit("limit_exponent", "1e2"),
    bad_limit("limit_hex", "0x10"),
    bad_limit("limit_twice", "1&limit=2"),
    bad_limit("limit_nul", "1%00"),
    bad_limit("limit_unicode_digits", "%D9%A1%D9%A0"),  # Arabic-Indic "10"
    # ---- cursors -------------------------------------------------------------------------------------------
    bad_cursor("cursor_garbage", "x"),
    bad_cursor("cursor_symbols", "%21%21%21"),
    bad_cursor("cursor_not_json", _b64("not json")),
    bad_cursor("cursor_json_list", _b64(["user#a"])),
    bad_cursor("cursor_after_number", _b64({"after": 1})),
    bad_cursor("cursor_without_hash", _b64({"after": "user"})),
    bad_cursor("cursor_bad_traffic_type", _b64({"after": "us er#a"})),
    bad_cursor("cursor_control_key", _b64({"after": "user#a\nb"})),
    bad_cursor("cursor_long_key", _b64({"after": "user#" + "k" * 251})),
    bad_cursor("cursor_dynamodb_key_injection", _b64({"pk": {"S": "user#a"}, "sk": {"S": "AUDIT#"}})),
    bad_cursor("cursor_huge", "A" * 3000),
    bad_cursor("cursor_invalid_utf8", _b64("x") + "%FF"),
    bad_cursor("cursor_deeply_nested", _b64("[" * 1536)),  # issue 17: a RecursionError escaped as a 500
    bad_cursor("cursor_deeply_nested_object", _b64('{"after":' * 1000)),
    bad_cursor("cursor_huge_number", _b64('{"after": ' + "9" * 1500 + "}")),
    bad_cursor("cursor_key_with_bidi_override", _b64({"after": "user#qa-\u202e7"})),
    bad_cursor("cursor_twice", encode_cursor("user#list-1") + "&cursor=" + encode_cursor("user#list-2")),
    # ---- methods and paths: API Gateway has no route for these ------------------------------------------
    case("post_collection", 404, "not_found", path=PATH, method="POST", gateway_404=True),
    case("delete_collection", 404, "not_found", path=PATH, method="DELETE", gateway_404=True),
    case("put_collection", 404, "not_found", path=PATH, method="PUT", gateway_404=True),
    case("trailing_slash", 404, "not_found", path=PATH + "/", gateway_404=True),
    case("upper_case", 404, "not_found", path="/Testers", gateway_404=True),
    case("traffic_type_only", 404, "not_found", path="/testers/user", gateway_404=True),
    case("audit_path", 404, "not_found", path="/testers/audit/log/all", gateway_404=True),
]


def verify_accepted(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    """A page: at most the page size, only testers that have not expired, in order; nothing written."""
    assert set(body) == {"testers", "nextCursor"}, body
    assert len(body["testers"]) <= 100
    now = time.time()
    assert all(t["expiresAtEpoch"] > now for t in body["testers"]), body
    ids = [f"{t['trafficType']}#{t['key']}" for t in body["testers"]]
    assert ids == sorted(ids)
    check_nothing_written(aws)


def verify_refused(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    check_nothing_written(aws)
