"""A tester's first write (a transaction) and another writer's put on the same table: both land, neither fails.

The flaky ``hostile/test_no_pii_in_logs.py`` run had this cause: moto's ``transact_write_items`` deep-copies the
table (its rollback snapshot) without a lock, so a put by another of the processor's writer threads during the
copy raised ``RuntimeError: dictionary changed size during iteration`` and that pair's messages were reported
as batch item failures. Real DynamoDB isolates a transaction from other writes; ``local.moto_isolation`` gives
moto the same. These tests force the interleaving with a hook instead of CPU load: the transaction's snapshot
pauses at its first item while the other writer's put runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from flagbridge.profiles.model import FlagState
from flagbridge.profiles.model import TestMark as Mark
from flagbridge.profiles.store import DynamoDBProfileStore
from local.moto_isolation import ITEM_OPERATIONS
from tests.conftest import PROFILES_TABLE

PUT_GRACE_SECONDS = 0.3  # how long the paused snapshot waits for the other put (which isolation makes wait)


def _state(key: str) -> FlagState:
    return FlagState(
        traffic_type="user",
        key=key,
        identity_type="customer_id",
        flag="checkout",
        treatment="on",
        label="default rule",
        version=1,
        environment="Production",
        environment_id="env-1",
        current_time=1,
        first_seen=1,
        last_seen=1,
        exposures=1,
    )


def _moto_own_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the runner's transaction speed-up (local.runner.moto_patches) if an earlier test in this process
    installed it: these tests hook the whole-table snapshot moto itself takes."""
    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_flagbridge_item_backup", False):
        monkeypatch.setattr(DynamoDBBackend, "transact_write_items", DynamoDBBackend._flagbridge_moto_transact)
        monkeypatch.setattr(dynamodb_models, "copy", dynamodb_models._flagbridge_moto_copy)


def _race(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[list[BaseException], set[str]]:
    """The tester's transaction pauses mid-snapshot while a customer's put runs on another thread."""
    from moto.dynamodb.models.dynamo_type import Item

    _moto_own_transactions(monkeypatch)

    store = DynamoDBProfileStore(aws["ddb"], PROFILES_TABLE)
    store.save(_state("someone"))  # so the snapshot has an item to pause at
    errors: list[BaseException] = []
    original_deepcopy: Callable[..., Any] = Item.__deepcopy__
    other_writer: list[threading.Thread] = []

    def put_customer() -> None:
        try:
            store.save(_state("c-1"))
        except Exception as exc:
            errors.append(exc)

    def pausing_deepcopy(self: Item, memo: dict[int, Any]) -> Item:
        if not other_writer:
            other_writer.append(threading.Thread(target=put_customer))
            other_writer[0].start()
            other_writer[0].join(PUT_GRACE_SECONDS)  # unisolated, the put lands here, inside the copy
        return original_deepcopy(self, memo)

    monkeypatch.setattr(Item, "__deepcopy__", pausing_deepcopy)
    try:
        store.save(_state("qa-tester"), Mark(rule="qa-key-prefix", marked_at=1))
    except Exception as exc:
        errors.append(exc)
    monkeypatch.setattr(Item, "__deepcopy__", original_deepcopy)
    other_writer[0].join()
    items = aws["ddb"].scan(TableName=PROFILES_TABLE, ConsistentRead=True)["Items"]
    return errors, {f"{item['pk']['S']} {item['sk']['S']}" for item in items}


def test_a_put_during_a_transaction_snapshot_waits_and_both_land(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given moto with DynamoDB's isolation (the tests' fixtures and the local runner install it)
    # When a put arrives while a transaction copies the table
    errors, items = _race(aws, monkeypatch)

    # Then neither write fails and every item is there
    assert errors == []
    assert {"user#qa-tester FLAG#checkout", "user#qa-tester META", "user#c-1 FLAG#checkout"} <= items


def test_without_isolation_the_same_interleaving_breaks_the_transaction(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given moto's backend as shipped (the isolation's wrappers removed)
    from moto.dynamodb.models import DynamoDBBackend

    for name in ITEM_OPERATIONS:
        method = getattr(DynamoDBBackend, name, None)
        if method is not None and hasattr(method, "__wrapped__"):
            monkeypatch.setattr(DynamoDBBackend, name, method.__wrapped__)

    # When the same interleaving happens
    errors, _ = _race(aws, monkeypatch)

    # Then the snapshot broke on the concurrent put: the flake, reproduced without timing luck
    assert [type(error) for error in errors] == [RuntimeError]
    assert "changed size during iteration" in str(errors[0])
