"""Persistence of the oracle: counters (exactly-once) and the verdict history, on DynamoDB or in memory.

**Counters table** (``pk`` = test name, ``sk``):

* ``C#<hour>#<version>#<treatment>#<metric>``: numbers ``n``, ``k``, ``inv`` and one ``h<bucket>`` per histogram
  bucket (percentile metrics also ``ap``, ``af``, ``cl``: events at/above ``pass_below``, at/above ``fail_at``,
  and classified; counters written before those existed lack them and are read from their buckets), and
  ``applied``: the string set of the ledger ids (64-bit digests of router batch keys) of every lane message
  already counted in it.
* ``U#<version>#<treatment>``: ``users``, the string set of user digests (sample-ratio check only).

**Exactly once, one write per counter.** :meth:`DynamoDBCounterStore.apply` sums what an SQS batch adds to
each counter and writes it with *one* ``UpdateItem``: ``ADD`` the numbers and the batch's ledger ids to
``applied``, on the condition that none of those ids is in ``applied`` yet. So a counter absorbs each message
once, whatever happens around it: a redelivered or replayed message finds its id and is refused; a crash
mid-batch leaves some counters updated and others not, and the redelivery completes exactly the missing ones.
When the condition fails, the item's ``applied`` set is read back and the update is rebuilt from the messages it
lacks (rare: only redeliveries pay it). DynamoDB writes per SQS batch = distinct counters touched.
Users are a set, so adding a digest twice changes nothing. Each ``applied`` set holds the messages of one hour of
one (version, treatment, metric): at 12 bytes a digest, DynamoDB's 400 KB item limit allows ~30,000 router
messages per counter-hour; beyond that the write fails and the messages are redelivered (and end in the lane's DLQ).

**Verdicts table** (``pk`` = ``TEST#<name>``): ``STATE`` (the current verdicts, consecutive read errors, the
last evaluation), ``H#<time>`` one item per evaluation (the history, expiring after ``history_days``), and
``KILL#<version>``: the claim that makes a kill happen once per FAIL of a flag version, with every attempt, the
kill's timeline and confirmation, and the messages already sent about it (:mod:`flagbridge.oracle.kills`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flagbridge.oracle import histogram
from flagbridge.oracle.counting import Contribution, CounterKey, Delta, UserSetKey

MAX_CONDITION_IDS = 100  # keeps a condition expression well under DynamoDB's 4 KB expression limit


@dataclass(slots=True)
class CounterItem:
    """One stored counter (or user set) as the evaluator reads it."""

    key: CounterKey
    delta: Delta


@dataclass
class ApplyResult:
    counters: int = 0
    writes: int = 0
    conflicts: int = 0
    failed_ledger_ids: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


class CounterStore(Protocol):
    def apply(self, contributions: Sequence[Contribution]) -> ApplyResult: ...

    def read(self, test: str, from_hour: int, to_hour: int) -> tuple[list[CounterItem], dict[UserSetKey, int]]: ...


def counter_sk(key: CounterKey) -> str:
    return f"C#{key.hour:013d}#{key.version:015d}#{key.treatment}#{key.metric}"


def users_sk(key: UserSetKey) -> str:
    return f"U#{key.version:015d}#{key.treatment}"


def _bucket_attribute(index: int) -> str:
    return "hz" if index == histogram.ZERO_BUCKET else f"h{index}".replace("-", "m")


_BUCKET_ATTRIBUTES: dict[int, str] = {}
"""Bucket index -> its attribute name, as buckets are written (a batch writes the same few dozen again)."""
_BUCKET_ATTRIBUTES_LIMIT = 4096


def _bucket_name(index: int) -> str:
    name = _BUCKET_ATTRIBUTES.get(index)
    if name is None:
        name = _bucket_attribute(index)
        if len(_BUCKET_ATTRIBUTES) < _BUCKET_ATTRIBUTES_LIMIT:
            _BUCKET_ATTRIBUTES[index] = name
    return name


def _bucket_index(attribute: str) -> int:
    return histogram.ZERO_BUCKET if attribute == "hz" else int(attribute[1:].replace("m", "-"))


Plan = tuple[dict[CounterKey, dict[str, Delta]], dict[UserSetKey, set[str]]]


def _plan(contributions: Sequence[Contribution]) -> Plan:
    """Per counter: the delta of each (distinct) ledger id; per user set: the digests to add."""
    counters: dict[CounterKey, dict[str, Delta]] = {}
    users: dict[UserSetKey, set[str]] = {}
    for contribution in contributions:
        ledger_id = contribution.ledger_id
        for key, delta in contribution.deltas.items():
            per_message = counters.get(key)
            if per_message is None:
                counters[key] = {ledger_id: delta}
            elif ledger_id not in per_message:  # the same batch twice in one SQS batch
                per_message[ledger_id] = delta
        for user_key, digests in contribution.users.items():
            users.setdefault(user_key, set()).update(digests)
    return counters, users


def _sum(deltas: Iterable[Delta]) -> Delta:
    """The total of ``deltas`` (:meth:`Delta.add` unrolled: a batch sums one delta per message and counter)."""
    n = k = invalid = at_pass = at_fail = classified = 0
    buckets: dict[int, int] = {}
    for delta in deltas:
        n += delta.n
        k += delta.k
        invalid += delta.invalid
        at_pass += delta.at_pass
        at_fail += delta.at_fail
        classified += delta.classified
        if delta.buckets:  # a rate's deltas have none: no iterator made for them
            for index, count in delta.buckets.items():
                buckets[index] = buckets.get(index, 0) + count
    return Delta(n, k, invalid, buckets, at_pass, at_fail, classified)


_MARKERS: list[tuple[str, str]] = []
"""(``:m<position>``, its condition) per ledger id position of an update, built once."""
_BUCKETS: list[tuple[str, str, str]] = []
"""(``#b<position>``, ``:b<position>``, the ADD clause) per bucket position of an update, built once."""


_CONDITIONS: dict[int, str] = {}
"""Ledger ids in an update -> its condition expression (at most :data:`MAX_CONDITION_IDS` of them)."""


def _markers(count: int) -> list[tuple[str, str]]:
    while len(_MARKERS) < count:
        _MARKERS.append((f":m{len(_MARKERS)}", f"NOT contains(#a, :m{len(_MARKERS)})"))
    return _MARKERS[:count]


def _condition(count: int) -> str:
    condition = _CONDITIONS.get(count)
    if condition is None:
        condition = _CONDITIONS[count] = " AND ".join(condition for _, condition in _markers(count))
    return condition


def _buckets(count: int) -> list[tuple[str, str, str]]:
    while len(_BUCKETS) < count:
        position = len(_BUCKETS)
        _BUCKETS.append((f"#b{position}", f":b{position}", f"#b{position} :b{position}"))
    return _BUCKETS[:count]


class DynamoDBCounterStore:
    """Counters on a DynamoDB table with string keys ``pk``/``sk``."""

    def __init__(self, client: Any, table: str, attempts: int = 5) -> None:
        self._ddb = client
        self._table = table
        self._attempts = attempts

    def apply(self, contributions: Sequence[Contribution]) -> ApplyResult:
        counters, users = _plan(contributions)
        result = ApplyResult(counters=len(counters) + len(users))
        for key, per_message in counters.items():
            ids = sorted(per_message)
            for start in range(0, len(ids), MAX_CONDITION_IDS):
                chunk = {i: per_message[i] for i in ids[start : start + MAX_CONDITION_IDS]}
                try:
                    self._apply_counter(key, chunk, result)
                except Exception as exc:  # the messages are redelivered; counters already applied refuse them
                    result.failed_ledger_ids.update(chunk)
                    result.errors.append(type(exc).__name__)
        for user_key, digests in users.items():
            try:
                self._ddb.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": user_key.test}, "sk": {"S": users_sk(user_key)}},
                    UpdateExpression="ADD #u :u SET tr = :tr, ve = :ve",
                    ExpressionAttributeNames={"#u": "users"},
                    ExpressionAttributeValues={
                        ":u": {"SS": sorted(digests)},
                        ":tr": {"S": user_key.treatment},
                        ":ve": {"N": str(user_key.version)},
                    },
                )
                result.writes += 1
            except Exception as exc:
                result.errors.append(type(exc).__name__)
                result.failed_ledger_ids.update(c.ledger_id for c in contributions if user_key in c.users)
        return result

    def _apply_counter(self, key: CounterKey, per_message: dict[str, Delta], result: ApplyResult) -> None:
        pending = per_message  # never changed: a conflict makes a new one
        for _ in range(self._attempts):
            if not pending:
                return
            try:
                self._ddb.update_item(**self._update(key, pending))
                result.writes += 1
                return
            except self._ddb.exceptions.ConditionalCheckFailedException:
                result.conflicts += 1
                applied = self._applied(key)
                pending = {i: d for i, d in pending.items() if i not in applied}
        if pending:
            raise RuntimeError("counter kept changing under the update")

    def _update(self, key: CounterKey, per_message: dict[str, Delta]) -> dict[str, Any]:
        total = _sum(per_message.values())
        ids = list(per_message)  # sorted by apply
        names: dict[str, str] = {"#a": "applied"}
        values: dict[str, Any] = {
            ":n": {"N": str(total.n)},
            ":k": {"N": str(total.k)},
            ":i": {"N": str(total.invalid)},
            ":ids": {"SS": ids},
            ":tr": {"S": key.treatment},
            ":me": {"S": key.metric},
            ":hr": {"N": str(key.hour)},
            ":ve": {"N": str(key.version)},
        }
        adds = ["n :n", "k :k", "inv :i", "#a :ids"]
        if total.classified:
            values.update({":ap": {"N": str(total.at_pass)}, ":af": {"N": str(total.at_fail)},
                           ":cl": {"N": str(total.classified)}})  # fmt: skip
            adds += ["ap :ap", "af :af", "cl :cl"]
        buckets, known_names = total.buckets, _BUCKET_ATTRIBUTES.get
        for (name, value, add), index in zip(_buckets(len(buckets)), sorted(buckets), strict=True):
            names[name] = known_names(index) or _bucket_name(index)
            values[value] = {"N": str(buckets[index])}
            adds.append(add)
        for (marker, _), ledger_id in zip(_markers(len(ids)), ids, strict=True):
            values[marker] = {"S": ledger_id}
        return {
            "TableName": self._table,
            "Key": {"pk": {"S": key.test}, "sk": {"S": counter_sk(key)}},
            "UpdateExpression": "ADD " + ", ".join(adds) + " SET tr = :tr, me = :me, hr = :hr, ve = :ve",
            "ConditionExpression": _condition(len(ids)),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def _applied(self, key: CounterKey) -> set[str]:
        item = self._ddb.get_item(
            TableName=self._table,
            Key={"pk": {"S": key.test}, "sk": {"S": counter_sk(key)}},
            ConsistentRead=True,
            ProjectionExpression="#a",
            ExpressionAttributeNames={"#a": "applied"},
        ).get("Item", {})
        return set(item.get("applied", {}).get("SS", []))

    def read(self, test: str, from_hour: int, to_hour: int) -> tuple[list[CounterItem], dict[UserSetKey, int]]:
        """Counters of ``test`` from ``from_hour`` to ``to_hour`` (inclusive) and the sizes of its user sets."""
        counters = [
            CounterItem(_item_key(test, item), _item_delta(item))
            for item in self._query(test, f"C#{from_hour:013d}", f"C#{to_hour:013d}~")
        ]
        users = {
            UserSetKey(test, int(item["ve"]["N"]), item["tr"]["S"]): len(item.get("users", {}).get("SS", []))
            for item in self._query(test, "U#", "U#~")
        }
        return counters, users

    def _query(self, test: str, low: str, high: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":pk": {"S": test}, ":lo": {"S": low}, ":hi": {"S": high}},
        }
        while True:
            response = self._ddb.query(**request)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _item_key(test: str, item: dict[str, Any]) -> CounterKey:
    return CounterKey(test, int(item["hr"]["N"]), int(item["ve"]["N"]), item["tr"]["S"], item["me"]["S"])


