"""Hostile corpus for ``GET /tests/{name}/report`` (the oracle's report as an HTML page; same handler and the same
refusals as ``GET /tests/{name}``, whose corpus it reuses at the report's path).

Credentials are refused before any lookup (401), names that are not a configured test are 404 ``test_not_found``
(JSON, like every refusal), methods and deeper paths have no route. A valid request, however odd, is a 200 HTML
page that holds no token and no user key.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.conftest import PROFILE_TOKEN, WEBHOOK_TOKEN
from tests.hostile import corpus_oracle_api as api
from tests.hostile.support import ORACLE_TOKEN, Case, Route

ROUTE = Route(handler="oracle_api", method="GET", path="/tests/{name}/report")
ID_PREFIX = "oracle_report"
SUCCESS_CONTENT_TYPE = "text/html"
REPORT = f"{api.KNOWN}/report"


def prepare(aws: dict[str, Any], lambda_context: Any) -> None:
    """The evaluation ``GET /tests/{name}``'s corpus stores, made once for both (a second is not due yet)."""
    if api.__name__ not in aws["prepared"]:
        api.prepare(aws, lambda_context)
        aws["prepared"].add(api.__name__)


def verify_accepted(case: Case, page: str, aws: dict[str, Any]) -> None:
    assert page.startswith("<!DOCTYPE html>") and "new-checkout-health" in page, page[:300]
    assert ORACLE_TOKEN not in page and WEBHOOK_TOKEN not in page and PROFILE_TOKEN not in page


CASES: list[Case] = [
    *(replace(case, path=f"{case.path}/report") for case in api.CASES if not case.gateway_404),
    api.gateway_404("post", "POST", REPORT),
    api.gateway_404("put", "PUT", REPORT),
    api.gateway_404("delete", "DELETE", REPORT),
    api.gateway_404("patch", "PATCH", REPORT),
    api.gateway_404("deeper_path", path=f"{REPORT}/svg"),
    api.gateway_404("empty_name", path="/tests//report"),
]
