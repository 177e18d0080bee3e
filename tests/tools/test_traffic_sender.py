"""The traffic sender over real sockets on 127.0.0.1: exact bytes, no redirects, timeouts, the allowlist."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from flagbridge.traffic.errors import SafetyError
from flagbridge.traffic.generator import WireRequest
from flagbridge.traffic.safety import Allowlist
from flagbridge.traffic.sender import HttpSender, retry_after_seconds
from local.traffic_target import TrafficTarget


def request_to(url: str, target: str = "/v2/events", body: bytes = b'{"a":1}') -> WireRequest:
    host, port = url.removeprefix("http://").split(":")
    headers = (("Host", f"{host}:{port}".encode()), ("X-Odd", "caf\u00e9".encode("latin-1")),
               ("Content-Length", str(len(body)).encode()))  # fmt: skip
    return WireRequest("POST", "http", host, int(port), target, headers, body)


@pytest.fixture
def service() -> Iterator[TrafficTarget]:
    target = TrafficTarget().start()
    yield target
    target.stop()


def test_the_bytes_sent_are_exactly_the_generated_bytes(service: TrafficTarget) -> None:
    sender = HttpSender(Allowlist.from_document(["127.0.0.1"]))
    request = request_to(service.url, "/v2/events?q=%ED%A0%80&x=..%2F")
    first, second = sender.send(request), sender.send(request)
    sender.close()
    assert first.status == second.status == 202
    assert [item.raw for item in service.received] == [request.to_bytes()] * 2


def test_redirects_are_never_followed() -> None:
    hits: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        connection, _ = server.accept()
        hits.append(connection.recv(65536))
        connection.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://10.255.255.1/\r\nContent-Length: 0\r\n\r\n")
        connection.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    outcome = HttpSender().send(request_to(f"http://127.0.0.1:{server.getsockname()[1]}"))
    thread.join(5)
    server.close()
    assert outcome.status == 302 and len(hits) == 1  # recorded as the answer; nothing else contacted


def test_a_timeout_is_an_outcome_not_an_exception() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()  # accepts, never answers
    started = time.monotonic()
    outcome = HttpSender(timeout=0.3).send(request_to(f"http://127.0.0.1:{server.getsockname()[1]}"))
    server.close()
    assert outcome.status is None and outcome.error is not None and "timed out" in outcome.error
    assert outcome.failed and time.monotonic() - started < 5


def test_a_refused_connection_is_an_outcome() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    outcome = HttpSender().send(request_to(f"http://127.0.0.1:{port}"))
    assert outcome.status is None and "ConnectionRefused" in (outcome.error or "")


def test_the_sender_checks_the_allowlist_before_connecting(service: TrafficTarget) -> None:
    with pytest.raises(SafetyError, match="not in the traffic allowlist"):
        HttpSender(Allowlist.from_document(["localhost"])).send(request_to(service.url))
    assert service.received == []


def test_retry_after_forms() -> None:
    from flagbridge.traffic.manifest import Outcome

    def outcome(value: str | None) -> Outcome:
        return Outcome(429, 1.0, 0, "", None, (("retry-after", value),) if value else ())

    assert retry_after_seconds(outcome("7")) == 7.0
    assert retry_after_seconds(outcome(None), default=5.0) == 5.0
    assert retry_after_seconds(outcome("Wed, 21 Oct 2015 07:28:10 GMT"), now=1445412480.0) == 10.0
    assert retry_after_seconds(outcome("99999")) == 300.0
    assert retry_after_seconds(outcome("soon"), default=4.0) == 4.0
