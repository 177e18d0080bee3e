"""The local runner's moto speed-up for ``TransactWriteItems`` (``speed_up_moto_transactions``) keeps moto's
results: a transaction that succeeds writes everything; one that fails a condition leaves every item it named as it
was (also those it had already written), with the same cancellation reasons; and it no longer copies whole tables
(the table object survives a rollback). Run in a fresh interpreter: the patch is process-wide.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

ACCOUNT, REGION, TABLE = "123456789012", "us-east-1", "ledger"
ITEMS = 50


def scenario(patched: bool) -> None:
    """The checks, in this interpreter (called by the test in a subprocess)."""
    import boto3
    from moto import mock_aws
    from moto.dynamodb.models import dynamodb_backends

    from local.moto_isolation import isolate_dynamodb_operations
    from local.runner.moto_patches import speed_up_moto_transactions

    isolate_dynamodb_operations()
    if patched:
        assert speed_up_moto_transactions()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        )  # fmt: skip
        for index in range(ITEMS):
            ddb.put_item(TableName=TABLE, Item={"id": {"S": f"i{index}"}, "v": {"N": str(index)}})
        table = dynamodb_backends[ACCOUNT][REGION].tables[TABLE]
        claim = "attribute_not_exists(id)"
        new_item = {"id": {"S": "new-1"}, "v": {"N": "1"}}
        failing = [
            {"Put": {"TableName": TABLE, "Item": new_item, "ConditionExpression": claim}},
            {"Update": {"TableName": TABLE, "Key": {"id": {"S": "i5"}}, "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"N": "99"}}}},
            {"Delete": {"TableName": TABLE, "Key": {"id": {"S": "i6"}}}},
            {"Put": {"TableName": TABLE, "Item": {"id": {"S": "i7"}, "v": {"N": "0"}}, "ConditionExpression": claim}},
        ]  # fmt: skip
        try:
            ddb.transact_write_items(TransactItems=failing)
            raise AssertionError("the transaction should have been cancelled")
        except ddb.exceptions.TransactionCanceledException as exc:
            codes = [reason.get("Code") for reason in exc.response["CancellationReasons"]]
        assert codes == ["None", "None", "None", "ConditionalCheckFailed"], codes
        items = {i["id"]["S"]: i["v"]["N"] for i in ddb.scan(TableName=TABLE)["Items"]}
        assert items == {f"i{index}": str(index) for index in range(ITEMS)}, "rollback did not restore every item"
        same_table = dynamodb_backends[ACCOUNT][REGION].tables[TABLE] is table
        assert same_table is patched, "patched: the table is never copied; moto's own: replaced by its copy"
        ddb.transact_write_items(TransactItems=failing[:3])
        items = {i["id"]["S"]: i["v"]["N"] for i in ddb.scan(TableName=TABLE)["Items"]}
        assert items["new-1"] == "1" and items["i5"] == "99" and "i6" not in items and len(items) == ITEMS


def _run(patched: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/shared", "ops", ""))}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(name, None)
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION})
    code = f"from tests.tools.test_moto_transactions import scenario; scenario({patched})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_transactions_roll_back_by_item_with_moto_s_results() -> None:
    result = _run(patched=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_same_checks_hold_for_moto_s_own_backup() -> None:
    result = _run(patched=False)  # the scenario is moto's behaviour: the patch changes only how it is achieved
    assert result.returncode == 0, result.stderr[-3000:]
