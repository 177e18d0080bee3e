"""Shared-secret checks for the HTTP routes, compared in constant time.

Secrets come from Secrets Manager through Powertools parameters (cached, ``max_age`` seconds) when a
secret name is configured; a directly configured value is only meant for local development and tests.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from flagbridge.errors import ConfigError, RequestError


def load_secret(secret_name: str, direct_value: str, max_age: int) -> str:
    """The secret's value: from Secrets Manager by name, else the direct (local) value."""
    if secret_name:
        from aws_lambda_powertools.utilities import parameters  # imported lazily: keeps cold starts small

        value = parameters.get_secret(secret_name, max_age=max_age)
        if isinstance(value, bytes):
            value = value.decode()
        return str(value).strip()
    if direct_value:
        return direct_value
    raise ConfigError("no secret configured: set the secret name (AWS) or the local value")


def tokens_equal(provided: str, expected: str) -> bool:
    """Constant-time comparison (no early exit on the first differing byte)."""
    # surrogatepass: a lone surrogate in a hostile header must compare unequal, not raise
    return hmac.compare_digest(provided.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def require_shared_token(query: Mapping[str, str] | None, headers: Mapping[str, str], expected: str) -> None:
    """Split webhook auth: ``?token=`` (Split's UI only takes a URL) or the ``X-Flagbridge-Token`` header."""
    provided = (query or {}).get("token") or headers.get("x-flagbridge-token")
    if not provided:
        raise RequestError(401, "unauthorized", "missing token: add ?token=<secret> or an X-Flagbridge-Token header")
    if not tokens_equal(provided, expected):
        raise RequestError(401, "unauthorized", "invalid token")


def require_bearer(headers: Mapping[str, str], expected: str) -> None:
    """``Authorization: Bearer <token>``."""
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestError(401, "unauthorized", "missing bearer token: send Authorization: Bearer <token>")
    if not tokens_equal(token.strip(), expected):
        raise RequestError(401, "unauthorized", "invalid bearer token")


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The (key, secret) of an ``Authorization: Basic`` header, or None when there is none."""
    header = headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return ("", "")
    key, _, secret = decoded.partition(":")
    return key, secret
