"""Authentication of mParticle senders, as mParticle's own endpoints do it.

Events API: HTTP Basic with the configured key and secret (the official SDKs send exactly this) —
401 when the header is missing, 403 when it does not match. Outbound webhook: the Authorization header
value configured in mParticle's webhook connection, compared verbatim. Comparisons are constant time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from flagbridge.auth import basic_credentials, tokens_equal
from flagbridge.errors import ConfigError, RequestError


def parse_credentials(value: str) -> tuple[str, str]:
    """``{"api_key": .., "api_secret": ..}`` (the Secrets Manager secret) or ``key:secret`` (local)."""
    text = value.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
            return str(document["api_key"]), str(document["api_secret"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError("the mParticle credentials secret must hold api_key and api_secret") from exc
    key, separator, secret = text.partition(":")
    if not separator or not key or not secret:
        raise ConfigError("the mParticle credentials must be 'key:secret' or JSON with api_key/api_secret")
    return key, secret


def require_basic_auth(headers: Mapping[str, str], expected: tuple[str, str]) -> None:
    provided = basic_credentials(headers)
    if provided is None:
        raise RequestError(401, "unauthorized", "missing HTTP Basic authorization (API key and secret)")
    key_ok = tokens_equal(provided[0], expected[0])
    secret_ok = tokens_equal(provided[1], expected[1])
    if not (key_ok and secret_ok):
        raise RequestError(403, "forbidden", "invalid API key or secret")


def require_authorization_value(headers: Mapping[str, str], expected: str) -> None:
    provided = headers.get("authorization")
    if not provided:
        raise RequestError(401, "unauthorized", "missing Authorization header")
    if not tokens_equal(provided, expected):
        raise RequestError(403, "forbidden", "invalid Authorization header")
