"""``flagbridge dlq ...`` and ``flagbridge quarantine ...`` in process on moto: quarantine replay with a fixed plan,
DLQ redrive (moved from ``tests/handlers/test_replay_cli.py`` with the command)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from flagbridge_ops.__main__ import main
from flagbridge_ops.resources import stack_environment
from tests.conftest import (
    QUARANTINE_BUCKET,
    ROOT,
    drain_queue,
    load_event,
    load_handler,
    quarantine_objects,
    queued_records,
)

NOW_MS = 1767225700000
SHIPPED_CONFIG = ROOT / "layers" / "shared" / "config" / "flagbridge.yaml"
PLAN_NOW_ALLOWS = {  # the user "fixed their plan": nothing is blocked any more
    "on_unplanned: drop_attribute": "on_unplanned: allow",
    "on_unplanned_event: drop_event": "on_unplanned_event: allow",
    "on_missing_required: drop_event": "on_missing_required: allow",
    "on_invalid_value: drop_event": "on_invalid_value: allow",
}


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the progress bar is drawn."""

    def isatty(self) -> bool:
        return True


def cli(*argv: str) -> tuple[int, Any]:
    """Run the CLI in process with --json; returns (exit status, parsed output)."""
    out = io.StringIO()
    status = main(["--json", "--no-progress", *argv], out=out)
    return status, json.loads(out.getvalue()) if out.getvalue() else None


def use_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, replacements: dict[str, str]) -> None:
    from flagbridge import runtime

    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "flagbridge.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("FLAGBRIDGE_CONFIG", str(path))
    runtime.reset()


def route_samples(lambda_context: Any, cdp_aws: dict[str, Any]) -> None:
    """Route the sample batches with the shipped config: two of them lose events to the data plan."""
    router = load_handler("cdp_router")
    router.runtime.cdp_router()._clock_ms = lambda: NOW_MS  # the sample events are from 2026-01-01
    assert router.lambda_handler(load_event("sqs_batches.json"), lambda_context) == {"batchItemFailures": []}
    for url in cdp_aws["lanes"].values():
        drain_queue(cdp_aws["sqs"], url)


def blocked_keys(s3: Any) -> list[str]:
    return sorted(k for k in quarantine_objects(s3) if k.startswith("cdp-router/"))


def test_dry_run_replays_blocked_batches_per_destination_with_the_current_config(
    cdp_aws, lambda_context, monkeypatch, tmp_path
) -> None:
    route_samples(lambda_context, cdp_aws)
    keys = blocked_keys(cdp_aws["s3"])
    assert len(keys) == 2  # qa-bot-01's debug_ping, u-2002's two events

    # With the shipped plan nothing would get through: both stay quarantined, nothing is written.
    status, unchanged = cli("quarantine", "replay", "--dry-run", "--source", "cdp-router")
    assert status == 0
    assert (unchanged["replayed"], unchanged["still_failing"]) == (0, 2)
    assert all("still blocked by the plan: plan." in kept["detail"] for kept in unchanged["kept"])
    assert "plan.invalid_value=1" in " ".join(kept["detail"] for kept in unchanged["kept"])

    use_config(monkeypatch, tmp_path, PLAN_NOW_ALLOWS)
    status, result = cli("quarantine", "replay", "--dry-run", "--source", "cdp-router")
    assert status == 0
    assert (result["replayed"], result["still_failing"], result["not_replayable"]) == (2, 0, 0)
    destinations = result["destinations"]
    # u-2002 (a customer): both events now pass the plan; the filters are applied again per destination.
    analytics = {"messages": 1, "events": 2, "reasons": {"sent": 2, "filter.users:exclude_test": 1}}
    assert destinations["analytics"] == analytics  # (the third decision: qa-bot-01's debug_ping, a tester)
    assert destinations["warehouse"]["events"] == 2
    assert destinations["reporting"]["messages"] == 0  # add_to_plan / mystery_event are not reporting's events
    # qa-bot-01 (a tester): only the blocked debug_ping is replayed (the rest was delivered already).
    assert destinations["split"]["messages"] == 0
    assert destinations["split"]["reasons"] == {"filter.users:test_only": 2, "filter.event_names:exclude:debug_*": 1}
    assert destinations["audit"] == {"messages": 2, "events": 3, "reasons": {"sent": 3}}
    assert result["queued"] == {"batches": 2}

    # A dry run sends and moves nothing.
    assert drain_queue(cdp_aws["sqs"], cdp_aws["batches_url"]) == []
    assert blocked_keys(cdp_aws["s3"]) == keys

    out = io.StringIO()
    assert main(["--no-progress", "quarantine", "replay", "--dry-run"], out=out) == 0
    text = out.getvalue()
    assert "dry run" in text and "analytics" in text and "sent=2" in text


