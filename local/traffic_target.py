"""A local service under test for traffic plans: records every request's exact bytes, answers by rules.

Used by the traffic tests and the bench (127.0.0.1 only). A tiny HTTP/1.1 server on raw sockets (not
``http.server``, which re-parses and re-encodes headers), so the bytes a case was sent with can be
compared with a replay byte for byte. Each request is answered and the connection kept open for the next;
the answer comes from ``respond(raw, target)`` (default: 400 when the body is not JSON, else 202).
``throttle_first`` answers the first N requests 429 with ``Retry-After: 0``. A ``respond`` that returns
:data:`DROP` (0) closes the connection without an answer: what a crashed or hung service looks like to a client.
``OPTIONS *`` (a run's preflight, :mod:`flagbridge.traffic.preflight`) is answered 204 by the server itself, as
HTTP servers do, and counted in :attr:`TrafficTarget.probes`, never in :attr:`TrafficTarget.received`.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_HEAD = 1 << 20
DROP = 0

Respond = Callable[[bytes, str], int]


def default_respond(raw: bytes, target: str) -> int:
    body = raw.split(b"\r\n\r\n", 1)[1]
    try:
        json.loads(body)
    except ValueError:
        return 400
    return 202


@dataclass
class Received:
    raw: bytes
    target: str
    status: int
    run_tag: str | None


@dataclass
class TrafficTarget:
    """The server; ``start()`` it, read :attr:`received`, ``stop()`` it."""

    respond: Respond = default_respond
    throttle_first: int = 0
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    record: bool = True
    probes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socketserver.ThreadingTCPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> TrafficTarget:
        target = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                target._serve(self.request)

        server = socketserver.ThreadingTCPServer((self.host, 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="traffic-target", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def by_case(self) -> dict[str, bytes]:
        """The last bytes received per case id (from the run tag header)."""
        out: dict[str, bytes] = {}
        with self._lock:
            for item in self.received:
                if item.run_tag:
                    parts = item.run_tag.rsplit(".", 2)
                    if len(parts) == 3:
                        out[parts[1]] = item.raw
        return out

    def _serve(self, connection: socket.socket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = connection.recv(65536)
                if not chunk or len(buffer) > MAX_HEAD:
                    return
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            length = 0
            run_tag = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lowered = name.strip().lower()
                if lowered == b"content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        length = 0
                elif lowered == b"x-flagbridge-run":
                    run_tag = value.strip().decode("latin-1")
            while len(buffer) < length:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            body, buffer = buffer[:length], buffer[length:]
            raw = head + b"\r\n\r\n" + body
            parts = lines[0].split(b" ")
            request_target = parts[1].decode("latin-1") if len(parts) > 1 else ""
            if parts[0] == b"OPTIONS" and request_target == "*":  # a run's preflight: the server answers for itself
                with self._lock:
                    self.probes += 1
                connection.sendall(b"HTTP/1.1 204 No Content\r\nAllow: GET, POST, PUT, PATCH, DELETE, OPTIONS\r\n\r\n")
                continue
            with self._lock:
                throttled = self.throttle_first > 0
                if throttled:
                    self.throttle_first -= 1
            status = 429 if throttled else self.respond(raw, request_target)
            if self.record:
                with self._lock:
                    self.received.append(Received(raw, request_target, status, run_tag))
            if status == DROP:
                return  # the handler returns and the server closes the connection, unanswered
            reply = json.dumps({"status": status}).encode()
            extra = b"Retry-After: 0\r\n" if status == 429 else b""
            connection.sendall(
                b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                % (status, len(reply), extra, reply)
            )
