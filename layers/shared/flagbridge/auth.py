"""Authentication of every HTTP route, with secrets compared in constant time.

Split's webhook: a shared token (``?token=`` or a header); the profile API: a bearer token; the testers API: one
of several named bearer tokens (the name is the caller in the audit trail). mParticle senders
are authenticated as mParticle's own endpoints do it. Events API: HTTP Basic with the configured key and secret
(the official SDKs send exactly this), 401 when the header is missing, 403 when it does not match. Outbound
webhook: the Authorization header value configured in mParticle's webhook connection, compared verbatim.

Secrets come from Secrets Manager through Powertools parameters (cached, ``max_age`` seconds) when a
secret name is configured; a directly configured value is only meant for local development and tests.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping

from flagbridge.errors import ConfigError, RequestError


def load_secret(secret_name: str, direct_value: str, max_age: int, variable: str = "the secret name") -> str:
    """The secret's value: from Secrets Manager by name, else the direct (local) value.

    ``variable`` names the setting of the secret's name in the ConfigError raised when neither is set.
    """
    if secret_name:
        from aws_lambda_powertools.utilities import parameters  # imported lazily: keeps cold starts small

        value = parameters.get_secret(secret_name, max_age=max_age)
        if isinstance(value, bytes):
            value = value.decode()
        return str(value).strip()
    if direct_value:
        return direct_value
    raise ConfigError(f"{variable} is not set (nor its local value)")


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


DEFAULT_TOKEN_NAME = "testers-api-token"


def named_tokens(secret_value: str, default_name: str = DEFAULT_TOKEN_NAME) -> dict[str, str]:
    """The tokens of a secret: a JSON object ``{"<caller name>": "<token>", ...}``, or one token (``default_name``).

    A JSON object with an empty name or a token that is empty or not a string is a ConfigError (never a token).
    """
    text = secret_value.strip()
    if not text.startswith("{"):
        if not text:
            raise ConfigError("the token secret is empty")
        return {default_name: text}
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigError("the token secret starts with '{' but is not a JSON object") from exc
    if not isinstance(document, dict) or not document:
        raise ConfigError("the token secret must be a non-empty JSON object of caller names to tokens")
    tokens: dict[str, str] = {}
    for name, token in document.items():
        if not name.strip() or not isinstance(token, str) or not token.strip():
            raise ConfigError("every entry of the token secret needs a caller name and a non-empty string token")
        tokens[name.strip()] = token.strip()
    return tokens


def require_named_bearer(headers: Mapping[str, str], tokens: Mapping[str, str]) -> str:
    """``Authorization: Bearer <token>`` against every named token; the name of the one that matched.

    Every token is compared (in constant time), whichever matches, so the time taken does not tell which
    name, or whether any, was close.
    """
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestError(401, "unauthorized", "missing bearer token: send Authorization: Bearer <token>")
    matched = [name for name, expected in sorted(tokens.items()) if tokens_equal(token.strip(), expected)]
    if not matched:
        raise RequestError(401, "unauthorized", "invalid bearer token")
    return matched[0]


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


# ---- mParticle senders -----------------------------------------------------------------------------------------


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
    """mParticle's Events API: ``Authorization: Basic`` with the API key and secret (401 missing, 403 wrong)."""
    provided = basic_credentials(headers)
    if provided is None:
        raise RequestError(401, "unauthorized", "missing HTTP Basic authorization (API key and secret)")
    key_ok = tokens_equal(provided[0], expected[0])
    secret_ok = tokens_equal(provided[1], expected[1])
    if not (key_ok and secret_ok):
        raise RequestError(403, "forbidden", "invalid API key or secret")


def require_authorization_value(headers: Mapping[str, str], expected: str) -> None:
    """mParticle's outbound webhook: the configured Authorization header value, verbatim (401 missing, 403 wrong)."""
    provided = headers.get("authorization")
    if not provided:
        raise RequestError(401, "unauthorized", "missing Authorization header")
    if not tokens_equal(provided, expected):
        raise RequestError(403, "forbidden", "invalid Authorization header")
