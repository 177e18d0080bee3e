"""Hostile corpus for ``PUT /testers/{trafficType}/{key}`` (register a tester, bearer-protected).

Refusals: credentials (401, nothing written), traffic types and keys (400), expiries in the past, too far
ahead or unreadable (400), reasons (400), bodies that are not a small JSON object (400, 413, 415), methods
and paths (404). Hostile-looking but valid keys are registered as given (200), each with one audit entry.
"""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

from tests.hostile.support import Case, Route
from tests.hostile.testers_support import (
    JSON,
    case,
    check_nothing_written,
    check_one_change,
    later,
    raw,
    remember_audits,
    token_cases,
)

ROUTE = Route(handler="tester_registry", method="PUT", path="/testers/{trafficType}/{key}")
ID_PREFIX = "testers_put"
PATH = "/testers/user/qa-hostile"
DAY = 86_400


def prepare(aws: dict[str, Any], lambda_context: Any) -> None:
    remember_audits(aws)


def put(name: str, status: int, error: str | None = None, *, path: str = PATH, body: Any = None, **kw: Any) -> Case:
    return case(
        name,
        status,
        error,
        path=path,
        body=later(3600) if body is None else body,
        headers={**JSON, **kw.pop("headers", {})},
        **kw,
    )


def expiry(name: str, value: Any, error: str | None) -> Case:
    return put(name, 400 if error else 200, error, body=raw({"expiresAt": value, "reason": "hostile"}))


def expiry_from_now(name: str, seconds: float, error: str | None) -> Case:
    return put(name, 400 if error else 200, error, body=later(seconds))


def _base64_hook(event: dict[str, Any]) -> None:
    event["isBase64Encoded"] = True
    event["body"] = "%%% not base64 %%%"


