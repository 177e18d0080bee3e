"""Bad input to ``flagbridge`` is one clear line naming the problem, never "unexpected ...", nor a silent exit 0.

Each test is a case found by feeding the commands wrong values: files they cannot read or write (a report, a HAR,
a manifest, a quarantine object), malformed variables and URLs (the functions' maps, the local runner, the AWS
endpoint, the bridge, the run API), numbers no run can mean, traffic settings of the wrong type. Wrong arguments
exit 2 like argparse's own usage errors. The command runs in process (:func:`flagbridge_ops.__main__.main`), with
the environment it is given.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from local.traffic_target import TrafficTarget
from tests.conftest import ROOT
from tests.tools.test_traffic_cli import ENV
from tests.tools.test_traffic_cli import service as service  # a fixture, as is workdir
from tests.tools.test_traffic_cli import workdir as workdir
from tests.tools.test_verdict_cli import TABLE as VERDICTS_TABLE
from tests.tools.test_verdict_cli import verdicts as verdicts  # a fixture

BRIDGE = "'http://127.0.0.1:9/mparticle/v2'"  # nothing listens: a run that got past its checks reports nowhere
SHIPPED_CONFIG = ROOT / "layers" / "shared" / "config" / "flagbridge.yaml"


def cli(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    from flagbridge_ops.__main__ import main
    from flagbridge_ops.resources import Clients

    out, err = io.StringIO(), io.StringIO()
    status = main(argv, environ=environ or {}, clients=Clients(), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def one_error(err: str) -> str:
    """The one line on stderr, which must not be the catch-all for an error nobody anticipated."""
    [line] = err.splitlines()
    assert "unexpected" not in line and "Traceback" not in err, line
    return line


def traffic_run(workdir: Path, *extra: str) -> list[str]:
    return [
        "--config", str(workdir / "flagbridge.yaml"), "traffic", "run", str(workdir / "published-plan.yaml"),
        "--model", str(workdir / "mparticle-model.yaml"), "--requests", "3",
        "--report", str(workdir / "run.ndjson"), *extra,  # never the working directory, should a refusal fail
    ]  # fmt: skip


def test_a_file_the_command_cannot_write_is_one_line_naming_it(workdir: Path, service: TrafficTarget) -> None:
    missing = workdir / "no-such-dir"
    status, _, err = cli(
        traffic_run(workdir, "--target", service.url, "--dry-run", "--report", str(missing / "run.ndjson")), ENV
    )
    line = one_error(err)
    assert status == 1 and str(missing / "run.ndjson") in line and "No such file or directory" in line
    har = workdir / "session.har"
    har.write_text(json.dumps({"log": {"entries": [{"request": {"url": "http://127.0.0.1/x", "method": "GET"}}]}}))
    argv = ["--config", str(workdir / "flagbridge.yaml"), "traffic", "import-har", str(har), "--out", str(workdir)]
    status, _, err = cli(argv, ENV)
    line = one_error(err)
    assert status == 1 and str(workdir) in line and "Is a directory" in line


@pytest.mark.parametrize(("variable", "value"), [("DESTINATION_QUEUES", "{not json"), ("DESTINATION_DLQS", '{"a": 5}')])
def test_a_malformed_variable_is_named_and_not_blamed_on_the_configuration(variable: str, value: str) -> None:
    status, _, err = cli(["dlq", "list"], {"FLAGBRIDGE_CONFIG": str(SHIPPED_CONFIG), variable: value})
    line = one_error(err)
    assert status == 1 and variable in line
    assert "--config" not in line and "must name a flagbridge configuration" not in line


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--local", "dlq", "list"], {"PORT": "abc"}, "PORT"),
        (["--local", "http://[zz", "dlq", "list"], {}, "--local"),
        (["dlq", "list"], {"FLAGBRIDGE_LOCAL": "garbage"}, "FLAGBRIDGE_LOCAL"),
    ],
)
def test_a_local_runner_address_that_is_no_url_says_so(argv: list[str], environ: dict[str, str], named: str) -> None:
    status, _, err = cli(argv, environ)
    line = one_error(err)
    assert status == 1 and named in line and "not an http URL" in line


@pytest.mark.parametrize("endpoint", ["notaurl", "http://[zz"])
def test_an_aws_endpoint_that_is_no_url_names_the_variable(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    variables = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    for name, value in {**variables, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    status, _, err = cli(["--stack", "flagbridge-dev", "dlq", "list"])
    line = one_error(err)
    assert status == 1 and "AWS_ENDPOINT_URL" in line and repr(endpoint) in line


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf"])
def test_a_timeout_that_is_no_positive_number_of_seconds_is_a_usage_error(workdir: Path, timeout: str) -> None:
    status, _, err = cli(traffic_run(workdir, "--target", "http://127.0.0.1:9", "--timeout", timeout), ENV)
    line = one_error(err)
    assert status == 2 and line.startswith("flagbridge: error: --timeout") and timeout in line


def test_a_bridge_url_that_does_not_parse_is_refused_like_one_that_is_not_http(
    workdir: Path, service: TrafficTarget
) -> None:
    for bridge in ("notaurl", "http://[zz"):
        status, _, err = cli(traffic_run(workdir, "--target", service.url, "--no-oracle", "--bridge", bridge), ENV)
        line = one_error(err)
        assert status == 1 and "must be an http(s) URL" in line and bridge in line


@pytest.mark.parametrize("action", ["show", "redrive"])
@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_dlq_limit_below_one_is_a_usage_error_not_an_empty_dlq(aws: dict[str, Any], action: str, limit: str) -> None:
    for number in range(3):
        aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps({"n": number}))
    environ = {"FLAGBRIDGE_CONFIG": str(SHIPPED_CONFIG), "IMPRESSIONS_QUEUE_URL": aws["queue_url"]}
    status, out, err = cli(["dlq", action, "impressions", "--limit", limit], environ)
    line = one_error(err)
    assert status == 2 and line == "flagbridge: error: --limit must be at least 1" and out == ""
    depth = aws["sqs"].get_queue_attributes(QueueUrl=aws["dlq_url"], AttributeNames=["ApproximateNumberOfMessages"])
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == "3"


@pytest.mark.parametrize(
    "lines",
    [
        ["[1, 2]"],
        ['{"type": "run", "run_id": "tr-1"}', '{"type": "case", "id": "c0", "index": 0}'],
        [
            '{"type": "run", "run_id": "tr-1", "plan": "p", "model": "m", "seed": "abc", "clock_ms": 0}',
            '{"type": "case", "id": "c0", "index": 0}',
        ],
        ['{"type": "run", "run_id": "tr-1"}', "not json"],
        ['{"type": "run", "run_id": "tr-1"}', "[]"],
    ],
)
def test_a_corrupt_manifest_is_one_line_saying_so(workdir: Path, lines: list[str]) -> None:
    manifest = workdir / "run.ndjson"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["--config", str(workdir / "flagbridge.yaml"), "traffic", "replay", "--manifest", str(manifest)]
    status, _, err = cli([*argv, "--case", "c0"], ENV)
    line = one_error(err)
    assert status == 1 and str(manifest) in line and "manifest" in line


@pytest.mark.parametrize("rate", ["abc", "0/s", "1e400/s"])
def test_a_rate_that_does_not_parse_is_a_usage_error_not_a_failed_run(workdir: Path, rate: str) -> None:
    status, _, err = cli(traffic_run(workdir, "--target", "http://127.0.0.1:9", "--rate", rate, "--count-only"), ENV)
    line = one_error(err)
    assert status == 2 and line.startswith("flagbridge: error: --rate") and rate in line


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-duration", "-1"),
        ("--max-duration", "0"),
        ("--max-duration", "nan"),
        ("--max-failures", "0"),
        ("--max-failures", "-3"),
        ("--max-unanswered", "-3"),
        ("--verdict-wait", "-1"),
        ("--verdict-wait", "nan"),
    ],
)
def test_a_budget_that_cannot_be_meant_is_a_usage_error_not_a_run_stopped_at_once(
    workdir: Path, option: str, value: str
) -> None:
    status, out, err = cli(traffic_run(workdir, "--target", "http://127.0.0.1:9", option, value, "--count-only"), ENV)
    line = one_error(err)
    assert status == 2 and line.startswith(f"flagbridge: error: {option}") and value in line and out == ""


def test_a_har_file_that_cannot_be_read_is_named_once(workdir: Path) -> None:
    argv = ["--config", str(workdir / "flagbridge.yaml"), "traffic", "import-har"]
    for name, problem in (("missing.har", "No such file or directory"), ("broken.har", "not valid JSON")):
        if name == "broken.har":
            (workdir / name).write_text('{"log":', encoding="utf-8")
        status, _, err = cli([*argv, str(workdir / name), "--out", str(workdir / "model.yaml")], ENV)
        line = one_error(err)
        assert status == 1 and problem in line and line.count(name) == 1, line


@pytest.mark.parametrize("interval", ["-1", "nan"])
def test_a_watch_interval_that_is_no_number_of_seconds_is_refused_before_the_first_look(
    verdicts: dict[str, Any], interval: str
) -> None:
    environ = {"FLAGBRIDGE_CONFIG": str(verdicts["config"]), "ORACLE_VERDICTS_TABLE": VERDICTS_TABLE}
    status, out, err = cli(["verdict", "quiet", "--watch", "--interval", interval], environ)
    line = one_error(err)
    assert status == 2 and line.startswith("flagbridge: error: --interval") and interval in line and out == ""


@pytest.mark.parametrize("action", [["list"], ["replay", "--dry-run"], ["replay"]])
def test_a_quarantine_object_that_is_not_json_is_named(aws: dict[str, Any], action: list[str]) -> None:
    key = "cdp-router/2026/01/01/garbage.json"
    aws["s3"].put_object(Bucket=aws["QUARANTINE_BUCKET"], Key=key, Body=b"\xffnot json")
    environ = {"FLAGBRIDGE_CONFIG": str(SHIPPED_CONFIG), "QUARANTINE_BUCKET": aws["QUARANTINE_BUCKET"]}
    status, _, err = cli(["quarantine", *action], environ)
    line = one_error(err)
    assert status == 1 and key in line and "not JSON" in line
    assert aws["s3"].get_object(Bucket=aws["QUARANTINE_BUCKET"], Key=key)["Body"].read() == b"\xffnot json"


def test_a_run_api_url_that_does_not_parse_is_refused_like_one_that_is_not_http() -> None:
    for api in ("notaurl", "http://[zz"):
        status, _, err = cli(
            ["traffic", "status", "tr-1"], {"FLAGBRIDGE_TRAFFIC_API": api, "FLAGBRIDGE_TRAFFIC_API_TOKEN": "t"}
        )
        line = one_error(err)
        assert status == 1 and "cannot reach the run API" in line and "not an http(s) URL" in line and api in line


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ("results: {events_api: 5}", "traffic.results.events_api"),
        (f"results: {{events_api: {BRIDGE}, credentials_secret: [1]}}", "traffic.results.credentials_secret"),
        (f"results: {{events_api: {BRIDGE}}}, stop: {{file: [1]}}", "traffic.stop.file"),
        (f"results: {{events_api: {BRIDGE}}}, stop: {{ssm_parameter: {{a: 1}}}}", "traffic.stop.ssm_parameter"),
        (f"results: {{events_api: {BRIDGE}}}, run_tag: {{key_secret: 5}}", "traffic.run_tag.key_secret"),
    ],
)
def test_a_traffic_setting_of_the_wrong_type_names_its_key(
    workdir: Path, service: TrafficTarget, section: str, where: str
) -> None:
    config = workdir / "flagbridge.yaml"
    config.write_text(
        SHIPPED_CONFIG.read_text(encoding="utf-8")
        + "traffic: {allowlist: [localhost, 127.0.0.1], testers: [{key: qa-bot-01, email: qa-bot-01@qa.example.com}], "
        + f"{section}}}\n",
        encoding="utf-8",
    )
    status, _, err = cli(traffic_run(workdir, "--target", service.url, "--no-oracle"), ENV)
    line = one_error(err)
    assert status == 1 and where in line and "must be text" in line
