"""Lambda handler for the oracle lane: routed tester events -> the oracle's counters, exactly once.

The lane's messages are what the router decided for the ``oracle`` destination (after the data plan and tester
resolution). :class:`flagbridge.oracle.service.CounterService` counts the whole SQS batch, reads the profiles it
needs for attribution in one bulk read, and writes each counter it touched once. Messages whose counters could
not be written are reported for redelivery (``ReportBatchItemFailures``); the counters that did take them refuse
them the second time. A message that is not a lane message is kept in the quarantine with the reason.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from flagbridge import runtime
from flagbridge.observability import logger, metrics, tracer
from flagbridge.oracle.counting import Counter, traffic_types_by_identity
from flagbridge.oracle.service import CounterService, oracle_config
from flagbridge.quarantine import QuarantineSource, put_message
from flagbridge.queues import batch_item_failures, queue_records


@cache
def service() -> CounterService:
    config = runtime.settings().config
    counter = Counter(oracle_config(config), traffic_types_by_identity(config.identity_mapping.split_environments))
    store = runtime.profile_store()
    return CounterService(counter, runtime.oracle_counters(), lambda pairs: store.load(pairs, [])[0])


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = queue_records(event)
    try:
        result = service().process(records)
    except Exception as exc:  # configuration or the profile read: the whole batch comes back
        logger.error("oracle counting failed for the whole batch", extra={"error": type(exc).__name__})
        return batch_item_failures(record.message_id for record in records)
    failed = list(result.failed_message_ids)
    for record, reason in result.unreadable:
        try:
            put_message(runtime.quarantine(), QuarantineSource.ORACLE_COUNTER, record.message_id, reason="unreadable",
                        detail=reason, item=record.body)  # fmt: skip
        except Exception as exc:  # not kept yet: redelivered, and kept next time
            logger.warning("quarantine write failed", extra={"error": type(exc).__name__})
            failed.append(record.message_id)
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
            "failed_records": len(failed),
            "errors": result.errors,
        },
    )
    return batch_item_failures(failed)


runtime.init_complete()
