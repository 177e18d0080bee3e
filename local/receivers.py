"""Local stand-ins for the outside world: Split-compatible events and Admin API receivers, and a webhook receiver.

Used by ``make run`` (so the Split and webhook destinations are visible locally) and by tests. The
Split receiver checks every request the way Split's events API would: ``POST .../events/bulk``,
``Authorization: Bearer <SDK key>``, a JSON array of events that each follow Split's rules (strict
``eventTypeId`` pattern, key <= 250 chars, lowercase-able traffic type, epoch-ms timestamp, flat
properties, <= 300 of them, body < 1 MB). Valid requests get 202, invalid ones 400 with the reasons.
The Split Admin API receiver takes ``PUT .../splits/ws/{workspace}/{flag}/environments/{environment}/kill``
and records each kill (``kills`` in the snapshot). It keeps segment state as Split does for segment keys in an
environment: ``PUT .../segments/{environment}/{segment}/uploadKeys`` (add; at most 10,000 keys a call),
``PUT .../removeKeys`` and ``GET .../keys?offset=&limit=`` (``segments`` in the snapshot, ``segment_calls`` the
count of calls by kind). Its credential is presented either as ``Authorization: Bearer <Admin API key>`` or as
``x-api-key: <Harness token>`` (``admin_auth`` pins one, as a stack would see it).
Faults can be scripted for tests: a queue of responses (status, headers, delay) served before normal
behaviour, to simulate 429 with Retry-After, 500s, slow answers and dropped connections.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

KILL_PATH = re.compile(r"/splits/ws/(?P<workspace>[^/]+)/(?P<flag>[^/]+)/environments/(?P<environment>[^/]+)/kill$")
SEGMENT_PATH = re.compile(
    r"/segments/(?P<environment>[^/]+)/(?P<segment>[^/]+)/(?P<action>uploadKeys|removeKeys|keys)$"
)
SEGMENT_KEYS_PER_CALL = 10_000  # Split's limit per add call
SEGMENT_MAX_KEYS = 100_000  # Split's limit per (standard) segment
EVENT_TYPE_ID = re.compile(r"^[a-zA-Z0-9][-_.a-zA-Z0-9]{0,62}$")
MAX_BODY_BYTES = 1_000_000


def split_event_problems(event: Any) -> list[str]:
    """Why Split would refuse this event (empty list: acceptable)."""
    if not isinstance(event, dict):
        return ["event is not an object"]
    problems = []
    if not isinstance(event.get("eventTypeId"), str) or not EVENT_TYPE_ID.match(event["eventTypeId"]):
        problems.append(f"eventTypeId {event.get('eventTypeId')!r} does not match {EVENT_TYPE_ID.pattern}")
    key = event.get("key")
    if not isinstance(key, str) or not key.strip() or len(key) > 250:
        problems.append("key must be a non-empty string of at most 250 characters")
    traffic_type = event.get("trafficTypeName")
    if not isinstance(traffic_type, str) or not traffic_type or traffic_type != traffic_type.lower():
        problems.append("trafficTypeName must be a non-empty lowercase string")
    timestamp = event.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 946_684_800_000:
        problems.append("timestamp must be epoch milliseconds")
    value = event.get("value")
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        problems.append("value must be a number or null")
    properties = event.get("properties")
    if properties is not None:
        problems += _property_problems(properties)
    return problems


def _property_problems(properties: Any) -> list[str]:
    if not isinstance(properties, dict):
        return ["properties must be an object"]
    problems = ["more than 300 properties"] if len(properties) > 300 else []
    for name, item in properties.items():
        if item is not None and not isinstance(item, str | int | float | bool):
            problems.append(f"property {name!r} is not flat")
    return problems


@dataclass
class ScriptedResponse:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    drop_connection: bool = False
    body: str = '{"error": "scripted failure"}'


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    status: int


class Receiver:
    """One HTTP server with two endpoints: ``/api/events/bulk`` (Split) and any other path (webhooks)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, split_sdk_key: str | None = None) -> None:
        self.split_sdk_key = split_sdk_key
        self.split_admin_key: str | None = None
        self.admin_auth: str | None = None  # "bearer" or "x-api-key": only that header is accepted; None: either
        self.kills: list[dict[str, Any]] = []
        self.segments: dict[tuple[str, str], list[str]] = {}  # (environment, segment) -> keys in insertion order
        self.segment_calls: dict[str, int] = {"uploadKeys": 0, "removeKeys": 0, "keys": 0}
        self.segment_outage: int | None = None  # a status (503) every segment call answers while set: an outage
        self.requests: list[ReceivedRequest] = []
        self.split_events: list[dict[str, Any]] = []
        self.webhooks: dict[str, list[Any]] = {}
        self.script: deque[ScriptedResponse] = deque()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                receiver._handle(self)

            def do_PUT(self) -> None:
                receiver._handle(self)

            def do_GET(self) -> None:
                receiver._handle(self)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, *responses: ScriptedResponse) -> None:
        with self._lock:
            self.script.extend(responses)

    def _reply(
        self, handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            scripted = self.script.popleft() if self.script else None
        if scripted is not None:
            if scripted.delay_seconds:
                time.sleep(scripted.delay_seconds)
            if scripted.drop_connection:
                handler.close_connection = True
                handler.connection.close()
                return
            self._record(handler.path, headers, raw, scripted.status)
            self._reply(handler, scripted.status, scripted.body, scripted.headers)
            return
        kill = KILL_PATH.search(handler.path.split("?")[0])
        segment = SEGMENT_PATH.search(handler.path.split("?")[0])
        if handler.command == "PUT" and kill is not None:
            status, body = self._split_kill(headers, raw, kill)
        elif segment is not None:
            status, body = self._split_segment(handler.command, handler.path, headers, raw, segment)
        elif handler.command == "GET":
            status, body = 404, {"error": "not found"}
        elif handler.path.rstrip("/").endswith("/events/bulk"):
            status, body = self._split(headers, raw)
        else:
            status, body = 200, {"ok": True}
            try:
                document = json.loads(raw)
            except ValueError:
                status, body, document = 400, {"error": "invalid JSON"}, None
            if status == 200:
                with self._lock:
                    self.webhooks.setdefault(handler.path, []).append(document)
        self._record(handler.path, headers, raw, status)
        self._reply(handler, status, body)

    def _split(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or (self.split_sdk_key and auth != f"Bearer {self.split_sdk_key}"):
            return 401, {"error": "missing or wrong SDK key"}
        if len(raw) >= MAX_BODY_BYTES:
            return 413, {"error": "payload over 1 MB"}
        try:
            events = json.loads(raw)
        except ValueError:
            return 400, {"error": "invalid JSON"}
        if not isinstance(events, list):
            return 400, {"error": "bulk body must be an array"}
        problems = {index: split_event_problems(event) for index, event in enumerate(events)}
        problems = {index: found for index, found in problems.items() if found}
        if problems:
            return 400, {"error": "invalid events", "problems": problems}
        with self._lock:
            self.split_events.extend(events)
        return 202, ""

    def _admin_refusal(self, headers: dict[str, str]) -> tuple[int, Any] | None:
        """401 unless the Admin API credential comes as the pinned (or either) header with the expected value."""
        bearer, api_key = headers.get("authorization", ""), headers.get("x-api-key")
        presented = "x-api-key" if api_key is not None else "bearer" if bearer.startswith("Bearer ") else None
        value = api_key if presented == "x-api-key" else bearer.removeprefix("Bearer ")
        if presented is None or (self.admin_auth is not None and presented != self.admin_auth):
            return 401, {"code": 401, "message": "missing Admin API credential (Authorization: Bearer or x-api-key)"}
        if self.split_admin_key and value != self.split_admin_key:
            return 401, {"code": 401, "message": "wrong Admin API credential"}
        return None

    def _split_segment(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, match: re.Match[str]
    ) -> tuple[int, Any]:
        refusal = self._admin_refusal(headers)
        if refusal is not None:
            return refusal
        if self.segment_outage is not None:
            return self.segment_outage, {"code": self.segment_outage, "message": "segment service unavailable"}
        environment, name, action = (unquote(match.group(g)) for g in ("environment", "segment", "action"))
        if (method == "GET") != (action == "keys"):
            return 405, {"code": 405, "message": f"{method} is not allowed on {action}"}
        with self._lock:
            self.segment_calls[action] += 1  # before the body is checked: a refused call is still a call
            keys = self.segments.setdefault((environment, name), [])
            if action == "keys":
                return 200, _segment_page(keys, path)
        try:
            document = json.loads(raw)
        except ValueError:
            return 400, {"code": 400, "message": "invalid JSON"}
        wanted = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(wanted, list) or not all(isinstance(k, str) and 0 < len(k) <= 250 for k in wanted):
            return 400, {"code": 400, "message": "keys must be an array of 1-250 character strings"}
        if len(wanted) > SEGMENT_KEYS_PER_CALL:
            return 400, {"code": 400, "message": f"at most {SEGMENT_KEYS_PER_CALL} keys per call"}
        return self._change_segment(environment, name, action, wanted)

    def _change_segment(self, environment: str, name: str, action: str, wanted: list[str]) -> tuple[int, Any]:
        """``uploadKeys`` (up to the segment's limit) or ``removeKeys`` of valid keys."""
        with self._lock:
            keys = self.segments.setdefault((environment, name), [])
            if action == "uploadKeys":
                present = set(keys)
                new = [key for key in dict.fromkeys(wanted) if key not in present]
                if len(keys) + len(new) > SEGMENT_MAX_KEYS:
                    return 400, {"code": 400, "message": f"a segment holds at most {SEGMENT_MAX_KEYS} keys"}
                keys.extend(new)
            else:
                gone = set(wanted)
                keys[:] = [key for key in keys if key not in gone]
        return 200, {"name": name, "environment": environment, "count": len(keys)}

    def segment(self, environment: str, name: str) -> list[str]:
        """The keys of a segment as the receiver holds them."""
        with self._lock:
            return list(self.segments.get((environment, name), []))

    def _split_kill(self, headers: dict[str, str], raw: bytes, match: re.Match[str]) -> tuple[int, Any]:
        refusal = self._admin_refusal(headers)
        if refusal is not None:
            return refusal
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {"code": 400, "message": "invalid JSON"}
        kill = {**{name: unquote(value) for name, value in match.groupdict().items()}, "body": body}
        with self._lock:
            self.kills.append(kill)
        return 200, {"killed": True, "split": kill["flag"], "environment": kill["environment"]}

    def _record(self, path: str, headers: dict[str, str], raw: bytes, status: int) -> None:
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            self.requests.append(ReceivedRequest(path, headers, body, status))

    def snapshot(self) -> dict[str, Any]:
        """What was received so far (the local runner prints and serves this)."""
        with self._lock:
            return {
                "split_events": list(self.split_events),
                "webhooks": {path: list(items) for path, items in self.webhooks.items()},
                "requests": len(self.requests),
                "kills": list(self.kills),
                "segments": {f"{env}/{name}": list(keys) for (env, name), keys in self.segments.items()},
                "segment_calls": dict(self.segment_calls),
            }


def _segment_page(keys: list[str], path: str) -> dict[str, Any]:
    """The answer to ``GET .../keys?offset=&limit=``: one page of ``keys``."""
    query = parse_qs(urlsplit(path).query)
    offset = int((query.get("offset") or ["0"])[0])
    limit = int((query.get("limit") or ["100"])[0])
    page = [{"key": key} for key in keys[offset : offset + limit]]
    return {"keys": page, "offset": offset, "limit": limit, "count": len(keys)}