def test_replay_enqueues_each_batch_once_even_when_run_twice(cdp_aws, lambda_context, monkeypatch, tmp_path) -> None:
    route_samples(lambda_context, cdp_aws)
    originals = {
        json.dumps(item["item"]["batch"]["source_request_id"]): item["item"]["batch"]
        for document in quarantine_objects(cdp_aws["s3"]).values()
        if document.get("source") == "cdp-router"
        for item in document["items"]
    }
    use_config(monkeypatch, tmp_path, PLAN_NOW_ALLOWS)

    assert cli("quarantine", "replay")[1]["replayed"] == 2
    second_status, second = cli("quarantine", "replay")
    assert second_status == 0 and second["items"] == 0  # the replayed objects moved to replayed/

    messages = drain_queue(cdp_aws["sqs"], cdp_aws["batches_url"])
    assert len(messages) == 2
    batches = {json.loads(m["Body"])["batch"]["source_request_id"]: json.loads(m["Body"]) for m in messages}
    violation = batches["req-violation-0001"]["batch"]  # nothing of it was delivered: same request id
    assert "block_metadata" not in violation["context"]["data_plan"]
    original = originals['"req-violation-0001"']
    assert [e["data"]["timestamp_unixtime_ms"] for e in violation["events"]] == [
        e["data"]["timestamp_unixtime_ms"] for e in original["events"]
    ]
    partial = batches["replay:srid:req-test-user-0001"]["batch"]  # partly delivered: a new, stable key
    assert [e["data"]["event_name"] for e in partial["events"]] == ["debug_ping"]
    assert "batch_id" not in partial

    keys = quarantine_objects(cdp_aws["s3"])
    assert not [k for k in keys if k.startswith("cdp-router/")]
    assert len([k for k in keys if k.startswith("replayed/cdp-router/")]) == 2

    # The replayed batches route with the fixed plan (u-2002's events reach analytics).
    router = load_handler("cdp_router")
    router.runtime.cdp_router()._clock_ms = lambda: NOW_MS
    records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
    assert router.lambda_handler({"Records": records}, lambda_context) == {"batchItemFailures": []}
    analytics = [json.loads(m["Body"]) for m in drain_queue(cdp_aws["sqs"], cdp_aws["lanes"]["analytics"])]
    assert [len(m["batch"]["events"]) for m in analytics] == [2]


def test_impressions_replay_enqueues_what_now_passes_and_keeps_the_rest(cdp_aws, monkeypatch, tmp_path) -> None:
    good = {"key": "u-9", "split": "checkout", "environmentName": "QA", "treatment": "on", "time": NOW_MS}
    bad = {"key": "u-9", "split": "checkout", "environmentName": "QA", "treatment": "on"}  # no time
    key = "split-impressions/2026/01/01/req-1.json"
    document = {
        "source": "split-impressions",
        "request_id": "req-1",
        "received_at": NOW_MS,
        "items": [
            {"index": 0, "reason": "unmapped_environment", "detail": "...", "item": good},
            {"index": 1, "reason": "invalid_impression", "detail": "...", "item": bad},
        ],
    }
    cdp_aws["s3"].put_object(Bucket=QUARANTINE_BUCKET, Key=key, Body=json.dumps(document).encode())
    status, listing = cli("quarantine", "list", "--since", "2026-01-01")
    assert status == 0
    assert listing["reasons"] == {"unmapped_environment": 1, "invalid_impression": 1}

    staging = "    - environment: Staging\n"
    qa = "    - environment: QA\n      traffic_type: user\n      identity_type: customer_id\n"
    use_config(monkeypatch, tmp_path, {staging: qa + staging})  # the user mapped their QA environment
    out, terminal = io.StringIO(), Terminal()
    assert main(["quarantine", "replay", "--source", "split-impressions"], out=out, err=terminal) == 0
    assert "replay: 1/1" in terminal.getvalue()  # progress on stderr (a terminal)

    messages = [json.loads(m["Body"]) for m in drain_queue(cdp_aws["sqs"], cdp_aws["queue_url"])]
    assert [[i["flag"] for i in queued_records(m)] for m in messages] == [["checkout"]]
    objects = quarantine_objects(cdp_aws["s3"])
    assert [i["reason"] for i in objects[key]["items"]] == ["invalid_impression"]  # still failing: kept as is
    assert [i["reason"] for i in objects[f"replayed/{key}"]["items"]] == ["unmapped_environment"]


