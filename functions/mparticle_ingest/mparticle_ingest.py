"""Lambda handler for the mParticle-compatible ingest routes.

* ``POST /mparticle/v2/events`` — one batch (Events API), HTTP Basic auth.
* ``POST /mparticle/v2/bulkevents`` — up to 100 batches, HTTP Basic auth.
* ``POST /mparticle/webhook`` — mParticle's outbound webhook, the configured Authorization value.

Point the official SDKs at ``<bridge>/mparticle/v2``. Accepted batches are enqueued for the router
before the reply (202); refusals use mParticle's status codes and ``errors`` body.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from flagbridge import runtime
from flagbridge.api import install_error_handlers, json_response
from flagbridge.auth import require_authorization_value, require_basic_auth
from flagbridge.body import request_json
from flagbridge.errors import RequestError
from flagbridge.forwarding.ingest import BatchIngestResult, BatchRequestError, IngestSource
from flagbridge.observability import logger, metrics, tracer
from flagbridge.routing import HttpRouter, Response

app = HttpRouter()
install_error_handlers(app)

ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 413: "PAYLOAD_TOO_LARGE", 415: "BAD_REQUEST"}


@app.exception_handler(RequestError)
def _mparticle_error(exc: RequestError) -> Response:
    """Our JSON error plus mParticle's ``errors`` list, so SDKs and people both get the reason."""
    details = exc.errors if isinstance(exc, BatchRequestError) and exc.errors else [exc.message]
    code = ERROR_CODES.get(exc.status, "BAD_REQUEST")
    logger.info("mParticle request refused", extra={"status": exc.status, "code": exc.code})
    return json_response(
        exc.status,
        {"error": exc.code, "message": exc.message, "errors": [{"code": code, "message": m} for m in details[:50]]},
    )


def _accept(*, bulk: bool, source: IngestSource) -> Response:
    event = app.current_event
    settings = runtime.settings()
    limits = settings.config.limits
    document = request_json(
        event, max_body_bytes=limits.max_cdp_request_bytes, max_decompressed_bytes=limits.max_cdp_request_bytes * 4
    )
    ingest = runtime.batch_ingest()
    result: BatchIngestResult = ingest(document, bulk=bulk, source=source, request_id=event.request_context.request_id)
    metrics.add_metric(name="BatchesAccepted", unit=MetricUnit.Count, value=result.accepted)
    metrics.add_metric(name="BatchesQuarantined", unit=MetricUnit.Count, value=result.quarantined)
    logger.info("mParticle batches ingested", extra={"source": source, "accepted": result.accepted})
    return json_response(202, result.summary())


@app.post("/mparticle/v2/events")
def events() -> Response:
    require_basic_auth(app.current_event.headers, runtime.mparticle_credentials())
    return _accept(bulk=False, source="events_api")


@app.post("/mparticle/v2/bulkevents")
def bulk_events() -> Response:
    require_basic_auth(app.current_event.headers, runtime.mparticle_credentials())
    return _accept(bulk=True, source="bulk_events_api")


@app.post("/mparticle/webhook")
def webhook() -> Response:
    require_authorization_value(app.current_event.headers, runtime.mparticle_webhook_auth())
    return _accept(bulk=False, source="webhook")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)


runtime.init_complete(reads_configuration=True)
