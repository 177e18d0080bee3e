"""Shared fixture: the whole bridge started as ``python -m local.runner`` on a free port, and an HTTP client for it.

The runner embeds its own moto server (``AWS_ENDPOINT_URL`` is removed from its environment), skips the sample
replay, and writes all its output (``--verbose``: the handlers' JSON logs too) to a log file whose tail is shown
when it fails to start.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_TOKEN = "local-webhook-token"
PROFILE_TOKEN = "local-profile-token"
STARTUP_TIMEOUT = 180.0  # a deadline, not a speed claim: make test starts several runners at once on a busy machine


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Bridge:
    """HTTP client for the running bridge."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        request = Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urlopen(request, timeout=120) as reply:
                status, data, reply_headers = reply.status, reply.read(), dict(reply.headers)
        except HTTPError as exc:
            status, data, reply_headers = exc.code, exc.read(), dict(exc.headers)
        try:
            decoded: Any = json.loads(data)
        except ValueError:
            decoded = data.decode("utf-8", "replace")
        return Response(status, decoded, {name.lower(): value for name, value in reply_headers.items()})

    def post_impressions(self, impressions: list[dict[str, Any]], token: str = WEBHOOK_TOKEN) -> Response:
        """POST a batch as Split does: gzipped JSON array, token in the URL."""
        body = gzip.compress(json.dumps(impressions, separators=(",", ":")).encode())
        return self.request(
            "POST",
            f"/split/impressions?token={quote(token, safe='')}",
            body,
            {"Content-Type": "application/json", "User-Agent": "Split-Webhook/1.0"},
        )

    def profile(self, traffic_type: str, key: str, token: str = PROFILE_TOKEN) -> Response:
        return self.request(
            "GET",
            f"/profiles/{quote(traffic_type, safe='')}/{quote(key, safe='')}",
            None,
            {"Authorization": f"Bearer {token}"},
        )

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until the runner reports idle twice in a row (queues drained, no invocation running).

        Every look costs the runner a queue-attributes call per queue, taken from the work being waited on: the
        interval starts at 0.1 s and grows while the runner stays busy (a drain of minutes is looked at about
        once a second, not ten times), and is 0.1 s again to confirm an idle reading.
        """
        deadline = time.monotonic() + timeout
        confirmations, interval = 0, 0.1
        while time.monotonic() < deadline:
            confirmations = confirmations + 1 if self.request("GET", "/_local/idle").body.get("idle") else 0
            if confirmations >= 2:
                return
            interval = 0.1 if confirmations else min(interval * 1.5, 1.0)
            time.sleep(interval)
        raise AssertionError(f"the bridge did not become idle within {timeout}s\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _wait_ready(bridge: Bridge) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if bridge.process.poll() is not None:
            raise RuntimeError(f"the runner exited with {bridge.process.returncode}:\n{bridge.log_tail()}")
        try:
            with urlopen(bridge.url + "/_local/health", timeout=2) as reply:
                if json.loads(reply.read()).get("ready"):
                    return
        except (URLError, OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the runner was not ready within {STARTUP_TIMEOUT}s:\n{bridge.log_tail()}")


@contextlib.contextmanager
def started_runner(
    directory: Path, environment: Mapping[str, str] | None = None, arguments: tuple[str, ...] = ("--verbose",)
) -> Iterator[Bridge]:
    """``python -m local.runner`` in a subprocess on a free port, without the sample replay, ready; stopped after.

    ``environment`` adds to (or overrides) the runner's environment, e.g. ``FLAGBRIDGE_CONFIG`` or ``PYTHONPATH``;
    its output goes to ``directory/runner.log``.
    """
    port = free_port()
    log_path = directory / "runner.log"
    env = {**os.environ, "PORT": str(port), "FLAGBRIDGE_NO_REPLAY": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("AWS_ENDPOINT_URL", "MOTO_PORT", "FLAGBRIDGE_CONFIG"):
        env.pop(name, None)
    env.update(environment or {})
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.runner", *arguments], cwd=ROOT, env=env, stdout=log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    running = Bridge(f"http://127.0.0.1:{port}", process, log_path)
    try:
        started = time.perf_counter()
        _wait_ready(running)
        print(f"\nlocal runner ready in {time.perf_counter() - started:.2f}s on {running.url}")
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class _SharedRunner:
    """The runner the modules using :func:`bridge` share on this worker: started by the first test that needs it,
    stopped as soon as the next test here does not (started again if a later module needs it). Idle, a runner
    still costs CPU (its queue pollers' calls, its schedules), and a session-long one stayed up while this
    worker ran every later tier."""

    def __init__(self) -> None:
        self._context: contextlib.AbstractContextManager[Bridge] | None = None
        self.running: Bridge | None = None

    def start(self, tmp_path_factory: pytest.TempPathFactory) -> Bridge:
        if self.running is None:
            context = started_runner(tmp_path_factory.mktemp("runner"))
            self.running = context.__enter__()
            self._context = context
        return self.running

    def stop(self) -> None:
        context, self._context, self.running = self._context, None, None
        if context is not None:
            context.__exit__(None, None, None)


_SHARED_RUNNER = _SharedRunner()


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Bridge:
    return _SHARED_RUNNER.start(tmp_path_factory)


def _uses_shared_runner(item: pytest.Item | None) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.get("bridge", ()) if info is not None else ()
    return bool(definitions) and getattr(definitions[-1].func, "__module__", None) == __name__


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        return (yield)
    finally:
        if _SHARED_RUNNER.running is not None and not _uses_shared_runner(nextitem):
            _SHARED_RUNNER.stop()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _SHARED_RUNNER.stop()


@pytest.fixture(scope="session")
def run_id() -> str:
    """Makes this session's user keys unique."""
    return uuid.uuid4().hex[:8]
