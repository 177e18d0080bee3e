"""Lambda handler for the destination queues: deliver each message to its destination.

One function consumes every destination's own queue (one event source mapping per queue, each with its
own concurrency cap and DLQ), so a destination that is down only backs up its own queue. Records are
independent, so Powertools' BatchProcessor reports partial batch failures.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from flagbridge import runtime
from flagbridge.cdp.config import CompiledDestination
from flagbridge.forwarding.delivery import DeliveryService, UndeliverableMessage
from flagbridge.forwarding.destinations import (
    EventBridgeSink,
    FirehoseSink,
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

QUARANTINE_SOURCE = "destination-delivery"

# Report every failed record, even when all fail, instead of failing the invocation (same retry, clearer logs).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


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


def record_handler(record: SQSRecord) -> None:
    try:
        outcome = service().deliver(record.body)
    except UndeliverableMessage as exc:
        # Never deliverable as is: keep it with the reason instead of cycling it to the DLQ.
        put_message(
            runtime.quarantine(),
            QUARANTINE_SOURCE,
            record.message_id,
            reason="undeliverable",
            detail=str(exc),
            item=record.body,
        )
        return
    for name, value in (
        ("Delivered", outcome.sent),
        ("DuplicatesSkipped", outcome.duplicates),
        ("DeadLettered", outcome.dead_lettered),
    ):
        if value:
            with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
                metric.add_dimension(name="destination", value=outcome.destination)
    logger.info(
        "delivered",
        extra={
            "destination": outcome.destination,
            "sent": outcome.sent,
            "duplicates": outcome.duplicates,
            "dead_lettered": outcome.dead_lettered,
            "requests": outcome.requests,
        },
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )


runtime.init_complete()
