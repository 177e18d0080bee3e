"""Lambda handler for the oracle lane: routed tester events -> the oracle's counters, exactly once.

The lane's messages are what the router decided for the ``oracle`` destination (after the data plan and tester
resolution). :class:`flagbridge.oracle.service.CounterService` counts the whole SQS batch, reads the profiles it
needs for attribution in one bulk read, and writes each counter it touched once. Messages whose counters could
not be written are reported for redelivery (``ReportBatchItemFailures``); the counters that did take them refuse
them the second time. A message that is not a lane message is kept in the quarantine with the reason (by the
service; redelivered when the quarantine cannot take it).
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from flagbridge import runtime
from flagbridge.observability import logger, metrics, tracer
from flagbridge.oracle.service import CounterService  # every batch uses it: loaded at init
from flagbridge.queues import batch_item_failures, queue_records


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = queue_records(event)
    try:
        service: CounterService = runtime.oracle_counter_service()
        result = service.process(records)
    except Exception as exc:  # configuration or the profile read: the whole batch comes back
        logger.error("oracle counting failed for the whole batch", extra={"error": type(exc).__name__})
        return batch_item_failures(record.message_id for record in records)
    for error in result.quarantine_errors:
        logger.warning("quarantine write failed", extra={"error": error})
    metrics.add_metric(name="OracleEventsCounted", unit=MetricUnit.Count, value=result.events)
    metrics.add_metric(name="OracleCounterWrites", unit=MetricUnit.Count, value=result.writes)
    logger.info(
        "oracle batch counted",
        extra={
            "records": len(records),
            "events": result.events,
            "counters": result.counters,
            "writes": result.writes,
            "redelivered_counters": result.redeliveries,
            "unreadable": len(result.unreadable),
            "failed_records": len(result.failed_message_ids),
            "errors": result.errors,
        },
    )
    return result.batch_response()


runtime.init_complete(reads_configuration=True)
