"""A run until decided in the stack, end to end on the local runner: ``POST /runs`` with ``until_decided: true``.

The runner (in process, :class:`local.runner.bridge.LocalBridge` on its own moto server) serves ``POST /runs`` and
consumes the shard queue with the worker function; the looks are real delayed SQS messages (``DelaySeconds``,
``TRAFFIC_LOOK_DELAY_SECONDS`` = 1 here). The oracle is played by a thread that writes the test's verdict to the
stack's verdicts table as the evaluator does: its ``evaluated_at`` taken before it counts what the target received,
INCONCLUSIVE asking for the requests still missing to 250, then PASS. So the run must send exactly a first round
of 100 and a second of the 150 asked for, and end decided, far under its budget of 1,000.

The oracle's own evaluation of runs until decided: tests/e2e/test_until_decided_e2e.py (the CLI's rounds).
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from local.runner.bridge import LocalBridge
from tests.conftest import ROOT
from tests.fixtures.runs import MODEL, ORACLE_TEST, PLAN_WITH_TEST, TESTERS, CountingTarget, yaml_document

pytestmark = pytest.mark.e2e

TOKEN = "local-traffic-token"
DECIDES_AT = 250


@pytest.fixture(scope="module")
def target() -> Iterator[CountingTarget]:
    server = CountingTarget().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bridge(target: CountingTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBridge]:
    config = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    config["traffic"] = {"allowlist": ["localhost", "127.0.0.1"], "testers": TESTERS}
    path: Path = tmp_path_factory.mktemp("rounds") / "flagbridge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("FLAGBRIDGE_CONFIG", str(path))
    monkeypatch.setenv("FLAGBRIDGE_LOCAL_PARAM_TrafficResultsUrl", f"{target.url}/mparticle/v2")
    monkeypatch.setenv("FLAGBRIDGE_LOCAL_PARAM_TrafficParallelism", "4")
    monkeypatch.setenv("FLAGBRIDGE_LOCAL_SCHEDULE_SECONDS", "0")  # no evaluator: the test's thread is the oracle
    monkeypatch.setenv("TRAFFIC_LOOK_DELAY_SECONDS", "1")
    monkeypatch.setenv("FLAGBRIDGE_LOCAL_RETRY_SECONDS", "1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    runner = LocalBridge(port=0).start()
    try:
        yield runner
    finally:
        runner.stop()
        monkeypatch.undo()


def _http(bridge: LocalBridge, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return bridge.request(method, path, data, headers)


def _oracle(bridge: LocalBridge, target: CountingTarget, stopping: threading.Event) -> None:
    ddb = bridge.client("dynamodb")
    while not stopping.is_set():
        evaluated_at = int(time.time() * 1000)
        sent = target.total  # counted after evaluated_at: everything sent before it is in
        state = "PASS" if sent >= DECIDES_AT else "INCONCLUSIVE"
        needed = None if state == "PASS" else DECIDES_AT - sent
        rows = [{"treatment": "on", "metric": "5xx rate", "state": state, "needed": needed, "n": sent}]
        document = {"state": state, "evaluated_at": evaluated_at, "verdicts": rows}
        ddb.put_item(
            TableName=os.environ["ORACLE_VERDICTS_TABLE"],
            Item={"pk": {"S": f"TEST#{ORACLE_TEST}"}, "sk": {"S": "STATE"}, "doc": {"S": json.dumps(document)}},
        )
        stopping.wait(0.2)


def test_a_run_until_decided_sends_the_rounds_the_oracle_asks_for_and_ends_decided(
    bridge: LocalBridge, target: CountingTarget
) -> None:
    request = {
        "plan": yaml_document(PLAN_WITH_TEST),  # JSON objects: the stack reads no YAML text
        "model": yaml_document(MODEL),
        "requests": 1000,
        "rate": 4000,
        "target": target.url,
        "seed": 5,
        "run_id": "until-decided-aws",
        "shard_size": 50,
        "until_decided": True,
    }
    # moto's state is the process's: a verdict another module's stack left (its estimate would size the first
    # round) is removed, so the first round is the 100 requests of a test never evaluated
    bridge.client("dynamodb").delete_item(
        TableName=os.environ["ORACLE_VERDICTS_TABLE"], Key={"pk": {"S": f"TEST#{ORACLE_TEST}"}, "sk": {"S": "STATE"}}
    )
    status, body = _http(bridge, "POST", "/runs", request)
    assert status == 202, body
    assert (body["shards"], body["expected_sqs_requests"]) == (20, 1)
    stopping = threading.Event()
    oracle = threading.Thread(target=_oracle, args=(bridge, target, stopping), daemon=True)
    oracle.start()
    try:
        deadline = time.monotonic() + 300
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status, run = _http(bridge, "GET", "/runs/until-decided-aws")
            assert status == 200, run
            if run["ended"] is not None:
                break
            time.sleep(0.3)
    finally:
        stopping.set()
        oracle.join(timeout=10)
    assert bridge.wait_idle(timeout=60)
    status, run = _http(bridge, "GET", "/runs/until-decided-aws")
    assert run["ended"] == f"decided: oracle PASS for test {ORACLE_TEST} (on: every fed verdict)", run
    assert [(item["requests"], item["asked"], item["shards"]) for item in run["rounds"]] == [
        (100, None, [0, 2]),
        (150, 150, [2, 5]),
    ]
    assert run["state"] == "stopped" and run["sent"] == target.total == DECIDES_AT
    assert run["shards"] == {"total": 20, "enqueued": 2, "done": 5, "not_sent": 15}
    assert len(target.cases) == DECIDES_AT and max(target.cases.values()) == 1  # each case once
    # `flagbridge traffic status` exits as the verdict that ended it (0: PASS), not as a stopped run (2)
    from flagbridge_ops.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    environ = {**os.environ, "FLAGBRIDGE_TRAFFIC_API": bridge.url, "FLAGBRIDGE_TRAFFIC_API_TOKEN": TOKEN}
    code = main(["traffic", "status", "until-decided-aws", "--stack", "flagbridge-local"], environ=environ, out=out,
                err=err)  # fmt: skip
    assert code == 0, (out.getvalue(), err.getvalue())
    assert "ended: decided: oracle PASS" in out.getvalue()
