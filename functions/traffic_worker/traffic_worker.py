"""Lambda handler of the shard queue: send each shard of a test run, exactly once in effect.

One shard per invocation (the event source's batch size is 1; the function's maximum concurrency is the run's
parallelism). :class:`flagbridge.runs.consumer.ShardConsumer` hands each record to
:class:`flagbridge.runs.worker.ShardWorker` (claim, resume, send, record), keeps a shard message that can never be
sent in the quarantine, and hands back (visible again when it can go on) a shard that must wait or failed. Here:
one log line and metric per shard, one per failure, and the partial batch response.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from flagbridge import runtime
from flagbridge.observability import logger, metrics, tracer
from flagbridge.runs.consumer import ShardConsumer  # every invocation uses it: loaded at init


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    consumer: ShardConsumer = runtime.shard_consumer()
    batch = consumer.process(event.get("Records", []), context.get_remaining_time_in_millis)
    for exc in batch.errors:
        logger.error("shard failed; handed back", exc_info=exc, extra={"error_type": type(exc).__name__})
    for result in batch.results:
        logger.info(
            "shard",
            extra={
                "outcome": result.outcome,
                "run_id": result.run_id,
                "shard": result.shard,
                "sent": result.sent,
                "detail": result.detail,
            },
        )
        metrics.add_metric(name="TestRequestsSent", unit=MetricUnit.Count, value=result.sent)
    return batch.batch_response()


runtime.init_complete(reads_configuration=True)
