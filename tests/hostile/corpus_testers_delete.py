"""Hostile corpus for ``DELETE /testers/{trafficType}/{key}`` (remove a tester, bearer-protected).

``prepare`` registers the testers the accepted cases remove (one each). Refusals: credentials (401),
traffic types, keys and reasons (400), testers that are not registered (404, no audit entry), methods and
paths (404). A body or unknown query parameters on a DELETE are ignored.
"""

from __future__ import annotations

from typing import Any

from tests.hostile.support import Case, Route
from tests.hostile.testers_support import case, check_nothing_written, check_one_change, remember_audits, token_cases

ROUTE = Route(handler="tester_registry", method="DELETE", path="/testers/{trafficType}/{key}")
ID_PREFIX = "testers_delete"
REGISTERED = [f"del-{index}" for index in range(12)]


def prepare(aws: dict[str, Any], lambda_context: Any) -> None:
    from flagbridge import runtime

    runtime.tester_registry().register_pool("user", REGISTERED, 3600, "hostile suite", "test:prepare")
    remember_audits(aws)


def removed(name: str, key: str, **kwargs: Any) -> Case:
    return case(name, 200, path=f"/testers/user/{key}", **kwargs)


def refused(name: str, status: int, error: str, path: str, **kwargs: Any) -> Case:
    return case(name, status, error, path=path, **kwargs)


CASES: list[Case] = [
    *token_cases("/testers/user/del-0"),
    # ---- accepted: each removes one registered tester --------------------------------------------------
    removed("remove", "del-0"),
    removed("remove_with_reason", "del-1", query="reason=run%20finished"),
    removed("remove_with_unicode_reason", "del-2", query="reason=fertig%20%E2%9C%93"),
    removed("remove_with_empty_reason", "del-3", query="reason="),
    removed("body_is_ignored", "del-4", body=b'{"key": "someone-else"}'),
    removed("garbage_body_is_ignored", "del-5", body=b"\x00\xff\x1f\x8b"),
    removed("unknown_query_is_ignored", "del-6", query="a=%ZZ&&&=&key=del-7&" + "x=y&" * 200),
    removed("lower_case_scheme", "del-7", authorization="bearer local-testers-token"),
    removed("spaces_around_token", "del-8", authorization="Bearer   local-testers-token  "),
    # ---- nothing to remove -------------------------------------------------------------------------------
    refused("already_removed", 404, "tester_not_found", "/testers/user/del-0"),
    refused("never_registered", 404, "tester_not_found", "/testers/user/nobody"),
    refused("other_traffic_type", 404, "tester_not_found", "/testers/account/del-9"),
    refused("traffic_type_case", 404, "tester_not_found", "/testers/USER/del-9"),
    refused("prefix_of_a_tester", 404, "tester_not_found", "/testers/user/del-"),
    refused("sql_injection", 404, "tester_not_found", "/testers/user/%27%20OR%20%271%27%3D%271"),
    refused("nosql_injection", 404, "tester_not_found", "/testers/user/%7B%22%24ne%22%3Anull%7D"),
    refused("hash_smuggling", 404, "tester_not_found", "/testers/user/del-9%23AUDIT"),
    refused("encoded_slash", 404, "tester_not_found", "/testers/user/del-9%2Fx"),
    refused("unicode_lookalike", 404, "tester_not_found", "/testers/user/d%D0%B5l-9"),
    refused("invalid_utf8_percent", 400, "invalid_key", "/testers/user/%FF%FE"),
    # ---- bad ids and reasons -----------------------------------------------------------------------------
    refused("key_too_long", 400, "invalid_key", "/testers/user/" + "k" * 251),
    refused("key_over_dynamodb_limit", 400, "invalid_key", "/testers/user/" + "k" * 2100),
    refused("nul_in_key", 400, "invalid_key", "/testers/user/del-9%00"),
    refused("crlf_in_key", 400, "invalid_key", "/testers/user/del-9%0D%0A"),
    refused("trailing_space_key", 400, "invalid_key", "/testers/user/del-9%20"),
    refused("blank_key", 400, "invalid_key", "/testers/user/%20"),
    refused("traffic_type_with_space", 400, "invalid_traffic_type", "/testers/us%20er/del-9"),
    refused("traffic_type_with_hash", 400, "invalid_traffic_type", "/testers/user%23del-9/x"),
    refused("traffic_type_too_long", 400, "invalid_traffic_type", "/testers/" + "t" * 2100 + "/del-9"),
    refused("traffic_type_dot_dot", 400, "invalid_traffic_type", "/testers/%2E%2E/del-9"),
    refused("reason_too_long", 400, "invalid_reason", "/testers/user/del-9", query="reason=" + "r" * 201),
    refused("reason_with_newline", 400, "invalid_reason", "/testers/user/del-9", query="reason=a%0Ab"),
    refused("reason_with_nul", 400, "invalid_reason", "/testers/user/del-9", query="reason=a%00b"),
    # ---- methods and paths: API Gateway has no route for these ----------------------------------------
    case("delete_collection", 404, "not_found", path="/testers", gateway_404=True),
    case("delete_traffic_type", 404, "not_found", path="/testers/user", gateway_404=True),
    case("delete_extra_segment", 404, "not_found", path="/testers/user/del-9/audit", gateway_404=True),
    case("delete_empty_key", 404, "not_found", path="/testers/user/", gateway_404=True),
    case("delete_upper_case_prefix", 404, "not_found", path="/Testers/user/del-9", gateway_404=True),
    case("delete_profiles", 404, "not_found", path="/profiles/user/del-9", gateway_404=True),
    case("patch_one", 404, "not_found", path="/testers/user/del-9", method="PATCH", gateway_404=True),
    case("post_one", 404, "not_found", path="/testers/user/del-9", method="POST", gateway_404=True),
    case("head_one", 404, "not_found", path="/testers/user/del-9", method="HEAD", gateway_404=True),
]


def verify_accepted(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    """A 200 removed exactly the tester of the path, with one audit entry."""
    parameters = ROUTE.match(case.path)
    assert parameters is not None
    assert body == {"trafficType": "user", "key": parameters["key"], "removed": True}, body
    from flagbridge import runtime

    assert runtime.tester_registry().active([f"user#{parameters['key']}"]) == {}
    check_one_change(aws)


def verify_refused(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    check_nothing_written(aws)
