"""The local runner (``make run``) against hostile clients and its own test runs (issue 17, classes 6 and 8).

- YAML text in ``POST /runs`` is a 400 under the runner as on the deployed stack (the runner has PyYAML; the
  layer does not, and the route refuses YAML text either way).
- A run's worker holds its invocation lane while it sends; the HTTP routes have their own lane, so ``GET /tests``
  is answered while the worker is still inside a send (the target holds its request until the test lets it go),
  and the worker's results reach the runner's own Events API.
- Malformed HTTP (a chunk size of ``zz``, a truncated chunk, a broken request line) gets a 400 JSON answer.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from local.runner.bridge import LocalBridge
from tests.conftest import ROOT
from tests.fixtures.runs import MODEL, PLAN, TESTERS, yaml_document

pytestmark = pytest.mark.e2e

TOKEN = "local-traffic-token"
ORACLE_TOKEN = "local-oracle-token"
ANSWER_TIMEOUT = 120.0  # a client's patience: far above any answer; a lane held by the worker never answers


class HeldTarget:
    """A target service that holds every request until :meth:`release` (a worker stays inside its send)."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.count = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target.count += 1
                target.arrived.set()
                target.released.wait(ANSWER_TIMEOUT)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBridge]:
    config = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    config["traffic"] = {"allowlist": ["localhost", "127.0.0.1"], "testers": TESTERS}
    path: Path = tmp_path_factory.mktemp("runner-hostile") / "flagbridge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("FLAGBRIDGE_CONFIG", str(path))
    monkeypatch.setenv("FLAGBRIDGE_LOCAL_RETRY_SECONDS", "1")
    monkeypatch.delenv("FLAGBRIDGE_LOCAL_CONCURRENCY", raising=False)  # the default: one invocation per lane
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    runner = LocalBridge(port=0).start()
    try:
        yield runner
    finally:
        runner.stop()
        monkeypatch.undo()


def _post_run(bridge: LocalBridge, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return bridge.request("POST", "/runs", json.dumps(body).encode(), headers)


def _raw(bridge: LocalBridge, data: bytes) -> tuple[int, dict[str, Any]]:
    """Send raw bytes; the status and JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", int(bridge.url.rsplit(":", 1)[1])), timeout=ANSWER_TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # nothing more will come: a truncated body ends here
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


def test_yaml_text_in_a_run_request_is_refused_as_the_deployed_stack_refuses_it(bridge: LocalBridge) -> None:
    status, body = _post_run(
        bridge, {"plan": PLAN, "model": MODEL, "requests": 5, "rate": 100, "target": "http://127.0.0.1:9"}
    )
    assert (status, body["error"]) == (400, "invalid_plan"), body
    assert "not YAML text" in body["message"]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("chunk_size_zz", b"POST /runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
        ("chunk_size_negative", b"POST /runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n"),
        ("chunk_size_empty", b"POST /runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\n"),
        ("chunk_truncated", b"POST /runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n{}"),
        (
            "chunk_without_crlf",
            b"POST /runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}xx0\r\n\r\n",
        ),
        (
            "chunk_size_huge",
            b"POST /runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 5000 + b"\r\n",
        ),
        ("bad_content_length", b"POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"),
        ("bad_request_line", b"GET /tests HTTP/1.1 extra\r\nHost: x\r\n\r\n"),
        ("bad_version", b"GET /tests HTTP/9\r\nHost: x\r\n\r\n"),
    ],
)
def test_malformed_http_gets_a_400_json_answer(bridge: LocalBridge, name: str, data: bytes) -> None:
    status, body = _raw(bridge, data)
    assert status == 400, (name, body)
    assert isinstance(body.get("message"), str) and body["message"], body


def test_routes_are_answered_while_a_run_is_in_flight(bridge: LocalBridge) -> None:
    target = HeldTarget()
    try:
        # Given a run whose worker is inside its first send (the target holds the request)
        status, started = _post_run(
            bridge,
            {
                "plan": yaml_document(PLAN),
                "model": yaml_document(MODEL),
                "requests": 2,
                "rate": 100,
                "target": target.url,
                "seed": 5,
                "run_id": "in-flight",
            },
        )
        assert status == 202, started
        assert target.arrived.wait(ANSWER_TIMEOUT), "the worker never sent its first request"

        # When a client asks for the oracle's tests
        answered, tests = bridge.request("GET", "/tests", None, {"Authorization": f"Bearer {ORACLE_TOKEN}"})

        # Then it is answered while the run is still in flight: the worker has not finished its first send
        assert answered == 200, tests
        assert not target.released.is_set() and target.count == 1
        assert bridge.request("GET", "/runs/in-flight", None, {"Authorization": f"Bearer {TOKEN}"})[1]["sent"] == 0
    finally:
        target.release()

    # and once released, the run completes (its worker posts its results to the runner's own Events API)
    _wait_idle(bridge)
    status, run = bridge.request("GET", "/runs/in-flight", None, {"Authorization": f"Bearer {TOKEN}"})
    target.stop()
    assert (status, run["state"], run["sent"]) == (200, "completed", 2), run


def _wait_idle(bridge: LocalBridge) -> None:
    """Until no invocation runs and the queues are empty (a bound on waiting, not on the answer's time)."""
    import time

    deadline = time.monotonic() + ANSWER_TIMEOUT
    while not bridge.is_idle():
        assert time.monotonic() < deadline, "the runner never became idle"
        time.sleep(0.2)
