"""``flagbridge_ops.traffic`` against AWS on moto: the run tag key and the bridge's credentials from Secrets
Manager, and the SSM stop parameter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from flagbridge.traffic.config import TrafficConfig
from flagbridge_ops.errors import CliError
from flagbridge_ops.traffic import bridge_credentials, run_tag_key, stop_check

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