def test_dlq_redrive_moves_messages_back_and_dry_run_moves_nothing(aws) -> None:
    sqs = aws["sqs"]
    for n in range(3):
        sqs.send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps({"request_id": f"r{n}", "impressions": []}))

    status, listing = cli("dlq", "list")
    assert status == 0
    assert [(q["name"], q["messages"]) for q in listing["dlqs"]] == [("impressions", 3)]

    status, dry = cli("dlq", "redrive", "impressions", "--dry-run", "--wait-seconds", "0")
    assert (status, dry["moved"], dry["would_move"], dry["targets"]) == (0, 0, 3, {"flagbridge-impressions-test": 3})
    assert drain_queue(sqs, aws["queue_url"]) == []

    status, result = cli("dlq", "redrive", "impressions", "--wait-seconds", "0")
    assert (status, result["moved"]) == (0, 3)
    assert sorted(json.loads(m["Body"])["request_id"] for m in drain_queue(sqs, aws["queue_url"])) == [
        "r0",
        "r1",
        "r2",
    ]
    assert drain_queue(sqs, aws["dlq_url"]) == []


def test_dlq_show_peeks_without_consuming_or_printing_personal_data(cdp_aws) -> None:
    sqs, dlq = cdp_aws["sqs"], cdp_aws["dlqs"]["analytics"]
    lane_message = {
        "v": 1,
        "destination": "analytics",
        "type": "webhook",
        "batch_key": "srid:req-1",
        "batch": {"user_identities": {"email": "someone@mail.example.com"}, "events": [{}, {}]},
    }
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(lane_message))

    out = io.StringIO()
    assert main(["--no-progress", "dlq", "show", "analytics", "--wait-seconds", "0"], out=out) == 0
    assert "lane_message" in out.getvalue() and "srid:req-1" in out.getvalue()
    assert "someone@" not in out.getvalue()
    status, shown = cli("dlq", "show", "analytics", "--wait-seconds", "0", "--show-bodies")
    assert status == 0
    assert shown["messages"][0]["events"] == 2 and "someone@" in shown["messages"][0]["body"]
    assert len(drain_queue(sqs, dlq)) == 1  # still there


def test_refused_deliveries_stay_in_the_dlq_unless_the_ledger_is_released(cdp_aws) -> None:
    sqs, ddb = cdp_aws["sqs"], cdp_aws["ddb"]
    message = {"v": 1, "destination": "analytics", "type": "webhook", "batch_key": "srid:req-7", "batch": {}}
    refused = {"reason": "destination.refused", "status": 400, "response": "bad", "destination": "analytics"}
    sqs.send_message(QueueUrl=cdp_aws["dlqs"]["analytics"], MessageBody=json.dumps({**refused, "message": message}))
    ddb.put_item(
        TableName="flagbridge-test-ledger", Item={"id": {"S": "analytics#srid:req-7"}, "status": {"S": "sent"}}
    )

    status, result = cli("dlq", "redrive", "analytics", "--wait-seconds", "0")
    assert (status, result["moved"], list(result["skipped"].values())) == (0, 0, [1])

    status, result = cli("dlq", "redrive", "analytics", "--wait-seconds", "0", "--release-ledger")
    assert (status, result["moved"]) == (0, 1)
    assert [json.loads(m["Body"]) for m in drain_queue(sqs, cdp_aws["lanes"]["analytics"])] == [message]
    assert "Item" not in ddb.get_item(TableName="flagbridge-test-ledger", Key={"id": {"S": "analytics#srid:req-7"}})
    assert drain_queue(sqs, cdp_aws["dlqs"]["analytics"]) == []


def test_stack_outputs_give_the_functions_variables() -> None:
    class CloudFormation:
        def describe_stacks(self, StackName: str) -> dict[str, Any]:
            outputs = {
                "ImpressionsQueueUrl": "https://sqs/impressions",
                "ImpressionsDeadLetterQueueUrl": "https://sqs/impressions-dlq",
                "BatchesQueueUrl": "https://sqs/batches",
                "QuarantineBucketName": "quarantine",
                "SplitDestinationQueueUrl": "https://sqs/split",
                "SplitDestinationDeadLetterQueueUrl": "https://sqs/split-dlq",
                "AuditDestinationQueueUrl": "https://sqs/audit",
                "HttpApiUrl": "https://api",
            }
            return {"Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]}

    env, dlqs = stack_environment(CloudFormation(), "flagbridge-dev")
    assert env["IMPRESSIONS_QUEUE_URL"] == "https://sqs/impressions" and env["QUARANTINE_BUCKET"] == "quarantine"
    assert json.loads(env["DESTINATION_QUEUES"]) == {"split": "https://sqs/split", "audit": "https://sqs/audit"}
    assert json.loads(env["DESTINATION_DLQS"]) == {"split": "https://sqs/split-dlq"}
    assert dlqs == {"impressions": "https://sqs/impressions-dlq"}
