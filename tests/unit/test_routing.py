"""``flagbridge.routing``: the HTTP functions' router keeps Powertools' resolver conventions.

The handler and hostile tiers drive it through the real functions; these pin the conventions one by one.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from flagbridge.routing import HttpRouter, NotFoundError, Response


def http_event(method: str, raw_path: str, stage: str = "$default", **extra: Any) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": raw_path,
        "requestContext": {"http": {"method": method}, "stage": stage, "requestId": "req-1"},
        **extra,
    }


def make_router() -> HttpRouter:
    router = HttpRouter()

    @router.get("/profiles/<traffic_type>/<key>")
    def profile(traffic_type: str, key: str) -> Response:
        event = router.current_event
        body = {
            "tt": traffic_type,
            "key": key,
            "auth": event.headers.get("Authorization"),
            "id": event.request_context.request_id,
        }
        return Response(200, "application/json", json.dumps(body))

    @router.post("/raw")
    def raw() -> Response:
        return Response(201, "application/octet-stream", b"\x00\x01")

    @router.post("/fails")
    def fails() -> Response:
        raise KeyError("boom")

    return router


def test_dynamic_segments_are_keyword_arguments_and_headers_are_case_insensitive() -> None:
    router = make_router()
    event = http_event("GET", "/profiles/user/a%40b.com", headers={"authorization": "Bearer x"})
    result = router.resolve(event)
    assert result["statusCode"] == 200
    assert result["headers"] == {"Content-Type": "application/json"}
    assert result["isBase64Encoded"] is False
    assert result["cookies"] == []
    assert json.loads(result["body"]) == {"tt": "user", "key": "a%40b.com", "auth": "Bearer x", "id": "req-1"}


def test_a_named_stage_is_stripped_from_the_path() -> None:
    result = make_router().resolve(http_event("GET", "/prod/profiles/user/k", stage="prod"))
    assert result["statusCode"] == 200


def test_bytes_bodies_are_base64_encoded() -> None:
    result = make_router().resolve(http_event("POST", "/raw"))
    assert result["isBase64Encoded"] is True
    assert base64.b64decode(result["body"]) == b"\x00\x01"


def test_no_route_is_a_404_through_the_not_found_handler() -> None:
    router = make_router()
    default = router.resolve(http_event("GET", "/raw"))  # wrong method: no route
    assert default["statusCode"] == 404

    @router.not_found
    def custom(exc: Exception) -> Response:
        assert isinstance(exc, NotFoundError)
        return Response(404, "application/json", '{"error":"not_found"}')

    assert json.loads(router.resolve(http_event("GET", "/nowhere/a/b"))["body"]) == {"error": "not_found"}
    assert router.resolve(http_event("GET", "/profiles/only-one"))["statusCode"] == 404


def test_exceptions_go_to_the_handler_of_the_nearest_class_and_unhandled_ones_propagate() -> None:
    router = make_router()
    with pytest.raises(KeyError):
        router.resolve(http_event("POST", "/fails"))

    @router.exception_handler(Exception)
    def anything(exc: Exception) -> Response:
        return Response(500, "application/json", '{"error":"internal"}')

    @router.exception_handler([LookupError, ValueError])
    def lookup(exc: Exception) -> Response:
        return Response(400, "application/json", '{"error":"lookup"}')

    assert router.resolve(http_event("POST", "/fails"))["statusCode"] == 400  # KeyError -> LookupError
    assert router.current_event == {}  # nothing of the request is kept between invocations
