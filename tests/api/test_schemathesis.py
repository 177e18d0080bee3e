"""Schemathesis against the whole bridge (``make run``'s local runner) through the description it serves.

Every phase (examples, coverage, fuzzing, stateful through the description's links) and every default check, with a
fixed seed and a bounded number of cases per operation, so that a run is repeatable and takes about a minute or two.
The JUnit report is kept under ``build/api/`` (a CI artifact). Configuration and the reasons for each exception to
the default checks: ``tests/api/schemathesis.toml``.

The description cannot say "in the future, at most 30 days ahead" of a tester's ``expiresAt``: in the copy Schemathesis
reads, it has a format that ``tests/api/hooks.py`` draws from that window, so that registrations succeed and the
stateful phase can list and remove them; and the example run's target is this runner. Nothing else is changed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
import yaml

from tests.api.hooks import FORMAT as EXPIRY_FORMAT
from tests.e2e.conftest import ROOT, Bridge, started_runner
from tests.fixtures.runs import TESTERS

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).with_name("schemathesis.toml")
REPORT = ROOT / "build" / "api" / "schemathesis-junit.xml"
SEED = 22
MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    """The runner with the shipped configuration plus a traffic allowlist (127.0.0.1), so that runs can start."""
    directory = tmp_path_factory.mktemp("api")
    config = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    config["traffic"] = {"allowlist": ["localhost", "127.0.0.1"], "testers": TESTERS}
    path = directory / "flagbridge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    arguments = ("--log-file", str(directory / "handlers.log"))
    # One invocation at a time per function, as Lambda runs functions side by side: a run's worker must not hold
    # the HTTP routes up.
    environment = {"FLAGBRIDGE_CONFIG": str(path), "FLAGBRIDGE_LOCAL_CONCURRENCY": "function"}
    with started_runner(directory, environment, arguments) as running:
        yield running


def description_under_test(served: dict[str, Any], bridge_url: str) -> dict[str, Any]:
    registration = served["components"]["schemas"]["TesterRegistration"]["properties"]
    registration["expiresAt"] = {"type": "string", "format": EXPIRY_FORMAT}
    run = served["paths"]["/runs"]["post"]["requestBody"]["content"]["application/json"]["example"]
    run["target"] = bridge_url + "/_local"  # a target that answers at once (JSON 404s), on this run's port
    return served


def test_the_served_description_is_the_generated_one(bridge: Bridge) -> None:
    with urlopen(bridge.url + "/openapi.json", timeout=60) as reply:
        assert reply.headers["Content-Type"] == "application/json"
        served = reply.read().decode()
    assert served == (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")


def test_schemathesis_finds_nothing(bridge: Bridge, tmp_path: Path) -> None:
    with urlopen(bridge.url + "/openapi.json", timeout=60) as reply:
        served = json.loads(reply.read())
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(description_under_test(served, bridge.url)), encoding="utf-8")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", str(schema)),
        *("--url", bridge.url, "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--workers", "1"),
        *("--report", "junit", "--report-junit-path", str(REPORT), "--no-color", "--request-timeout", "30"),
    ]
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.api.hooks"}
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{output[-20000:]}\n--- runner log ---\n{bridge.log_tail()}"
    assert "✅ Stateful" in output, output[-5000:]
    # The stateful flows got past validation: a tester registered, listed and removed; a run started and read.
    log = bridge.log_path.read_text(encoding="utf-8", errors="replace")
    for line in (r"PUT /testers/\S+ -> 200", r"GET /testers -> 200", r"DELETE /testers/\S+ -> 200"):
        assert re.search(line, log), line
    for line in (r"POST /runs -> 20[02]", r"GET /runs/\S+ -> 200"):
        assert re.search(line, log), line
