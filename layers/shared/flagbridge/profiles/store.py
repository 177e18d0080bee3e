"""DynamoDB persistence of profiles (single table, low-level client for speed).

Layout: partition ``pk = "{traffic_type}#{key}"``; sort key ``FLAG#{flag}`` for each flag's exposure
state and ``META`` for the user's tester mark (with ``mark_expires_at`` when it came from the tester registry:
an expired mark reads as none). Writes are conditional on the revision read
(optimistic concurrency) so concurrent processors never lose an update: a loser re-reads and re-merges.
A new tester mark is written in the same transaction as one of that user's flag writes, so a batch
never issues more write requests than it has distinct (user, flag) pairs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from flagbridge.errors import FlagbridgeError, StoreError
from flagbridge.profiles.model import Assignment, FlagState, TestMark

META_SK = "META"
FLAG_PREFIX = "FLAG#"
BATCH_GET_LIMIT = 100


class ConcurrentUpdateError(FlagbridgeError):
    """The item changed since it was read; re-read and merge again."""


class ProfileStore(Protocol):
    """What the processor and the profile API need from storage."""

    def load(
        self, pairs: Sequence[tuple[str, str]], users: Sequence[str]
    ) -> tuple[dict[tuple[str, str], FlagState], dict[str, TestMark]]: ...

    def save(self, state: FlagState, mark: TestMark | None = None) -> FlagState: ...

    def save_mark(self, user_id: str, mark: TestMark) -> None: ...

    def read_profile(self, user_id: str) -> tuple[list[FlagState], TestMark | None] | None: ...


def flag_sk(flag: str) -> str:
    return FLAG_PREFIX + flag


# ---- item conversion (DynamoDB AttributeValue dicts) ---------------------------------------------


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _opt_s(value: str | None) -> dict[str, Any]:
    return {"NULL": True} if value is None else {"S": value}


def _opt_n(value: int | None) -> dict[str, Any]:
    return {"NULL": True} if value is None else {"N": str(value)}


def _get_s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None or "NULL" in value else str(value["S"])


def _get_n(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    return None if value is None or "NULL" in value else int(value["N"])


def state_to_item(state: FlagState) -> dict[str, Any]:
    """A FlagState as a DynamoDB item (``rev`` is the revision being written)."""
    return {
        "pk": _s(state.user_id),
        "sk": _s(flag_sk(state.flag)),
        "traffic_type": _s(state.traffic_type),
        "key": _s(state.key),
        "identity_type": _s(state.identity_type),
        "flag": _s(state.flag),
        "treatment": _s(state.treatment),
        "label": _opt_s(state.label),
        "version": _opt_n(state.version),
        "environment": _s(state.environment),
        "environment_id": _s(state.environment_id),
        "current_time": _n(state.current_time),
        "first_seen": _n(state.first_seen),
        "last_seen": _n(state.last_seen),
        "exposures": _n(state.exposures),
        "assignments": {
            "L": [
                {
                    "M": {
                        "treatment": _s(a.treatment),
                        "label": _opt_s(a.label),
                        "version": _opt_n(a.version),
                        "environment": _s(a.environment),
                        "first_seen": _n(a.first_seen),
                        "last_seen": _n(a.last_seen),
                        "count": _n(a.count),
                    }
                }
                for a in state.assignments
            ]
        },
        # Fingerprints as one compact string: "fp:time fp:time ..." (thousands of entries stay small).
        "seen": _s(" ".join(f"{fp}:{seen_time}" for fp, seen_time in state.seen.items())),
        "seen_floor": _n(state.seen_floor),
        "rev": _n(state.rev),
        "updated_at": _n(state.updated_at),
    }


def item_to_state(item: dict[str, Any]) -> FlagState:
    return FlagState(
        traffic_type=_get_s(item, "traffic_type") or "",
        key=_get_s(item, "key") or "",
        identity_type=_get_s(item, "identity_type") or "",
        flag=_get_s(item, "flag") or "",
        treatment=_get_s(item, "treatment") or "",
        label=_get_s(item, "label"),
        version=_get_n(item, "version"),
        environment=_get_s(item, "environment") or "",
        environment_id=_get_s(item, "environment_id") or "",
        current_time=_get_n(item, "current_time") or 0,
        first_seen=_get_n(item, "first_seen") or 0,
        last_seen=_get_n(item, "last_seen") or 0,
        exposures=_get_n(item, "exposures") or 0,
        assignments=tuple(_item_to_assignment(entry["M"]) for entry in item.get("assignments", {}).get("L", [])),
        seen=_seen_of(_get_s(item, "seen") or ""),
        seen_floor=_get_n(item, "seen_floor") or 0,
        rev=_get_n(item, "rev") or 0,
        updated_at=_get_n(item, "updated_at") or 0,
    )


def _item_to_assignment(m: dict[str, Any]) -> Assignment:
    return Assignment(
        treatment=_get_s(m, "treatment") or "",
        label=_get_s(m, "label"),
        version=_get_n(m, "version"),
        environment=_get_s(m, "environment") or "",
        first_seen=_get_n(m, "first_seen") or 0,
        last_seen=_get_n(m, "last_seen") or 0,
        count=_get_n(m, "count") or 0,
    )


def _seen_of(text: str) -> dict[str, int]:
    """The fingerprints of the compact ``seen`` string: "fp:time fp:time ..." -> {fp: time}."""
    seen: dict[str, int] = {}
    for token in text.split():
        fp, _, seen_time = token.partition(":")
        seen[fp] = int(seen_time)
    return seen


def mark_to_item(user_id: str, mark: TestMark) -> dict[str, Any]:
    item = {
        "pk": _s(user_id),
        "sk": _s(META_SK),
        "test_user": {"BOOL": True},
        "test_rule": _s(mark.rule),
        "marked_at": _n(mark.marked_at),
    }
    if mark.expires_at is not None:
        item["mark_expires_at"] = _n(mark.expires_at)
    return item


def item_to_mark(item: dict[str, Any], now_ms: int | None = None) -> TestMark | None:
    """The item's mark; None without one, or when it has expired (a mark from the tester registry) at ``now_ms``."""
    if not item.get("test_user", {}).get("BOOL"):
        return None
    mark = TestMark(
        rule=_get_s(item, "test_rule") or "",
        marked_at=_get_n(item, "marked_at") or 0,
        expires_at=_get_n(item, "mark_expires_at"),
    )
    return mark if now_ms is None or mark.active(now_ms) else None


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---- the store -----------------------------------------------------------------------------------


