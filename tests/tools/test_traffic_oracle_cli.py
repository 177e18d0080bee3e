"""``flagbridge traffic run`` with a plan that feeds an oracle test: refusals, the FAIL stop switch, the verdict.

The command runs in a fresh interpreter against a service on 127.0.0.1 (:class:`local.traffic_target.TrafficTarget`)
and a stand-in bridge that takes the results (``POST /mparticle/v2/bulkevents``) and answers the oracle API
(``GET /tests/{name}``, bearer token) with a scripted verdict. (The real bridge, its oracle lane and evaluator are
tests/e2e/test_traffic_oracle_e2e.py.) Also here: :class:`flagbridge.oracle.verdicts.HttpVerdicts` over real HTTP.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flagbridge.oracle.verdicts import HttpVerdicts, VerdictReadError, fail_reason
from local.traffic_target import TrafficTarget
from tests.tools.test_traffic_cli import EXAMPLES, flagbridge, one_line, sql_probe_in_query, write_config

TEST = "new-checkout-health"  # the shipped configuration's test
TOKEN = "tools-oracle-token"
FAIL_LINE = f"oracle FAIL for test {TEST} treatment on (5xx rate)"


def verdict(treatment: str, metric: str, state: str, n: int = 400, k: int = 40) -> dict[str, Any]:
    return {"flag": "new_checkout", "treatment": treatment, "metric": metric, "kind": "rate", "state": state, "n": n,
            "k": k, "rate": k / n, "lower": k / n / 2, "upper": k / n * 2,
            "explain": f"{state} new_checkout={treatment} {metric} {100 * k / n:g}% (n={n})"}  # fmt: skip


def report(state: str, evaluated_at: int, *verdicts: dict[str, Any]) -> dict[str, Any]:
    return {"state": state, "evaluated_at": evaluated_at, "verdicts": list(verdicts)}


Script = Callable[["FakeBridge"], "dict[str, Any] | None"]


class FakeBridge:
    """Takes result batches; answers ``GET /tests/{name}`` for the tests it knows with ``script(self)``."""

    def __init__(self, script: Script, known: tuple[str, ...] = (TEST,)) -> None:
        self.script = script
        self.known = known
        self.events: list[dict[str, Any]] = []
        self.verdict_reads = 0
        self.lock = threading.Lock()
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with bridge.lock:
                    bridge.events.extend(e for batch in json.loads(body) for e in batch["events"])
                self._answer(202, {})

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._answer(401, {"error": "unauthorized"})
                name = self.path.removeprefix("/tests/")
                if name not in bridge.known:
                    return self._answer(404, {"error": "test_not_found"})
                with bridge.lock:
                    bridge.verdict_reads += 1
                    document = bridge.script(bridge)
                if document is None:
                    return self._answer(200, {"name": name, "state": "PENDING", "verdicts": [], "report": None})
                summary = {k: document[k] for k in ("state", "evaluated_at", "verdicts")}
                return self._answer(200, {"name": name, **summary, "report": document})

            def _answer(self, status: int, document: Any) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service() -> Iterator[TrafficTarget]:
    target = TrafficTarget(respond=sql_probe_in_query, record=False).start()
    yield target
    target.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name in ("published-plan.yaml", "published-plan.attack-sets.yaml", "mparticle-model.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    plan = (EXAMPLES / "published-plan.yaml").read_text(encoding="utf-8")
    (tmp_path / "feeds.yaml").write_text(plan + f"oracle: {{test: {TEST}}}\n", encoding="utf-8")
    (tmp_path / "feeds-nope.yaml").write_text(plan + "oracle: {test: nope}\n", encoding="utf-8")
    write_config(tmp_path)
    return tmp_path


def bridge_with(script: Script, known: tuple[str, ...] = (TEST,)) -> FakeBridge:
    return FakeBridge(script, known)


def run(workdir: Path, service: TrafficTarget, bridge: FakeBridge, *extra: str, requests: int = 200,
        plan: str = "feeds.yaml", token: str = TOKEN, rate: str = "2000/s") -> Any:  # fmt: skip
    return flagbridge(
        ["--config", "flagbridge.yaml", "traffic", "run", plan, "--model", "mparticle-model.yaml",
         "--target", service.url, "--seed", "5", "--requests", str(requests), "--rate", rate,
         "--bridge", bridge.url, "--report", "run.ndjson", *extra],
        workdir, **({"FLAGBRIDGE_ORACLE_API_TOKEN": token} if token else {}),
    )  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize(
    ("plan", "token", "known", "expected"),
    [
        ("feeds-nope.yaml", TOKEN, (TEST,),
         "error: feeds-nope.yaml: 'oracle.test': no oracle test 'nope' in the configuration (known: "
         "new-checkout-health)"),
        ("feeds.yaml", "", (TEST,),
         f"error: the plan feeds oracle test '{TEST}': set FLAGBRIDGE_ORACLE_API_TOKEN (or ORACLE_API_TOKEN_SECRET"),
        ("feeds.yaml", TOKEN, ("another-test",),
         f"error: cannot read the verdict of oracle test '{TEST}' before the run: the bridge at http://127.0.0.1:"),
        ("feeds.yaml", "wrong-token", (TEST,),
         f"error: cannot read the verdict of oracle test '{TEST}' before the run: the oracle API at http://127.0.0.1:"),
    ],
    ids=["unknown test", "no token", "test unknown to the bridge", "token refused"],
)  # fmt: skip
def test_a_run_that_cannot_feed_or_hear_its_test_is_refused_before_sending(
    workdir: Path, service: TrafficTarget, plan: str, token: str, known: tuple[str, ...], expected: str
) -> None:
    bridge = bridge_with(lambda _: None, known)
    try:
        result = run(workdir, service, bridge, plan=plan, token=token)
    finally:
        bridge.close()
    assert result.returncode == 1
    assert one_line(result.stderr).startswith(expected), result.stderr
    assert bridge.events == [] and service.received == [] and not (workdir / "run.ndjson").exists()


def test_the_oracle_s_fail_stops_the_run_between_batches_and_is_its_exit_status(
    workdir: Path, service: TrafficTarget
) -> None:
    # Given: the oracle says FAIL for `on` once 100 results reached the bridge (INCONCLUSIVE before)
    def script(bridge: FakeBridge) -> dict[str, Any]:
        if len(bridge.events) >= 100:
            return report("FAIL", now_ms(), verdict("on", "5xx rate", "FAIL"), verdict("off", "5xx rate", "PASS", k=0))
        return report("INCONCLUSIVE", now_ms(), verdict("on", "5xx rate", "INCONCLUSIVE", n=20, k=2))

    bridge = bridge_with(script)
    try:
        # When: a run of 3,000 requests at 500/s (6 s at least)
        result = run(workdir, service, bridge, "--json", requests=3000, rate="500/s")
    finally:
        bridge.close()
    # Then: it stopped before a batch, on the oracle's FAIL, and exits 1 like `flagbridge verdict`
    assert result.returncode == 1, result.stderr
    outcome = json.loads(result.stdout)
    summary = outcome["summary"]
    assert summary["stopped"] == FAIL_LINE
    assert 100 <= summary["sent"] < 3000 and summary["sent"] % 50 == 0
    assert outcome["oracle"]["stopped_the_run"] is True and outcome["oracle"]["state"] == "FAIL"
    assert [(v["treatment"], v["state"]) for v in outcome["oracle"]["verdicts"]] == [("on", "FAIL"), ("off", "PASS")]
    # And: every result of what was sent reached the bridge
    assert len(bridge.events) == summary["sent"] and outcome["results"]["undelivered_events"] == 0


def test_a_fail_standing_before_the_run_sends_nothing_and_the_text_shows_the_verdict(
    workdir: Path, service: TrafficTarget
) -> None:
    bridge = bridge_with(lambda _: report("FAIL", now_ms() - 60_000, verdict("on", "5xx rate", "FAIL")))
    try:
        result = run(workdir, service, bridge)
    finally:
        bridge.close()
    assert result.returncode == 1, result.stderr
    assert service.received == [] and bridge.events == []
    assert f"  stopped: {FAIL_LINE}\n" in result.stdout
    assert f"  oracle test {TEST} (5xx rate, latency p95, unanswered rate): FAIL (evaluated " in result.stdout
    assert "    FAIL new_checkout=on 5xx rate 10% (n=400)\n" in result.stdout


def test_a_pass_counts_only_from_an_evaluation_after_the_run(workdir: Path, service: TrafficTarget) -> None:
    requests = 200
    passing = (
        verdict("on", "5xx rate", "PASS", k=0),
        verdict("on", "latency p95", "PASS", k=0),
        verdict("on", "unanswered rate", "PASS", k=0),
    )

    # Given: the oracle evaluates after every result arrived (PASS), and INCONCLUSIVE before
    def evaluated_once_all_arrived(bridge: FakeBridge) -> dict[str, Any]:
        if len(bridge.events) >= requests:
            return report("PASS", now_ms(), *passing)
        return report("INCONCLUSIVE", now_ms() - 1000, verdict("on", "5xx rate", "INCONCLUSIVE", n=20, k=0))

    bridge = bridge_with(evaluated_once_all_arrived)
    try:
        waited = run(workdir, service, bridge, requests=requests)  # no --verdict-wait: the default waits
    finally:
        bridge.close()
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert f"waiting up to 180s for the oracle's verdict of {TEST}" in waited.stderr
    assert f"oracle test {TEST} (5xx rate, latency p95, unanswered rate): PASS (evaluated " in waited.stdout
    assert "after the run's last result)" in waited.stdout

    # Given: a PASS from before the run, and no waiting: not this run's verdict yet
    stale = bridge_with(lambda _: report("PASS", 1_767_225_600_000, *passing))
    try:
        unwaited = run(workdir, service, stale, "--verdict-wait", "0", requests=requests)
    finally:
        stale.close()
    assert unwaited.returncode == 2, unwaited.stdout + unwaited.stderr
    assert "before the run's last result was counted)" in unwaited.stdout


def test_no_oracle_reads_no_verdict_and_exits_on_the_requests(workdir: Path, service: TrafficTarget) -> None:
    bridge = bridge_with(lambda _: report("FAIL", now_ms(), verdict("on", "5xx rate", "FAIL")))
    try:
        result = run(workdir, service, bridge, "--no-oracle", "--json", token="")
    finally:
        bridge.close()
    outcome = json.loads(result.stdout)
    assert bridge.verdict_reads == 0 and outcome["oracle"] is None and outcome["summary"]["stopped"] is None
    assert result.returncode == (1 if outcome["summary"]["failures"] else 0)
    assert outcome["oracle_test"] == TEST and len(bridge.events) == 200
    assert {e["data"]["custom_attributes"]["oracle_test"] for e in bridge.events} == {TEST}


class OracleApi(BaseHTTPRequestHandler):
    """``GET /tests/{name}`` as the bridge answers it; /moved redirects elsewhere."""

    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        OracleApi.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/moved"):
            self._answer(302, b"", {"Location": "http://127.0.0.2:9/tests/checkout"})
        elif self.headers.get("Authorization") != "Bearer right":
            self._answer(401, b'{"error": "unauthorized"}')
        elif self.path == "/tests/checkout":
            body = {"name": "checkout", "state": "FAIL", "evaluated_at": 5,
                    "verdicts": [verdict("on", "5xx rate", "FAIL")], "report": {"verdicts": []}}  # fmt: skip
            self._answer(200, json.dumps(body).encode())
        elif self.path == "/tests/quiet":
            self._answer(200, json.dumps({"name": "quiet", "state": "PENDING", "verdicts": []}).encode())
        elif self.path == "/tests/broken":
            self._answer(503, b"{}")
        else:
            self._answer(404, b'{"error": "test_not_found"}')

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def oracle_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OracleApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_bridge_s_oracle_api_is_a_source(oracle_api: str) -> None:
    source = HttpVerdicts(oracle_api, "right", timeout=5.0)
    read = source.verdict("checkout")
    assert read is not None and fail_reason("checkout", read, ["5xx rate"]) is not None
    assert OracleApi.seen[-1] == ("/tests/checkout", "Bearer right")
    assert source.verdict("quiet") is None  # never evaluated
    with pytest.raises(VerdictReadError, match="has no oracle test 'nope'") as unknown:
        source.verdict("nope")
    assert unknown.value.permanent
    with pytest.raises(VerdictReadError, match="refused the token") as refused:
        HttpVerdicts(oracle_api, "wrong").verdict("checkout")
    assert refused.value.permanent
    with pytest.raises(VerdictReadError, match="answered HTTP 503") as unavailable:
        source.verdict("broken")
    assert not unavailable.value.permanent
    # A redirect is not followed: the token never leaves for another host
    with pytest.raises(VerdictReadError, match="answered HTTP 302"):
        HttpVerdicts(oracle_api + "/moved", "right").verdict("checkout")
    with pytest.raises(VerdictReadError, match="did not answer"):
        HttpVerdicts("http://127.0.0.1:9", "right", timeout=2.0).verdict("checkout")
