"""Run the whole bridge locally, without Docker or AWS: ``make run`` (``python -m local.runner``).

What it does, all driven by ``template.yaml`` (see :mod:`local.resources`):

1. AWS: starts moto's ``ThreadedMotoServer`` in process on 127.0.0.1 (port ``MOTO_PORT`` or a free one) with fake
   credentials, unless ``AWS_ENDPOINT_URL`` is already set (a moto server, LocalStack or AWS): then it uses that.
2. Creates the template's tables, queues, buckets, secrets, topics, event buses and Firehose streams (idempotent).
3. Sets the union of the functions' resolved environments in ``os.environ`` (``FLAGBRIDGE_CONFIG``: the variable
   if set, else ``layers/shared/config/flagbridge.yaml``), puts the template's layers on ``sys.path`` and imports
   every function's handler module.
4. Serves every ``HttpApi`` route on ``http://127.0.0.1:${PORT:-3000}`` like API Gateway (payload format 2.0):
   404 ``{"message":"Not Found"}`` for unknown routes, 500 ``{"message":"Internal Server Error"}`` when a
   handler raises, 413 above 10 MB. ``GET /_local/idle`` (local only) answers ``{"idle": true|false}``.
5. Polls every ``SQS`` event source like a Lambda event source mapping: batches of up to ``BatchSize`` messages
   (several receives of at most 10 within ``MaximumBatchingWindowInSeconds``, and under Lambda's 6 MB payload;
   locally a batch also ends as soon as the queue has nothing more, where Lambda would wait out the window),
   partial batch responses honoured, failed messages retried after ``FLAGBRIDGE_LOCAL_RETRY_SECONDS``
   (default 2) and dead-lettered by the queue's RedrivePolicy.
6. Replays ``events/payloads/split_impressions.json`` once (``FLAGBRIDGE_NO_REPLAY=1`` or ``--no-replay`` skips
   it), prints a summary with URLs, profiles and curl examples, and serves until Ctrl-C / SIGTERM.

Invocations run one at a time (``FLAGBRIDGE_LOCAL_CONCURRENCY=function``: one at a time per function, like one
warm container each): module-level state in handlers (a Powertools resolver's ``current_event``, the shared
Logger's Lambda context keys) is not thread-safe. Outside services named by URL parameters (Split's Events API,
webhooks) are replaced by :class:`local.receivers.Receiver` (``GET /_local/receivers`` shows what they got).
Tests use :class:`LocalBridge` in process or run this module as a subprocess and poll ``/_local/idle``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import importlib.util
import inspect
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.error import HTTPError
from urllib.parse import quote, unquote, urlsplit
from urllib.request import Request, urlopen

from local.apigw import http_api_event, sqs_event
from local.receivers import Receiver
from local.resources import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    PARAM_ENV_PREFIX,
    ROOT,
    TEMPLATE_PATH,
    FunctionSpec,
    HttpRoute,
    Provisioned,
    SqsSource,
    Template,
    functions,
    provision,
    url_parameters,
)

DEFAULT_PORT = 3000
DEFAULT_CONFIG = ROOT / "layers" / "shared" / "config" / "flagbridge.yaml"
SAMPLE_IMPRESSIONS = ROOT / "events" / "payloads" / "split_impressions.json"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API payload limit
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # larger bodies are refused without reading them
LOCAL_PREFIX = "/_local/"
SAMPLE_PROFILES = (("user", "u-1001"), ("user", "qa-bot-01"))
SAMPLE_BATCHES = tuple(
    ROOT / "events" / "payloads" / name
    for name in (
        "mparticle_batch_test_user.json",
        "mparticle_batch_real_customer.json",
        "mparticle_batch_commerce.json",
        "mparticle_batch_plan_violation.json",
    )
)
SAMPLE_WEBHOOK_BATCH = ROOT / "events" / "payloads" / "mparticle_webhook_batch.json"
SQS_MAX_RECEIVE = 10  # messages one ReceiveMessage call returns at most
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024  # an event source mapping cuts a batch there
RECORD_OVERHEAD_BYTES = 1024  # a record's ids, attributes and JSON punctuation around its body


def fresh_timestamps(batch: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The sample batch with its events re-dated to just now (Split refuses data older than 24 h)."""
    events = batch.get("events") or []
    for offset, event in enumerate(events):
        data = event.get("data") if isinstance(event, dict) else None
        if isinstance(data, dict) and "timestamp_unixtime_ms" in data:
            data["timestamp_unixtime_ms"] = now_ms - (len(events) - offset) * 1000
    if "timestamp_unixtime_ms" in batch:
        batch["timestamp_unixtime_ms"] = now_ms
    return batch


def log(message: str) -> None:
    print(f"[flagbridge-local] {message}", file=sys.stderr, flush=True)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


