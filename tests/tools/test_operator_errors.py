"""Every error an operator met trying flagbridge past the demo is one line with its reason and the next step.

One test per case of issue 19 (item 4 of what was found): refused results name the bridge's answer and keep it
beside each batch; a wrong verdicts table names the table; a taken port is one line, not a traceback; the demo
against no bridge says how to start one; a refused oracle token names the variable it came from; ``--for`` too
long answers in the command's words; a file that is not a configuration (README.md) says what ``--config``
wants. And the configuration defaults to the checkout's, never to a path inside site-packages.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from moto import mock_aws

from local.traffic_target import TrafficTarget
from tests.conftest import ROOT
from tests.e2e.conftest import free_port
from tests.tools.test_traffic_cli import CHECKOUT_PATH, base_run, flagbridge, one_line
from tests.tools.test_traffic_cli import service as service  # a fixture, as is workdir
from tests.tools.test_traffic_cli import workdir as workdir
from tests.tools.test_traffic_oracle_cli import TEST, FakeBridge, run

SHIPPED_CONFIG = ROOT / "layers" / "shared" / "config" / "flagbridge.yaml"


def test_refused_results_print_the_bridges_answer_and_keep_it_beside_each_batch(
    workdir: Path,
    service: TrafficTarget,
) -> None:
    refusing = TrafficTarget(respond=lambda raw, path: 401).start()
    try:
        result = flagbridge([*base_run(service, "--bridge", refusing.url, "--report", "run.ndjson")], workdir)
    finally:
        refusing.stop()
    lines = result.stdout.splitlines()
    [refused] = [line for line in lines if "did not take the results" in line]
    assert "HTTP 401" in refused and '"status": 401' in refused
    assert "traffic.results.credentials_env" in refused
    kept = json.loads((workdir / "run.undelivered.json").read_text(encoding="utf-8"))
    assert kept and all(entry["answer"]["status"] == 401 for entry in kept)
    assert all(entry["batch"]["events"] for entry in kept)
    assert sum(len(entry["batch"]["events"]) for entry in kept) == 300


def test_a_refused_oracle_token_names_the_variable_it_came_from(
    workdir: Path,
    service: TrafficTarget,
) -> None:
    plan = (workdir / "published-plan.yaml").read_text(encoding="utf-8")
    (workdir / "feeds.yaml").write_text(plan + f"oracle: {{test: {TEST}}}\n", encoding="utf-8")
    bridge = FakeBridge(lambda _: None)
    try:
        result = run(workdir, service, bridge, token="wrong-token")
    finally:
        bridge.close()
    line = one_line(result.stderr)
    assert result.returncode == 1
    assert f"oracle test '{TEST}'" in line and "refused the token" in line
    assert "FLAGBRIDGE_ORACLE_API_TOKEN" in line and "OracleApiTokenSecret" in line


def _main(argv: list[str], environ: dict[str, str]) -> tuple[int, str]:
    from flagbridge_ops.__main__ import main
    from flagbridge_ops.resources import Clients

    err = io.StringIO()
    status = main(argv, environ=environ, clients=Clients(), out=io.StringIO(), err=err)
    return status, err.getvalue()


@mock_aws
def test_a_wrong_verdicts_table_names_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    environ = {"FLAGBRIDGE_CONFIG": str(SHIPPED_CONFIG), "ORACLE_VERDICTS_TABLE": "flagbridge-verdicts-typo"}
    status, err = _main(["verdict"], environ)
    assert status == 1
    [line] = err.splitlines()
    assert "no verdicts table named 'flagbridge-verdicts-typo'" in line
    assert "ORACLE_VERDICTS_TABLE" in line and "--stack" in line
    status, err = _main(["verdict", "--verdicts-table", "other"], environ)
    assert "'other' here (from --verdicts-table)" in err


def test_testers_for_too_long_answers_with_the_option_and_the_limit() -> None:
    status, err = _main(["testers", "add", "user", "qa-7", "--for", "45d", "--reason", "x"], {})
    assert status == 2
    [line] = err.splitlines()
    assert line.startswith("flagbridge: error: --for 45d is longer than a registration may last (30d)")
    assert "expiresAt" not in line


def test_readme_as_config_says_what_config_wants() -> None:
    status, err = _main(["--config", str(ROOT / "README.md"), "verdict"], {})
    assert status == 1
    [line] = err.splitlines()
    assert "README.md: not valid YAML at line 3" in line
    assert "<unicode string>" not in line and "^" not in line
    assert "layers/shared/config/flagbridge.yaml" in line


def test_the_configuration_defaults_to_the_checkout_s(tmp_path: Path) -> None:
    from flagbridge_ops.local import checkout_config

    assert checkout_config(ROOT / "docs") == SHIPPED_CONFIG
    assert checkout_config(tmp_path) is None


def test_outside_a_checkout_the_error_names_no_installed_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed command has no configuration: the error says what to pass, not a site-packages path."""
    import flagbridge_ops.resources

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(flagbridge_ops.resources, "PACKAGED_CONFIG", tmp_path / "site-packages" / "flagbridge.yaml")
    status, err = _main(["verdict", "--verdicts-table", "t"], {})
    assert status == 1
    [line] = err.splitlines()
    assert line.startswith("error: no configuration: pass --config")
    assert "site-packages" not in line and "flagbridge checkout" in line


def _runner_env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLAGBRIDGE_"))}
    return {**env, "PORT": str(port), "FLAGBRIDGE_NO_REPLAY": "1", "PYTHONPATH": CHECKOUT_PATH}


def test_a_taken_port_is_one_line_naming_another_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "local.runner", "--log-file", str(tmp_path / "log")],
            cwd=ROOT,
            env=_runner_env(port),
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "taken" in line]
    assert f"port {port} on 127.0.0.1 is taken" in line and f"PORT={port + 1} make run" in line


def test_the_demo_without_a_bridge_says_how_to_start_one(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "local.demo", "--workdir", str(tmp_path)],
        cwd=ROOT,
        env=_runner_env(port),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith(f"demo: cannot reach the bridge at http://127.0.0.1:{port}")
    assert "make run" in line and "PORT=N make demo" in line and "Errno" not in line
