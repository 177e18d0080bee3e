"""``flagbridge`` against the local runner, as an operator runs it against a deployed stack.

The runner (``python -m local.runner``, its own moto server) stands in for the stack; the command runs in a
fresh process outside the repository with ``AWS_ENDPOINT_URL`` and the functions' variables from
``GET /_local/aws``. Given: items the bridge really quarantined (a plan violation sent to the Events API, an
impression from an unmapped environment sent to the webhook).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from tests.conftest import ROOT, load_payload
from tests.e2e.conftest import Bridge, started_runner

pytestmark = pytest.mark.e2e

CHECKOUT_PATH = os.pathsep.join(str(ROOT / part) for part in ("layers/shared", "ops", ""))
SHIPPED_CONFIG = ROOT / "layers" / "shared" / "config" / "flagbridge.yaml"
MPARTICLE_BASIC = base64.b64encode(b"local-mparticle-key:local-mparticle-secret").decode()
FIXED_CONFIG = {  # what an operator changes before replaying: the plan allows more, the QA environment is mapped
    "on_unplanned: drop_attribute": "on_unplanned: allow",
    "on_unplanned_event: drop_event": "on_unplanned_event: allow",
    "on_missing_required: drop_event": "on_missing_required: allow",
    "on_invalid_value: drop_event": "on_invalid_value: allow",
    "    - environment: Staging\n": (
        "    - environment: QA\n      traffic_type: user\n      identity_type: customer_id\n"
        "    - environment: Staging\n"
    ),
}


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    with started_runner(tmp_path_factory.mktemp("runner"), {"PYTHONPATH": CHECKOUT_PATH}, arguments=()) as running:
        yield running


@pytest.fixture(scope="module")
def operator_env(runner: Bridge) -> dict[str, str]:
    """The environment an operator's shell has for this stack: endpoint, credentials, the functions' variables."""
    aws = runner.request("GET", "/_local/aws").body
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "FLAGBRIDGE_"))}
    env.update(
        {
            "AWS_ENDPOINT_URL": aws["endpoint_url"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PYTHONPATH": CHECKOUT_PATH,
        }
    )
    env.update({name: value for name, value in aws["resources"].items() if value})
    return env


def flagbridge(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flagbridge_ops", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def client(env: dict[str, str], service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def quarantine_keys(env: dict[str, str]) -> list[str]:
    listing = client(env, "s3").list_objects_v2(Bucket=env["QUARANTINE_BUCKET"])
    return sorted(entry["Key"] for entry in listing.get("Contents", []))


def fixed_config(tmp_path: Path) -> Path:
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    for old, new in FIXED_CONFIG.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "flagbridge.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_dlq_list_shows_every_dlq_of_the_stack(operator_env: dict[str, str], tmp_path: Path) -> None:
    dlqs = json.loads(operator_env["DESTINATION_DLQS"])
    client(operator_env, "sqs").send_message(QueueUrl=dlqs["audit"], MessageBody=json.dumps({"destination": "audit"}))

    result = flagbridge(operator_env, "dlq", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # not a terminal: no progress
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["dlq", "messages", "in", "flight", "delayed", "redrives", "to"]
    assert [row.split()[:2] for row in rows if row.startswith("audit")] == [["audit", "1"]]

    result = flagbridge(operator_env, "--json", "dlq", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {dlq["name"]: dlq for dlq in json.loads(result.stdout)["dlqs"]}
    lanes = json.loads(operator_env["DESTINATION_QUEUES"])  # the oracle lane's DLQ is found by its redrive policy
    assert set(listed) == {"impressions", "batches", *dlqs, *lanes}
    assert listed["audit"]["messages"] == 1 and listed["audit"]["source_url"].endswith("-audit-destination")
    assert listed["impressions"]["source_url"] == operator_env["IMPRESSIONS_QUEUE_URL"]  # found by redrive policy


def test_quarantine_replay_dry_run_reports_per_destination_and_sends_nothing(
    runner: Bridge, operator_env: dict[str, str], tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    customer = f"u-{run}"
    batch = load_payload("mparticle_batch_plan_violation.json")  # u-2002's two events break the plan
    now = int(time.time() * 1000)
    batch.update(source_request_id=f"req-{run}", user_identities={"customer_id": customer})
    for offset, event in enumerate(batch["events"]):
        event["data"].update(timestamp_unixtime_ms=now - 1000 + offset, source_message_id=f"{run}-{offset}")
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {MPARTICLE_BASIC}"}
    assert runner.request("POST", "/mparticle/v2/events", json.dumps(batch).encode(), headers).status == 202
    impression = {"key": customer, "split": "checkout", "environmentName": "QA", "treatment": "on", "time": now}
    assert runner.post_impressions([impression]).status == 200
    runner.wait_idle(60)
    before = quarantine_keys(operator_env)
    assert {"cdp-router", "split-impressions"} <= {key.split("/", 1)[0] for key in before}

    # With the deployed configuration nothing would get through.
    result = flagbridge(operator_env, "--json", "quarantine", "replay", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    unchanged = json.loads(result.stdout)
    assert (unchanged["replayed"], unchanged["still_failing"]) == (0, 2)

    # With the fixed configuration: per destination what the router would send; still nothing sent or moved.
    config = str(fixed_config(tmp_path))
    result = flagbridge(operator_env, "--config", config, "--json", "quarantine", "replay", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["replayed"], report["still_failing"], report["not_replayable"]) == (2, 0, 0)
    assert report["by_source"] == {"cdp-router": {"replayed": 1}, "split-impressions": {"replayed": 1}}
    assert report["destinations"]["analytics"]["events"] == 2  # a customer: both events now pass the plan
    assert report["destinations"]["split"]["messages"] == 0  # Split gets testers only
    assert report["queued"] == {"batches": 1, "impressions": 1} and report["impressions"] == 1
    assert report["objects_moved"] == {}

    table = flagbridge(operator_env, "--config", config, "quarantine", "replay", "--dry-run", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "dry run: nothing sent, nothing moved" in table.stdout and "analytics" in table.stdout

    runner.wait_idle(60)
    assert quarantine_keys(operator_env) == before
    profile = runner.request(
        "GET", f"/profiles/user/{quote(customer)}", None, {"Authorization": "Bearer local-profile-token"}
    )
    assert profile.status == 404  # the impression was not sent


def test_a_wrong_stack_name_is_one_line(operator_env: dict[str, str], tmp_path: Path) -> None:
    result = flagbridge(operator_env, "--stack", "no-such-stack", "dlq", "list", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "error: no stack named 'no-such-stack' in us-east-1 (check --stack and AWS_DEFAULT_REGION)\n"
    )
    assert result.stdout == ""


def test_testers_add_list_remove_through_the_same_audited_registry_as_the_api(
    runner: Bridge, operator_env: dict[str, str], tmp_path: Path
) -> None:
    key = f"cli-tester-{uuid.uuid4().hex[:8]}"
    token = {"Authorization": "Bearer local-testers-token"}

    # add: registered until an hour from now, by the caller's IAM principal
    result = flagbridge(
        operator_env, "testers", "add", "user", key, "--for", "1h", "--reason", "cli check", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"registered user {key} as a tester until ")
    listed = json.loads(flagbridge(operator_env, "--json", "testers", "list", cwd=tmp_path).stdout)["testers"]
    (mine,) = [tester for tester in listed if tester["key"] == key]
    assert mine["registeredBy"].startswith("iam:arn:aws:") and mine["reason"] == "cli check"
    # expiries are whole seconds, rounded up (registry.parse_expiry): up to 1 s past the CLI's "now + 1h"
    assert 3500 < mine["expiresAtEpoch"] - time.time() <= 3601
    # the API sees the same registry
    api = runner.request("GET", "/testers?limit=100", None, token).body["testers"]
    assert key in [tester["key"] for tester in api]

    # refusals are one line and exit status 2; nothing is written
    late = flagbridge(
        operator_env,
        "testers",
        "add",
        "user",
        key,
        "--expires-at",
        "2001-01-01T00:00:00Z",
        "--reason",
        "x",
        cwd=tmp_path,
    )
    assert (late.returncode, late.stderr.strip()) == (2, "flagbridge: error: --expires-at must be in the future")
    bad = flagbridge(operator_env, "testers", "add", "user", key, "--for", "soon", "--reason", "x", cwd=tmp_path)
    assert bad.returncode == 2 and "--for must be a duration" in bad.stderr

    # remove, then remove again: nothing to remove
    removed = flagbridge(operator_env, "testers", "remove", "user", key, "--reason", "done", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    again = flagbridge(operator_env, "testers", "remove", "user", key, cwd=tmp_path)
    assert again.returncode == 1 and f"user {key} is not a registered tester" in again.stderr

    # the audit trail: who, when, why of both changes (the refusals wrote nothing)
    items = client(operator_env, "dynamodb").query(
        TableName=operator_env["TESTERS_TABLE"],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"user#{key}"}},
    )["Items"]
    audits = sorted((item["at"]["N"], item["action"]["S"], item["reason"]["S"], item["actor"]["S"]) for item in items)
    changes = [(action, reason) for _, action, reason, _ in audits if not action.startswith("segment_")]
    assert changes == [("register", "cli check"), ("remove", "done")]
    # the Split segment followed (testers.segments): its own audit entries, by the same caller
    assert [action for _, action, _, _ in audits if action.startswith("segment_")] == ["segment_add", "segment_remove"]
    assert all(actor == mine["registeredBy"] for *_, actor in audits)


# --- the command finds the local stack by itself (issue 19, item 3) ----------------------------------------------


@pytest.fixture(scope="module")
def bare_env() -> dict[str, str]:
    """A shell with nothing set for the stack: no AWS_* and no FLAGBRIDGE_* variable."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "FLAGBRIDGE_"))}
    env.pop("PORT", None)
    return {**env, "PYTHONPATH": CHECKOUT_PATH}


