"""Request body decoding: gzip detection, bombs, corrupt data, content types."""

from __future__ import annotations

import base64
import gzip

import pytest

from flagbridge.body import decode_json_body, raw_body, request_json
from flagbridge.errors import RequestError
from flagbridge.routing import HttpEvent

LIMITS = {"max_body_bytes": 1_000_000, "max_decompressed_bytes": 2_000_000}


def decode(body: bytes, content_type: str | None = "application/json", encoding: str | None = None):
    return decode_json_body(body, content_type=content_type, content_encoding=encoding, **LIMITS)


def refused(body: bytes, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as error:
        decode(body, **kwargs)
    return error.value


def test_gzip_is_detected_by_magic_bytes_or_header_and_plain_json_accepted() -> None:
    packed = gzip.compress(b'[{"a": 1}]')
    assert decode(packed) == [{"a": 1}]
    assert decode(packed, encoding="gzip") == [{"a": 1}]
    assert decode(b'[{"a": 1}]') == [{"a": 1}]
    assert decode(b'[{"a": 1}]', encoding="gzip") == [{"a": 1}]  # mislabelled, unambiguous


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"[" + b"0," * 1_500_000 + b"0]")
    assert len(bomb) < 100_000
    assert refused(bomb).status == 413


def test_oversize_body_is_413() -> None:
    assert refused(b"[" + b" " * 1_000_001 + b"]").status == 413


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (gzip.compress(b"[1,2,3]", mtime=0)[:-6], "invalid_gzip"),
        (b"\x1f\x8b\x08\x00garbage", "invalid_gzip"),
        (b"", "empty_body"),
        (b"   ", "empty_body"),
        (b"[1,", "invalid_json"),
        (b"\xff\xfe[]", "invalid_utf8"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    ],
)
def test_bad_bodies_are_400_with_a_named_problem(body: bytes, code: str) -> None:
    error = refused(body)
    assert (error.status, error.code) == (400, code)


@pytest.mark.parametrize("content_type", ["text/html", "application/xml", "multipart/form-data; boundary=x"])
def test_unsupported_content_types_are_415(content_type: str) -> None:
    assert refused(b"[]", content_type=content_type).status == 415


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "application/vnd.x+json"])
def test_json_content_types_are_accepted(content_type: str | None) -> None:
    assert decode(b"[]", content_type=content_type) == []


def test_unknown_content_encoding_is_415() -> None:
    assert refused(b"[]", encoding="br").status == 415


def test_invalid_base64_is_400() -> None:
    with pytest.raises(RequestError) as error:
        raw_body("not base64!!", True)
    assert error.value.code == "invalid_base64"


def test_tokens_are_compared_in_constant_time() -> None:
    from unittest import mock

    from flagbridge import auth

    with mock.patch.object(auth.hmac, "compare_digest", wraps=auth.hmac.compare_digest) as compare:
        assert auth.tokens_equal("secret-token", "secret-token")
        assert not auth.tokens_equal("secret-tokem", "secret-token")
    assert compare.call_count == 2


def test_request_json_decodes_an_http_api_event_and_names_a_blank_body_as_the_caller_asks() -> None:
    def event(body: bytes, **headers: str) -> HttpEvent:
        encoded = base64.b64encode(body).decode()
        return HttpEvent({"body": encoded, "isBase64Encoded": True, "headers": headers})

    assert request_json(event(gzip.compress(b'{"a": 1}')), max_body_bytes=100) == {"a": 1}
    with pytest.raises(RequestError) as error:
        request_json(event(b"  "), max_body_bytes=100)
    assert error.value.code == "empty_body"
    with pytest.raises(RequestError) as error:
        request_json(event(b" ", **{"content-type": "image/png"}), max_body_bytes=100, blank="the body must be a plan")
    assert (error.value.status, error.value.code, error.value.message) == (
        400,
        "invalid_body",
        "the body must be a plan",
    )
    with pytest.raises(RequestError) as error:  # the decompressed body has the body's limit
        request_json(event(gzip.compress(b'{"a": "' + b"x" * 200 + b'"}')), max_body_bytes=100)
    assert (error.value.status, error.value.code) == (413, "payload_too_large")
    large = b'{"a": "' + b"x" * 200 + b'"}'
    assert request_json(event(gzip.compress(large)), max_body_bytes=100, max_decompressed_bytes=400) == {"a": "x" * 200}
    with pytest.raises(RequestError) as error:  # a separate decompressed limit holds too
        request_json(event(gzip.compress(large)), max_body_bytes=100, max_decompressed_bytes=200)
    assert (error.value.status, error.value.code) == (413, "payload_too_large")
