"""``flagbridge traffic ... --stack``'s client of the run API (``flagbridge_ops.traffic_aws.call``) over real HTTP.

It answers with the status and the JSON body, and a redirect is an answer, never followed: the bearer token must
not go to wherever a ``Location`` points (``urlopen``, used before, followed a GET's redirect with its headers).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from flagbridge_ops.errors import CliError
from flagbridge_ops.traffic_aws import Stack, call

TOKEN = "run-api-token-under-test"


class Recorder(BaseHTTPRequestHandler):
    """Records every request's path and Authorization; answers by path: /moved redirects to ``elsewhere``."""

    seen: list[tuple[str, str, str | None]]
    elsewhere: str = ""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.path.endswith("/listed"):  # a proxy's answer, not the run API's
            body = b'["not", "an", "object"]'
            self.send_response(502)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.endswith("/moved"):
            self.send_response(302)
            self.send_header("Location", self.elsewhere + "/runs/stolen")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"run_id": self.path.rsplit("/", 1)[-1], "state": "running"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


def _server(seen: list[tuple[str, str, str | None]], elsewhere: str = "") -> ThreadingHTTPServer:
    handler = type("Handler", (Recorder,), {"seen": seen, "elsewhere": elsewhere})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[tuple[str, list[Any], list[Any]]]:
    api_seen: list[Any] = []
    other_seen: list[Any] = []
    other = _server(other_seen)
    api = _server(api_seen, f"http://127.0.0.1:{other.server_address[1]}")
    yield f"http://127.0.0.1:{api.server_address[1]}/runs", api_seen, other_seen
    for server in (api, other):
        server.shutdown()
        server.server_close()


def test_the_status_and_json_body_come_back_with_the_token_sent(servers: tuple[str, list[Any], list[Any]]) -> None:
    api, api_seen, _ = servers
    status, body = call(Stack(api=api, token=TOKEN), "POST", "", {"requests": 10})
    assert (status, body) == (200, {"run_id": "runs", "state": "running"})
    assert api_seen == [("POST", "/runs", f"Bearer {TOKEN}")]


def test_a_redirect_is_answered_not_followed_and_the_token_stays(servers: tuple[str, list[Any], list[Any]]) -> None:
    # Given a run API that redirects a run's status to another host
    api, api_seen, other_seen = servers

    # When the CLI asks for that status
    status, body = call(Stack(api=api, token=TOKEN), "GET", "/moved")

    # Then the 302 is the answer, and the other host saw nothing, least of all the token
    assert status == 302 and body["error"] == "not_json"
    assert api_seen == [("GET", "/runs/moved", f"Bearer {TOKEN}")]
    assert other_seen == []


def test_no_answer_is_one_clear_line() -> None:
    with pytest.raises(CliError, match=r"^cannot reach the run API at http://127\.0\.0\.1:9/runs/r1: "):
        call(Stack(api="http://127.0.0.1:9/runs", token=TOKEN), "GET", "/r1")


def test_an_answer_that_is_no_json_object_is_named_not_a_crash(servers: tuple[str, list[Any], list[Any]]) -> None:
    api, _, _ = servers
    status, body = call(Stack(api=api, token=TOKEN), "GET", "/listed")
    assert (status, body["error"]) == (502, "not_a_json_object") and "not" in body["message"]