def test_local_aws_exports_everything_the_commands_need(runner: Bridge) -> None:
    environment = runner.request("GET", "/_local/aws").body["environment"]
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "ORACLE_VERDICTS_TABLE",
        "FLAGBRIDGE_CONFIG",
        "TESTERS_TABLE",
        "QUARANTINE_BUCKET",
        "DESTINATION_DLQS",
        "FLAGBRIDGE_ORACLE_API_TOKEN",
        "FLAGBRIDGE_MPARTICLE_KEY",
        "FLAGBRIDGE_MPARTICLE_SECRET",
        "FLAGBRIDGE_RUN_TAG_KEY",
    ):
        assert environment.get(name), name
    assert Path(environment["FLAGBRIDGE_CONFIG"]).is_file()


@pytest.mark.parametrize(
    "command",
    [("dlq", "list"), ("testers", "list"), ("quarantine", "list"), ("verdict",)],
    ids=lambda command: " ".join(command),
)
def test_every_command_works_with_only_local(
    runner: Bridge, bare_env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = flagbridge(bare_env, "--local", runner.url, "--json", *command, cwd=tmp_path)
    assert "error:" not in result.stderr, result.stderr
    assert result.returncode in (0, 1, 2)  # verdict: 2 until the oracle has judged; the others: 0
    json.loads(result.stdout)


def test_bare_local_finds_the_runner_on_port(runner: Bridge, bare_env: dict[str, str], tmp_path: Path) -> None:
    port = runner.url.rsplit(":", 1)[1]
    result = flagbridge({**bare_env, "PORT": port}, "--local", "dlq", "list", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dlqs"]
    via_variable = flagbridge({**bare_env, "FLAGBRIDGE_LOCAL": runner.url}, "--json", "verdict", cwd=tmp_path)
    assert "error:" not in via_variable.stderr, via_variable.stderr


def test_local_without_a_runner_is_one_line_with_the_next_step(bare_env: dict[str, str], tmp_path: Path) -> None:
    from tests.e2e.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = flagbridge(bare_env, "--local", url, "dlq", "list", cwd=tmp_path)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: cannot reach the local runner at {url}")
    assert "make run" in line and "--local URL" in line


def test_the_live_page_serves_the_verdicts_and_reloads(runner: Bridge, tmp_path: Path) -> None:
    """``GET /`` on ``make run``: the report's renderer over the verdicts table, refreshing itself."""
    from urllib.request import urlopen

    from tests.browser import render_in_chromium

    with urlopen(runner.url + "/", timeout=60) as reply:
        page = reply.read().decode()
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/html")
    assert '<meta http-equiv="refresh" content="5">' in page
    assert '<section class="test" data-test="new-checkout-health">' in page
    assert "this page reloads every 5 s" in page and 'class="legend"' in page
    dom = render_in_chromium(runner.url + "/", tmp_path)
    assert 'data-rendered="1 tests, ' in dom
