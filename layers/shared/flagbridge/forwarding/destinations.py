"""Destination adapters: how a routed payload reaches Split, a webhook, or an AWS sink.

The HTTP ones send through :class:`flagbridge.outbound.Outbound`. Every adapter raises
:class:`RetryableDeliveryError` for failures worth retrying (timeouts, dropped connections, 429, 5xx) and
:class:`PermanentDeliveryError` for refusals that will not change on retry (other 4xx), carrying the response so
it can be kept in the destination's DLQ.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from flagbridge.backoff import backoff_delay
from flagbridge.errors import FlagbridgeError
from flagbridge.outbound import Response, TransportError

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class RetryableDeliveryError(FlagbridgeError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(FlagbridgeError):
    def __init__(self, message: str, status: int | None = None, response_body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.response_body = response_body


class HttpClient(Protocol):
    """What the HTTP destinations need of :class:`flagbridge.outbound.Outbound` (or its twin)."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response: ...


@dataclass
class RetryPolicy:
    """In-invocation retries: exponential backoff with full jitter, honouring ``Retry-After``."""

    attempts: int = 4
    base_seconds: float = 0.5
    cap_seconds: float = 8.0
    budget_seconds: float = 25.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None


def post_with_retries(
    client: HttpClient, url: str, body: bytes, headers: Mapping[str, str], policy: RetryPolicy
) -> int:
    """POST until a 2xx; raises Retryable (attempts/budget exhausted) or Permanent (4xx) errors."""
    rng = policy.rng or random.Random()
    started = time.monotonic()
    last: RetryableDeliveryError | None = None
    for attempt in range(1, policy.attempts + 1):
        retry_after_header: str | None = None
        try:
            response = client.post(url, body, headers)
        except TransportError as exc:  # timeouts, refused or dropped connections
            last = RetryableDeliveryError(f"transport error: {exc.kind}")
            last.__cause__ = exc
        except RetryableDeliveryError as exc:
            last = exc
        else:
            if 200 <= response.status < 300:
                return response.status
            if response.status not in RETRYABLE_STATUS:
                raise PermanentDeliveryError(
                    f"destination refused the request with {response.status}", response.status, response.body[:4096]
                )
            retry_after_header = response.headers.get("retry-after")
            last = RetryableDeliveryError(f"destination answered {response.status}")
        if attempt == policy.attempts:
            break
        delay = backoff_delay(attempt, policy.base_seconds, policy.cap_seconds, retry_after_header, rng)
        if time.monotonic() - started + delay > policy.budget_seconds:
            last = RetryableDeliveryError(f"{last}; next retry in {delay:.1f}s exceeds the budget", retry_after=delay)
            break
        policy.sleep(delay)
    assert last is not None
    raise last


class SplitEventsClient:
    """``POST {events_url}/events/bulk`` with ``Authorization: Bearer <SDK key>``; 202 is success."""

    def __init__(self, http: HttpClient, events_url: str, sdk_key: Callable[[], str], policy: RetryPolicy) -> None:
        self._http = http
        self._url = events_url.rstrip("/") + "/events/bulk"
        self._sdk_key = sdk_key
        self._policy = policy

    def send(self, body: bytes) -> None:
        headers = {
            "Authorization": f"Bearer {self._sdk_key()}",
            "Content-Type": "application/json",
            "SplitSDKVersion": "flagbridge-0.1.0",
        }
        post_with_retries(self._http, self._url, body, headers, self._policy)


class WebhookSink:
    """HTTP POST of the filtered batch JSON to a configured URL (optional Authorization secret)."""

    def __init__(
        self, http: HttpClient, url: str, authorization: Callable[[], str | None], policy: RetryPolicy
    ) -> None:
        self._http = http
        self._url = url
        self._authorization = authorization
        self._policy = policy

    def deliver(self, payload: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "flagbridge/0.1.0"}
        token = self._authorization()
        if token:
            headers["Authorization"] = token
        post_with_retries(self._http, self._url, json.dumps(payload).encode(), headers, self._policy)