def _item_delta(item: dict[str, Any]) -> Delta:
    buckets = {
        _bucket_index(name): int(value["N"])
        for name, value in item.items()
        if name[:1] == "h" and name != "hr" and "N" in value
    }
    return Delta(
        n=int(item.get("n", {}).get("N", 0)),
        k=int(item.get("k", {}).get("N", 0)),
        invalid=int(item.get("inv", {}).get("N", 0)),
        buckets=buckets,
        at_pass=int(item.get("ap", {}).get("N", 0)),
        at_fail=int(item.get("af", {}).get("N", 0)),
        classified=int(item.get("cl", {}).get("N", 0)),
    )


class InMemoryCounterStore:
    """The same semantics in dicts (tests, benchmarks)."""

    def __init__(self) -> None:
        self.counters: dict[CounterKey, Delta] = {}
        self.applied: dict[CounterKey, set[str]] = {}
        self.users: dict[UserSetKey, set[str]] = {}
        self.writes = 0

    def apply(self, contributions: Sequence[Contribution]) -> ApplyResult:
        counters, users = _plan(contributions)
        result = ApplyResult(counters=len(counters) + len(users))
        for key, per_message in counters.items():
            applied = self.applied.setdefault(key, set())
            fresh = {i: d for i, d in per_message.items() if i not in applied}
            if len(fresh) < len(per_message):
                result.conflicts += 1
            if fresh:
                self.counters.setdefault(key, Delta()).add(_sum(fresh.values()))
                applied.update(fresh)
                result.writes += 1
        for user_key, digests in users.items():
            self.users.setdefault(user_key, set()).update(digests)
            result.writes += 1
        self.writes += result.writes
        return result

    def read(self, test: str, from_hour: int, to_hour: int) -> tuple[list[CounterItem], dict[UserSetKey, int]]:
        counters = [
            CounterItem(key, delta)
            for key, delta in sorted(self.counters.items())
            if key.test == test and from_hour <= key.hour <= to_hour
        ]
        return counters, {key: len(users) for key, users in self.users.items() if key.test == test}


