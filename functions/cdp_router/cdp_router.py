"""Lambda handler for the batches queue: route mParticle batches to per-destination queues.

Plan validation, tester resolution and per-destination filters run before any fan-out
(:class:`flagbridge.forwarding.router_service.RouterService`). Partial batch failures are reported
(``ReportBatchItemFailures``); the profile-mark lookup is done in bulk for the whole SQS batch, which
is why this handler builds the response itself rather than with a per-record processor.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from flagbridge import runtime
from flagbridge.forwarding.router_service import RouterService  # every batch uses it: loaded at init
from flagbridge.observability import NAMESPACE, logger, metrics, tracer
from flagbridge.queues import queue_records


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = queue_records(event)
    router: RouterService = runtime.cdp_router()
    result = router.process(records)
    for destination, reasons in result.counts.items():
        for reason, count in reasons.items():
            with single_metric(name="Decisions", unit=MetricUnit.Count, value=count, namespace=NAMESPACE) as metric:
                metric.add_dimension(name="destination", value=destination)
                metric.add_dimension(name="reason", value=reason)
    metrics.add_metric(name="BatchesRouted", unit=MetricUnit.Count, value=result.batches)
    logger.info(
        "batches routed",
        extra={
            "records": len(records),
            "batches": result.batches,
            "destination_messages": result.destination_messages,
            "decisions": result.counts,
            "failed_records": len(result.failed_message_ids),
        },
    )
    return result.batch_response()


runtime.init_complete(reads_configuration=True)
