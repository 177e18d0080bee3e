"""Lambda handler for the destination queues: deliver each SQS batch to its destination.

One function consumes every destination's own queue (one event source mapping per queue, each with its
own concurrency cap and DLQ), so a destination that is down only backs up its own queue.

Partial batch failures (``ReportBatchItemFailures``) are reported with ``flagbridge.queues`` like the other
consumers, not with Powertools' BatchProcessor: the Split messages of a batch are delivered together
(:meth:`DeliveryService.deliver_batch` claims their events in bulk and packs them into shared
``/events/bulk`` requests), so one request's outcome decides several records, which a per-record handler
cannot express. The service keeps undeliverable messages in the quarantine; the batch outcome reports its
metrics and one log line per destination (counts only).
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any

from flagbridge import runtime
from flagbridge.forwarding.delivery import DeliveryService  # every batch uses it: loaded at init
from flagbridge.observability import logger, metrics, tracer
from flagbridge.queues import batch_item_failures, queue_records


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = queue_records(event)
    try:
        service: DeliveryService = runtime.delivery_service()
        outcome = service.process(records, getattr(context, "get_remaining_time_in_millis", None))
    except Exception as exc:  # e.g. the configuration: every record is retried (reported, not raised)
        logger.error("delivery failed for the whole batch", extra={"error": type(exc).__name__})
        return batch_item_failures(record.message_id for record in records)
    outcome.report()
    return batch_item_failures(outcome.failed_message_ids())


runtime.init_complete(reads_configuration=True)
