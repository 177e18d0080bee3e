"""DeliveryService.deliver_batch: the Split messages of an SQS batch share bulk requests, at most once per event.

In-memory adapters only: the ledger is :class:`InMemoryLedger`, Split a scripted fake client, the lane DLQs
:class:`InMemorySender`. The handler on moto is covered by ``tests/handlers/test_destination_delivery.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.cdp.config import CdpConfig, CompiledDestination, parse_cdp_config
from flagbridge.forwarding.delivery import (
    BatchOutcome,
    DeliveryInProgressError,
    DeliveryService,
    UndeliverableMessageError,
)
from flagbridge.forwarding.destinations import PermanentDeliveryError, RetryableDeliveryError
from flagbridge.forwarding.ledger import InMemoryLedger
from flagbridge.queues import InMemorySender, QueueRecord

TS = 1_767_225_600_000
Outcome = Exception | None  # what the fake Split answers to one request: None = 202


def cdp(max_events: int = 5000, max_bytes: int = 1_000_000) -> CdpConfig:
    return parse_cdp_config(
        {
            "destinations": [
                {
                    "name": "split",
                    "type": "split",
                    "options": {
                        "sdk_key_secret": "s",
                        "identity_mapping": [{"identity_type": "customer_id", "traffic_type": "user"}],
                        "max_events_per_request": max_events,
                        "max_request_bytes": max_bytes,
                    },
                },
                {"name": "hook", "type": "webhook", "options": {"url": "https://example.com/hook"}},
            ]
        }
    )


def split_message(batch_key: str, ids: Sequence[str], padding: int = 0) -> str:
    """A lane message as the router writes it, with events whose dedup ids are ``ids``."""
    events = [
        {
            "body": {
                "eventTypeId": "checkout",
                "trafficTypeName": "user",
                "key": f"qa-{batch_key}",
                "timestamp": TS + index,
                "value": None,
                "properties": {"id": dedup_id, "pad": "x" * padding},
            },
            "dedup_id": dedup_id,
            "message_id": f"{batch_key}-m{index}",
            "event_index": index,
            "product_index": None,
        }
        for index, dedup_id in enumerate(ids)
    ]
    message = {"v": 1, "destination": "split", "type": "split", "batch_key": batch_key, "test_user": True}
    return json.dumps({**message, "split_events": events})


def batch_of(*bodies: str) -> list[QueueRecord]:
    return [QueueRecord(f"rec-{index}", body) for index, body in enumerate(bodies)]


def messages(sizes: Sequence[int]) -> list[QueueRecord]:
    """Messages ``b<i>`` with ``sizes[i]`` events ``b<i>e<j>``."""
    return batch_of(*(split_message(f"b{i}", [f"b{i}e{j}" for j in range(n)]) for i, n in enumerate(sizes)))


class FakeSplit:
    """Split's /events/bulk: answers from ``script`` first (None = 202), then 202; keeps what it accepted."""

    def __init__(self, *script: Outcome) -> None:
        self.script = list(script)
        self.attempts: list[list[str]] = []  # the event ids of every request, answered or not
        self.accepted: list[list[str]] = []

    def send(self, body: bytes) -> None:
        ids = [event["properties"]["id"] for event in json.loads(body)]
        self.attempts.append(ids)
        answer = self.script.pop(0) if self.script else None
        if answer is not None:
            raise answer
        self.accepted.append(ids)

    def accepted_ids(self) -> list[str]:
        return [event_id for request in self.accepted for event_id in request]


class FailingSink:
    def __init__(self, fail: Callable[[dict[str, Any]], Exception | None]) -> None:
        self.fail = fail
        self.delivered: list[dict[str, Any]] = []

    def deliver(self, payload: dict[str, Any]) -> None:
        error = self.fail(payload)
        if error is not None:
            raise error
        self.delivered.append(payload)


