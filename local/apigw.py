"""Build the API Gateway HTTP API (payload format 2.0) event that Lambda receives for a request.

Used by the local runner (for every real HTTP request) and by ``local.make_events`` (for ``events/``),
so both produce exactly what API Gateway would send.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

TEXT_TYPES = ("application/json", "text/", "application/xml", "application/x-www-form-urlencoded")


def _is_text(headers: Mapping[str, str], body: bytes) -> bool:
    if headers.get("content-encoding", "").lower() in ("gzip", "x-gzip", "deflate", "br"):
        return False
    content_type = headers.get("content-type", "").lower()
    if not any(content_type.startswith(prefix) for prefix in TEXT_TYPES):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def http_api_event(
    *,
    method: str,
    path: str,
    route_key: str,
    raw_query: str = "",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    path_parameters: Mapping[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """An HTTP API v2 event. Header names are lower-cased and repeated headers comma-joined, as API Gateway does."""
    lowered: dict[str, str] = {}
    for name, value in (headers or {}).items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    timestamp = time.time() if now is None else now
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": request_id or str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": datetime.fromtimestamp(timestamp, tz=UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(timestamp * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body:
        if _is_text(lowered, body):
            event["body"] = body.decode("utf-8")
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def sqs_event(
    queue_arn: str, messages: list[tuple[str, str, int]], region: str = "us-east-1", sent_at_ms: int | None = None
) -> dict[str, Any]:
    """An SQS event source mapping event for (message_id, body, receive_count) triples, sent at ``sent_at_ms``."""
    # None: now (the local runner); the sample events use a fixed time so that regenerating them changes nothing.
    now_ms = str(int(time.time() * 1000) if sent_at_ms is None else sent_at_ms)
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"local-{message_id}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "SentTimestamp": now_ms,
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message_id, body, receive_count in messages
        ]
    }