def _aws_call(call: Callable[[], Any]) -> Any:
    """Run a boto3 call; client-side validation errors are permanent, everything else retryable."""
    try:
        return call()
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""
        if code in {
            "ValidationException",
            "InvalidParameterValue",
            "AccessDenied",
            "AccessDeniedException",
            "ResourceNotFoundException",
            "NotFound",
            "AWS.SimpleQueueService.NonExistentQueue",
        }:
            raise PermanentDeliveryError(f"AWS refused the delivery: {code}") from exc
        raise RetryableDeliveryError(f"AWS delivery failed: {code or type(exc).__name__}") from exc


class SqsSink:
    def __init__(self, client: Any, queue_url: str) -> None:
        self._client, self._queue_url = client, queue_url

    def deliver(self, payload: dict[str, Any]) -> None:
        _aws_call(lambda: self._client.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(payload)))


class SnsSink:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client, self._topic_arn = client, topic_arn

    def deliver(self, payload: dict[str, Any]) -> None:
        _aws_call(lambda: self._client.publish(TopicArn=self._topic_arn, Message=json.dumps(payload)))


class EventBridgeSink:
    def __init__(self, client: Any, event_bus_name: str, detail_type: str, source: str = "flagbridge") -> None:
        self._client, self._bus, self._detail_type, self._source = client, event_bus_name, detail_type, source

    def deliver(self, payload: dict[str, Any]) -> None:
        entry = {
            "EventBusName": self._bus,
            "Source": self._source,
            "DetailType": self._detail_type,
            "Detail": json.dumps(payload),
        }
        response = _aws_call(lambda: self._client.put_events(Entries=[entry]))
        if response.get("FailedEntryCount"):
            code = response["Entries"][0].get("ErrorCode", "unknown")
            raise RetryableDeliveryError(f"EventBridge rejected the entry: {code}")


class FirehoseSink:
    def __init__(self, client: Any, stream_name: str) -> None:
        self._client, self._stream = client, stream_name

    def deliver(self, payload: dict[str, Any]) -> None:
        data = (json.dumps(payload) + "\n").encode()
        _aws_call(lambda: self._client.put_record(DeliveryStreamName=self._stream, Record={"Data": data}))


class Sink(Protocol):
    def deliver(self, payload: dict[str, Any]) -> None: ...


# ---- one builder per destination type ------------------------------------------------------------------------


class Adapters(NamedTuple):
    """What the builders need from the composition root (:mod:`flagbridge.runtime`)."""

    http: Callable[[], HttpClient]
    aws_client: Callable[[str], Any]
    secret: Callable[[str], str]


def _webhook_sink(options: Any, adapters: Adapters) -> Sink:
    secret_name = options.authorization_secret
    return WebhookSink(
        adapters.http(), options.url, lambda: adapters.secret(secret_name) if secret_name else None, RetryPolicy()
    )


SINK_BUILDERS: dict[str, Callable[[Any, Adapters], Sink]] = {
    "webhook": _webhook_sink,
    "sqs": lambda options, adapters: SqsSink(adapters.aws_client("sqs"), options.queue_url),
    "sns": lambda options, adapters: SnsSink(adapters.aws_client("sns"), options.topic_arn),
    "eventbridge": lambda options, adapters: EventBridgeSink(
        adapters.aws_client("events"), options.event_bus_name, options.detail_type, options.source
    ),
    "firehose": lambda options, adapters: FirehoseSink(adapters.aws_client("firehose"), options.stream_name),
}
"""Destination type -> its sink, from the destination's options. A new destination type is one entry here."""


def build_sink(destination_type: str, options: Any, adapters: Adapters) -> Sink:
    """The sink of a (non-Split) destination; LookupError names a type without one."""
    builder = SINK_BUILDERS.get(destination_type)
    if builder is None:
        raise LookupError(f"no adapter for destination type {destination_type!r}")
    return builder(options, adapters)


def build_split_client(options: Any, adapters: Adapters) -> SplitEventsClient:
    """The Split events client of a ``split`` destination."""
    return SplitEventsClient(
        adapters.http(), options.events_url, lambda: adapters.secret(options.sdk_key_secret), RetryPolicy()
    )