class Setup:
    def __init__(self, config: CdpConfig | None = None, split: FakeSplit | None = None) -> None:
        self.ledger = InMemoryLedger()
        self.split = split or FakeSplit()
        self.sink = FailingSink(lambda payload: None)
        self.dlqs: dict[str, InMemorySender] = {}
        self.service = DeliveryService(
            config or cdp(),
            self.ledger,
            lambda destination: self.split,  # type: ignore[arg-type,return-value]
            lambda destination: self.sink,
            lambda name: self.dlqs.setdefault(name, InMemorySender()),
        )

    def deliver(self, records: list[QueueRecord], remaining_ms: Callable[[], int] | None = None) -> BatchOutcome:
        return self.service.deliver_batch(records, remaining_ms)

    def dead_letters(self, name: str = "split") -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.dlqs.get(name, InMemorySender()).bodies]


def failed(outcome: BatchOutcome) -> list[str]:
    return outcome.failed_message_ids()


def ledger_ids(*ids: str) -> list[str]:
    return [f"split#{event_id}" for event_id in ids]


# ---- combined requests -----------------------------------------------------------------------------------------


def test_the_messages_of_a_batch_share_one_request() -> None:
    setup = Setup()
    records = messages([3, 3, 3, 3, 3])
    outcome = setup.deliver(records)
    assert failed(outcome) == []
    assert setup.split.accepted == [[f"b{i}e{j}" for i in range(5) for j in range(3)]]  # one POST, in order
    assert [(r.outcome.sent, r.outcome.requests) for r in outcome.results if r.outcome] == [(3, 1)] * 5
    total = outcome.totals()["split"]
    assert (total.sent, total.duplicates, total.dead_lettered, total.requests) == (15, 0, 0, 1)
    assert set(setup.ledger.status.values()) == {"sent"}


def test_events_of_all_messages_are_chunked_together_in_order_within_the_limits() -> None:
    setup = Setup(cdp(max_events=4))
    outcome = setup.deliver(messages([3, 3, 3, 2]))
    assert failed(outcome) == []
    assert setup.split.accepted == [
        ["b0e0", "b0e1", "b0e2", "b1e0"],
        ["b1e1", "b1e2", "b2e0", "b2e1"],
        ["b2e2", "b3e0", "b3e1"],
    ]
    assert [r.outcome.requests for r in outcome.results if r.outcome] == [1, 2, 2, 1]
    assert outcome.requests == {"split": 3}


def test_bodies_stay_under_the_byte_limit_across_messages() -> None:
    setup = Setup(cdp(max_bytes=4096))
    records = batch_of(*(split_message(f"b{i}", [f"b{i}e{j}" for j in range(3)], padding=300) for i in range(6)))
    outcome = setup.deliver(records)
    assert failed(outcome) == []
    assert sorted(setup.split.accepted_ids()) == sorted(f"b{i}e{j}" for i in range(6) for j in range(3))
    assert 1 < len(setup.split.accepted) < 6  # fewer requests than messages, more than one (4 KB each)


def test_a_redelivery_of_the_whole_batch_sends_nothing_again() -> None:
    setup = Setup()
    records = messages([2, 3])
    setup.deliver(records)
    again = setup.deliver(records)
    assert failed(again) == []
    assert len(setup.split.attempts) == 1
    assert [r.outcome.duplicates for r in again.results if r.outcome] == [2, 3]
    assert again.requests == {}


def test_an_event_in_two_messages_of_the_batch_is_sent_once() -> None:
    # A re-routed mParticle batch: two lane messages with the same events, in one SQS batch.
    setup = Setup()
    body = split_message("b0", ["e0", "e1", "e2"])
    outcome = setup.deliver(batch_of(body, body, split_message("b1", ["e3"])))
    assert failed(outcome) == []
    assert setup.split.accepted == [["e0", "e1", "e2", "e3"]]
    assert [(r.outcome.sent, r.outcome.duplicates) for r in outcome.results if r.outcome] == [(3, 0), (0, 3), (1, 0)]


# ---- permanent refusals ----------------------------------------------------------------------------------------


