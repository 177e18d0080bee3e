"""Lambda handler for the impressions queue: SQS batch -> DynamoDB profiles.

Reports partial batch failures (``ReportBatchItemFailures``). The records are aggregated across the
whole batch before any write, which Powertools' per-record BatchProcessor cannot do, so the response
is built by :class:`flagbridge.profiles.processor.ImpressionProcessor` in the same documented shape.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from flagbridge import runtime
from flagbridge.observability import logger, metrics, tracer
from flagbridge.profiles.processor import ImpressionProcessor  # every batch uses it: loaded at init
from flagbridge.queues import queue_records


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = queue_records(event)
    processor: ImpressionProcessor = runtime.impressions_processor()
    result = processor.process(records)
    metrics.add_metric(name="ImpressionsProcessed", unit=MetricUnit.Count, value=result.new_impressions)
    metrics.add_metric(name="ImpressionDuplicates", unit=MetricUnit.Count, value=result.duplicates)
    metrics.add_metric(name="ProfileWrites", unit=MetricUnit.Count, value=result.writes)
    metrics.add_metric(name="ProfileWriteConflicts", unit=MetricUnit.Count, value=result.conflicts)
    logger.info(
        "impression batch processed",
        extra={
            "records": len(records),
            "impressions": result.impressions,
            "new": result.new_impressions,
            "duplicates": result.duplicates,
            "pairs": result.pairs,
            "writes": result.writes,
            "failed_records": len(result.failed_message_ids),
        },
    )
    return result.batch_response()


runtime.init_complete(reads_configuration=True)
