"""Lambda handler for ``GET /profiles/{trafficType}/{key}``: one user's profile as JSON.

Bearer-token protected (the token is a Secrets Manager secret). 404 for a user never seen.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.logging import correlation_paths

from flagbridge import runtime
from flagbridge.api import error_response, install_error_handlers, json_response
from flagbridge.auth import require_bearer
from flagbridge.errors import RequestError
from flagbridge.observability import logger, metrics, tracer
from flagbridge.profiles.store import DynamoDBProfileStore  # every request reads it: loaded at init
from flagbridge.profiles.view import profile_document
from flagbridge.routing import HttpRouter, Response

MAX_PARTITION_KEY_BYTES = 2048

app = HttpRouter()
install_error_handlers(app)


@app.get("/profiles/<traffic_type>/<key>")
def get_profile(traffic_type: str, key: str) -> Response:
    require_bearer(app.current_event.headers, runtime.profile_api_token())
    # API Gateway hands over decoded path parameters; the matched raw path segments are only a fallback.
    parameters = app.current_event.path_parameters or {}
    traffic_type = parameters.get("trafficType") or unquote(traffic_type)
    key = parameters.get("key") or unquote(key)
    user_id = f"{traffic_type}#{key}"
    if len(user_id.encode("utf-8", "surrogateescape")) > MAX_PARTITION_KEY_BYTES:
        raise RequestError(400, "key_too_long", "traffic type and key exceed DynamoDB's 2048-byte partition key")
    store: DynamoDBProfileStore = runtime.profile_store()
    found = store.read_profile(user_id)
    if found is None:
        return error_response(404, "profile_not_found", "no profile for this traffic type and key")
    flags, mark = found
    return json_response(200, profile_document(traffic_type, key, flags, mark))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)


runtime.init_complete(reads_configuration=False)