def test_a_refused_request_dead_letters_each_of_its_messages_like_a_single_delivery() -> None:
    refusal = PermanentDeliveryError("refused", 400, '{"error":"unknown traffic type"}')
    setup = Setup(cdp(max_events=4), FakeSplit(None, refusal))
    records = messages([3, 3, 3])  # requests: b0e0-2 b1e0 | b1e1-2 b2e0-1 (refused) | b2e2
    outcome = setup.deliver(records)

    assert failed(outcome) == []  # decided: acknowledged
    assert setup.split.accepted == [["b0e0", "b0e1", "b0e2", "b1e0"], ["b2e2"]]
    records_by_key = {record["batch_key"]: record for record in setup.dead_letters()}
    assert sorted(records_by_key) == ["b1", "b2"]
    for key, ids in (("b1", ["b1e1", "b1e2"]), ("b2", ["b2e0", "b2e1"])):
        record = records_by_key[key]
        assert set(record) == {"reason", "status", "response", "destination", "batch_key", "message", "events"}
        assert (record["reason"], record["status"], record["destination"]) == ("split.refused", 400, "split")
        assert "unknown traffic type" in record["response"]
        assert record["message"] == json.loads(records[int(key[1])].body)
        assert [event["properties"]["id"] for event in record["events"]] == ids
    assert [(r.outcome.sent, r.outcome.dead_lettered) for r in outcome.results if r.outcome] == [(3, 0), (1, 2), (1, 2)]
    assert set(setup.ledger.status.values()) == {"sent"}  # decided: a redelivery neither waits nor re-sends

    assert failed(setup.deliver(records)) == []
    assert len(setup.split.attempts) == 3 and len(setup.dead_letters()) == 2


def test_a_refusal_whose_dead_letter_cannot_be_written_is_retried() -> None:
    class BrokenDlq(InMemorySender):
        def send_bodies(self, bodies: Sequence[str]) -> None:
            raise RuntimeError("SQS down")

    refusal = PermanentDeliveryError("refused", 400, "no")
    setup = Setup(cdp(max_events=3), FakeSplit(None, refusal))
    setup.dlqs["split"] = BrokenDlq()
    records = messages([3, 3, 3])
    outcome = setup.deliver(records)
    assert failed(outcome) == ["rec-1", "rec-2"]  # b1 refused (not kept yet), b2 never tried
    assert setup.ledger.status == dict.fromkeys(ledger_ids("b0e0", "b0e1", "b0e2"), "sent")

    # Redelivered once the DLQ works again: refused again and kept, b2 sent; b0 is not sent a second time
    setup.dlqs["split"] = InMemorySender()
    setup.split.script = [refusal]
    assert failed(setup.deliver(records)) == []
    assert [r["batch_key"] for r in setup.dead_letters()] == ["b1"]
    assert Counter(setup.split.accepted_ids()) == Counter(f"b{i}e{j}" for i in (0, 2) for j in range(3))


def test_an_event_too_large_for_any_request_is_dead_lettered_with_its_message_only() -> None:
    setup = Setup(cdp(max_bytes=4096))
    huge = split_message("b1", ["b1e0", "b1e1"], padding=5000)
    small = json.loads(split_message("b1", ["b1e1"]))["split_events"][0]
    document = json.loads(huge)
    document["split_events"][1] = small
    records = batch_of(split_message("b0", ["b0e0"]), json.dumps(document), split_message("b2", ["b2e0"]))
    outcome = setup.deliver(records)
    assert failed(outcome) == []
    assert setup.split.accepted == [["b0e0", "b1e1", "b2e0"]]
    (record,) = setup.dead_letters()
    assert (record["reason"], record["batch_key"], record["status"]) == ("split.event_too_large", "b1", None)
    assert [event["properties"]["id"] for event in record["events"]] == ["b1e0"]
    assert [r.outcome.dead_lettered for r in outcome.results if r.outcome] == [0, 1, 0]