# ---- Lambda invocation ----------------------------------------------------------------------------------


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools use."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LoadedFunction:
    """A function's spec, its imported handler (or why the import failed) and its one-at-a-time lock."""

    spec: FunctionSpec
    handler: Callable[[Any, Any], Any] | None = None
    import_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def import_handler(spec: FunctionSpec) -> Callable[[Any, Any], Any]:
    """Import ``<CodeUri>/<module>.py`` under a unique module name and return its handler function."""
    module_path, _, function_name = spec.handler.rpartition(".")
    source = spec.code_dir / (module_path.replace(".", "/") + ".py")
    if not source.exists():
        source = spec.code_dir / module_path.replace(".", "/") / "__init__.py"
    unique_name = f"flagbridge_local_fn_{spec.logical_id}"
    module_spec = importlib.util.spec_from_file_location(unique_name, source)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {source}")
    module: ModuleType = importlib.util.module_from_spec(module_spec)
    sys.modules[unique_name] = module
    code_dir = str(spec.code_dir)
    sys.path.insert(0, code_dir)  # sibling modules of the handler, as in Lambda's /var/task
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(unique_name, None)
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(code_dir)
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise ImportError(f"{source} has no callable {function_name}")
    return handler


# ---- routing -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledRoute:
    route: HttpRoute
    pattern: re.Pattern[str] | None  # None: $default
    names: tuple[str, ...]
    literals: int
    greedy: bool

    def priority(self) -> tuple[int, int, int, int]:
        """API Gateway picks the most specific match: literal paths, then parameters, then greedy, then $default."""
        return (self.pattern is None, self.greedy, -self.literals, self.route.method == "ANY")


def compile_route(route: HttpRoute) -> CompiledRoute:
    if route.path == "$default":
        return CompiledRoute(route, None, (), 0, True)
    parts, names, literals, greedy = [], [], 0, False
    for index, segment in enumerate(route.path.strip("/").split("/")):
        match = re.fullmatch(r"\{([^{}+]+)(\+?)\}", segment)
        if match is None:
            parts.append(re.escape(segment))
            literals += 1
            continue
        group = f"p{index}"
        names.append(match.group(1))
        if match.group(2):
            parts.append(f"(?P<{group}>.+)")
            greedy = True
        else:
            parts.append(f"(?P<{group}>[^/]+)")
    pattern = re.compile("/" + "/".join(parts) if parts != [""] else "/")
    return CompiledRoute(route, pattern, tuple(names), literals, greedy)


class Router:
    """Matches (method, raw path) to a route and its path parameters."""

    def __init__(self, routes: list[HttpRoute]) -> None:
        self.routes = sorted((compile_route(route) for route in routes), key=CompiledRoute.priority)

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for compiled in self.routes:
            if compiled.route.method not in ("ANY", method):
                continue
            if compiled.pattern is None:
                return compiled.route, {}
            found = compiled.pattern.fullmatch(path)
            if found:
                values = [unquote(value) for value in found.groups()]
                return compiled.route, dict(zip(compiled.names, values, strict=True))
        return None


# ---- HTTP server -------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    bridge: LocalBridge


