"""``flagbridge testers add|remove`` drive the Split segment as the API does, on the local runner: with the stack's
Admin API credential (``SPLIT_ADMIN_API_KEY_SECRET``) the key goes in and out of the local receiver's segment;
without it the registration is stored ``pending`` and the stack's reconcile adds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Bridge, started_runner

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_PATH = os.pathsep.join(str(ROOT / part) for part in ("layers/shared", "ops", ""))
SEGMENT = "Production/flagbridge_testers"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    # schedules off: no reconcile runs behind the test's back
    environment = {"PYTHONPATH": CHECKOUT_PATH, "FLAGBRIDGE_LOCAL_SCHEDULE_SECONDS": "0"}
    with started_runner(tmp_path_factory.mktemp("runner"), environment, arguments=()) as running:
        yield running


def _env(runner: Bridge, *, credential: bool) -> dict[str, str]:
    aws = runner.request("GET", "/_local/aws").body
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "FLAGBRIDGE_"))}
    env.update({
        "AWS_ENDPOINT_URL": aws["endpoint_url"], "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": CHECKOUT_PATH,
    })  # fmt: skip
    env.update({name: value for name, value in aws["resources"].items() if value})
    if not credential:
        env.pop("SPLIT_ADMIN_API_KEY_SECRET")
    return env


def _flagbridge(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flagbridge_ops", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _segment(runner: Bridge) -> list[str]:
    return list(runner.request("GET", "/_local/receivers").body["segments"].get(SEGMENT, []))


def test_cli_add_and_remove_change_the_segment_with_the_credential(runner: Bridge, tmp_path: Path) -> None:
    key = f"cli-seg-{uuid.uuid4().hex[:8]}"
    env = _env(runner, credential=True)
    added = _flagbridge(env, "testers", "add", "user", key, "--for", "1h", "--reason", "cli segment", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "its key is in the Split segment (testers.segments)" in added.stdout
    assert key in _segment(runner)
    listed = json.loads(_flagbridge(env, "--json", "testers", "list", cwd=tmp_path).stdout)["testers"]
    assert [t["segment"] for t in listed if t["key"] == key] == ["synced"]
    removed = _flagbridge(env, "testers", "remove", "user", key, "--reason", "done", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert key not in _segment(runner)


def test_cli_add_without_the_credential_stores_pending(runner: Bridge, tmp_path: Path) -> None:
    key = f"cli-seg-{uuid.uuid4().hex[:8]}"
    env = _env(runner, credential=False)
    added = _flagbridge(env, "--json", "testers", "add", "user", key, "--for", "1h", "--reason", "x", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["tester"]["segment"] == "pending"
    assert key not in _segment(runner)
