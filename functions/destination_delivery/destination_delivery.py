"""Lambda handler for the destination queues: deliver each SQS batch to its destination.

One function consumes every destination's own queue (one event source mapping per queue, each with its
own concurrency cap and DLQ), so a destination that is down only backs up its own queue.

Partial batch failures (``ReportBatchItemFailures``) are reported with ``flagbridge.queues`` like the other
consumers, not with Powertools' BatchProcessor: the Split messages of a batch are delivered together
(:meth:`DeliveryService.deliver_batch` claims their events in bulk and packs them into shared
``/events/bulk`` requests), so one request's outcome decides several records, which a per-record handler
cannot express. The service returns each record's result; this module keeps undeliverable messages in the
quarantine, reports the failed ones and emits metrics and one log line per destination (counts only).
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from collections import Counter
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from flagbridge import runtime
from flagbridge.cdp.config import CompiledDestination
from flagbridge.forwarding.delivery import BatchOutcome, DeliveryService, MessageResult, UndeliverableMessage
from flagbridge.forwarding.destinations import (
    EventBridgeSink,
    FirehoseSink,
    RetryableDeliveryError,
    RetryPolicy,
    Sink,
    SnsSink,
    SplitEventsClient,
    SqsSink,
    Urllib3Client,
    WebhookSink,
)
from flagbridge.observability import NAMESPACE, logger, metrics, tracer
from flagbridge.quarantine import put_message
from flagbridge.queues import QueueRecord, batch_item_failures, queue_records

QUARANTINE_SOURCE = "destination-delivery"


@cache
def http() -> Urllib3Client:
    return Urllib3Client()


def split_client(destination: CompiledDestination) -> SplitEventsClient:
    options: Any = destination.spec.options
    return SplitEventsClient(http(), options.events_url, lambda: runtime.secret(options.sdk_key_secret), RetryPolicy())


def sink(destination: CompiledDestination) -> Sink:
    options: Any = destination.spec.options
    if destination.type == "webhook":
        secret_name = options.authorization_secret
        return WebhookSink(
            http(), options.url, lambda: runtime.secret(secret_name) if secret_name else None, RetryPolicy()
        )
    if destination.type == "sqs":
        return SqsSink(runtime.aws_client("sqs"), options.queue_url)
    if destination.type == "sns":
        return SnsSink(runtime.aws_client("sns"), options.topic_arn)
    if destination.type == "eventbridge":
        return EventBridgeSink(
            runtime.aws_client("events"), options.event_bus_name, options.detail_type, options.source
        )
    if destination.type == "firehose":
        return FirehoseSink(runtime.aws_client("firehose"), options.stream_name)
    raise UndeliverableMessage(f"no adapter for destination type {destination.type!r}")


@cache
def service() -> DeliveryService:
    config = runtime.settings().config
    if config.cdp is None:
        raise UndeliverableMessage("the configuration has no 'cdp' section")
    return DeliveryService(
        config.cdp, runtime.delivery_ledger(), split_client, sink, runtime.destination_dead_letter_sender
    )


def deliver(records: list[QueueRecord], context: Any) -> BatchOutcome:
    try:
        return service().deliver_batch(records, getattr(context, "get_remaining_time_in_millis", None))
    except UndeliverableMessage as exc:  # no 'cdp' configuration: no message can be delivered
        return BatchOutcome([MessageResult(record.message_id, error=exc) for record in records])


def quarantine_undeliverable(record: QueueRecord, error: Exception) -> bool:
    """Keep a message that can never be delivered with the reason instead of cycling it to the DLQ."""
    try:
        put_message(
            runtime.quarantine(),
            QUARANTINE_SOURCE,
            record.message_id,
            reason="undeliverable",
            detail=str(error),
            item=record.body,
        )
    except Exception as exc:  # not kept yet: redelivered, and kept next time
        logger.warning("quarantine write failed", extra={"error": type(exc).__name__})
        return False
    return True


def failure_reason(error: Exception) -> str:
    """Our delivery errors say what happened (status, counts); of anything else only the type is logged."""
    return str(error)[:200] if isinstance(error, RetryableDeliveryError) else type(error).__name__


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = queue_records(event)
    try:
        outcome = deliver(records, context)
    except Exception as exc:  # e.g. the configuration: every record is retried (reported, not raised)
        logger.error("delivery failed for the whole batch", extra={"error": type(exc).__name__})
        return batch_item_failures(record.message_id for record in records)
    failed: list[str] = []
    undeliverable = 0
    reasons: Counter[str] = Counter()
    for record, result in zip(records, outcome.results, strict=True):
        if result.error is None:
            continue
        if result.undeliverable:
            undeliverable += 1
            if not quarantine_undeliverable(record, result.error):
                failed.append(record.message_id)
        else:
            failed.append(record.message_id)
            reasons[failure_reason(result.error)] += 1
    messages: Counter[str] = Counter()
    failed_messages: Counter[str] = Counter()
    for result in outcome.results:
        if result.outcome is not None:
            messages[result.outcome.destination] += 1
            failed_messages[result.outcome.destination] += result.failed
    for destination, total in outcome.totals().items():
        for name, value in (
            ("Delivered", total.sent),
            ("DuplicatesSkipped", total.duplicates),
            ("DeadLettered", total.dead_lettered),
        ):
            if value:
                with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
                    metric.add_dimension(name="destination", value=destination)
        logger.info(
            "delivered",
            extra={
                "destination": destination,
                "messages": messages[destination],
                "sent": total.sent,
                "duplicates": total.duplicates,
                "dead_lettered": total.dead_lettered,
                "requests": total.requests,
                "failed_messages": failed_messages[destination],
            },
        )
    if failed or undeliverable or outcome.problems:
        logger.warning(
            "delivery incomplete",
            extra={
                "records": len(records),
                "failed_records": len(failed),
                "undeliverable_records": undeliverable,
                "reasons": dict(reasons),
                "ledger_problems": outcome.problems,
            },
        )
    return batch_item_failures(failed)


runtime.init_complete()
