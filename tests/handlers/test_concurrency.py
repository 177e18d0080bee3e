"""Concurrent processors on the same users lose no update (optimistic concurrency on DynamoDB, moto)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from flagbridge.config import load_config
from flagbridge.profiles.processor import ImpressionProcessor
from flagbridge.profiles.store import DynamoDBProfileStore
from flagbridge.quarantine import InMemoryQuarantine
from flagbridge.queues import QueueRecord
from flagbridge.settings import PACKAGED_CONFIG
from tests.conftest import PROFILES_TABLE

BASE = 1767225600000


def _impression(user: int, flag: int, n: int) -> dict[str, Any]:
    return {
        "key": f"u-{user}",
        "flag": f"flag_{flag}",
        "treatment": f"t{n % 3}",
        "time": BASE + n,
        "label": "default rule",
        "version": 1,
        "environment": "Production",
        "environment_id": "env-1",
        "traffic_type": "user",
        "identity_type": "customer_id",
    }


@pytest.fixture
def atomic_moto_writes() -> Iterator[None]:
    """DynamoDB applies each (conditional) write atomically; moto's in-process backend does not.

    Serialising moto's write methods restores DynamoDB's per-request atomicity while reads and the
    processors' read-merge-write cycles still race, which is what this test is about.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    patches = []
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        patches.append(mock.patch.object(DynamoDBBackend, name, locked))
    for patch in patches:
        patch.start()
    yield
    for patch in patches:
        patch.stop()


@pytest.mark.usefixtures("atomic_moto_writes")
def test_eight_concurrent_processors_on_the_same_users(aws: dict[str, Any]) -> None:
    # Given 8 workers, each with its own batches of impressions for the same 3 users x 2 flags
    config = load_config(PACKAGED_CONFIG)
    impressions = [_impression(n % 3, n % 2, n) for n in range(240)]
    random.Random(7).shuffle(impressions)
    chunks = [impressions[i::8] for i in range(8)]
    errors: list[BaseException] = []
    conflicts: list[int] = []
    barrier = threading.Barrier(8)

    def work(chunk: list[dict[str, Any]], worker: int) -> None:
        import boto3

        store = DynamoDBProfileStore(boto3.client("dynamodb"), PROFILES_TABLE)
        processor = ImpressionProcessor(store, InMemoryQuarantine(), config, max_workers=2)
        barrier.wait()
        for index in range(0, len(chunk), 5):
            body = json.dumps(
                {"request_id": f"w{worker}", "received_at": BASE, "impressions": chunk[index : index + 5]}
            )
            record = QueueRecord(f"w{worker}-{index}", body)
            for _ in range(5):  # a failed record is redelivered by SQS, as in Lambda
                result = processor.process([record])
                conflicts.append(result.conflicts)
                if not result.failed_message_ids:
                    break
            else:
                errors.append(RuntimeError(f"{record.message_id} still failing after 5 deliveries"))

    threads = [threading.Thread(target=work, args=(chunk, n)) for n, chunk in enumerate(chunks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(conflicts) > 0, "the workers never raced: the test did not exercise concurrent writes"

    # Then every impression is counted once and the newest treatment wins, as in a sequential run
    items = aws["ddb"].scan(TableName=PROFILES_TABLE, ConsistentRead=True)["Items"]
    flags = {(i["pk"]["S"], i["sk"]["S"]): i for i in items if i["sk"]["S"].startswith("FLAG#")}
    assert len(flags) == 6
    for (pk, sk), item in flags.items():
        mine = [i for i in impressions if f"user#{i['key']}" == pk and f"FLAG#{i['flag']}" == sk]
        newest = max(mine, key=lambda i: i["time"])
        assert int(item["exposures"]["N"]) == len(mine)
        assert item["treatment"]["S"] == newest["treatment"]
        assert int(item["last_seen"]["N"]) == newest["time"]
