"""Disorder across SQS batches and processors ends in the profile one batch gives (moto, the real processor).

The merge's tie-break (:func:`flagbridge.profiles.model.rank`) decides within a batch; across batches the store
writes what the merge returns, conditional on the revision read, so a processor that loses a race re-reads and
merges again: the same tie-break, whatever order the batches and the writers take.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any
from unittest import mock

import pytest

from flagbridge.config import load_config
from flagbridge.profiles.model import FlagState
from flagbridge.profiles.processor import ImpressionProcessor
from flagbridge.profiles.store import DynamoDBProfileStore, item_to_state
from flagbridge.quarantine import InMemoryQuarantine
from flagbridge.queues import QueueRecord
from flagbridge.settings import PACKAGED_CONFIG
from tests.conftest import PROFILES_TABLE, load_event, load_handler, queued_records, with_records

T0 = 1767225600000
# The merge's hypothesis counterexample, as impressions of one user and flag: 27 distinct assignments at the
# same time (more than the history's 20), some without a version or a label, and one from another environment.
TIED = [
    {"treatment": treatment, "version": version, "label": label, "time": T0}
    for treatment in ("on", "off", "control")
    for version in (1767200000000, 1767100000000, None)
    for label in ("default rule", "whitelisted", None)
] + [{"treatment": "on", "version": 1767200000000, "label": "whitelisted", "time": T0, "environment_id": "env-0"}]


@pytest.fixture
def processor(aws: dict[str, Any]) -> Any:
    return load_handler("impressions_processor")


@pytest.fixture
def message() -> dict[str, Any]:
    return json.loads(load_event("sqs_impressions.json")["Records"][0]["body"])


def _impressions(message: dict[str, Any]) -> list[dict[str, Any]]:
    template = queued_records(message)[0]
    return [{**template, "key": "u-tie", "flag": "tie_flag", **fields} for fields in TIED]


def _event(message: dict[str, Any], batches: list[list[dict[str, Any]]], prefix: str) -> list[dict[str, Any]]:
    """One SQS event per batch, each impression in a message of its own."""
    record = load_event("sqs_impressions.json")["Records"][0]
    events = []
    for b, batch in enumerate(batches):
        records = []
        for i, impression in enumerate(batch):
            queued = copy.deepcopy(record)
            queued["messageId"] = f"{prefix}-{b}-{i}"
            queued["body"] = with_records(message, [impression])
            records.append(queued)
        events.append({"Records": records})
    return events


def _profile(ddb: Any) -> FlagState:
    item = ddb.get_item(TableName=PROFILES_TABLE, Key={"pk": {"S": "user#u-tie"}, "sk": {"S": "FLAG#tie_flag"}})
    return replace(item_to_state(item["Item"]), rev=0, updated_at=0)  # the rest is the profile


def _clear(ddb: Any) -> None:
    for item in ddb.scan(TableName=PROFILES_TABLE)["Items"]:
        ddb.delete_item(TableName=PROFILES_TABLE, Key={"pk": item["pk"], "sk": item["sk"]})


def test_batches_in_any_order_with_redeliveries_end_in_the_one_batch_profile(
    processor, aws, lambda_context, message
) -> None:
    impressions = _impressions(message)
    (one_batch,) = _event(message, [impressions], "one")
    assert processor.lambda_handler(one_batch, lambda_context) == {"batchItemFailures": []}
    reference = _profile(aws["ddb"])
    assert (reference.treatment, reference.version, reference.label) == ("on", 1767200000000, "whitelisted")
    assert reference.environment_id == "env-prod-0001" > "env-0"  # a tie on all else: the greater environment id
    assert len(reference.assignments) == 20 and reference.exposures == len(TIED)

    backwards = impressions[::-1]
    for batches in (
        [[i] for i in backwards],  # one SQS batch per impression, newest-ranked first
        [backwards[1::2], impressions[:5], backwards[::2], impressions],  # redeliveries in between and after
    ):
        _clear(aws["ddb"])
        for event in _event(message, batches, "split"):
            assert processor.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
        assert _profile(aws["ddb"]) == reference


def test_a_processor_that_loses_the_race_merges_again_with_the_same_tie_break(aws, message) -> None:
    config = load_config(PACKAGED_CONFIG)
    impressions = _impressions(message)
    reference_store = DynamoDBProfileStore(aws["ddb"], PROFILES_TABLE)
    ImpressionProcessor(reference_store, InMemoryQuarantine(), config, max_workers=1).process(
        [QueueRecord(message_id="all", body=with_records(message, impressions))]
    )
    reference = _profile(aws["ddb"])
    _clear(aws["ddb"])

    # Processor A reads an empty profile; before it writes, processor B writes the other half (higher ranks).
    first, second = impressions[::2], impressions[1::2]
    late = ImpressionProcessor(
        DynamoDBProfileStore(aws["ddb"], PROFILES_TABLE), InMemoryQuarantine(), config, max_workers=1
    )
    early = ImpressionProcessor(
        DynamoDBProfileStore(aws["ddb"], PROFILES_TABLE), InMemoryQuarantine(), config, max_workers=1
    )
    store = late._store
    real_save = store.save
    raced = []

    def save(state: FlagState, mark: Any = None) -> FlagState:
        if not raced:
            raced.append(early.process([QueueRecord(message_id="b", body=with_records(message, second))]))
        return real_save(state, mark)

    with mock.patch.object(store, "save", side_effect=save):
        result = late.process([QueueRecord(message_id="a", body=with_records(message, first))])
    assert result.failed_message_ids == [] and result.conflicts == 1 and raced[0].writes == 1
    assert _profile(aws["ddb"]) == reference