class ApiGatewayHandler(BaseHTTPRequestHandler):
    """One HTTP request -> API Gateway HTTP API v2 event -> handler -> HTTP response."""

    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "flagbridge-local"
    refused_with = 0  # status of the API Gateway-style refusal sent for this request, if any

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # access lines are written by _access_log, without query strings (tokens travel there)

    def _access_log(self, path: str, status: int, started: float) -> None:
        if not path.startswith(LOCAL_PREFIX):
            elapsed = (time.perf_counter() - started) * 1000
            log(f'{self.client_address[0]} "{self.command} {path}" {status} {elapsed:.0f}ms')

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        names = set()
        for name, value in headers or []:
            if name.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            names.add(name.lower())
            self.send_header(name, value)
        if "content-type" not in names and body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _message(self, status: int, message: str) -> None:
        self.refused_with = status
        self._send(status, json.dumps({"message": message}).encode())

    def _read_body(self) -> bytes | None:
        """The request body, or None (and a 413 sent) when it exceeds API Gateway's limit."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    self.close_connection = True
                    self._message(413, "Request Entity Too Large")
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._message(400, "Bad Request")
            return None
        if length > MAX_BODY_BYTES:
            if length <= DRAIN_LIMIT_BYTES:  # read it first so that the client sees the 413, not a reset
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(1 << 20, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            self.close_connection = True
            self._message(413, "Request Entity Too Large")
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        started = time.perf_counter()
        bridge = self.server.bridge
        split = urlsplit(self.path)
        path, raw_query = split.path or "/", split.query
        if path.startswith(LOCAL_PREFIX):
            self._local(path)
            return
        body = self._read_body()
        if body is None:
            self._access_log(path, self.refused_with, started)
            return
        matched = bridge.router.match(self.command, path)
        if matched is None:
            self._message(404, "Not Found")
            self._access_log(path, 404, started)
            return
        route, parameters = matched
        status = self._invoke(route, parameters, path, raw_query, body)
        self._access_log(path, status, started)

    def _invoke(self, route: HttpRoute, parameters: dict[str, str], path: str, raw_query: str, body: bytes) -> int:
        bridge = self.server.bridge
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in self.headers.items():
            key = name.lower()
            if key == "cookie":
                cookies.extend(part.strip() for part in value.split(";") if part.strip())
            elif key not in ("transfer-encoding", "connection"):
                headers[key] = f"{headers[key]},{value}" if key in headers else value
        headers.setdefault("x-forwarded-for", self.client_address[0])
        headers.setdefault("x-forwarded-proto", "http")
        headers.setdefault("x-forwarded-port", str(self.server.server_port))
        if body:
            headers["content-length"] = str(len(body))
        request_id = str(uuid.uuid4())
        event = http_api_event(
            method=self.command,
            path=path,
            route_key=route.route_key,
            raw_query=raw_query,
            headers=headers,
            body=body,
            path_parameters=parameters or None,
            source_ip=self.client_address[0],
            request_id=request_id,
        )
        if cookies:
            event["cookies"] = cookies
        try:
            result = bridge.invoke(route.function, event)
            status, response_headers, response_body = http_response(result)
        except Exception:
            log(f"{route.function} failed for {route.route_key} (request {request_id}):")
            traceback.print_exc(file=sys.stderr)
            self._message(500, "Internal Server Error")
            return 500
        response_headers.append(("apigw-requestid", request_id))
        self._send(status, response_body, response_headers)
        return status

    def _local(self, path: str) -> None:
        bridge = self.server.bridge
        self.close_connection = self.close_connection or self.headers.get("Content-Length") not in (None, "0")
        if path == "/_local/idle":
            self._send(200, json.dumps({"idle": bridge.is_idle()}).encode())
        elif path == "/_local/health":
            self._send(200, json.dumps({"ready": bridge.ready}).encode())
        elif path == "/_local/aws":
            # Lets tests and people inspect the emulated resources directly (boto3 against this endpoint).
            names = (
                "PROFILES_TABLE",
                "QUARANTINE_BUCKET",
                "IMPRESSIONS_QUEUE_URL",
                "BATCHES_QUEUE_URL",
                "DESTINATION_QUEUES",
                "DESTINATION_DLQS",
                "DELIVERY_LEDGER_TABLE",
                "REPORTING_QUEUE_URL",
            )
            resources = {name: os.environ.get(name) for name in names}
            self._send(200, json.dumps({"endpoint_url": bridge.endpoint_url, "resources": resources}).encode())
        elif path == "/_local/receivers" and bridge.receiver is not None:
            self._send(200, json.dumps(bridge.receiver.snapshot(), default=str).encode())
        else:
            self._message(404, "Not Found")


def http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A payload format 2.0 Lambda response as (status, headers, body), as API Gateway interprets it."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # No statusCode: API Gateway assumes 200 and a JSON body made of whatever the function returned.
        text = result if isinstance(result, str) else json.dumps(result)
        return 200, [("Content-Type", "application/json")], text.encode()
    status = int(result["statusCode"])
    headers = [(str(name), str(value)) for name, value in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(value)) for value in values)
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
    body = result.get("body")
    if body is None:
        data = b""
    elif result.get("isBase64Encoded"):
        data = base64.b64decode(body)
    else:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
    return status, headers, data


# ---- SQS event source mappings ----------------------------------------------------------------------------


class SqsPoller(threading.Thread):
    """Polls one queue and invokes one function with its messages, like a Lambda event source mapping."""

    def __init__(self, bridge: LocalBridge, source: SqsSource, queue_url: str) -> None:
        super().__init__(name=f"sqs-{source.function}-{source.event_name}", daemon=True)
        self.bridge = bridge
        self.source = source
        self.queue_url = queue_url
        self.stopping = threading.Event()

    def run(self) -> None:
        sqs = self.bridge.client("sqs")
        while not self.stopping.is_set():
            try:
                messages = self.receive(sqs)
            except Exception as exc:
                if self.stopping.is_set():
                    return
                log(f"{self.name}: ReceiveMessage failed ({type(exc).__name__}: {exc}); retrying")
                self.stopping.wait(1)
                continue
            if messages:
                with self.bridge.in_flight():
                    self.deliver(sqs, messages)

    def _receive(self, sqs: Any, count: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(count, SQS_MAX_RECEIVE)),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def receive(self, sqs: Any) -> list[dict[str, Any]]:
        """One batch: up to ``BatchSize`` messages gathered within the batching window, under 6 MB of payload.

        ReceiveMessage returns at most 10 messages, so a bigger batch takes several calls. They are short polls:
        the batch ends when the queue has nothing more (Lambda would wait out the window; locally that only
        adds latency).
        """
        batch_size = self.source.batch_size
        messages = self._receive(sqs, batch_size, wait_seconds=1)
        if not messages or self.source.batching_window_seconds <= 0:
            return messages
        deadline = time.monotonic() + self.source.batching_window_seconds
        size = sum(len(m["Body"].encode()) + RECORD_OVERHEAD_BYTES for m in messages)
        while len(messages) < batch_size and time.monotonic() < deadline and not self.stopping.is_set():
            more = self._receive(sqs, batch_size - len(messages), wait_seconds=0)
            if not more:
                break
            fits = 0
            for message in more:
                record_size = len(message["Body"].encode()) + RECORD_OVERHEAD_BYTES
                if size + record_size > LAMBDA_PAYLOAD_BYTES:
                    break
                size += record_size
                fits += 1
            messages.extend(more[:fits])
            if fits < len(more):  # the payload is full: the rest are for the next batch, visible again now
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(more[fits:])
                ]
                sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
                break
        return messages

    def deliver(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        event = sqs_event(
            self.source.queue_arn,
            [
                (m["MessageId"], m["Body"], int((m.get("Attributes") or {}).get("ApproximateReceiveCount", 1)))
                for m in messages
            ],
            region=self.bridge.region,
        )
        for record, message in zip(event["Records"], messages, strict=True):
            record["receiptHandle"] = message["ReceiptHandle"]
            record["md5OfBody"] = message.get("MD5OfBody", "")
            record["attributes"].update(message.get("Attributes") or {})
            record["messageAttributes"] = _event_message_attributes(message.get("MessageAttributes") or {})
        ids = [m["MessageId"] for m in messages]
        try:
            result = self.bridge.invoke(self.source.function, event)
        except Exception:
            log(f"{self.source.function} failed on a batch of {len(messages)} message(s); they will be retried:")
            traceback.print_exc(file=sys.stderr)
            failed = set(ids)
        else:
            failed = self.failed_ids(result, ids) if self.source.report_batch_item_failures else set()
        done = [m for m in messages if m["MessageId"] not in failed]
        retry = [m for m in messages if m["MessageId"] in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
            ]
            sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        if retry:
            log(
                f"{self.source.function}: {len(retry)} message(s) failed; visible again in {self.bridge.retry_seconds}s"
            )
            with contextlib.suppress(Exception):
                for start in range(0, len(retry), 10):
                    chunk = retry[start : start + 10]
                    entries = [
                        {
                            "Id": str(i),
                            "ReceiptHandle": m["ReceiptHandle"],
                            "VisibilityTimeout": self.bridge.retry_seconds,
                        }
                        for i, m in enumerate(chunk)
                    ]
                    sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)

    @staticmethod
    def failed_ids(result: Any, ids: list[str]) -> set[str]:
        """Lambda's partial batch response rules: a malformed response fails the whole batch."""
        if result is None or result == {}:
            return set()
        if not isinstance(result, dict) or not isinstance(result.get("batchItemFailures", []), list):
            return set(ids)
        failed = set()
        for failure in result.get("batchItemFailures") or []:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in ids:
                return set(ids)
            failed.add(identifier)
        return failed


