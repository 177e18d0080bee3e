"""Fixtures of the hostile suite: one moto environment per test module, emptied between cases.

Building moto resources and boto3 clients per case would dominate the suite's run time (hundreds of
cases), so each module shares one environment; ``hostile_aws`` drains the queues and empties the
quarantine after every case so that each case sees only what it caused. The environment also has what
the mParticle ingest routes need (batches queue, credentials and webhook Authorization secrets) and what the
oracle's API needs (verdicts table, bearer token secret) and what ``POST /runs`` needs (runs table, manifest
bucket, shard queue, token, a traffic allowlist).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import drain_queue, moto_resources
from tests.hostile.support import (
    add_mparticle_ingest_resources,
    add_oracle_api_resources,
    add_runs_resources,
    clear_quarantine,
)

# DynamoDB's key size limits, which moto enforces on writes only.
PARTITION_KEY_MAX_BYTES = 2048
SORT_KEY_MAX_BYTES = 1024


def _key_values(params: dict[str, Any]) -> list[tuple[str, Any]]:
    values = [(name.lstrip(":"), value) for name, value in params.get("ExpressionAttributeValues", {}).items()]
    values.extend(params.get("Key", {}).items())
    for request in params.get("RequestItems", {}).values():
        for key in request.get("Keys", []):
            values.extend(key.items())
    return values


def _enforce_key_sizes(params: dict[str, Any], model: Any, **_: Any) -> None:
    for name, value in _key_values(params):
        if name not in ("pk", "sk") or not isinstance(value, dict) or "S" not in value:
            continue
        limit = SORT_KEY_MAX_BYTES if name == "sk" else PARTITION_KEY_MAX_BYTES
        if len(value["S"].encode("utf-8", "surrogatepass")) > limit:
            error = {"Code": "ValidationException", "Message": f"Size of {name} exceeds {limit} bytes"}
            raise ClientError({"Error": error}, model.name)


@pytest.fixture(scope="module")
def shared_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The conftest ``aws`` resources, once per module; reads with oversize keys fail as on real DynamoDB."""
    from flagbridge import runtime

    with pytest.MonkeyPatch.context() as monkeypatch, moto_resources(monkeypatch) as resources:
        add_mparticle_ingest_resources(resources, monkeypatch)
        add_oracle_api_resources(resources, monkeypatch)
        add_runs_resources(resources, monkeypatch, tmp_path_factory.mktemp("hostile-config"))
        client = runtime.aws_client("dynamodb")
        for operation in ("Query", "GetItem", "BatchGetItem"):
            client.meta.events.register(f"before-parameter-build.dynamodb.{operation}", _enforce_key_sizes)
        resources["prepared"] = set()
        yield resources


@pytest.fixture
def hostile_aws(shared_aws: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The shared environment, with empty queues and quarantine before and after the test.

    Before is skipped when the previous test here was a hostile case that emptied them after itself (nothing ran
    since): emptying costs a call per queue even when there is nothing to drain, twice per case.
    """
    if not shared_aws.pop("emptied", False):
        _empty(shared_aws)
    yield shared_aws
    _empty(shared_aws)
    shared_aws["emptied"] = True


@pytest.fixture(autouse=True)
def _other_tests_may_leave_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test taking ``shared_aws`` itself may leave messages or objects behind: the next hostile case empties first."""
    yield
    if "shared_aws" in request.fixturenames and "hostile_aws" not in request.fixturenames:
        request.getfixturevalue("shared_aws").pop("emptied", None)


def _empty(aws: dict[str, Any]) -> None:
    drain_queue(aws["sqs"], aws["queue_url"])
    drain_queue(aws["sqs"], aws["batches_url"])
    drain_queue(aws["sqs"], aws["shards_url"])
    clear_quarantine(aws["s3"])
