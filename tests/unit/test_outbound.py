"""The one outbound HTTP adapter against a local server: its answer, keep-alive, no redirect, the allowlist, no
answer as TransportError; its in-memory twin; and no other module of the layer opening connections of its own."""

from __future__ import annotations

import ast
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flagbridge.outbound import IDLE_CHECK_SECONDS, InMemoryHttp, Origin, Outbound, Response, TransportError
from flagbridge.traffic.errors import SafetyError
from flagbridge.traffic.safety import Allowlist
from tests.conftest import ROOT

PACKAGE = ROOT / "layers" / "shared" / "flagbridge"


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.connections: list[tuple[str, int]] = []
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.close_after_answer = False
        self.closed = threading.Event()

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        super().shutdown_request(request)
        self.closed.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.connections.append(self.client_address)

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://elsewhere.invalid/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = b'{"ok": true}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Twice", "a")
        self.send_header("X-Twice", "b")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.wfile.flush()
        if self.server.close_after_answer:  # closes without saying so: the client finds out when idle
            self.close_connection = True

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_and_its_answer(server: Server) -> None:
    http = Outbound()
    answer = http.post(f"{server.url}/events/bulk?x=1", b'[{"k": 1}]', {"Content-Type": "application/json"})
    assert (answer.status, answer.body, answer.content) == (201, '{"ok": true}', b'{"ok": true}')
    assert answer.headers["content-type"] == "application/json"
    assert [value for name, value in answer.header_list if name == "x-twice"] == ["a", "b"]
    method, path, headers, body = server.seen[0]
    assert (method, path, body) == ("POST", "/events/bulk?x=1", b'[{"k": 1}]')
    assert headers["content-length"] == "10" and headers["host"] == f"127.0.0.1:{server.server_address[1]}"


def test_connections_are_kept_alive_and_a_closed_idle_one_is_not_reused(server: Server) -> None:
    now = [0.0]
    http = Outbound(clock=lambda: now[0])
    for _ in range(3):
        assert http.get(f"{server.url}/a").status == 201
    assert len(server.connections) == 1

    server.close_after_answer = True
    assert http.get(f"{server.url}/a").status == 201
    assert server.closed.wait(10)
    now[0] += IDLE_CHECK_SECONDS  # idle long enough to be checked before it is reused
    assert http.get(f"{server.url}/a").status == 201  # on a new connection, without an error
    assert len(server.connections) == 2
    http.close()


def test_no_redirect_is_followed(server: Server) -> None:
    answer = Outbound().get(f"{server.url}/moved")
    assert (answer.status, answer.headers["location"]) == (302, "http://elsewhere.invalid/")
    assert [path for _, path, _, _ in server.seen] == ["/moved"]


def test_the_allowlist_refuses_before_any_connection(server: Server) -> None:
    port = server.server_address[1]
    allowed = Outbound(allowlist=Allowlist.from_document([{"host": "127.0.0.1", "path_prefixes": ["/api"]}]))
    assert allowed.get(f"{server.url}/api/x").status == 201
    fresh = Outbound(allowlist=Allowlist.from_document(["localhost"]))
    with pytest.raises(SafetyError, match="not in the traffic allowlist"):
        fresh.exchange(Origin("http", "127.0.0.1", port), "GET", "/api/x", (), None)
    outside = Outbound(allowlist=Allowlist.from_document([{"host": "127.0.0.1", "path_prefixes": ["/api"]}]))
    with pytest.raises(SafetyError, match="outside the allowed prefixes"):
        outside.get(f"{server.url}/admin")
    assert len(server.connections) == 1


def test_raw_requests_go_as_given(server: Server) -> None:
    port = server.server_address[1]
    headers = [("Host", "shop.example"), ("Content-Length", "2"), ("X-Bytes", b"raw")]
    answer = Outbound().exchange(Origin("http", "127.0.0.1", port), "PUT", "/r", headers, b"hi", raw=True)
    assert answer.status == 201
    _, _, seen, body = server.seen[0]
    assert (seen["host"], seen["x-bytes"], body) == ("shop.example", "raw", b"hi")
    assert "accept-encoding" not in seen


def test_no_answer_is_a_transport_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(TransportError) as refused:
        Outbound(connect_timeout=2.0).get(f"http://127.0.0.1:{port}/")
    assert refused.value.kind == "ConnectionRefusedError" and not refused.value.stale

    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(TransportError) as timed_out:
            Outbound(read_timeout=0.2).get(f"http://127.0.0.1:{silent.getsockname()[1]}/")
    assert timed_out.value.kind == "TimeoutError"

    with pytest.raises(TransportError, match="not an http"):
        Outbound().get("ftp://example.com/")


def test_the_twin_records_and_answers_in_order() -> None:
    twin = InMemoryHttp(answers=[Response(503, {}, "down"), TransportError("TimeoutError")])
    assert twin.post("https://events.example/bulk", b"[]", {"A": "1"}).status == 503
    with pytest.raises(TransportError):
        twin.put("https://events.example/bulk", b"{}")
    assert twin.get("https://events.example/ok").status == 200
    assert [(s.method, s.url) for s in twin.sent] == [
        ("POST", "https://events.example/bulk"),
        ("PUT", "https://events.example/bulk"),
        ("GET", "https://events.example/ok"),
    ]
    assert twin.sent[0].headers == {"A": "1"}
    with pytest.raises(TransportError, match="not an http"):
        twin.get("file:///etc/passwd")


def _closing_after_one_answer() -> tuple[socket.socket, threading.Thread]:
    """A server whose first connection answers one request, then reads the next and closes without an answer;
    every later connection answers one request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def serve() -> None:
        first, _ = listener.accept()
        with first:
            first.recv(65536)
            first.sendall(ok)
            first.recv(65536)  # the second request: read, never answered
        second, _ = listener.accept()
        with second:
            second.recv(65536)
            second.sendall(ok)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_a_kept_alive_connection_closed_under_a_request_is_stale() -> None:
    listener, thread = _closing_after_one_answer()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    with listener:
        http = Outbound(read_timeout=5.0)
        assert http.get(url).status == 200
        with pytest.raises(TransportError) as closed:
            http.get(url)
        assert closed.value.stale and closed.value.kind == "RemoteDisconnected"
        assert http.get(url).body == "ok"  # a fresh connection
        thread.join(5)


def test_the_traffic_sender_sends_a_stale_request_again_once() -> None:
    from flagbridge.traffic.generator import WireRequest
    from flagbridge.traffic.sender import HttpSender

    listener, thread = _closing_after_one_answer()
    port = listener.getsockname()[1]
    request = WireRequest("GET", "http", "127.0.0.1", port, "/", (("Host", b"127.0.0.1"),), b"")
    with listener:
        sender = HttpSender(timeout=5.0)
        assert sender.send(request).status == 200
        again = sender.send(request)
        assert (again.status, again.error) == (200, None)
        thread.join(5)


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_only_the_outbound_adapter_opens_http_connections() -> None:
    transports = {"urllib3", "http.client", "urllib.request", "socket", "ssl", "requests", "httpx"}
    others = {
        str(path.relative_to(PACKAGE)): sorted(_imported(path) & transports)
        for path in PACKAGE.rglob("*.py")
        if path.name != "outbound.py"
    }
    assert {name: found for name, found in others.items() if found} == {}
    assert {"http.client", "ssl"} <= _imported(PACKAGE / "outbound.py")
