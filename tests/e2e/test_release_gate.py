"""The example release gate (``examples/release-gate/release-gate.sh``) run as a pipeline runs it, against the local
runner and the sample service whose ``on`` treatment has a bug: it deploys (a command that records it ran),
registers the testers through ``PUT /testers`` (they land in the local receiver's Split segment), runs the demo's
plan with the real ``flagbridge`` command and fails on the oracle's FAIL, leaving the verdict's JUnit XML and HTML.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from local.demo.run import (
    CHECKOUT_PATH,
    MODEL,
    PLAN,
    RUN_TAG_KEY,
    TEST,
    TESTERS,
    cli_config,
    start_service,
    stop_service,
)
from tests.e2e.conftest import ROOT, Bridge, started_runner

pytestmark = pytest.mark.e2e

SCRIPT = ROOT / "examples" / "release-gate" / "release-gate.sh"
SHIPPED = ROOT / "layers" / "shared" / "config" / "flagbridge.yaml"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    with started_runner(tmp_path_factory.mktemp("gate-runner"), {"PYTHONPATH": CHECKOUT_PATH}, arguments=()) as running:
        yield running


def _operator_env(runner: Bridge) -> dict[str, str]:
    """A pipeline's environment for this stack: the AWS endpoint and its resources, no developer variables."""
    aws = runner.request("GET", "/_local/aws").body
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "FLAGBRIDGE_"))}
    env.update({
        "AWS_ENDPOINT_URL": aws["endpoint_url"], "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": CHECKOUT_PATH,
    })  # fmt: skip
    env.update({name: value for name, value in aws["resources"].items() if value})
    return env


def test_the_release_gate_fails_the_pipeline_on_fail_with_its_artifacts(runner: Bridge, tmp_path: Path) -> None:
    secrets = {"api_key": "local-mparticle-key", "api_secret": "local-mparticle-secret"}
    env = _operator_env(runner)
    service_env = {**env, "FLAGBRIDGE_LOCAL_SECRET_WebhookTokenSecret": "local-webhook-token"}
    process, service = start_service(runner.url, service_env, 60)
    flagbridge = tmp_path / "flagbridge"  # the command as `pip install` makes it, on this interpreter
    flagbridge.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m flagbridge_ops "$@"\n', encoding="utf-8")
    flagbridge.chmod(0o755)
    out = tmp_path / "gate"
    env.update({
        "FLAGBRIDGE": str(flagbridge),
        "FLAGBRIDGE_CONFIG": str(cli_config(tmp_path, SHIPPED)),
        "DEPLOY_COMMAND": f"echo 'new_checkout=on deployed' > {tmp_path / 'deployed.txt'}",
        "TARGET": service["url"], "PLAN": str(PLAN), "MODEL": str(MODEL), "ORACLE_TEST": TEST,
        "TESTERS": ",".join(TESTERS), "TESTERS_API": f"{runner.url}/testers",
        "TESTERS_API_TOKEN": "local-testers-token",
        "FLAGBRIDGE_ORACLE_API_TOKEN": "local-oracle-token", "BRIDGE": runner.url,
        "FLAGBRIDGE_RUN_TAG_KEY": RUN_TAG_KEY, "FLAGBRIDGE_MPARTICLE_KEY": secrets["api_key"],
        "FLAGBRIDGE_MPARTICLE_SECRET": secrets["api_secret"],
        "REQUESTS": "800", "RATE": "200/s", "SEED": "7", "VERDICT_WAIT": "180", "OUT": str(out), "RUN_ID": "gate-e2e",
    })  # fmt: skip
    try:
        gate = subprocess.run(["sh", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    finally:
        stop_service(process)
    transcript = f"stdout:\n{gate.stdout[-3000:]}\nstderr:\n{gate.stderr[-3000:]}"
    assert gate.returncode == 1, transcript
    assert "release-gate: FAIL: the treatment failed its oracle test new-checkout-health" in gate.stderr, transcript
    assert (tmp_path / "deployed.txt").read_text(encoding="utf-8").strip() == "new_checkout=on deployed"
    for key in TESTERS:
        assert f"  {key} registered" in gate.stdout, transcript
    suite = ElementTree.parse(out / "verdict.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("name") == TEST
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert "on 5xx rate" in failed and not any(name.startswith("off ") for name in failed), failed
    assert "<svg" in (out / "verdict.html").read_text(encoding="utf-8")
    run: dict[str, Any] = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert 0 < run["summary"]["sent"] <= 800, run["summary"]
    assert (out / "gate-e2e.ndjson").stat().st_size > 0
    received = runner.request("GET", "/_local/receivers").body
    assert set(TESTERS) <= set(received["segments"]["Production/flagbridge_testers"])
