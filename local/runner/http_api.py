"""The HTTP server in front of the functions: a request becomes an API Gateway HTTP API (payload 2.0) event and
the handler's result becomes the response, with API Gateway's 404/413/500 refusals and ``/_local/*`` routes."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
import traceback
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from local.apigw import http_api_event
from local.resources import HttpRoute
from local.runner.invoke import log

if TYPE_CHECKING:
    from local.runner.bridge import LocalBridge

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API payload limit
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # larger bodies are refused without reading them
LOCAL_PREFIX = "/_local/"
OPENAPI_PATH = "/openapi.json"  # local only: the description of the routes (docs/openapi.json)
CHUNK_LINE_BYTES = 4096  # a chunk-size line with its extensions
MAX_TRAILERS = 100
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class HttpApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    bridge: LocalBridge


class ApiGatewayHandler(BaseHTTPRequestHandler):
    """One HTTP request -> API Gateway HTTP API v2 event -> handler -> HTTP response."""

    server: HttpApiServer
    protocol_version = "HTTP/1.1"
    server_version = "flagbridge-local"
    refused_with = 0  # status of the API Gateway-style refusal sent for this request, if any

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, CONNECT, FOO) is routed too: API Gateway answers a JSON 404 where the
        # standard library would send its HTML 501 page.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's refusals (a malformed request line or header) as JSON, never its HTML page."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # the request line was unreadable: answer with a status line anyway
            self.request_version = self.protocol_version
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = message or "Error"
        self._message(code, phrase)

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
            return self._read_chunked()
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

    def _read_chunked(self) -> bytes | None:
        """A chunked body (RFC 9112 §7.1); a malformed one gets a 400 (and the connection closes), not a traceback."""
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(CHUNK_LINE_BYTES + 1)
            size_text = line.split(b";")[0].strip()
            if len(line) > CHUNK_LINE_BYTES or not _HEX.fullmatch(size_text):
                self.close_connection = True
                self._message(400, "Bad Request")
                return None
            size = int(size_text, 16)
            if size == 0:
                trailers = 0
                while self.rfile.readline(CHUNK_LINE_BYTES + 1) not in (b"\r\n", b"\n", b""):
                    trailers += 1
                    if trailers > MAX_TRAILERS:
                        self.close_connection = True
                        self._message(400, "Bad Request")
                        return None
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self.close_connection = True
                self._message(413, "Request Entity Too Large")
                return None
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                self.close_connection = True
                self._message(400, "Bad Request")
                return None
            chunks.append(chunk)

    def _handle(self) -> None:
        started = time.perf_counter()
        bridge = self.server.bridge
        split = urlsplit(self.path)
        path, raw_query = split.path or "/", split.query
        if path.startswith(LOCAL_PREFIX):
            self._local(path)
            return
        if path == OPENAPI_PATH and self.command in ("GET", "HEAD"):
            self._openapi()
            self._access_log(path, 200, started)
            return
        if path == "/" and self.command in ("GET", "HEAD"):  # the live page: the oracle's verdicts, refreshing
            status, page = bridge.live_page()
            self._send(status, page.encode(), [("Content-Type", "text/html; charset=utf-8")])
            self._access_log(path, status, started)
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
        if bridge.handler_output is None:  # otherwise the invocation's own line says it
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
            result = bridge.invoke(route.function, event, lane="http")
            status, response_headers, response_body = http_response(result)
        except Exception:
            log(f"{route.function} failed for {route.route_key} (request {request_id}):")
            traceback.print_exc(file=sys.stderr)
            self._message(500, "Internal Server Error")
            return 500
        response_headers.append(("apigw-requestid", request_id))
        self._send(status, response_body, response_headers)
        return status

    def _openapi(self) -> None:
        """The API's OpenAPI description (docs/api.md), generated from the code as ``make openapi`` writes it."""
        from local.openapi import render  # imported on first use: pydantic's schema generation is not free

        self.close_connection = self.close_connection or self.headers.get("Content-Length") not in (None, "0")
        self._send(200, render().encode(), [("Content-Type", "application/json")])

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
                "TESTERS_TABLE",
                "ORACLE_VERDICTS_TABLE",
                "SPLIT_ADMIN_API_URL",
                "SPLIT_ADMIN_API_KEY_SECRET",
                "FLAGBRIDGE_CONFIG",
            )
            resources = {name: os.environ.get(name) for name in names}
            # "environment": what `flagbridge --local` exports, secrets for the CLI included (local values).
            document = {"endpoint_url": bridge.endpoint_url, "resources": resources}
            self._send(200, json.dumps({**document, "environment": bridge.cli_environment()}).encode())
        elif path == "/_local/receivers" and bridge.receiver is not None:
            self._send(200, json.dumps(bridge.receiver.snapshot(), default=str).encode())
        elif path == "/_local/receivers/segment-outage" and bridge.receiver is not None and self.command == "POST":
            # ?status=503 makes the local Split Admin receiver's segment calls answer 503 (an outage); no status
            # ends it. The tester segment's e2e test uses it; the reconcile then repairs the segment.
            status = (parse_qs(urlsplit(self.path).query).get("status") or [""])[0]
            bridge.receiver.segment_outage = int(status) if status.isdigit() else None
            self._send(200, json.dumps({"segment_outage": bridge.receiver.segment_outage}).encode())
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
