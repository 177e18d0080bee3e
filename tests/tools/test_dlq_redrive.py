"""``dlq redrive`` on a scripted SQS: a failed send keeps its message in the DLQ, the latest receipt handle wins,
a failed delete is reported, and a dry run moves nothing."""

from __future__ import annotations

import json
from typing import Any

from flagbridge.settings import Settings
from flagbridge_ops.dlq import DeadLetterQueue, redrive
from flagbridge_ops.output import Progress
from flagbridge_ops.resources import Resources

SOURCE = "https://sqs/queue/flagbridge-impressions"
LANE = "https://sqs/queue/flagbridge-analytics"
DLQ = "https://sqs/queue/flagbridge-dlq"
REFUSED = {
    "reason": "destination.refused",
    "destination": "analytics",
    "message": {"v": 1, "destination": "analytics", "type": "webhook", "batch_key": "srid:req-7", "batch": {}},
}


def _message(message_id: str, handle: str, body: Any) -> dict[str, Any]:
    return {"MessageId": message_id, "ReceiptHandle": handle, "Body": json.dumps(body), "Attributes": {}}


class ScriptedSqs:
    """Answers each receive with the next scripted batch (then nothing) and records every write."""

    def __init__(self, batches: list[list[dict[str, Any]]], failed_deletes: frozenset[str] = frozenset()) -> None:
        self.batches = batches
        self.failed_deletes = failed_deletes
        self.sent: list[tuple[str, str]] = []
        self.deleted: list[str] = []
        self.made_visible: list[str] = []

    def receive_message(self, **_: Any) -> dict[str, Any]:
        return {"Messages": self.batches.pop(0)} if self.batches else {}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.sent += [(QueueUrl, entry["MessageBody"]) for entry in Entries]
        return {}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        assert QueueUrl == DLQ
        failed = [entry for entry in Entries if entry["ReceiptHandle"] in self.failed_deletes]
        self.deleted += [entry["ReceiptHandle"] for entry in Entries if entry not in failed]
        return {"Failed": [{"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid"} for entry in failed]}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> None:
        assert QueueUrl == DLQ
        self.made_visible += [entry["ReceiptHandle"] for entry in Entries]


def _redrive(sqs: ScriptedSqs, **options: Any) -> dict[str, Any]:
    resources = Resources(Settings.from_environ({"DESTINATION_QUEUES": json.dumps({"analytics": LANE})}))
    dlq = DeadLetterQueue("impressions", DLQ, SOURCE)
    arguments: dict[str, Any] = {"dry_run": False, "limit": None, "release_ledger": True, "ledger": None}
    return redrive(
        sqs, dlq, resources, visibility=30, wait=0, progress=Progress("", None, None), **{**arguments, **options}
    )


def test_a_failed_send_keeps_its_message_held_with_its_latest_receipt_handle() -> None:
    impressions = [_message(f"m{n}", f"h{n}", {"request_id": f"r{n}", "impressions": []}) for n in range(2)]
    refused = _message("m9", "h9", REFUSED)
    again = _message("m9", "h9-again", REFUSED)
    sqs = ScriptedSqs([[*impressions, refused], [again]], failed_deletes=frozenset({"h1"}))

    result = _redrive(sqs)

    assert sqs.sent == [(SOURCE, message["Body"]) for message in impressions]
    assert sqs.deleted == ["h0"]
    assert sqs.made_visible == ["h9-again"]
    assert result == {
        "dlq": "impressions",
        "dlq_url": DLQ,
        "source_url": SOURCE,
        "dry_run": False,
        "seen": 3,
        "moved": 2,
        "would_move": 0,
        "targets": {"flagbridge-impressions": 2},
        "skipped": {},
        "errors": [
            "delete of m1 failed: ReceiptHandleIsInvalid",
            "send to flagbridge-analytics failed: releasing ledger claims needs the delivery ledger table",
        ],
    }


def test_a_dry_run_counts_what_would_move_and_skips_what_would_stay() -> None:
    impressions = _message("m0", "h0", {"request_id": "r0", "impressions": []})
    refused = _message("m9", "h9", REFUSED)
    sqs = ScriptedSqs([[impressions, refused]])

    result = _redrive(sqs, dry_run=True, release_ledger=False, limit=5)

    assert (sqs.sent, sqs.deleted, sorted(sqs.made_visible)) == ([], [], ["h0", "h9"])
    assert (result["moved"], result["would_move"], result["targets"]) == (0, 1, {"flagbridge-impressions": 1})
    assert result["skipped"] == {"refused by the destination (destination.refused); needs --release-ledger": 1}
    assert result["errors"] == []