# ---- verdicts ------------------------------------------------------------------------------------------


class VerdictStore(Protocol):
    def load_state(self, test: str) -> dict[str, Any] | None: ...

    def save(self, test: str, state: dict[str, Any], history: dict[str, Any] | None) -> None: ...

    def history(self, test: str, limit: int) -> list[dict[str, Any]]: ...

    def claim_kill(self, test: str, version: int, now_ms: int) -> dict[str, Any] | None:
        """Claim the kill of ``version``; None when it is done or in progress elsewhere, else the claim."""
        ...

    def save_kill(self, test: str, version: int, record: dict[str, Any]) -> None: ...

    def kills(self, test: str) -> list[dict[str, Any]]: ...


KILL_STALE_MS = 15 * 60_000  # a claim left "in_progress" this long (a crashed evaluator) may be taken over


class DynamoDBVerdictStore:
    """Verdict state, history and kill claims on a DynamoDB table with string keys ``pk``/``sk``."""

    def __init__(self, client: Any, table: str, history_days: int = 90) -> None:
        self._ddb = client
        self._table = table
        self._history_seconds = history_days * 86_400

    def _key(self, test: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": f"TEST#{test}"}, "sk": {"S": sk}}

    def load_state(self, test: str) -> dict[str, Any] | None:
        item = self._ddb.get_item(TableName=self._table, Key=self._key(test, "STATE"), ConsistentRead=True).get("Item")
        return None if item is None else json.loads(item["doc"]["S"])

    def save(self, test: str, state: dict[str, Any], history: dict[str, Any] | None) -> None:
        self._ddb.put_item(TableName=self._table, Item={**self._key(test, "STATE"), "doc": {"S": json.dumps(state)}})
        if history is not None:
            expires = int(time.time()) + self._history_seconds
            self._ddb.put_item(
                TableName=self._table,
                Item={
                    **self._key(test, f"H#{history['evaluated_at']:013d}"),
                    "doc": {"S": json.dumps(history)},
                    "expires_at": {"N": str(expires)},
                },
            )

    def history(self, test: str, limit: int) -> list[dict[str, Any]]:
        response = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :h)",
            ExpressionAttributeValues={":pk": {"S": f"TEST#{test}"}, ":h": {"S": "H#"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [json.loads(item["doc"]["S"]) for item in response.get("Items", [])]

    def claim_kill(self, test: str, version: int, now_ms: int) -> dict[str, Any] | None:
        key = self._key(test, f"KILL#{version:015d}")
        existing = self._ddb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        record = json.loads(existing["doc"]["S"]) if existing else {"version": version, "attempts": []}
        if record.get("status") in ("killed", "dry_run", "refused"):
            return None
        claimed = {**record, "status": "in_progress", "claimed_at": now_ms}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Item": {
                **key,
                "doc": {"S": json.dumps(claimed)},
                "status": {"S": "in_progress"},
                "claimed_at": {"N": str(now_ms)},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        if existing is not None:  # retry a failed kill, or take over one a crashed evaluator left in progress
            kwargs["ConditionExpression"] = "#s = :retry OR (#s = :progress AND claimed_at < :stale)"
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
            kwargs["ExpressionAttributeValues"] = {
                ":retry": {"S": "retry"},
                ":progress": {"S": "in_progress"},
                ":stale": {"N": str(now_ms - KILL_STALE_MS)},
            }
        try:
            self._ddb.put_item(**kwargs)
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return None
        return claimed

    def save_kill(self, test: str, version: int, record: dict[str, Any]) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item={
                **self._key(test, f"KILL#{version:015d}"),
                "doc": {"S": json.dumps(record)},
                "status": {"S": str(record.get("status", "retry"))},
                "claimed_at": {"N": str(record.get("claimed_at", 0))},
            },
        )

    def kills(self, test: str) -> list[dict[str, Any]]:
        response = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :k)",
            ExpressionAttributeValues={":pk": {"S": f"TEST#{test}"}, ":k": {"S": "KILL#"}},
        )
        return [json.loads(item["doc"]["S"]) for item in response.get("Items", [])]