class DynamoDBProfileStore:
    """ProfileStore on a DynamoDB table with ``pk``/``sk`` string keys."""

    def __init__(self, dynamodb_client: Any, table_name: str, read_attempts: int = 6) -> None:
        self._ddb = dynamodb_client
        self._table = table_name
        self._read_attempts = read_attempts

    def load(
        self, pairs: Sequence[tuple[str, str]], users: Sequence[str]
    ) -> tuple[dict[tuple[str, str], FlagState], dict[str, TestMark]]:
        """Bulk-read flag states for (user_id, flag) pairs and the META items of ``users``."""
        keys = [{"pk": _s(user), "sk": _s(flag_sk(flag))} for user, flag in pairs]
        keys += [{"pk": _s(user), "sk": _s(META_SK)} for user in users]
        states: dict[tuple[str, str], FlagState] = {}
        marks: dict[str, TestMark] = {}
        now_ms = _now_ms()
        for item in self._batch_get(keys):
            sk = item["sk"]["S"]
            if sk == META_SK:
                mark = item_to_mark(item, now_ms)  # an expired mark is no mark
                if mark is not None:
                    marks[item["pk"]["S"]] = mark
            else:
                state = item_to_state(item)
                states[(state.user_id, state.flag)] = state
        return states, marks

    def load_marks(self, users: Iterable[str]) -> dict[str, TestMark]:
        """Tester marks of many users in bulk (the CDP router's lookup)."""
        _, marks = self.load([], sorted(set(users)))
        return marks

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {self._table: {"Keys": keys[start : start + BATCH_GET_LIMIT]}}
            for attempt in range(self._read_attempts):
                response = self._ddb.batch_get_item(RequestItems=request)
                items.extend(response.get("Responses", {}).get(self._table, []))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * (2**attempt)))
            else:
                raise StoreError("DynamoDB kept returning unprocessed keys")
        return items

    def save(self, state: FlagState, mark: TestMark | None = None) -> FlagState:
        """Write ``state`` if nobody changed it since it was read; raise ConcurrentUpdateError if not."""
        written = replace(state, rev=state.rev + 1)
        item = state_to_item(written)
        if state.rev == 0:
            condition = "attribute_not_exists(pk)"
            values: dict[str, Any] | None = None
        else:
            condition = "rev = :rev"
            values = {":rev": _n(state.rev)}
        put: dict[str, Any] = {"TableName": self._table, "Item": item, "ConditionExpression": condition}
        if values:
            put["ExpressionAttributeValues"] = values
        try:
            if mark is None:
                self._ddb.put_item(**put)
            else:
                self._ddb.transact_write_items(
                    TransactItems=[
                        {"Put": put},
                        {"Put": {"TableName": self._table, "Item": mark_to_item(state.user_id, mark)}},
                    ]
                )
        except self._ddb.exceptions.ConditionalCheckFailedException as exc:
            raise ConcurrentUpdateError(state.user_id) from exc
        except self._ddb.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                raise ConcurrentUpdateError(state.user_id) from exc
            raise
        return written

    def save_mark(self, user_id: str, mark: TestMark) -> None:
        """Write a tester mark alone (only when a user has no flag write in the batch)."""
        self._ddb.put_item(TableName=self._table, Item=mark_to_item(user_id, mark))

    def read_profile(self, user_id: str) -> tuple[list[FlagState], TestMark | None] | None:
        """Every item of one user, or None when the user is unknown."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s(user_id)},
            "ConsistentRead": True,
        }
        while True:
            response = self._ddb.query(**kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        if not items:
            return None
        flags = [item_to_state(item) for item in items if item["sk"]["S"].startswith(FLAG_PREFIX)]
        mark = next((item_to_mark(item, _now_ms()) for item in items if item["sk"]["S"] == META_SK), None)
        return flags, mark
