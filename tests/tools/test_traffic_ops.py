"""``flagbridge_ops.traffic`` against AWS on moto: the run tag key, the bridge's credentials and the oracle API's token
from Secrets Manager, and the SSM stop parameter; and how long a run waits for its oracle's verdict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from flagbridge.oracle.verdicts import InMemoryVerdicts, verdict_after_run, verdict_decided, verdict_fresh
from flagbridge.traffic.config import TrafficConfig
from flagbridge.traffic.stop import OracleStop
from flagbridge_ops.errors import CliError
from flagbridge_ops.traffic import (
    bridge_credentials,
    oracle_token,
    run_tag_key,
    stop_check,
)

CONFIG = TrafficConfig.from_document(
    {
        "allowlist": ["localhost"],
        "run_tag": {"key_secret": "flagbridge/traffic-run-tag-key"},
        "results": {"credentials_secret": "flagbridge/mparticle-credentials"},
        "stop": {"ssm_parameter": "/flagbridge/traffic/stop"},
    }
)


class Clients:
    def get(self, service: str) -> Any:
        return boto3.client(service, region_name="us-east-1")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clients]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield Clients()


def test_secrets_come_from_the_environment_else_secrets_manager(aws: Clients) -> None:
    secrets = aws.get("secretsmanager")
    secrets.create_secret(Name="flagbridge/traffic-run-tag-key", SecretString="from-aws")
    secrets.create_secret(
        Name="flagbridge/mparticle-credentials", SecretString=json.dumps({"api_key": "k", "api_secret": "s"})
    )
    assert run_tag_key(CONFIG, {}, aws) == b"from-aws"
    assert run_tag_key(CONFIG, {"FLAGBRIDGE_RUN_TAG_KEY": "local"}, aws) == b"local"
    assert bridge_credentials(CONFIG, {}, aws) == ("k", "s")
    env = {"FLAGBRIDGE_MPARTICLE_KEY": "a", "FLAGBRIDGE_MPARTICLE_SECRET": "b"}
    assert bridge_credentials(CONFIG, env, aws) == ("a", "b")
    with pytest.raises(CliError, match="no run tag key: set FLAGBRIDGE_RUN_TAG_KEY"):
        run_tag_key(TrafficConfig.from_document({}), {}, aws)


def test_the_stop_switch_reads_the_file_and_the_ssm_parameter(aws: Clients, tmp_path: Path) -> None:
    ssm = aws.get("ssm")
    ssm.put_parameter(Name="/flagbridge/traffic/stop", Value="run", Type="String")
    check = stop_check(CONFIG, str(tmp_path / "STOP"), aws, use_ssm=True)
    assert check() is None
    ssm.put_parameter(Name="/flagbridge/traffic/stop", Value="stop", Type="String", Overwrite=True)
    assert check() == "stop switch: SSM parameter /flagbridge/traffic/stop says stop"
    assert stop_check(CONFIG, str(tmp_path / "STOP"), aws, use_ssm=False)() is None
    (tmp_path / "STOP").write_text("")
    assert check() == f"stop switch: {tmp_path / 'STOP'} exists"


def test_the_oracle_token_comes_from_the_environment_else_secrets_manager(aws: Clients) -> None:
    aws.get("secretsmanager").create_secret(Name="flagbridge/oracle-api-token", SecretString="from-aws")
    assert oracle_token({"ORACLE_API_TOKEN_SECRET": "flagbridge/oracle-api-token"}, aws, "t") == "from-aws"
    assert oracle_token({"FLAGBRIDGE_ORACLE_API_TOKEN": "local", "ORACLE_API_TOKEN_SECRET": "x"}, aws, "t") == "local"
    with pytest.raises(CliError, match="the plan feeds oracle test 't': set FLAGBRIDGE_ORACLE_API_TOKEN"):
        oracle_token({}, aws, "t")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def evaluation(state: str, at: int, metric: str = "5xx rate") -> dict[str, Any]:
    return {"state": state, "evaluated_at": at, "verdicts": [{"treatment": "on", "metric": metric, "state": state}]}


def test_after_the_run_the_verdict_is_awaited_until_decided_or_the_wait_is_over() -> None:
    clock = Clock()
    source = InMemoryVerdicts({"t": evaluation("PASS", 900)})
    stop = OracleStop("t", source, ["5xx rate"], clock=clock)
    # A PASS from before the run's end (1000) is not waited on forever: the wait ends it, undecided
    document, error = verdict_after_run(stop, 1000, 5.0, sleep=clock.sleep, clock=clock)
    assert document == evaluation("PASS", 900) and error is None and clock.now == 5.0 and source.reads == 6
    assert not verdict_decided(evaluation("PASS", 900), ["5xx rate"], 1000)
    # A PASS evaluated after the end is decided; so is a FAIL from any time; a FAIL of another metric is not
    assert verdict_decided(evaluation("PASS", 1000), ["5xx rate"], 1000)
    assert verdict_decided(evaluation("FAIL", 1), ["5xx rate"], 1000)
    assert not verdict_decided(evaluation("FAIL", 1, metric="conversion"), ["5xx rate"], 1000)
    assert not verdict_decided(evaluation("INCONCLUSIVE", 2000), ["5xx rate"], 1000)
    # The verdict turns FAIL while waiting: the wait ends there; an unreadable verdict keeps the last one read
    source.documents["t"] = evaluation("FAIL", 1200)
    source.fail_reads = 1
    clock.now = 0.0
    document, error = verdict_after_run(stop, 1000, 30.0, sleep=clock.sleep, clock=clock)
    assert document == evaluation("FAIL", 1200) and error is None and clock.now == 1.0
    source.fail_reads = 100
    document, error = verdict_after_run(stop, 1000, 0.0, sleep=clock.sleep, clock=clock)
    assert document == evaluation("FAIL", 1200)  # the last read, still decided
    assert verdict_fresh(document, 1000) and not verdict_fresh(None, 1000)