class InMemoryVerdictStore:
    """Verdicts in dicts (tests)."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.kill_records: dict[tuple[str, int], dict[str, Any]] = {}

    def load_state(self, test: str) -> dict[str, Any] | None:
        return self.states.get(test)

    def save(self, test: str, state: dict[str, Any], history: dict[str, Any] | None) -> None:
        self.states[test] = json.loads(json.dumps(state))
        if history is not None:
            self.histories.setdefault(test, []).append(json.loads(json.dumps(history)))

    def history(self, test: str, limit: int) -> list[dict[str, Any]]:
        return list(reversed(self.histories.get(test, [])))[:limit]

    def claim_kill(self, test: str, version: int, now_ms: int) -> dict[str, Any] | None:
        record = self.kill_records.get((test, version))
        if record is not None:
            stale = record.get("claimed_at", 0) < now_ms - KILL_STALE_MS
            if record["status"] != "retry" and not (record["status"] == "in_progress" and stale):
                return None
        claimed = {**(record or {"version": version, "attempts": []}), "status": "in_progress", "claimed_at": now_ms}
        self.kill_records[(test, version)] = claimed
        return dict(claimed)

    def save_kill(self, test: str, version: int, record: dict[str, Any]) -> None:
        self.kill_records[(test, version)] = json.loads(json.dumps(record))

    def kills(self, test: str) -> list[dict[str, Any]]:
        """Copies, as DynamoDB returns them: a reader changing one changes nothing stored."""
        return [json.loads(json.dumps(r)) for (name, _), r in sorted(self.kill_records.items()) if name == test]
