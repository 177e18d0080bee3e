"""Decoding of webhook request bodies: base64 from API Gateway, optional gzip, size guards, JSON.

Split gzips every impressions POST but the ``Content-Encoding`` header is not guaranteed, so gzip is
detected by header *or* by the magic bytes ``1f 8b``. Decompression is bounded so that a gzip bomb
costs at most ``max_decompressed_bytes`` of memory before it is refused with 413.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from typing import TYPE_CHECKING, Any

from flagbridge.errors import RequestError

if TYPE_CHECKING:
    from flagbridge.routing import HttpEvent

GZIP_MAGIC = b"\x1f\x8b"

# Media types a JSON webhook may arrive with; anything else is a 415.
JSON_MEDIA_TYPES = frozenset({"application/json", "text/json", "text/plain"})
GZIP_MEDIA_TYPES = frozenset({"application/gzip", "application/x-gzip", "application/octet-stream"})


def raw_body(event_body: str | None, is_base64_encoded: bool) -> bytes:
    """The request body bytes of an API Gateway HTTP API (payload v2) event."""
    if not event_body:
        return b""
    if is_base64_encoded:
        try:
            return base64.b64decode(event_body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(400, "invalid_base64", "the request body is not valid base64") from exc
    try:
        return event_body.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError as exc:  # a lone surrogate: no byte sequence was ever sent for it
        raise RequestError(400, "invalid_utf8", f"the body is not valid UTF-8 (character {exc.start})") from exc


def check_content_type(content_type: str | None) -> None:
    """Refuse with 415 a body that cannot be JSON (no header at all is tolerated)."""
    if not content_type:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in JSON_MEDIA_TYPES or media_type in GZIP_MEDIA_TYPES or media_type.endswith("+json"):
        return
    raise RequestError(
        415, "unsupported_media_type", f"content type {media_type!r} is not supported; send application/json"
    )


def decompress(body: bytes, content_encoding: str | None, max_decompressed_bytes: int) -> bytes:
    """Gunzip ``body`` if it is gzip (by header or magic bytes), refusing output over the limit."""
    encoding = (content_encoding or "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise RequestError(415, "unsupported_content_encoding", f"content encoding {encoding!r} is not supported")
    is_gzip = body[:2] == GZIP_MAGIC
    if encoding in ("gzip", "x-gzip") and not is_gzip:
        if body.lstrip()[:1] in (b"[", b"{"):
            return body  # mislabelled plain JSON: accept what we can read unambiguously
        raise RequestError(400, "invalid_gzip", "Content-Encoding says gzip but the body is not gzip data")
    if not is_gzip:
        return body
    parts: list[bytes] = []
    size = 0
    remaining = body
    while True:  # one gzip member, or several concatenated (RFC 1952 §2.2); nothing else may follow
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(remaining, max_decompressed_bytes - size + 1)
        except zlib.error as exc:
            raise RequestError(400, "invalid_gzip", f"the gzip body is corrupt: {exc}") from exc
        size += len(part)
        if size > max_decompressed_bytes or inflater.unconsumed_tail:
            raise RequestError(
                413, "payload_too_large", f"the decompressed body exceeds the limit of {max_decompressed_bytes} bytes"
            )
        if not inflater.eof:
            raise RequestError(400, "invalid_gzip", "the gzip body is truncated")
        parts.append(part)
        remaining = inflater.unused_data
        if not remaining:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if remaining[:2] != GZIP_MAGIC:
            raise RequestError(400, "invalid_gzip", f"{len(remaining)} bytes of trailing data after the gzip stream")


def parse_json(data: bytes) -> Any:
    """Parse UTF-8 JSON, naming the problem (position, encoding) on failure."""
    if not data.strip():
        raise RequestError(400, "empty_body", "the request body is empty; expected a JSON document")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "invalid_utf8", f"the body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise RequestError(400, "invalid_json", "the JSON document is nested too deeply") from exc
    except ValueError as exc:
        raise RequestError(400, "invalid_json", f"malformed JSON: {exc}") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def decode_json_body(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
    max_body_bytes: int,
    max_decompressed_bytes: int,
) -> Any:
    """All the steps above, in order: content type, size, gzip, JSON."""
    return parse_json(
        decode_body(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            max_body_bytes=max_body_bytes,
            max_decompressed_bytes=max_decompressed_bytes,
        )
    )


def request_json(
    event: HttpEvent, *, max_body_bytes: int, max_decompressed_bytes: int | None = None, blank: str | None = None
) -> Any:
    """The JSON document of an HTTP API request: base64, content type, size, gzip, UTF-8, JSON, each a 4xx naming it.

    The decompressed body has the same limit as the body unless ``max_decompressed_bytes`` says otherwise. ``blank``: a
    blank body is a 400 ``invalid_body`` with this message before any other check (else :func:`parse_json`'s
    ``empty_body``)."""
    raw = raw_body(event.body, bool(event.is_base64_encoded))
    if blank is not None and not raw.strip():
        raise RequestError(400, "invalid_body", blank)
    return decode_json_body(
        raw,
        content_type=event.headers.get("content-type"),
        content_encoding=event.headers.get("content-encoding"),
        max_body_bytes=max_body_bytes,
        max_decompressed_bytes=max_body_bytes if max_decompressed_bytes is None else max_decompressed_bytes,
    )


def decode_body(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
    max_body_bytes: int,
    max_decompressed_bytes: int,
) -> bytes:
    """The steps of :func:`decode_json_body` before the JSON parsing: content type, size, gzip."""
    check_content_type(content_type)
    if len(body) > max_body_bytes:
        raise RequestError(413, "payload_too_large", f"the body exceeds the limit of {max_body_bytes} bytes")
    return decompress(body, content_encoding, max_decompressed_bytes)