# ---- retryable failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("redeliver", ["whole batch", "failed messages only"])
def test_a_retryable_failure_midway_fails_exactly_the_messages_with_unsent_events(redeliver: str) -> None:
    setup = Setup(cdp(max_events=4), FakeSplit(None, RetryableDeliveryError("destination answered 503")))
    records = messages([3, 1, 3, 2])  # requests: b0e0-2 b1e0 | b2e0-2 b3e0 (fails) | b3e1
    outcome = setup.deliver(records)

    assert failed(outcome) == ["rec-2", "rec-3"]  # b0 and b1 were sent entirely before the failure
    assert isinstance(outcome.results[2].error, RetryableDeliveryError)
    assert setup.ledger.status == dict.fromkeys(ledger_ids("b0e0", "b0e1", "b0e2", "b1e0"), "sent")  # rest released
    assert len(setup.split.attempts) == 2  # nothing after the failed request

    again = setup.deliver(records if redeliver == "whole batch" else [records[2], records[3]])
    assert failed(again) == []
    assert setup.split.accepted[1:] == [["b2e0", "b2e1", "b2e2", "b3e0"], ["b3e1"]]
    assert Counter(setup.split.accepted_ids()) == Counter(
        f"b{i}e{j}" for i, n in enumerate([3, 1, 3, 2]) for j in range(n)
    )


def test_a_failure_before_sending_releases_every_claim() -> None:
    setup = Setup()

    def no_client(destination: CompiledDestination) -> Any:
        raise RuntimeError("the SDK key secret cannot be read")

    setup.service._split_client = no_client
    records = messages([2, 2])
    outcome = setup.deliver(records)
    assert failed(outcome) == ["rec-0", "rec-1"]
    assert setup.ledger.status == {}


def test_no_request_is_started_without_enough_time_left() -> None:
    setup = Setup(cdp(max_events=2))
    clock = iter([60_000, 20_000])  # the second request would start 20 s before the timeout
    outcome = setup.deliver(messages([2, 2]), remaining_ms=lambda: next(clock))
    assert failed(outcome) == ["rec-1"]
    assert "time" in str(outcome.results[1].error)
    assert setup.split.accepted == [["b0e0", "b0e1"]]
    assert setup.ledger.status == dict.fromkeys(ledger_ids("b0e0", "b0e1"), "sent")


def test_a_ledger_that_cannot_mark_sent_events_stops_the_sending_without_failing_sent_messages() -> None:
    class Unmarkable(InMemoryLedger):
        def mark_sent(self, ids: Sequence[str]) -> None:
            raise RuntimeError("throttled")

    setup = Setup(cdp(max_events=2))
    setup.ledger = Unmarkable()
    setup.service._ledger = setup.ledger
    outcome = setup.deliver(messages([2, 2]))
    # b0 was accepted by Split: acknowledged, so no redelivery can send it again; b1 was not sent: retried
    assert failed(outcome) == ["rec-1"]
    assert setup.split.accepted == [["b0e0", "b0e1"]]
    assert setup.ledger.status == dict.fromkeys(ledger_ids("b0e0", "b0e1"), "pending")
    assert outcome.problems and "mark_sent RuntimeError" in outcome.problems[0]


def test_a_claim_failure_fails_every_split_message_and_gives_back_what_was_claimed() -> None:
    class Flaky(InMemoryLedger):
        calls = 0

        def claim(self, ids: Sequence[str]) -> list[str]:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("transaction failed")
            return super().claim(ids)

    setup = Setup()
    setup.ledger = Flaky()
    setup.service._ledger = setup.ledger
    outcome = setup.deliver(messages([60, 60]))  # 120 ids: two claim transactions of at most 100
    assert failed(outcome) == ["rec-0", "rec-1"]
    assert setup.ledger.status == {} and setup.split.attempts == []


# ---- claims held by another delivery ----------------------------------------------------------------------------


def test_an_id_pending_in_another_delivery_fails_only_its_message() -> None:
    setup = Setup()
    setup.ledger.claim(ledger_ids("b1e1"))  # an unfinished delivery holds it
    records = messages([2, 2, 2])
    outcome = setup.deliver(records)

    assert failed(outcome) == ["rec-1"]
    assert isinstance(outcome.results[1].error, DeliveryInProgressError)
    assert setup.split.accepted == [["b0e0", "b0e1", "b1e0", "b2e0", "b2e1"]]  # its other events are sent

    # Still pending: retried again, nothing sent twice
    assert failed(setup.deliver([records[1]])) == ["rec-1"]
    # The other delivery finishes: the message is a duplicate now
    setup.ledger.mark_sent(ledger_ids("b1e1"))
    assert failed(setup.deliver(records)) == []
    assert len(setup.split.attempts) == 1


# ---- undeliverable messages and other destinations ----------------------------------------------------------------