def _event_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS API message attributes -> the lower-camel-case shape of Lambda's SQS event."""
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(value["BinaryValue"]).decode() if value.get("BinaryValue") else None,
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType"),
        }
        for name, value in attributes.items()
    }


# ---- moto ---------------------------------------------------------------------------------------------------


def speed_up_moto_dispatch() -> bool:
    """Cache moto's list of service modules, which its server rebuilds from the disk on every request.

    moto's ``DomainDispatcherApplication.get_application`` calls ``moto.backends.list_of_moto_modules()`` (an
    ``os.listdir`` plus ~150 ``os.path.isdir`` calls) twice per request *while holding one global lock*, so
    concurrent requests queue behind file system calls. The list cannot change while the process runs; caching it
    returns the same names. Returns whether it is active.
    """
    try:
        from moto import backends
    except ImportError:
        return False
    original = getattr(backends, "list_of_moto_modules", None)
    if original is None or getattr(original, "_flagbridge_cached", False):
        return original is not None
    names = tuple(original())

    def list_of_moto_modules() -> Iterator[str]:
        return iter(names)

    list_of_moto_modules._flagbridge_cached = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules
    return True


def speed_up_moto_queries() -> bool:
    """Make moto's DynamoDB ``Query`` on a table's own key read one partition instead of the whole table.

    moto 5 answers every Query by sorting *all* items of the table (``Table.all_items``) and filtering them, so a
    query costs ~20 ms per 1,000 items (200 ms once 10,000 profile items exist). While a base-table query with a
    hash key runs, this makes ``all_items`` return only that partition's items, sorted the same way: identical
    results, since moto filters on the hash key next anyway. Index queries and scans are untouched. Only applied
    to the embedded moto; ``FLAGBRIDGE_LOCAL_MOTO_SPEEDUPS=0`` turns it off. Returns whether it is active.
    """
    try:
        from moto.dynamodb.models.table import Table
    except ImportError:
        return False
    if getattr(Table, "_flagbridge_partition_query", False):
        return True
    if not (callable(getattr(Table, "query", None)) and callable(getattr(Table, "all_items", None))):
        return False
    original_query, original_all_items = Table.query, Table.all_items
    signature = inspect.signature(original_query)
    if not {"hash_key", "index_name"} <= set(signature.parameters):
        return False
    current = threading.local()

    def all_items(self: Any) -> Any:
        partition = getattr(current, "partition", None)
        if partition is None or partition[0] is not self:
            return original_all_items(self)
        hash_set = self.items.get(partition[1])
        if hash_set is None:
            return []
        items = list(hash_set.values()) if self.range_key_attr else [hash_set]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            arguments = signature.bind(self, *args, **kwargs).arguments
        except TypeError:
            return original_query(self, *args, **kwargs)
        if arguments.get("index_name") or arguments.get("hash_key") is None or not isinstance(self.items, dict):
            return original_query(self, *args, **kwargs)
        current.partition = (self, arguments["hash_key"])
        try:
            return original_query(self, *args, **kwargs)
        finally:
            current.partition = None

    Table.all_items = all_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    Table._flagbridge_partition_query = True  # type: ignore[attr-defined]
    return True


