"""The counter store's update requests: built by its fast paths (bucket indexes sorted alone, a counter's deltas
gathered per ledger id with one lookup), equal to the reference built as before, attribute by attribute and in
order, and the first delta of a ledger id kept when one SQS batch holds the same message twice."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.oracle.counting import Contribution, CounterKey, Delta
from flagbridge.oracle.store import DynamoDBCounterStore, _bucket_attribute, _sum, counter_sk


class _Recording:
    """A DynamoDB client that records the update requests (every write succeeds)."""

    class exceptions:  # mirrors botocore's client.exceptions
        class ConditionalCheckFailedException(Exception):
            pass

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.updates.append(request)
        return {}


def _reference(key: CounterKey, per_message: dict[str, Delta]) -> dict[str, Any]:
    """The update of one counter as the store built it before its fast paths."""
    total = Delta()
    for delta in per_message.values():
        total.add(delta)
    ids = sorted(per_message)
    names: dict[str, str] = {"#a": "applied"}
    values: dict[str, Any] = {
        ":n": {"N": str(total.n)}, ":k": {"N": str(total.k)}, ":i": {"N": str(total.invalid)},
        ":ids": {"SS": ids}, ":tr": {"S": key.treatment}, ":me": {"S": key.metric},
        ":hr": {"N": str(key.hour)}, ":ve": {"N": str(key.version)},
    }  # fmt: skip
    adds = ["n :n", "k :k", "inv :i", "#a :ids"]
    if total.classified:
        values.update({":ap": {"N": str(total.at_pass)}, ":af": {"N": str(total.at_fail)},
                       ":cl": {"N": str(total.classified)}})  # fmt: skip
        adds += ["ap :ap", "af :af", "cl :cl"]
    for position, (index, count) in enumerate(sorted(total.buckets.items())):
        names[f"#b{position}"] = _bucket_attribute(index)
        values[f":b{position}"] = {"N": str(count)}
        adds.append(f"#b{position} :b{position}")
    for position, ledger_id in enumerate(ids):
        values[f":m{position}"] = {"S": ledger_id}
    return {
        "TableName": "counters",
        "Key": {"pk": {"S": key.test}, "sk": {"S": counter_sk(key)}},
        "UpdateExpression": "ADD " + ", ".join(adds) + " SET tr = :tr, me = :me, hr = :hr, ve = :ve",
        "ConditionExpression": " AND ".join(f"NOT contains(#a, :m{p})" for p in range(len(ids))),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


_KEYS = [CounterKey("t", 3_600_000 * hour, 7, treatment, metric)
         for hour in (0, 1) for treatment in ("on", "off") for metric in ("rate", "p95")]  # fmt: skip
_deltas = st.builds(
    Delta,
    st.integers(0, 9), st.integers(0, 9), st.integers(0, 3),
    st.dictionaries(st.integers(-40, 900), st.integers(1, 5), max_size=8),
    st.integers(0, 9), st.integers(0, 9), st.integers(0, 9),
)  # fmt: skip
_contributions = st.lists(
    st.builds(
        Contribution,
        st.sampled_from([f"ledger-{i}" for i in range(12)]),  # repeats: the same message twice in a batch
        st.dictionaries(st.sampled_from(_KEYS), _deltas, min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=30,
)


def _expected(contributions: list[Contribution]) -> list[dict[str, Any]]:
    counters: dict[CounterKey, dict[str, Delta]] = {}
    for contribution in contributions:
        for key, delta in contribution.deltas.items():
            counters.setdefault(key, {}).setdefault(contribution.ledger_id, delta)  # the first of a ledger id
    return [_reference(key, per_message) for key, per_message in counters.items()]


def _ordered(request: Any) -> Any:
    """A request with the order of every dict's keys made visible (the reference keeps the old order)."""
    if isinstance(request, dict):
        return [(name, _ordered(value)) for name, value in request.items()]
    if isinstance(request, list):
        return [_ordered(value) for value in request]
    return request


@settings(max_examples=200, deadline=None)
@given(_contributions)
def test_update_requests_equal_the_reference(contributions: list[Contribution]) -> None:
    client = _Recording()
    result = DynamoDBCounterStore(client, "counters").apply(contributions)
    assert _ordered(client.updates) == _ordered(_expected(contributions))
    assert (result.writes, result.errors, result.failed_ledger_ids) == (len(client.updates), [], set())


@settings(max_examples=200, deadline=None)
@given(st.lists(_deltas, max_size=20))
def test_the_sum_of_deltas_is_each_added_in_turn(deltas: list[Delta]) -> None:
    one_by_one = Delta()
    for delta in deltas:
        one_by_one.add(delta)
    summed = _sum(deltas)
    assert (summed, list(summed.buckets.items())) == (one_by_one, list(one_by_one.buckets.items()))