def test_undeliverable_messages_are_reported_as_such_and_do_not_hold_the_others() -> None:
    setup = Setup()
    no_ids = json.loads(split_message("bad", ["x"]))
    del no_ids["split_events"][0]["dedup_id"]
    nan = split_message("nan", ["n0"]).replace('"value": null', '"value": NaN')
    records = batch_of(
        split_message("b0", ["b0e0", "b0e1"]),
        "not json",
        json.dumps({"destination": "nowhere", "type": "split"}),
        json.dumps(no_ids),
        nan,
        json.dumps(["a", "list"]),
        split_message("b1", ["b1e0"]),
    )
    outcome = setup.deliver(records)
    assert [r.undeliverable for r in outcome.results] == [False, True, True, True, True, True, False]
    assert failed(outcome) == []
    assert "not configured" in str(outcome.results[2].error)
    assert setup.split.accepted == [["b0e0", "b0e1", "b1e0"]]


def test_other_destinations_are_delivered_message_by_message() -> None:
    setup = Setup()
    setup.sink = FailingSink(lambda payload: RetryableDeliveryError("503") if payload["n"] == 1 else None)

    def hook(n: int) -> str:
        return json.dumps({"v": 1, "destination": "hook", "type": "webhook", "batch_key": f"k{n}", "batch": {"n": n}})

    records = batch_of(hook(0), hook(1), hook(2), split_message("b0", ["e0"]))
    outcome = setup.deliver(records)
    assert failed(outcome) == ["rec-1"]
    assert setup.sink.delivered == [{"n": 0}, {"n": 2}]
    assert outcome.requests == {"split": 1, "hook": 2}
    assert setup.ledger.status == {"split#e0": "sent", "hook#k0": "sent", "hook#k2": "sent"}


def test_deliver_one_message() -> None:
    setup = Setup()
    outcome = setup.service.deliver(split_message("b0", ["e0", "e1"]))
    assert (outcome.destination, outcome.sent, outcome.requests) == ("split", 2, 1)
    assert setup.service.deliver(split_message("b0", ["e0", "e1"])).duplicates == 2
    with pytest.raises(UndeliverableMessageError):
        setup.service.deliver("{}")
    setup.ledger.claim(["split#e9"])
    with pytest.raises(DeliveryInProgressError):
        setup.service.deliver(split_message("b9", ["e9"]))


# ---- at most once, whatever fails and whatever SQS redelivers ----------------------------------------------------

answers = st.sampled_from(["ok", "ok", "retryable", "refused"])


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=8),
    max_events=st.integers(1, 7),
    script=st.lists(answers, max_size=12),
    acked_redeliveries=st.lists(st.integers(0, 7), max_size=4),
    shared=st.booleans(),
)
def test_every_event_reaches_split_or_the_dlq_exactly_once(
    sizes: list[int], max_events: int, script: list[str], acked_redeliveries: list[int], shared: bool
) -> None:
    def answer(kind: str) -> Outcome:
        if kind == "retryable":
            return RetryableDeliveryError("503")
        return PermanentDeliveryError("400", 400, "no") if kind == "refused" else None

    setup = Setup(cdp(max_events=max_events), FakeSplit(*(answer(kind) for kind in script)))
    records = messages(sizes)
    if shared:  # a re-routed batch: the first message twice
        records.append(QueueRecord("rec-dup", records[0].body))
    pending = list(records)
    for _ in range(len(script) + 2):
        outcome = setup.deliver(pending)
        failing = set(failed(outcome))
        # SQS may also deliver acknowledged messages again (at-least-once): add some of them back
        again = [records[i % len(records)] for i in acked_redeliveries]
        pending = [r for r in pending if r.message_id in failing] + again
        if not failing:
            break
    else:
        pytest.fail("messages still failing after every scripted failure was used")

    accepted = Counter(setup.split.accepted_ids())
    dead = Counter(e["properties"]["id"] for record in setup.dead_letters() for e in record["events"])
    expected = {f"b{i}e{j}" for i, n in enumerate(sizes) for j in range(n)}
    assert set(accepted) | set(dead) == expected
    assert all(count == 1 for count in (accepted + dead).values())  # never twice, never both