# ---- the bridge --------------------------------------------------------------------------------------------


class LocalBridge:
    """The whole bridge in one process: AWS emulation, resources, HTTP API and queue consumers."""

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        template_path: Path = TEMPLATE_PATH,
        endpoint_url: str | None = None,
        moto_port: int | None = None,
        retry_seconds: int | None = None,
    ) -> None:
        self.port = int(os.environ.get("PORT", DEFAULT_PORT)) if port is None else port
        self.host = host
        self.template_path = template_path
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self._external_endpoint = self.endpoint_url
        self.moto_port = int(os.environ.get("MOTO_PORT", 0)) if moto_port is None else moto_port
        self.retry_seconds = (
            int(os.environ.get("FLAGBRIDGE_LOCAL_RETRY_SECONDS", 2)) if retry_seconds is None else retry_seconds
        )
        self.region = DEFAULT_REGION
        self.ready = False
        self.functions: dict[str, LoadedFunction] = {}
        self.router = Router([])
        self.provisioned: Provisioned | None = None
        self.pollers: list[SqsPoller] = []
        self.receiver: Receiver | None = None
        self.receiver_urls: dict[str, str] = {}
        self.startup_seconds = 0.0
        self._moto: Any = None
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._invoke_lock = threading.Lock()
        # Default: one invocation at a time in the whole process, so that the handlers' shared module state
        # (one Powertools Logger with the function name, request id and correlation id of "the" invocation)
        # always describes the invocation that is running. FLAGBRIDGE_LOCAL_CONCURRENCY=function lets
        # different functions run at the same time (each still one at a time), with interleaved log context.
        self.per_function_concurrency = os.environ.get("FLAGBRIDGE_LOCAL_CONCURRENCY", "").lower() == "function"
        self._saved_environ: dict[str, str] | None = None
        self._saved_path: list[str] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            return f"http://{self.host}:{self.port}"
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> LocalBridge:
        started = time.perf_counter()
        self._saved_environ = dict(os.environ)
        self._saved_path = list(sys.path)
        try:
            self._start_aws()
            template = Template.load(self.template_path, region=self.region, account=self._account())
            self._start_receiver(template)
            self.provisioned = provision(template, self.client)
            if self.receiver is not None:
                self.receiver.split_sdk_key = self.secret_value("SplitSdkKeySecret")
            specs = functions(template)
            self._configure_environment(specs)
            for spec in specs:
                loaded = LoadedFunction(spec)
                try:
                    loaded.handler = import_handler(spec)
                except Exception:
                    loaded.import_error = traceback.format_exc()
                    log(f"{spec.logical_id}: handler {spec.handler} failed to import; it will answer 500:")
                    print(loaded.import_error, file=sys.stderr)
                self.functions[spec.logical_id] = loaded
            self.router = Router([route for spec in specs for route in spec.routes])
            self._start_http()
            self._start_pollers(specs)
        except BaseException:
            self.stop()
            raise
        self.ready = True
        self.startup_seconds = time.perf_counter() - started
        return self

    def stop(self) -> None:
        self.ready = False
        for poller in self.pollers:
            poller.stopping.set()  # they finish their current long poll (<= 1 s) while the servers shut down
        stoppers = []
        if self._server is not None:
            stoppers.append(threading.Thread(target=self._stop_http, args=(self._server,), daemon=True))
            self._server = None
        if self.receiver is not None:
            stoppers.append(threading.Thread(target=self.receiver.stop, daemon=True))
            self.receiver = None
        for stopper in stoppers:
            stopper.start()
        for thread in [*self.pollers, *stoppers]:
            thread.join(timeout=10)
        self.pollers = []
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
            self._moto = None
        self._clients.clear()
        runtime = sys.modules.get("flagbridge.runtime")
        if runtime is not None and hasattr(runtime, "reset"):
            with contextlib.suppress(Exception):
                runtime.reset()  # forget clients bound to this endpoint (a later bridge in the same process)
        for name in [name for name in sys.modules if name.startswith("flagbridge_local_fn_")]:
            del sys.modules[name]
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None
        if self._saved_path is not None:
            sys.path[:] = self._saved_path
            self._saved_path = None

    @staticmethod
    def _stop_http(server: _Server) -> None:
        server.shutdown()
        server.server_close()

    def __enter__(self) -> LocalBridge:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _start_aws(self) -> None:
        self.endpoint_url = self._external_endpoint
        if self.endpoint_url:
            self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
            os.environ.setdefault("AWS_DEFAULT_REGION", self.region)
            log(f"using the AWS endpoint {self.endpoint_url} (no emulator started)")
        else:
            import logging

            from moto.server import ThreadedMotoServer

            from local.moto_isolation import isolate_dynamodb_operations

            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            isolate_dynamodb_operations()  # the server is threaded: give transactions DynamoDB's isolation
            if os.environ.get("FLAGBRIDGE_LOCAL_MOTO_SPEEDUPS", "1") != "0":
                speed_up_moto_queries()
                speed_up_moto_dispatch()
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self.endpoint_url = f"http://{host}:{port}"
            self.region = DEFAULT_REGION
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
                os.environ.pop(name, None)
            os.environ.update(
                {
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": self.region,
                    "AWS_REGION": self.region,
                }
            )
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url

    def _start_receiver(self, template: Template) -> None:
        """Point every URL parameter (an outside service) at the local receiver, keeping the URL's path.

        ``FLAGBRIDGE_LOCAL_PARAM_<Name>`` still wins (see :mod:`local.resources`), e.g. to reach a real service.
        """
        defaults = url_parameters(template.document)
        if not defaults:
            return
        port = int(os.environ.get("FLAGBRIDGE_RECEIVER_PORT", 0))
        self.receiver = Receiver(host=self.host, port=port).start()
        overrides = {}
        for name, default in defaults.items():
            if PARAM_ENV_PREFIX + name not in os.environ:
                overrides[name] = self.receiver.url + urlsplit(default).path.rstrip("/")
        template.parameter_overrides = {**template.parameter_overrides, **overrides}
        self.receiver_urls = {name: str(template.parameter_value(name)) for name in defaults}

    def _account(self) -> str:
        try:
            return str(self.client("sts").get_caller_identity()["Account"])
        except Exception:
            return DEFAULT_ACCOUNT

    def client(self, service: str) -> Any:
        """A boto3 client on the bridge's endpoint (cached; boto3 clients are thread-safe)."""
        with self._clients_lock:
            if service not in self._clients:
                import boto3
                from botocore.config import Config

                self._clients[service] = boto3.session.Session().client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=16),
                )
            return self._clients[service]

    def _configure_environment(self, specs: list[FunctionSpec]) -> None:
        merged: dict[str, str] = {}
        for spec in specs:
            for name, value in spec.environment.items():
                if name in merged and merged[name] != value:
                    log(f"environment variable {name} differs between functions; using {spec.logical_id}'s")
                merged[name] = value
        merged["FLAGBRIDGE_CONFIG"] = os.environ.get("FLAGBRIDGE_CONFIG") or str(DEFAULT_CONFIG)
        os.environ.update(merged)
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "1")
        layer_paths: list[str] = []
        for spec in specs:
            for layer_dir in spec.layer_dirs:
                for candidate in (layer_dir / "python", layer_dir):
                    if candidate.is_dir() and str(candidate) not in layer_paths:
                        layer_paths.append(str(candidate))
        sys.path[:0] = [path for path in layer_paths if path not in sys.path]

    def _start_http(self) -> None:
        self._server = _Server((self.host, self.port), ApiGatewayHandler)
        self._server.bridge = self
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="http-api", daemon=True
        )
        self._server_thread.start()

    def _start_pollers(self, specs: list[FunctionSpec]) -> None:
        for spec in specs:
            for source in spec.sqs_sources:
                if source.enabled:
                    poller = SqsPoller(self, source, self.queue_url(source.queue_arn))
                    self.pollers.append(poller)
                    poller.start()

    def queue_url(self, queue_arn: str) -> str:
        assert self.provisioned is not None
        for physical in self.provisioned.template.physical.values():
            if physical.attributes.get("Arn") == queue_arn and "QueueUrl" in physical.attributes:
                return physical.attributes["QueueUrl"]
        *_, account, name = queue_arn.split(":")
        return str(self.client("sqs").get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])

    # ---- invocation and idleness --------------------------------------------------------------------------

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        """Invoke a function's handler in process (one invocation at a time per function)."""
        loaded = self.functions[logical_id]
        if loaded.handler is None:
            raise RuntimeError(f"{logical_id} could not be imported:\n{loaded.import_error}")
        lock = loaded.lock if self.per_function_concurrency else self._invoke_lock
        with self.in_flight(), lock:
            return loaded.handler(event, LambdaContext(loaded.spec))

    def is_idle(self) -> bool:
        """No invocation running and every consumed queue empty (nothing visible, in flight or delayed)."""
        if self._in_flight:
            return False
        sqs = self.client("sqs")
        for poller in self.pollers:
            attributes = sqs.get_queue_attributes(
                QueueUrl=poller.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            if any(int(value) for value in attributes.values()):
                return False
        return self._in_flight == 0

    def wait_idle(self, timeout: float = 60.0, interval: float = 0.1) -> bool:
        """Wait until :meth:`is_idle` holds twice in a row; False on timeout."""
        deadline = time.monotonic() + timeout
        confirmations = 0
        while time.monotonic() < deadline:
            confirmations = confirmations + 1 if self.is_idle() else 0
            if confirmations >= 2:
                return True
            time.sleep(interval)
        return False

    # ---- replay and summary -------------------------------------------------------------------------------

    def secret_value(self, logical_id: str) -> str | None:
        return self.provisioned.secret_values.get(logical_id) if self.provisioned else None

    def has_route(self, method: str, path: str) -> bool:
        return any(c.route.method == method and c.route.path == path for c in self.router.routes)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A real HTTP request to this bridge: (status, JSON body or text)."""
        request = Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urlopen(request, timeout=60) as response:
                status, data = response.status, response.read()
        except HTTPError as exc:
            status, data = exc.code, exc.read()
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data.decode("utf-8", "replace")

    def replay_samples(self) -> dict[str, Any]:
        """POST the sample impressions as Split does (gzip, token in the URL), wait, read the sample profiles."""
        report: dict[str, Any] = {}
        token = self.secret_value("WebhookTokenSecret")
        if self.has_route("POST", "/split/impressions") and token is not None and SAMPLE_IMPRESSIONS.exists():
            body = gzip.compress(SAMPLE_IMPRESSIONS.read_bytes())
            report["webhook"] = self.request(
                "POST",
                f"/split/impressions?token={quote(token, safe='')}",
                body,
                {"Content-Type": "application/json", "User-Agent": "flagbridge-local-replay"},
            )
            report["idle"] = self.wait_idle(60)
        profile_token = self.secret_value("ProfileApiTokenSecret")
        if self.has_route("GET", "/profiles/{trafficType}/{key}") and profile_token is not None:
            report["profiles"] = {
                f"{traffic_type}/{key}": self.request(
                    "GET",
                    f"/profiles/{traffic_type}/{quote(key)}",
                    headers={"Authorization": f"Bearer {profile_token}"},
                )
                for traffic_type, key in SAMPLE_PROFILES
            }
        return report

    def replay_mparticle_samples(self) -> dict[str, Any]:
        """POST the sample mParticle batches (Events API with Basic auth, and the webhook format), wait."""
        report: dict[str, Any] = {}
        credentials = self.secret_value("MParticleCredentialsSecret")
        if not credentials or not self.has_route("POST", "/mparticle/v2/events"):
            return report
        document = json.loads(credentials)
        basic = base64.b64encode(f"{document['api_key']}:{document['api_secret']}".encode()).decode()
        now_ms = int(time.time() * 1000)
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {basic}"}
        for path in SAMPLE_BATCHES:
            batch = fresh_timestamps(json.loads(path.read_text(encoding="utf-8")), now_ms)
            report[path.name] = self.request("POST", "/mparticle/v2/events", json.dumps(batch).encode(), headers)
        webhook_auth = self.secret_value("MParticleWebhookAuthSecret")
        if webhook_auth and self.has_route("POST", "/mparticle/webhook"):
            batch = fresh_timestamps(json.loads(SAMPLE_WEBHOOK_BATCH.read_text(encoding="utf-8")), now_ms)
            report[SAMPLE_WEBHOOK_BATCH.name] = self.request(
                "POST",
                "/mparticle/webhook",
                json.dumps(batch).encode(),
                {"Content-Type": "application/json", "Authorization": webhook_auth},
            )
        self.wait_idle(60)
        return report

    def destinations_report(self) -> list[str]:
        """What each destination received: the local receiver (Split, webhooks) and the AWS sinks."""
        lines: list[str] = []
        if self.receiver is not None:
            snapshot = self.receiver.snapshot()
            split_events = snapshot["split_events"]
            lines.append(f"  split (local Split receiver): {len(split_events)} event(s)")
            lines += [
                f"    {e.get('eventTypeId')} key={e.get('key')} trafficType={e.get('trafficTypeName')}"
                f" value={e.get('value')}"
                for e in split_events
            ]
            for path, batches in snapshot["webhooks"].items():
                users = sorted({str(i) for b in batches for i in _identity_values(b)})
                events = sum(len(b.get("events") or []) for b in batches if isinstance(b, dict))
                lines.append(f"  webhook {path}: {len(batches)} batch(es), {events} event(s), users {users}")
        sqs = self.client("sqs")
        for name, url in sorted(json.loads(os.environ.get("DESTINATION_QUEUES", "{}")).items()):
            dlq = json.loads(os.environ.get("DESTINATION_DLQS", "{}")).get(name)
            depth = _queue_depth(sqs, dlq) if dlq else 0
            lines.append(f"  lane {name}: queue {_queue_depth(sqs, url)} waiting, DLQ {depth}")
        reporting = os.environ.get("REPORTING_QUEUE_URL")
        if reporting:
            lines.append(f"  reporting sink (SQS): {_queue_depth(sqs, reporting)} message(s)")
        bucket = os.environ.get("QUARANTINE_BUCKET")
        if bucket:
            counts: dict[str, int] = {}
            for entry in self.client("s3").list_objects_v2(Bucket=bucket).get("Contents", []):
                prefix = entry["Key"].split("/", 1)[0]
                counts[prefix] = counts.get(prefix, 0) + 1
            lines.append(f"  quarantine bucket s3://{bucket}: {counts or 'empty'} (objects per prefix)")
        return lines

    def summary(self, replay: dict[str, Any] | None = None) -> str:
        lines = ["", f"flagbridge is running locally at {self.url} (AWS endpoint {self.endpoint_url})", "", "Routes:"]
        for compiled in self.router.routes:
            route = compiled.route
            target = route.route_key if route.path == "$default" else f"{route.method:<6} {self.url}{route.path}"
            lines.append(f"  {target}  -> {route.function}")
        for poller in self.pollers:
            lines.append(f"  SQS    {poller.queue_url}  -> {poller.source.function}")
        if replay:
            if "webhook" in replay:
                status, body = replay["webhook"]
                lines += ["", f"Replayed {SAMPLE_IMPRESSIONS.relative_to(ROOT)}: HTTP {status} {json.dumps(body)}"]
                if not replay.get("idle"):
                    lines.append("  (the queue consumers did not finish within 60 s)")
            for name, (status, body) in (replay.get("profiles") or {}).items():
                lines += ["", f"Profile {name} (GET /profiles/{name}): HTTP {status}"]
                lines += [f"  {line}" for line in describe_profile(body)]
        if replay and replay.get("mparticle"):
            lines += ["", "Replayed the sample mParticle batches (events/payloads/mparticle_*.json):"]
            for name, (status, body) in replay["mparticle"].items():
                lines.append(f"  {name}: HTTP {status} {json.dumps(body)}")
            lines += ["", "What each destination received:", *self.destinations_report()]
        if self.receiver is not None:
            lines += ["", f"Outside services -> local receiver {self.receiver.url} (GET {self.url}/_local/receivers):"]
            lines += [f"  {name} = {url}" for name, url in self.receiver_urls.items()]
        if self.provisioned and self.provisioned.secret_values:
            lines += ["", "Local secret values (FLAGBRIDGE_LOCAL_SECRET_<LogicalId> to change):"]
            lines += [f"  {name}: {value}" for name, value in self.provisioned.secret_values.items()]
        webhook_token = self.secret_value("WebhookTokenSecret")
        profile_token = self.secret_value("ProfileApiTokenSecret")
        lines += ["", "Try it:"]
        if webhook_token is not None and self.has_route("POST", "/split/impressions"):
            lines.append(
                f"  gzip -c {SAMPLE_IMPRESSIONS.relative_to(ROOT)} | curl -sS -X POST"
                f" -H 'Content-Type: application/json' --data-binary @-"
                f" '{self.url}/split/impressions?token={quote(webhook_token, safe='')}'"
            )
        if profile_token is not None and self.has_route("GET", "/profiles/{trafficType}/{key}"):
            lines.append(f"  curl -sS -H 'Authorization: Bearer {profile_token}' {self.url}/profiles/user/u-1001")
        lines += [f"  curl -sS {self.url}/_local/idle", "", "Ctrl-C to stop.", ""]
        return "\n".join(lines)


def _identity_values(batch: Any) -> list[str]:
    identities = batch.get("user_identities") if isinstance(batch, dict) else None
    if isinstance(identities, dict):
        return [str(v) for v in identities.values()]
    if isinstance(identities, list):
        return [str(i.get("identity")) for i in identities if isinstance(i, dict)]
    return []


def _queue_depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def describe_profile(body: Any) -> list[str]:
    """A few human lines about a profile document (the raw JSON when it has another shape)."""
    if not isinstance(body, dict) or not isinstance(body.get("flags"), dict):
        return [json.dumps(body)]
    test_user = body.get("testUser") or {}
    mark = f"test user (rule {test_user.get('rule')})" if test_user.get("isTestUser") else "not a test user"
    lines = [f"identity type {body.get('identityType')}, {mark}"]
    for flag, state in body["flags"].items():
        lines.append(
            f"{flag}: {state.get('treatment')!r} (label {state.get('label')!r}, version {state.get('version')}),"
            f" {state.get('exposures')} exposure(s), {len(state.get('history') or [])} assignment(s) in history"
        )
    return lines


# ---- entry point ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: $PORT or 3000)")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="bind address (127.0.0.1)")
    parser.add_argument("--no-replay", action="store_true", help="skip the sample replay (FLAGBRIDGE_NO_REPLAY=1)")
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log(f"{signal.Signals(signum).name} received, stopping")
        stopping.set()

    def install_signal_handlers() -> None:
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

    install_signal_handlers()
    bridge = LocalBridge(port=args.port, host=args.host)
    try:
        bridge.start()
    except Exception:
        log("startup failed:")
        traceback.print_exc(file=sys.stderr)
        return 1
    install_signal_handlers()  # again: imported handler code must not leave us without a clean shutdown
    try:
        log(f"ready on {bridge.url} in {bridge.startup_seconds:.2f}s")
        replay = None
        if not (args.no_replay or _truthy(os.environ.get("FLAGBRIDGE_NO_REPLAY"))) and not stopping.is_set():
            replay = bridge.replay_samples()
            replay["mparticle"] = bridge.replay_mparticle_samples()
        print(bridge.summary(replay), flush=True)
        while not stopping.wait(0.2):
            pass
    finally:
        stopping_started = time.perf_counter()
        bridge.stop()
        log(f"stopped in {time.perf_counter() - stopping_started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
