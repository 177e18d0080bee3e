"""Lambda handler for ``POST /split/impressions``: Split's outgoing impressions webhook.

Authenticates the shared token, decodes the (usually gzipped) JSON array, and hands it to
:func:`flagbridge.impressions.ingest.ingest_body` (``runtime.impressions_ingest()``), which enqueues valid
impressions and quarantines invalid ones. Replies exactly 200 with a summary (Split treats anything else as failure).
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from flagbridge import runtime
from flagbridge.api import install_error_handlers, json_response
from flagbridge.auth import require_shared_token
from flagbridge.body import decode_body, raw_body
from flagbridge.impressions.ingest import IngestResult  # every request ingests: loaded at init
from flagbridge.observability import logger, metrics, tracer
from flagbridge.routing import HttpRouter, Response

app = HttpRouter()
install_error_handlers(app)


@app.post("/split/impressions")
def receive_impressions() -> Response:
    event = app.current_event
    limits = runtime.settings().config.limits
    require_shared_token(event.query_string_parameters, event.headers, runtime.webhook_token())
    data = decode_body(
        raw_body(event.get("body"), bool(event.is_base64_encoded)),
        content_type=event.headers.get("content-type"),
        content_encoding=event.headers.get("content-encoding"),
        max_body_bytes=limits.max_body_bytes,
        max_decompressed_bytes=limits.max_decompressed_bytes,
    )
    ingest = runtime.impressions_ingest()
    result: IngestResult = ingest(data, request_id=event.request_context.request_id)
    metrics.add_metric(name="ImpressionsAccepted", unit=MetricUnit.Count, value=result.accepted)
    metrics.add_metric(name="ImpressionsQuarantined", unit=MetricUnit.Count, value=result.quarantined)
    logger.info(
        "impressions ingested",
        extra={"received": result.received, "accepted": result.accepted, "quarantined": result.quarantined},
    )
    return json_response(200, result.summary())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)


runtime.init_complete(reads_configuration=True)
