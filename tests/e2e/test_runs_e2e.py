"""Acceptance: a test run of 20,000 requests in 8+ shards on the local runner, every case sent exactly once.

The runner (in process: :class:`local.runner.bridge.LocalBridge` built from template.yaml on its own moto server)
serves ``POST /runs`` and ``GET /runs/{id}`` over HTTP and consumes the shard queue with the worker function.
The target is a counting server on 127.0.0.1 (it also receives the workers' result events). On the way:

- a worker crash mid-shard: the HTTP sender raises once after 3,000 requests (the exception escapes the
  handler's shard; the claim is released; the message comes back and resumes from the last recorded case);
- a redelivered shard: a copy of a shard message is put on the queue again once its shard is done.

Then: the manifest in S3 has one line per planned case, the target counted each case exactly once, every result
event reached the Events API once, and ``GET /runs/{id}`` says ``completed`` with sent = planned.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from local.runner.bridge import LocalBridge
from tests.conftest import ROOT
from tests.fixtures.runs import MODEL, PLAN, TESTERS, CountingTarget, yaml_document

pytestmark = pytest.mark.e2e

TOKEN = "local-traffic-token"
REQUESTS = 20_000


@pytest.fixture(scope="module")
def target() -> Iterator[CountingTarget]:
    server = CountingTarget().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bridge(target: CountingTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBridge]:
    config = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    config["traffic"] = {"allowlist": ["localhost", "127.0.0.1"], "testers": TESTERS}
    path: Path = tmp_path_factory.mktemp("runs") / "flagbridge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("FLAGBRIDGE_CONFIG", str(path))
    monkeypatch.setenv("FLAGBRIDGE_LOCAL_PARAM_TrafficResultsUrl", f"{target.url}/mparticle/v2")
    monkeypatch.setenv("FLAGBRIDGE_LOCAL_PARAM_TrafficParallelism", "8")
    monkeypatch.setenv("FLAGBRIDGE_LOCAL_PARAM_TrafficShardLeaseSeconds", "5")
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


def test_a_run_of_20000_requests_is_sent_exactly_once_through_a_crash_and_a_redelivery(
    bridge: LocalBridge, target: CountingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flagbridge.traffic import sender

    plain_send = sender.HttpSender.send
    calls = {"n": 0, "crashed": 0}

    def crashing_send(self: Any, request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3_000 and not calls["crashed"]:
            calls["crashed"] += 1
            raise RuntimeError("worker crash (injected)")
        return plain_send(self, request)

    monkeypatch.setattr(sender.HttpSender, "send", crashing_send)
    request = {
        "plan": yaml_document(PLAN),  # sent as JSON objects, as `flagbridge traffic run --stack` does
        "model": yaml_document(MODEL),
        "requests": REQUESTS,
        "rate": 8000,
        "target": target.url,
        "seed": 11,
        "run_id": "accept-20k",
        "shard_size": 2500,
        "checkpoint_every": 25,
    }
    status, body = _http(bridge, "POST", "/runs", request)
    assert status == 202, body
    assert body["shards"] == 8 and body["sqs_requests"] == 1

    deadline = time.monotonic() + 600
    redelivered = False
    while time.monotonic() < deadline:
        status, run = _http(bridge, "GET", "/runs/accept-20k")
        assert status == 200, run
        if not redelivered and run["shards"].get("done", 0) >= 1:
            # a copy of shard 0's message (done by now) arrives again: it must send nothing
            queue_url = os.environ["SHARD_QUEUE_URL"]  # the runner set the functions' variables from the template
            copy = {"v": 1, "run_id": "accept-20k", "shard": 0, "first": 0, "count": 2500, "seed": 11}
            bridge.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(copy))
            redelivered = True
        if run["state"] in ("completed", "stopped"):
            break
        time.sleep(0.5)
    assert calls["crashed"] == 1
    assert redelivered
    assert bridge.wait_idle(timeout=60)
    status, run = _http(bridge, "GET", "/runs/accept-20k")
    assert run["state"] == "completed", run
    assert (run["planned"], run["sent"], run["statuses"]) == (REQUESTS, REQUESTS, {"200": REQUESTS})
    assert len(run["manifest"]["objects"]) == 8

    # the target: every case exactly once
    assert target.total == REQUESTS
    assert len(target.cases) == REQUESTS and max(target.cases.values()) == 1
    # the manifest in S3: one line per planned case, each case once
    s3 = bridge.client("s3")
    bucket = run["manifest"]["location"].split("/")[2]
    indexes: list[int] = []
    for location in run["manifest"]["objects"]:
        key = location.split("/", 3)[3]
        lines = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
        records = [json.loads(line) for line in lines]
        assert records[0]["type"] == "run" and records[-1]["type"] == "summary"
        indexes += [r["index"] for r in records if r["type"] == "case"]
    assert sorted(indexes) == list(range(REQUESTS))
    # results: one tester event per case reached the Events API
    assert len(target.bulk_events) == REQUESTS and max(target.bulk_events.values()) == 1


def test_the_cli_runs_watches_replays_and_stops_a_run_in_the_stack(
    bridge: LocalBridge, target: CountingTarget, tmp_path: Path
) -> None:
    """``flagbridge traffic run --stack``, ``status --watch``, ``replay --run`` and ``stop``, against the runner."""
    import io

    from flagbridge_ops.__main__ import main

    plan, model = tmp_path / "plan.yaml", tmp_path / "model.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    model.write_text(MODEL, encoding="utf-8")
    environ = {
        **os.environ,
        "FLAGBRIDGE_TRAFFIC_API": bridge.url,
        "FLAGBRIDGE_TRAFFIC_API_TOKEN": TOKEN,
    }

    def cli(*argv: str) -> tuple[int, Any]:
        out = io.StringIO()
        err = io.StringIO()
        code = main([*argv, "--json"], environ=environ, out=out, err=err)
        assert "Traceback" not in err.getvalue()
        return code, json.loads(out.getvalue()) if out.getvalue() else None

    before = target.total
    code, started = cli(
        "traffic",
        "run",
        str(plan),
        "--model",
        str(model),
        "--target",
        target.url,
        "--requests",
        "300",
        "--rate",
        "3000/s",
        "--seed",
        "5",
        "--run-id",
        "cli-run",
        "--stack",
        "flagbridge-local",
    )
    assert code == 0, started
    assert started["run_id"] == "cli-run" and started["shards"] == 8
    code, status = cli("traffic", "status", "cli-run", "--watch", "--interval", "0.3", "--stack", "flagbridge-local")
    assert code == 0, status
    assert (status["state"], status["sent"], status["verdict"]) == ("completed", 300, "no test")
    assert target.total - before == 300
    code, replayed = cli("traffic", "replay", "--run", "cli-run", "--case", "c123", "--stack", "flagbridge-local")
    assert code == 0, replayed
    assert replayed["case"]["index"] == 123 and replayed["case"]["response"]["status"] == 200
    assert replayed["curl"].startswith("curl")
    code, stopped = cli("traffic", "stop", "cli-run", "--stack", "flagbridge-local")
    assert code == 0 and stopped["value"] == "cli-run"
    code, _ = cli("traffic", "status", "no-such-run", "--stack", "flagbridge-local")
    assert code == 1

    bulk_before = len(target.bulk_events)
    # a plan naming an oracle test the stack does not have: one line, and nothing is recorded or sent
    unknown = tmp_path / "unknown-test.yaml"
    unknown.write_text(PLAN + "oracle: {test: checkout-errors}\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    before = target.total
    argv = ["traffic", "run", str(unknown), "--model", str(model), "--target", target.url, "--requests", "50",
            "--rate", "500/s", "--run-id", "cli-no-test", "--stack", "flagbridge-local"]  # fmt: skip
    code = main(argv, environ=environ, out=out, err=err)
    assert code != 0 and out.getvalue() == ""
    assert err.getvalue().count("\n") == 1 and "Traceback" not in err.getvalue()
    assert "(400 invalid_oracle)" in err.getvalue() and "no oracle test 'checkout-errors'" in err.getvalue()
    code, _ = cli("traffic", "status", "cli-no-test", "--stack", "flagbridge-local")
    assert code == 1 and target.total == before

    # a target that does not answer (nothing listens on the port): one line naming it, and nothing is started
    from tests.e2e.conftest import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    out, err = io.StringIO(), io.StringIO()
    argv = ["traffic", "run", str(plan), "--model", str(model), "--target", closed, "--requests", "50",
            "--rate", "500/s", "--run-id", "cli-closed", "--stack", "flagbridge-local"]  # fmt: skip
    code = main(argv, environ=environ, out=out, err=err)
    assert code == 1 and out.getvalue() == ""
    assert err.getvalue().count("\n") == 1 and "Traceback" not in err.getvalue()
    assert "(422 target_not_answering)" in err.getvalue() and f"target {closed} does not answer" in err.getvalue()
    code, _ = cli("traffic", "status", "cli-closed", "--stack", "flagbridge-local")
    assert code == 1 and target.total == before and len(target.bulk_events) == bulk_before
