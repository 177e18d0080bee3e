"""The run's own mistakes never move a verdict: end to end through the local runner over HTTP (issue 16, item 4).

The oracle test ``gone-health`` (the shipped metrics; the test kills on FAIL, its ``unanswered rate`` only alerts)
judges flag ``e2e_gone``; its one tester ``qa-gone-1`` was served ``on``. ``flagbridge traffic run`` (a fresh
interpreter) then makes the two mistakes a run can make:

* **a target that does not answer before the run** (a port where nothing listens): one line naming the target,
  exit 1, no manifest, and nothing reaches the bridge: the test is still NO_DATA once the bridge is idle;
* **a target lost mid-run**: the service answers 12 requests, then drops every connection unanswered. The run
  stops after 20 unanswered requests in a row (``target ... stopped answering``), its 32 results reach the
  oracle, which FAILs ``unanswered rate`` (and alerts: the change is in the history) but kills nothing, since
  that metric only alerts; the 5xx rate of the 12 answers is not moved.

Deterministic: the service counts the requests it answers, and every wait polls with a deadline.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from local.traffic_target import DROP, TrafficTarget
from tests.e2e.conftest import ROOT, Bridge, free_port, started_runner
from tests.e2e.test_oracle_e2e import ORACLE_TOKEN, evaluated_after, impression, receivers, report, settle, verdicts
from tests.tools.test_traffic_cli import flagbridge

pytestmark = pytest.mark.e2e

TEST, FLAG, TESTER = "gone-health", "e2e_gone", "qa-gone-1"
ANSWERED = 12
MODEL = """
requests:
  - name: checkout
    method: POST
    url: http://127.0.0.1/checkout
    headers: {Content-Type: application/json, X-Tester: "{{tester.key}}"}
    body: {user: "{{tester.key}}", sku: A1, quantity: 1}
"""
PLAN = f"""
host: {{probability: 0%}}
oracle: {{test: {TEST}}}
"""


def write_config(directory: Path) -> None:
    document = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    for destination in document["cdp"]["destinations"]:  # as in test_traffic_oracle_e2e: the oracle's path only
        if destination["name"] == "split":
            destination["filter"]["event_names"]["exclude"] += ["flagbridge_test_request"]
    base = document["oracle"]["tests"][0]
    document["oracle"]["tests"] = [
        {**base, "name": TEST, "flag": FLAG, "actions": ["alert", "kill"], "kill": {"workspace_id": "ws-gone"}}
    ]
    document["traffic"] = {"allowlist": ["127.0.0.1"], "testers": [TESTER]}
    (directory / "flagbridge.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    (directory / "model.yaml").write_text(MODEL, encoding="utf-8")
    (directory / "plan.yaml").write_text(PLAN, encoding="utf-8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("run-mistakes")
    write_config(directory)
    return directory


@pytest.fixture(scope="module")
def bridge(workdir: Path) -> Iterator[Bridge]:
    settings = {
        "FLAGBRIDGE_NO_DEMO": "1",
        "FLAGBRIDGE_CONFIG": str(workdir / "flagbridge.yaml"),
        "FLAGBRIDGE_LOCAL_SCHEDULE_SECONDS": "1",
    }
    with started_runner(workdir, settings) as running:
        exposed_at = int(time.time() * 1000) - 60_000
        reply = running.post_impressions([impression(TESTER, FLAG, "on", exposed_at)])
        assert reply.status == 200, reply.body
        settle(running)
        yield running


def run(workdir: Path, bridge: Bridge, target: str, run_id: str, *extra: str) -> dict[str, object]:
    result = flagbridge(
        ["--config", "flagbridge.yaml", "traffic", "run", "plan.yaml", "--model", "model.yaml", "--target", target,
         "--seed", "3", "--requests", "1000", "--rate", "200/s", "--bridge", bridge.url, "--run-id", run_id,
         "--report", f"{run_id}.ndjson", "--timeout", "5", *extra],
        workdir, FLAGBRIDGE_ORACLE_API_TOKEN=ORACLE_TOKEN,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return {"code": result.returncode, "stdout": result.stdout, "stderr": result.stderr}


def test_a_run_against_a_closed_port_sends_and_reports_nothing_and_exits_1(bridge: Bridge, workdir: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = run(workdir, bridge, closed, "tr-closed")
    assert result["code"] == 1 and result["stdout"] == ""
    lines = [line for line in str(result["stderr"]).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: target {closed} does not answer ("), lines
    assert not (workdir / "tr-closed.ndjson").exists()
    # nothing reached the bridge: once it is idle, the test has still counted nothing
    document = evaluated_after(bridge, TEST, settle(bridge))
    assert document["state"] == "NO_DATA" and all(v["n"] == 0 for v in verdicts(document).values())


def test_a_target_lost_mid_run_fails_unanswered_rate_alerts_kills_nothing_and_stops_the_run(
    bridge: Bridge, workdir: Path
) -> None:
    calls = {"n": 0}
    lock = threading.Lock()

    def vanishing(raw: bytes, target: str) -> int:
        with lock:
            calls["n"] += 1
            return 200 if calls["n"] <= ANSWERED else DROP

    service = TrafficTarget(respond=vanishing, record=False).start()
    url = service.url
    try:
        result = run(workdir, bridge, url, "tr-gone", "--verdict-wait", "120", "--json")
    finally:
        service.stop()
    assert result["code"] == 1, str(result["stderr"])[-3000:] + bridge.log_tail()  # the oracle's FAIL
    outcome = json.loads(str(result["stdout"]))
    summary = outcome["summary"]
    assert summary["stopped"].startswith(
        f"target {url} stopped answering: 20 requests in a row got no answer (last: RemoteDisconnected"
    ), summary
    assert (summary["sent"], summary["outcomes"]) == (ANSWERED + 20, {"ok": ANSWERED, "transport_error": 20})
    assert outcome["results"] == {"delivered_events": ANSWERED + 20, "undelivered_events": 0}
    shown = {(v["treatment"], v["metric"]): v["state"] for v in outcome["oracle"]["verdicts"]}
    assert shown[("on", "unanswered rate")] == "FAIL" and outcome["oracle"]["stopped_the_run"] is False

    # The oracle: every result counted once; no answer is its own metric, the answers' 5xx rate is not moved
    document = evaluated_after(bridge, TEST, settle(bridge), timeout=120)
    judged = verdicts(document)
    assert (judged[("on", "unanswered rate")]["n"], judged[("on", "unanswered rate")]["k"]) == (ANSWERED + 20, 20)
    assert (judged[("on", "5xx rate")]["n"], judged[("on", "5xx rate")]["k"]) == (ANSWERED, 0)
    assert judged[("on", "unanswered rate")]["state"] == "FAIL" and judged[("on", "5xx rate")]["state"] != "FAIL"
    # alerted (a change of state, what the alarm topic and EventBridge get), never killed
    changes = [change for entry in report(bridge, TEST)["history"] for change in entry["changes"]]
    assert any(change["verdict"] == "on/unanswered rate" and change["to"] == "FAIL" for change in changes), changes
    assert document["report"]["kill"] is None and document["kills"] == []
    assert [kill for kill in receivers(bridge)["kills"] if kill["flag"] == FLAG] == []
