"""HTTP API plumbing shared by the route handlers: JSON responses and error mapping.

Every refusal is a JSON body ``{"error": <code>, "message": <text>}`` with a 4xx status; failures on
our side are 5xx with a generic message (details go to the logs, never user data).
"""

from __future__ import annotations

import json
import traceback
from typing import Any

from flagbridge.errors import ConfigError, EnqueueError, RequestError, StoreError
from flagbridge.observability import logger
from flagbridge.routing import HttpRouter, Response


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body, separators=(",", ":")),
        headers=headers or {},
    )


def error_response(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": code, "message": message})


def install_error_handlers(app: HttpRouter) -> None:
    """Map domain exceptions to JSON responses on a function's router."""

    @app.exception_handler(RequestError)
    def _request_error(exc: RequestError) -> Response:
        logger.info("request refused", extra={"status": exc.status, "code": exc.code})
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler([EnqueueError, StoreError])
    def _not_durable(exc: Exception) -> Response:
        # Our own messages (counts and AWS error codes), never request data.
        logger.error("could not store durably; asking the sender to retry", extra={"detail": str(exc)})
        return error_response(503, "unavailable", "the request could not be stored durably; retry later")

    @app.exception_handler(ConfigError)
    def _config_error(exc: ConfigError) -> Response:
        logger.error("configuration error", extra={"detail": str(exc)})
        return error_response(500, "configuration_error", "the bridge is misconfigured; see its logs")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Where it failed (the frames' code), not the exception's text: messages of codec and validation
        # errors quote the offending input, which may be personal data.
        frames = traceback.format_tb(exc.__traceback__)
        logger.error("unexpected error", extra={"error_type": type(exc).__name__, "traceback": frames})
        return error_response(500, "internal_error", "unexpected error; the request was not processed")

    @app.not_found
    def _not_found(_exc: Exception) -> Response:
        return error_response(404, "not_found", "no such route")
