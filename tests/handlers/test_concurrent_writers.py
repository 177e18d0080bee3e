"""A tester's first write (a transaction) and another writer's put on the same table: both land, neither fails.

The flaky ``hostile/test_no_pii_in_logs.py`` run had this cause: moto's ``transact_write_items`` deep-copies the
table (its rollback snapshot) without a lock, so a put by another of the processor's writer threads during the
copy raised ``RuntimeError: dictionary changed size during iteration`` and that pair's messages were reported
as batch item failures. Real DynamoDB isolates a transaction from other writes; ``local.moto_isolation`` gives
moto the same. These tests force the interleaving with a hook instead of CPU load: the transaction's snapshot
pauses at its first item while the other writer's put runs.

The same holds for a conditional write: moto checks the condition, then writes. A CI run under load had two looks
at one round of a run until decided both pass ``RunStore.advance_round``'s condition and enqueue the next round
twice, in a test module whose own ``mock_aws`` was the first of its xdist worker, so nothing had installed the
isolation yet. ``tests/conftest.py`` now installs it for every test process; the last tests here force that
interleaving too.
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


RUNS = "flagbridge-runs-race"


def _advance_twice(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Two looks advance round 0 of one run; the first pauses between its condition check and its write while
    the second look's whole conditional write runs on another thread (the interleaving CI hit under load)."""
    import moto.dynamodb.models as dynamodb_models

    from flagbridge.runs.store import DynamoDBRunStore

    aws["ddb"].create_table(
        TableName=RUNS, AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    store = DynamoDBRunStore(aws["ddb"], RUNS)
    assert store.create_run("r-race", {"state": "running"})
    original_parser = dynamodb_models.create_condition_expression_parser
    won: list[bool] = []
    second_look: list[threading.Thread] = []

    def advance(look: str) -> None:
        won.append(store.advance_round("r-race", 0, {"rounds": [], "look": look}))

    def pausing_parser(*args: Any, **kwargs: Any) -> Any:
        parsed = original_parser(*args, **kwargs)
        condition = parsed.parse()

        class Paused:
            def parse(self) -> Any:
                return self

            def expr(self, item: Any) -> bool:
                holds = bool(condition.expr(item))
                if not second_look:
                    second_look.append(threading.Thread(target=advance, args=("second",)))
                    second_look[0].start()
                    second_look[0].join(PUT_GRACE_SECONDS)  # unisolated, the second write lands here
                return holds

        return Paused()

    monkeypatch.setattr(dynamodb_models, "create_condition_expression_parser", pausing_parser)
    advance("first")
    monkeypatch.setattr(dynamodb_models, "create_condition_expression_parser", original_parser)
    second_look[0].join()
    return won


def test_of_two_looks_advancing_one_round_at_once_exactly_one_wins(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given moto with DynamoDB's isolation, which every test's mock_aws has (tests/conftest.py installs it)
    # When a second look's conditional write arrives between the first's condition check and its write
    won = _advance_twice(aws, monkeypatch)

    # Then the second waits for the first and its condition fails: one round advanced, once
    assert sorted(won) == [False, True]


def test_without_isolation_both_looks_advance_the_round(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given moto's backend as shipped
    from moto.dynamodb.models import DynamoDBBackend

    for name in ITEM_OPERATIONS:
        method = getattr(DynamoDBBackend, name, None)
        if method is not None and hasattr(method, "__wrapped__"):
            monkeypatch.setattr(DynamoDBBackend, name, method.__wrapped__)

    # When the same interleaving happens
    won = _advance_twice(aws, monkeypatch)

    # Then both conditions held and both looks advanced: the next round enqueued twice, as the failed CI run saw
    assert won == [True, True]


def test_importing_the_tests_conftest_isolates_moto_in_a_fresh_process() -> None:
    # Given a process that has imported nothing of the tests but their conftest (an xdist worker whose first test
    # opens its own mock_aws, as the runs tests do)
    import subprocess
    import sys

    from tests.conftest import ROOT

    check = (
        "import tests.conftest\n"
        "from moto.dynamodb.models import DynamoDBBackend\n"
        "print(all(getattr(getattr(DynamoDBBackend, n), '_flagbridge_isolated', False) for n in "
        "('update_item', 'put_item', 'transact_write_items')))\n"
    )
    # When it looks at moto's backend
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True)

    # Then the item operations are isolated already
    assert out.stdout.strip() == "True"
