"""Lambda handler for the tester registry: ``PUT``/``DELETE /testers/{trafficType}/{key}``, ``GET /testers``.

Bearer-token protected (a Secrets Manager secret; a JSON object of named tokens tells callers apart in the
audit trail). The work is :class:`flagbridge.testers.registry.TesterRegistry`'s; logs carry a hash of the user
id, never the key.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any
from urllib.parse import unquote_to_bytes

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from flagbridge import runtime
from flagbridge.api import error_response, install_error_handlers, json_response
from flagbridge.auth import require_named_bearer
from flagbridge.body import request_json
from flagbridge.errors import RequestError
from flagbridge.observability import logger, metrics, tracer
from flagbridge.routing import HttpRouter, Response
from flagbridge.testers.registry import (
    InvalidTesterError,
    RegistryUnavailableError,
    parse_page_size,
    user_hash,
    user_id,
)

MAX_BODY_BYTES = 4096  # {"expiresAt": ..., "reason": <200 characters>} fits many times over
TOKEN_ACTOR = "token:"

app = HttpRouter()
install_error_handlers(app)


@app.exception_handler(InvalidTesterError)
def _invalid(exc: InvalidTesterError) -> Response:
    logger.info("registry request refused", extra={"status": 400, "code": exc.code})
    return error_response(400, exc.code, exc.message)


@app.exception_handler(RegistryUnavailableError)
def _unavailable(exc: RegistryUnavailableError) -> Response:
    logger.error("tester registry unavailable", extra={"detail": str(exc)})
    return error_response(503, "unavailable", "the tester registry could not be written; retry later")


def _caller() -> str:
    """The audit trail's "who": the name of the bearer token the request presented."""
    return TOKEN_ACTOR + require_named_bearer(app.current_event.headers, runtime.testers_api_tokens())


def _path_ids(traffic_type: str, key: str) -> tuple[str, str]:
    """The path's traffic type and key, decoded strictly from the raw path segments the route matched.

    Not ``pathParameters``: a gateway decodes ``%FF`` or ``%ED%A0%80`` to U+FFFD, a key the client never sent.
    """
    return _decoded(traffic_type, "invalid_traffic_type", "trafficType"), _decoded(key, "invalid_key", "key")


def _decoded(segment: str, code: str, name: str) -> str:
    try:
        return unquote_to_bytes(segment).decode("utf-8")  # strict: lone surrogates and stray bytes are refused
    except UnicodeError:  # undecodable bytes, or a raw segment already holding a lone surrogate
        raise InvalidTesterError(code, f"{name} in the path is not valid UTF-8 percent-encoding") from None


def _json_object() -> dict[str, Any]:
    document = request_json(app.current_event, max_body_bytes=MAX_BODY_BYTES)
    if not isinstance(document, dict):
        raise RequestError(400, "invalid_body", 'the body must be a JSON object: {"expiresAt": ..., "reason": ...}')
    return document


@app.put("/testers/<traffic_type>/<key>")
def put_tester(traffic_type: str, key: str) -> Response:
    actor = _caller()
    traffic_type, key = _path_ids(traffic_type, key)
    registration = runtime.tester_registry().register_body(traffic_type, key, _json_object(), actor)
    logger.info(
        "tester registered",
        extra={"user": user_hash(registration.user_id), "expires_at": registration.expires_at, "actor_kind": "token"},
    )
    metrics.add_metric(name="TestersRegistered", unit=MetricUnit.Count, value=1)
    return json_response(200, registration.document())


@app.delete("/testers/<traffic_type>/<key>")
def delete_tester(traffic_type: str, key: str) -> Response:
    actor = _caller()
    traffic_type, key = _path_ids(traffic_type, key)
    reason = (app.current_event.query_string_parameters or {}).get("reason")
    if not runtime.tester_registry().remove(traffic_type, key, actor, reason):
        return error_response(404, "tester_not_found", "no registered tester with this traffic type and key")
    logger.info("tester removed", extra={"user": user_hash(user_id(traffic_type, key)), "actor_kind": "token"})
    metrics.add_metric(name="TestersRemoved", unit=MetricUnit.Count, value=1)
    return json_response(200, {"trafficType": traffic_type, "key": key, "removed": True})


@app.get("/testers")
def list_testers() -> Response:
    _caller()
    query = app.current_event.query_string_parameters or {}
    page = runtime.tester_registry().page(parse_page_size(query.get("limit")), query.get("cursor") or None)
    logger.info("testers listed", extra={"count": len(page.registrations), "more": page.cursor is not None})
    return json_response(200, {"testers": [r.document() for r in page.registrations], "nextCursor": page.cursor})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)


runtime.init_complete(reads_configuration=True)