CASES: list[Case] = [
    *token_cases(PATH, body=later(3600), method="PUT"),
    # ---- traffic types and keys ---------------------------------------------------------------------
    put("plain_key", 200),
    put("unicode_key", 200, path="/testers/user/%C3%BC-tester-%E2%9C%93"),
    put("hash_in_key", 200, path="/testers/user/a%23b%23FLAG"),
    put("encoded_slash_in_key", 200, path="/testers/user/a%2Fb"),
    put("sql_injection_key_is_just_a_key", 200, path="/testers/user/%27%20OR%20%271%27%3D%271"),
    put("log4shell_key_is_just_a_key", 200, path="/testers/user/%24%7Bjndi%3Aldap%3A%2F%2Fx%2Fa%7D"),
    put("key_of_250", 200, path="/testers/user/" + "k" * 250),
    put("upper_case_traffic_type", 200, path="/testers/USER/qa-hostile"),
    put("key_of_251", 400, "invalid_key", path="/testers/user/" + "k" * 251),
    put("key_over_dynamodb_limit", 400, "invalid_key", path="/testers/user/" + "k" * 2100),
    put("multibyte_key_over_limit", 400, "invalid_key", path="/testers/user/" + "%F0%9F%98%80" * 600),
    put("nul_in_key", 400, "invalid_key", path="/testers/user/qa%00"),
    put("crlf_in_key", 400, "invalid_key", path="/testers/user/qa%0D%0ASet-Cookie%3A%20x"),
    put("escape_in_key", 400, "invalid_key", path="/testers/user/%1B%5B31m"),
    put("leading_space_key", 400, "invalid_key", path="/testers/user/%20qa"),
    put("blank_key", 400, "invalid_key", path="/testers/user/%20%20"),
    put("line_separator_key", 400, "invalid_key", path="/testers/user/a%E2%80%A8b"),
    # keys the client never sent: undecodable percent-encoding and lone surrogates (issue 17, class 3)
    put("key_with_stray_byte", 400, "invalid_key", path="/testers/user/qa-7%FF"),
    put("key_with_lone_surrogate", 400, "invalid_key", path="/testers/user/qa-7%ED%A0%80"),
    put("key_with_truncated_sequence", 400, "invalid_key", path="/testers/user/qa-7%E2%82"),
    put("key_with_overlong_slash", 400, "invalid_key", path="/testers/user/qa%C0%AF"),
    put("key_with_continuation_only", 400, "invalid_key", path="/testers/user/%80qa"),
    put("key_with_code_point_beyond_unicode", 400, "invalid_key", path="/testers/user/%F4%90%80%80"),
    put("traffic_type_with_stray_byte", 400, "invalid_traffic_type", path="/testers/user%FF/qa"),
    # keys that display as another key: invisible and bidirectional characters, non-NFC (docs/testers.md)
    put("key_right_to_left_override", 400, "invalid_key", path="/testers/user/qa-%E2%80%AE7"),
    put("key_zero_width_space", 400, "invalid_key", path="/testers/user/qa%E2%80%8B-7"),
    put("key_byte_order_mark", 400, "invalid_key", path="/testers/user/%EF%BB%BFqa-7"),
    put("key_left_to_right_isolate", 400, "invalid_key", path="/testers/user/qa-%E2%81%A67"),
    put("key_zero_width_joiner", 400, "invalid_key", path="/testers/user/qa%E2%80%8D-7"),
    put("key_zero_width_non_joiner", 400, "invalid_key", path="/testers/user/qa%E2%80%8C-7"),
    put("key_left_to_right_mark", 400, "invalid_key", path="/testers/user/qa%E2%80%8E-7"),
    put("key_arabic_letter_mark", 400, "invalid_key", path="/testers/user/qa%D8%9C-7"),
    put("key_word_joiner", 400, "invalid_key", path="/testers/user/qa%E2%81%A0-7"),
    put("key_soft_hyphen", 400, "invalid_key", path="/testers/user/qa%C2%AD7"),
    put("key_tag_character", 400, "invalid_key", path="/testers/user/qa%F3%A0%80%81"),
    put("key_no_break_space", 400, "invalid_key", path="/testers/user/qa%C2%A07"),
    put("key_ideographic_space", 400, "invalid_key", path="/testers/user/qa%E3%80%807"),
    put("key_hangul_filler", 400, "invalid_key", path="/testers/user/qa%E3%85%A47"),
    put("key_variation_selector", 400, "invalid_key", path="/testers/user/qa%EF%B8%8F7"),
    put("key_private_use", 400, "invalid_key", path="/testers/user/qa%EE%80%807"),
    put("key_decomposed_accent", 400, "invalid_key", path="/testers/user/qa-e%CC%81"),
    put("key_composed_accent", 200, path="/testers/user/qa-%C3%A9"),
    put("key_emoji", 200, path="/testers/user/qa-%F0%9F%98%80"),
    put("space_in_traffic_type", 400, "invalid_traffic_type", path="/testers/user%20x/qa"),
    put("hash_in_traffic_type", 400, "invalid_traffic_type", path="/testers/user%23qa/qa"),
    put("star_traffic_type", 400, "invalid_traffic_type", path="/testers/%2A/qa"),
    put("dash_first_traffic_type", 400, "invalid_traffic_type", path="/testers/-user/qa"),
    put("long_traffic_type", 400, "invalid_traffic_type", path="/testers/" + "t" * 81 + "/qa"),
    put("traffic_type_over_dynamodb_limit", 400, "invalid_traffic_type", path="/testers/" + "t" * 2100 + "/qa"),
    # ---- expiries --------------------------------------------------------------------------------------
    expiry_from_now("expiry_in_29_days", 29 * DAY, None),
    expiry_from_now("expiry_in_a_second", 5, None),
    expiry_from_now("expiry_a_second_ago", -1, "expired"),
    expiry_from_now("expiry_in_31_days", 31 * DAY, "expiry_too_far"),
    put(
        "expiry_in_milliseconds",
        400,
        "expiry_too_far",
        body=lambda: raw({"expiresAt": int(time.time() * 1000) + 60_000, "reason": "x"}),
    ),
    put(
        "iso_expiry",
        200,
        body=lambda: raw(
            {"expiresAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200)), "reason": "x"}
        ),
    ),
    put("epoch_digits_expiry", 200, body=lambda: raw({"expiresAt": str(int(time.time()) + 600), "reason": "x"})),
    expiry("expiry_zero", 0, "expired"),
    expiry("expiry_negative", -1, "expired"),
    expiry("expiry_huge_float", 1e308, "expiry_too_far"),
    expiry("expiry_huge_negative_float", -1e308, "expired"),
    expiry("expiry_integer_beyond_float", 10**400, "invalid_expiry"),
    expiry("expiry_infinite_text", "1e999", "invalid_expiry"),
    expiry("expiry_nan_text", "NaN", "invalid_expiry"),
    expiry("expiry_true", True, "invalid_expiry"),
    expiry("expiry_null", None, "invalid_expiry"),
    expiry("expiry_list", [1, 2], "invalid_expiry"),
    expiry("expiry_object", {"seconds": 60}, "invalid_expiry"),
    expiry("expiry_words", "next tuesday", "invalid_expiry"),
    expiry("expiry_empty", "", "invalid_expiry"),
    expiry("expiry_no_zone", "2030-01-01T00:00:00", "invalid_expiry"),
    expiry("expiry_bad_month", "2026-13-01T00:00:00Z", "invalid_expiry"),
    expiry("expiry_year_10000", "10000-01-01T00:00:00Z", "invalid_expiry"),
    expiry("expiry_far_future_iso", "9999-12-31T23:59:59Z", "expiry_too_far"),
    expiry("expiry_year_one", "0001-01-01T00:00:00+00:00", "expired"),
    expiry("expiry_long_text", "2" * 3000, "invalid_expiry"),
    put("missing_expiry", 400, "missing_expiry", body=raw({"reason": "x"})),
    # ---- reasons ----------------------------------------------------------------------------------------
    put("missing_reason", 400, "missing_reason", body=lambda: raw({"expiresAt": time.time() + 60})),
    put("null_reason", 400, "missing_reason", body=lambda: raw({"expiresAt": time.time() + 60, "reason": None})),
    put("empty_reason", 400, "invalid_reason", body=later(60, reason="")),
    put("blank_reason", 400, "invalid_reason", body=later(60, reason="   ")),
    put("number_reason", 400, "invalid_reason", body=later(60, reason=42)),
    put("long_reason", 400, "invalid_reason", body=later(60, reason="r" * 201)),
    put("control_reason", 400, "invalid_reason", body=later(60, reason="bell\x07")),
    put("emoji_reason", 200, body=later(60, reason="smoke test \U0001f525")),
    # ---- bodies -------------------------------------------------------------------------------------------
    put("unknown_field", 400, "unknown_field", body=later(60, admin=True)),
    put("empty_body", 400, "empty_body", body=b""),
    put("not_json", 400, "invalid_json", body=b"expiresAt=tomorrow&reason=x"),
    put("truncated_json", 400, "invalid_json", body=b'{"expiresAt": 1'),
    put("json_nan", 400, "invalid_json", body=b'{"expiresAt": NaN, "reason": "x"}'),
    put("json_array", 400, "invalid_body", body=b"[]"),
    put("json_string", 400, "invalid_body", body=b'"register me"'),
    put("json_null", 400, "invalid_body", body=b"null"),
    put("deeply_nested", 400, "invalid_json", body=b"[" * 2000 + b"]" * 2000),
    put("invalid_utf8", 400, "invalid_utf8", body=b'{"reason": "\xff\xfe", "expiresAt": 1}'),
    put("body_over_4_kb", 413, "payload_too_large", body=later(60, reason="r" * 5000)),
    put("body_of_1_mb", 413, "payload_too_large", body=b" " * 1_048_576),
    put("html_content_type", 415, "unsupported_media_type", headers={"Content-Type": "text/html"}),
    put("gzip_body", 200, body=lambda: gzip.compress(later(60)()), headers={"Content-Encoding": "gzip"}),
    put(
        "gzip_bomb",
        413,
        "payload_too_large",
        body=gzip.compress(json.dumps({"reason": "x" * 100_000}).encode()),
        headers={"Content-Encoding": "gzip"},
    ),
    put("bad_base64", 400, "invalid_base64", event_hook=_base64_hook),
    # ---- methods and paths: API Gateway has no route for these -------------------------------------
    case("post", 404, "not_found", path=PATH, method="POST", gateway_404=True),
    case("patch", 404, "not_found", path=PATH, method="PATCH", gateway_404=True),
    case("get_one", 404, "not_found", path=PATH, method="GET", gateway_404=True),
    case("put_collection", 404, "not_found", path="/testers", method="PUT", gateway_404=True),
    case("put_traffic_type_only", 404, "not_found", path="/testers/user", method="PUT", gateway_404=True),
    case("put_extra_segment", 404, "not_found", path=PATH + "/x", method="PUT", gateway_404=True),
    case("put_empty_key", 404, "not_found", path="/testers/user/", method="PUT", gateway_404=True),
    case("put_empty_traffic_type", 404, "not_found", path="/testers//qa", method="PUT", gateway_404=True),
]


def verify_accepted(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    """A 200 registers the tester of the path (as decoded), with one audit entry."""
    parameters = ROUTE.match(case.path)
    assert parameters is not None
    assert (body["trafficType"], body["key"]) == (parameters["trafficType"], parameters["key"]), body
    assert body["registeredBy"] == "token:testers-api-token"
    check_one_change(aws)


def verify_refused(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    check_nothing_written(aws)
