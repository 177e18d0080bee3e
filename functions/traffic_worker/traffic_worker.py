"""Lambda handler of the shard queue: send each shard of a test run, exactly once in effect.

One shard per invocation (the event source's batch size is 1; the function's maximum concurrency is the run's
parallelism). :class:`flagbridge.runs.worker.ShardWorker` claims, resumes, sends and records. Here:

- a shard message that can never be sent (not JSON, unknown run, a range that is not the run's) is kept in the
  quarantine bucket with its reason and acknowledged;
- a shard another worker holds, one handed back before the invocation times out, or any failure (the claim is
  released first) is reported as a batch item failure after its visibility is set to when it can go on, so it
  comes back in seconds, not after the queue's visibility timeout.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

import contextlib
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from flagbridge import runtime
from flagbridge.observability import logger, metrics, tracer
from flagbridge.quarantine import QuarantineSource, put_message
from flagbridge.queues import batch_item_failures
from flagbridge.runs.shards import ShardMessageError
from flagbridge.runs.worker import ShardResult

RETRY_AFTER_FAILURE_SECONDS = 5


def _retry_in(record: dict[str, Any], seconds: int) -> None:
    queue_url = runtime.settings().shard_queue_url
    if queue_url and record.get("receiptHandle"):
        with contextlib.suppress(Exception):  # at worst it comes back after the queue's visibility timeout
            runtime.aws_client("sqs").change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=max(0, min(seconds, 900))
            )


def process(record: dict[str, Any], context: Any) -> ShardResult:
    message_id = str(record.get("messageId", ""))
    body = record.get("body")
    try:
        return runtime.shard_worker().process(str(body), context.get_remaining_time_in_millis)
    except ShardMessageError as exc:
        put_message(
            runtime.quarantine(),
            QuarantineSource.TRAFFIC_SHARDS,
            message_id,
            reason=exc.reason,
            detail=exc.detail,
            item=body if isinstance(body, str) and len(body) < 100_000 else "<not kept: over 100 kB>",
        )
        return ShardResult("quarantined", detail=exc.reason)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failed: list[str] = []
    for record in event.get("Records", []):
        try:
            result = process(record, context)
        except Exception as exc:
            logger.exception("shard failed; handed back", extra={"error_type": type(exc).__name__})
            _retry_in(record, RETRY_AFTER_FAILURE_SECONDS)
            failed.append(record["messageId"])
            continue
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
        if not result.acknowledged:
            _retry_in(record, result.retry_in_seconds or 0)
            failed.append(record["messageId"])
    return batch_item_failures(failed)


runtime.init_complete()
