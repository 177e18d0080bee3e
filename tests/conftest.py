"""Shared fixtures: fake AWS credentials, sample events from ``events/``, moto-backed resources.

Environment variables are set before any flagbridge import so module-level Powertools objects see them.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from local.botocore_loaders import share_botocore_data_loaders
from local.moto_isolation import isolate_dynamodb_operations

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_SERVICE_NAME": "flagbridge",
        "POWERTOOLS_METRICS_NAMESPACE": "Flagbridge",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
)
for leaked in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(leaked, None)


# One botocore data loader per data path for the whole test process: ``mock_aws`` gives each test a fresh default
# boto3 session (and ``runtime.reset()`` fresh clients), whose loader would parse botocore's models, endpoint rules
# and partitions from JSON again, about two thirds of the ``aws`` fixture's CPU (the local runner does the same).
share_botocore_data_loaders()

# Every ``mock_aws`` in the tests gets DynamoDB's per-item isolation (see local.moto_isolation), not only those
# opened by the ``aws`` fixture: a conditional write raced by two threads (two looks advancing one round) must
# let exactly one win, as DynamoDB does, whichever test happens to be the first in its xdist worker.
isolate_dynamodb_operations()

PROFILES_TABLE = "flagbridge-profiles-test"
QUARANTINE_BUCKET = "flagbridge-quarantine-test"
IMPRESSIONS_QUEUE = "flagbridge-impressions-test"
WEBHOOK_TOKEN = "local-webhook-token"
PROFILE_TOKEN = "local-profile-token"
TESTERS_TABLE = "flagbridge-testers-test"
TESTERS_TOKEN = "local-testers-token"


def load_event(name: str) -> dict[str, Any]:
    """A sample event from ``events/`` (the same files ``sam local invoke -e`` uses)."""
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def load_payload(name: str) -> Any:
    return json.loads((EVENTS / "payloads" / name).read_text(encoding="utf-8"))


def queued_records(body: str | dict[str, Any]) -> list[dict[str, Any]]:
    """The impressions of an impressions-queue message as objects by field name, whatever its version.

    Version 2 records are arrays of the values named by the envelope's ``fields``; version 1 records are
    objects already (see ``flagbridge.impressions.records``).
    """
    message = json.loads(body) if isinstance(body, str) else body
    if message.get("v", 1) == 1:
        return list(message["impressions"])
    assert message["v"] == 2, message["v"]
    fields = message["fields"]
    return [dict(zip(fields, record, strict=True)) for record in message["impressions"]]


def with_records(message: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The body of ``message`` (an impressions-queue message) holding ``records`` (objects) instead, same version."""
    if message.get("v", 1) == 1:
        return json.dumps({**message, "impressions": records})
    fields = message["fields"]
    return json.dumps({**message, "impressions": [[record[name] for name in fields] for record in records]})


def load_handler(function_dir: str) -> ModuleType:
    """Import ``functions/<dir>/<dir>.py`` as Lambda would (module name = handler file)."""
    path = ROOT / "functions" / function_dir / f"{function_dir}.py"
    spec = importlib.util.spec_from_file_location(f"handler_{function_dir}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeLambdaContext:
    function_name = "flagbridge-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:flagbridge-test"
    aws_request_id = "test-request-id"
    log_group_name = "/aws/lambda/flagbridge-test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto-backed table, queue + DLQ, bucket and secrets, wired into flagbridge's settings."""
    with moto_resources(monkeypatch) as resources:
        yield resources


@contextmanager
def moto_resources(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The ``aws`` fixture's resources, for fixtures of a wider scope (one moto environment per module)."""
    from moto import mock_aws

    from flagbridge import runtime

    with mock_aws():
        import boto3

        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName=PROFILES_TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName=f"{IMPRESSIONS_QUEUE}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName=IMPRESSIONS_QUEUE,
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})},
        )["QueueUrl"]
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=QUARANTINE_BUCKET)
        secrets = boto3.client("secretsmanager")
        webhook_arn = secrets.create_secret(Name="flagbridge/webhook-token", SecretString=WEBHOOK_TOKEN)["ARN"]
        profile_arn = secrets.create_secret(Name="flagbridge/profile-api-token", SecretString=PROFILE_TOKEN)["ARN"]
        testers_arn = secrets.create_secret(Name="flagbridge/testers-api-token", SecretString=TESTERS_TOKEN)["ARN"]
        create_testers_table(ddb, TESTERS_TABLE)
        env = {
            "PROFILES_TABLE": PROFILES_TABLE,
            "IMPRESSIONS_QUEUE_URL": queue_url,
            "QUARANTINE_BUCKET": QUARANTINE_BUCKET,
            "WEBHOOK_TOKEN_SECRET": webhook_arn,
            "PROFILE_API_TOKEN_SECRET": profile_arn,
            "TESTERS_TABLE": TESTERS_TABLE,
            "TESTERS_API_TOKEN_SECRET": testers_arn,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        try:
            yield {"ddb": ddb, "sqs": sqs, "s3": s3, "queue_url": queue_url, "dlq_url": dlq_url, **env}
        finally:
            runtime.reset()


@cache
def _testers_table_properties() -> dict[str, Any]:
    from local.resources import Template

    template = Template.load()
    return dict(template.resolve(template.resources["TestersTable"]["Properties"]))


def create_testers_table(ddb: Any, name: str) -> None:
    """The tester registry's table exactly as template.yaml declares it (keys, listing index, TTL)."""
    from local.resources import table_request

    properties = _testers_table_properties()
    ddb.create_table(**table_request(name, properties))
    ttl = properties["TimeToLiveSpecification"]
    ddb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
    )


def drain_queue(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Receive and delete everything on a queue (moto), returning the messages."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
            "Messages", []
        )
        if not batch:
            return messages
        messages.extend(batch)
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def quarantine_objects(s3: Any) -> dict[str, Any]:
    objects = {}
    for entry in s3.list_objects_v2(Bucket=QUARANTINE_BUCKET).get("Contents", []):
        body = s3.get_object(Bucket=QUARANTINE_BUCKET, Key=entry["Key"])["Body"].read()
        objects[entry["Key"]] = json.loads(body)
    return objects
