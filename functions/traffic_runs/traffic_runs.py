"""Lambda handler of test runs: ``POST /runs`` (start), ``GET /runs/{id}`` (status) and the run schedule.

Bearer-token protected (the token is a Secrets Manager secret). A started run answers 202 with its shards and
where its manifest goes; a refused one 400/409 with a JSON reason; 503 when its tester pool could not be
registered or its shards could not all be enqueued (repeat the same request). A plan naming an oracle test the
stack's configuration does not have, or a metric that does not count the run's results, is a 400
``invalid_oracle``; a target that does not answer (no HTTP answer at all to ``OPTIONS *``) a 422
``target_not_answering``. The EventBridge schedule (disabled by default) invokes this function with
``{"schedule": <a run request>}``; its plan and model are then keys under ``plans/`` in the manifest bucket.
:mod:`flagbridge.runs.service` does the work.
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
from flagbridge.body import request_json
from flagbridge.errors import RequestError
from flagbridge.observability import logger, metrics, tracer
from flagbridge.routing import HttpRouter, Response
from flagbridge.runs.service import RunService  # every request uses it: loaded at init
from flagbridge.runs.spec import RUN_ID

MAX_BODY_BYTES = 2_500_000
RUN_REQUEST = "the body must be a JSON object (the run request)"

app = HttpRouter()
install_error_handlers(app)


@app.post("/runs")
def start_run() -> Response:
    require_bearer(app.current_event.headers, runtime.traffic_api_token())
    service: RunService = runtime.run_service()
    status, body = service.start(request_json(app.current_event, max_body_bytes=MAX_BODY_BYTES, blank=RUN_REQUEST))
    logger.info("run start", extra={"run_id": body.get("run_id"), "status": status, "shards": body.get("shards")})
    return json_response(status, body)


@app.get("/runs/<run_id>")
def get_run(run_id: str) -> Response:
    require_bearer(app.current_event.headers, runtime.traffic_api_token())
    run_id = (app.current_event.path_parameters or {}).get("id") or unquote(run_id)
    if not RUN_ID.fullmatch(run_id):
        return error_response(400, "invalid_run_id", "a run id is 1-64 letters, digits, '.', '_' or '-'")
    service: RunService = runtime.run_service()
    document = service.status(run_id)
    if document is None:
        return error_response(404, "run_not_found", "no run with this id")
    return json_response(200, document)


def scheduled_run(request: Any) -> dict[str, Any]:
    """The schedule's run: started like ``POST /runs`` (no token: EventBridge invokes the function itself)."""
    try:
        service: RunService = runtime.run_service()
        status, body = service.start(request)
    except RequestError as exc:
        # the code, not the message: a refused pool's message names its keys (user keys, emails)
        logger.error("scheduled run refused", extra={"status": exc.status, "code": exc.code})
        return {"http_status": exc.status, "error": exc.code, "message": exc.message}
    logger.info("scheduled run started", extra={"run_id": body.get("run_id"), "shards": body.get("shards")})
    return {**body, "http_status": status}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if isinstance(event, dict) and "schedule" in event and "requestContext" not in event:
        return scheduled_run(event["schedule"])
    return app.resolve(event, context)


runtime.init_complete(reads_configuration=True)
