"""Fixtures for the CDP handlers: batches queue, destination lanes with DLQs, ledger, sinks, receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from local.receivers import Receiver

LANES = ("split", "analytics", "warehouse", "reporting", "audit")
"""The lanes the delivery function consumes."""
ROUTED_LANES = (*LANES, "oracle")
"""Every lane the router fans out to (the oracle's lane is consumed by the oracle's counter)."""
SPLIT_SDK_KEY = "local-split-sdk-key"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(split_sdk_key=SPLIT_SDK_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def cdp_aws(aws: dict[str, Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import boto3

    from flagbridge import runtime

    sqs = aws["sqs"]

    def queue(name: str) -> str:
        return str(sqs.create_queue(QueueName=name)["QueueUrl"])

    lanes = {name: queue(f"flagbridge-test-{name}-destination") for name in ROUTED_LANES}
    dlqs = {name: queue(f"flagbridge-test-{name}-destination-dlq") for name in LANES}
    batches = queue("flagbridge-test-batches")
    reporting = queue("flagbridge-test-reporting")
    ddb = aws["ddb"]
    ddb.create_table(
        TableName="flagbridge-test-ledger",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    events = boto3.client("events")
    events.create_event_bus(Name="flagbridge-test-audit")
    s3 = aws["s3"]
    s3.create_bucket(Bucket="flagbridge-test-warehouse")
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="firehose", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto3.client("firehose").create_delivery_stream(
        DeliveryStreamName="flagbridge-test-warehouse",
        ExtendedS3DestinationConfiguration={"RoleARN": role, "BucketARN": "arn:aws:s3:::flagbridge-test-warehouse"},
    )
    secrets = boto3.client("secretsmanager")
    split_secret = secrets.create_secret(Name="flagbridge/test/split-sdk-key", SecretString=SPLIT_SDK_KEY)["ARN"]
    creds = secrets.create_secret(
        Name="flagbridge/test/mparticle",
        SecretString=json.dumps({"api_key": "local-mparticle-key", "api_secret": "local-mparticle-secret"}),
    )["ARN"]
    hook = secrets.create_secret(Name="flagbridge/test/mp-webhook", SecretString="Bearer local-mparticle-webhook")[
        "ARN"
    ]
    env = {
        "BATCHES_QUEUE_URL": batches,
        "DESTINATION_QUEUES": json.dumps(lanes),
        "DESTINATION_DLQS": json.dumps(dlqs),
        "DELIVERY_LEDGER_TABLE": "flagbridge-test-ledger",
        "MPARTICLE_CREDENTIALS_SECRET": creds,
        "MPARTICLE_WEBHOOK_AUTH_SECRET": hook,
        "SPLIT_SDK_KEY_SECRET": split_secret,
        "SPLIT_EVENTS_URL": f"{receiver.url}/api",
        "ANALYTICS_WEBHOOK_URL": f"{receiver.url}/analytics",
        "WAREHOUSE_STREAM_NAME": "flagbridge-test-warehouse",
        "REPORTING_QUEUE_URL": reporting,
        "AUDIT_EVENT_BUS_NAME": "flagbridge-test-audit",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    return {**aws, **env, "lanes": lanes, "dlqs": dlqs, "batches_url": batches, "reporting_url": reporting}
