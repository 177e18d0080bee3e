"""Every hostile case of every route's corpus (``corpus_*.py``) through its handler on moto.

Each case must get exactly its expected status; a 4xx must be a JSON ``{"error", "message"}`` naming the
problem; no case may get a 5xx or show a traceback; a refusal stores nothing; an acceptance conserves
every item (the corpus' ``verify_accepted``).
"""

from __future__ import annotations

import json
from functools import cache
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import PROFILE_TOKEN, WEBHOOK_TOKEN, drain_queue, load_handler, quarantine_objects
from tests.hostile.support import Case, build_event, corpora

MIN_CASES_PER_ROUTE = 50
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "', '.py", line')


CORPORA = corpora()


def _params() -> list[Any]:
    params = []
    for corpus in CORPORA:
        route = getattr(corpus, "ID_PREFIX", corpus.ROUTE.handler)  # a handler serving several routes sets one
        for case in corpus.CASES:
            marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
            params.append(pytest.param(corpus, case, id=f"{route}:{case.name}", marks=marks))
    return params


@cache
def _handler(name: str) -> ModuleType:
    """Each function's module loaded once, as a warm Lambda container would reuse it."""
    return load_handler(name)


@pytest.mark.parametrize(("corpus", "case"), _params())
def test_hostile_case(corpus: ModuleType, case: Case, hostile_aws: dict[str, Any], lambda_context: Any) -> None:
    aws = hostile_aws
    # Given the route's state (if any) and the event API Gateway would send for this request
    if hasattr(corpus, "prepare") and corpus.__name__ not in aws["prepared"]:
        corpus.prepare(aws, lambda_context)
        aws["prepared"].add(corpus.__name__)
    handler = _handler(corpus.ROUTE.handler)
    quarantined_before = set(quarantine_objects(aws["s3"]))
    event = build_event(corpus.ROUTE, case)

    # When the function handles it
    response = handler.lambda_handler(event, lambda_context)

    # Then: exactly the expected status, never a 5xx, never a traceback or a secret in the body
    status = response["statusCode"]
    text = response.get("body") or ""
    assert status < 500, f"{case.name}: {status} {text[:500]}"
    assert status == case.status, f"{case.name}: {status} {text[:500]}"
    assert not any(marker in text for marker in TRACEBACK_MARKERS), text[:500]
    assert WEBHOOK_TOKEN not in text and PROFILE_TOKEN not in text
    # refusals are JSON; a route whose answer is a page for people (the oracle's report) names its own type
    success_type = getattr(corpus, "SUCCESS_CONTENT_TYPE", "application/json")
    content_type = "application/json" if status >= 400 else success_type
    assert response.get("headers", {}).get("Content-Type", "").startswith(content_type)
    body = json.loads(text) if content_type == "application/json" else text

    if status >= 400:
        # a refusal names the problem and stores nothing
        keys = corpus.error_body_keys(case) if hasattr(corpus, "error_body_keys") else {"error", "message"}
        assert set(body) == keys, body
        assert body["error"] == case.error, body
        assert isinstance(body["message"], str) and body["message"].strip(), body
        assert drain_queue(aws["sqs"], aws["queue_url"]) == []
        assert set(quarantine_objects(aws["s3"])) == quarantined_before
        if hasattr(corpus, "verify_refused"):
            corpus.verify_refused(case, body, aws)
    elif hasattr(corpus, "verify_accepted"):
        corpus.verify_accepted(case, body, aws)


def test_every_route_has_enough_cases() -> None:
    for corpus in CORPORA:
        names = [case.name for case in corpus.CASES]
        assert len(names) >= MIN_CASES_PER_ROUTE, corpus.__name__
        assert len(set(names)) == len(names), f"duplicate case names in {corpus.__name__}"


def test_cases_are_well_formed() -> None:
    for corpus in CORPORA:
        for case in corpus.CASES:
            assert 200 <= case.status < 500, case.name
            assert (case.error is not None) == (case.status >= 400), case.name
            if case.gateway_404:
                assert (case.status, case.error) == (404, "not_found"), case.name
                # no route of the API matches (method and path), so API Gateway answers before the function
                assert corpus.ROUTE.match(case.path) is None or case.method != corpus.ROUTE.method, case.name
