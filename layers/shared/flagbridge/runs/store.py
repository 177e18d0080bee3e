"""Persistence of runs: the runs table (DynamoDB) and the manifest bucket (S3), each with an in-memory twin.

**Runs table** (hash key ``id``; ``expires_at`` is its TTL):

* ``RUN#<run>``: the run record (``doc``: JSON; state, shard count, shards enqueued, the tester registration)
  and, for a run until decided, ``round`` (the round in progress, absent for the first) and ``rounds`` (JSON: the
  rounds sent so far and why the run ended), written only by :meth:`RunStore.advance_round`.
* ``SHARD#<run>#<n>``: one item per shard, in its own partition (a hot run spreads its progress writes):
  ``state`` (absent while sending, then ``done`` or ``stopped``), ``owner`` and ``lease_until`` (the claim),
  ``next_index`` (the first case not yet recorded as sent), counters ``sent``, ``errors``, ``failures``,
  ``latency_ms`` and one ``st_<status>`` per HTTP status (``st_error`` for no answer), ``started``,
  ``updated`` and ``finished`` (epoch ms), ``attempts``, ``manifest`` (the shard's S3 key) and ``reason``.

**The claim** is one conditional ``UpdateItem``: it succeeds when the shard was never claimed, or is not
finished and its lease ran out (the worker that held it crashed). Every progress write is conditional on
still owning the claim, and extends the lease, so a worker whose shard was taken over stops at its next write.

**Advancing a round** (a run until decided) is one conditional ``UpdateItem`` too: it succeeds only while the run
is still in the round the caller looked at, so of two workers that both saw a round finish exactly one starts the
next round (or ends the run).

**Manifest bucket**: ``runs/<run>/run.json`` (the :class:`~flagbridge.runs.spec.RunSpec`), checkpoint parts
``runs/<run>/parts/<shard>/<first index>.ndjson`` while a shard is sent, and ``runs/<run>/manifest/<shard>.ndjson``
(NDJSON, one object per shard) once it is finished; its parts are deleted then.

Throttling (``ProvisionedThroughputExceededException``, ``ThrottlingException``, ``RequestLimitExceeded``) is
retried with back-off on top of botocore's own retries; what still fails raises :class:`StoreError`.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from flagbridge.errors import FlagbridgeError, StoreError

RETENTION_SECONDS = 30 * 86_400
THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError"}
)
FINISHED = ("done", "stopped")


class ShardFinishedError(FlagbridgeError):
    """The shard is finished already (done or stopped): a redelivered message has nothing to do."""

    def __init__(self, state: str) -> None:
        super().__init__(f"shard already {state}")
        self.state = state


class ShardBusyError(FlagbridgeError):
    """Another worker holds the shard's claim and its lease has not run out."""

    def __init__(self, lease_until_ms: int) -> None:
        super().__init__("shard claimed by another worker")
        self.lease_until_ms = lease_until_ms


class ClaimLostError(FlagbridgeError):
    """This worker no longer owns the shard (its lease ran out and another worker took it over)."""


@dataclass(frozen=True, slots=True)
class Claim:
    run_id: str
    shard: int
    owner: str
    next_index: int
    attempts: int


class RunStore(Protocol):
    def create_run(self, run_id: str, record: Mapping[str, Any]) -> bool: ...
    def get_run(self, run_id: str) -> dict[str, Any] | None: ...
    def update_run(self, run_id: str, changes: Mapping[str, Any]) -> None: ...
    def claim(self, run_id: str, shard: int, first: int, owner: str, now_ms: int, lease_ms: int) -> Claim: ...
    def progress(
        self, claim: Claim, next_index: int, counts: Mapping[str, int], now_ms: int, lease_ms: int
    ) -> None: ...
    def finish(self, claim: Claim, state: str, reason: str | None, manifest: str | None, now_ms: int) -> None: ...
    def release(self, claim: Claim) -> None: ...
    def shards(self, run_id: str, count: int, first: int = 0) -> list[dict[str, Any]]: ...
    def advance_round(self, run_id: str, current: int, rounds: Mapping[str, Any]) -> bool: ...


def run_key(run_id: str) -> str:
    return f"RUN#{run_id}"


def shard_key(run_id: str, shard: int) -> str:
    return f"SHARD#{run_id}#{shard}"


def counter_name(status: int | None) -> str:
    return f"st_{status}" if status is not None else "st_error"


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))


def _with_retries(call: Callable[[], Any], attempts: int, sleep: Callable[[float], None], what: str) -> Any:
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            code = _error_code(exc)
            if code not in THROTTLED or attempt == attempts - 1:
                if code == "ConditionalCheckFailedException":
                    raise
                raise StoreError(f"{what} failed ({code})") from exc
            sleep(min(2.0, 0.05 * 2**attempt))
    raise AssertionError("unreachable")


def _number(item: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = item.get(name)
    return int(value["N"]) if value and "N" in value else default


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain values (numbers as int, strings as str)."""
    plain: dict[str, Any] = {}
    for name, value in item.items():
        if "N" in value:
            plain[name] = int(value["N"])
        elif "S" in value:
            plain[name] = value["S"]
    return plain


class DynamoDBRunStore:
    """:class:`RunStore` on the runs table."""

    def __init__(self, client: Any, table: str, attempts: int = 8, sleep: Callable[[float], None] = time.sleep) -> None:
        self._ddb = client
        self._table = table
        self._attempts = attempts
        self._sleep = sleep

    def _call(self, what: str, operation: str, **kwargs: Any) -> Any:
        method = getattr(self._ddb, operation)
        return _with_retries(lambda: method(TableName=self._table, **kwargs), self._attempts, self._sleep, what)

    def create_run(self, run_id: str, record: Mapping[str, Any]) -> bool:
        item = {
            "id": {"S": run_key(run_id)},
            "doc": {"S": json.dumps(record, separators=(",", ":"))},
            "expires_at": {"N": str(int(time.time()) + RETENTION_SECONDS)},
        }
        try:
            self._call("creating the run", "put_item", Item=item, ConditionExpression="attribute_not_exists(id)")
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        item = self._call("reading the run", "get_item", Key={"id": {"S": run_key(run_id)}}, ConsistentRead=True).get(
            "Item"
        )
        if item is None:
            return None
        record = dict(json.loads(item["doc"]["S"]))
        record["round"] = _number(item, "round")
        if "rounds" in item:
            record["rounds"] = json.loads(item["rounds"]["S"])
        return record

    def update_run(self, run_id: str, changes: Mapping[str, Any]) -> None:
        # read-modify-write of the record is safe: only the run function (one request at a time per run) writes
        # ``doc``; the workers' rounds are attributes of their own (advance_round), which get_run lays over it
        record = self.get_run(run_id) or {}
        record.update(changes)
        self._call(
            "updating the run",
            "update_item",
            Key={"id": {"S": run_key(run_id)}},
            UpdateExpression="SET doc = :doc",
            ExpressionAttributeValues={":doc": {"S": json.dumps(record, separators=(",", ":"))}},
        )

    def claim(self, run_id: str, shard: int, first: int, owner: str, now_ms: int, lease_ms: int) -> Claim:
        key = {"id": {"S": shard_key(run_id, shard)}}
        try:
            response = self._call(
                "claiming the shard",
                "update_item",
                Key=key,
                UpdateExpression=(
                    "SET #owner = :owner, lease_until = :lease, next_index = if_not_exists(next_index, :first), "
                    "started = if_not_exists(started, :now), updated = :now, expires_at = :expires ADD attempts :one"
                ),
                ConditionExpression=(
                    "attribute_not_exists(id) OR (attribute_not_exists(#state) AND lease_until < :now)"
                ),
                ExpressionAttributeNames={"#owner": "owner", "#state": "state"},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":lease": {"N": str(now_ms + lease_ms)},
                    ":first": {"N": str(first)},
                    ":now": {"N": str(now_ms)},
                    ":one": {"N": "1"},
                    ":expires": {"N": str(now_ms // 1000 + RETENTION_SECONDS)},
                },
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            item = self._call("reading the shard", "get_item", Key=key, ConsistentRead=True).get("Item") or {}
            if "state" in item:
                raise ShardFinishedError(item["state"]["S"]) from None
            raise ShardBusyError(_number(item, "lease_until")) from None
        attributes = response["Attributes"]
        return Claim(run_id, shard, owner, _number(attributes, "next_index"), _number(attributes, "attempts"))

    def progress(self, claim: Claim, next_index: int, counts: Mapping[str, int], now_ms: int, lease_ms: int) -> None:
        names = {"#owner": "owner"}
        values: dict[str, Any] = {
            ":owner": {"S": claim.owner},
            ":next": {"N": str(next_index)},
            ":lease": {"N": str(now_ms + lease_ms)},
            ":now": {"N": str(now_ms)},
        }
        adds = []
        for position, (name, delta) in enumerate(sorted(counts.items())):
            if delta:
                names[f"#c{position}"] = name
                values[f":c{position}"] = {"N": str(delta)}
                adds.append(f"#c{position} :c{position}")
        expression = "SET next_index = :next, lease_until = :lease, updated = :now"
        if adds:
            expression += " ADD " + ", ".join(adds)
        try:
            self._call(
                "recording progress",
                "update_item",
                Key={"id": {"S": shard_key(claim.run_id, claim.shard)}},
                UpdateExpression=expression,
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise ClaimLostError("the shard's claim was taken over") from None
            raise

    def finish(self, claim: Claim, state: str, reason: str | None, manifest: str | None, now_ms: int) -> None:
        values: dict[str, Any] = {
            ":owner": {"S": claim.owner},
            ":state": {"S": state},
            ":now": {"N": str(now_ms)},
            ":reason": {"S": reason or ""},
            ":manifest": {"S": manifest or ""},
        }
        try:
            self._call(
                "finishing the shard",
                "update_item",
                Key={"id": {"S": shard_key(claim.run_id, claim.shard)}},
                UpdateExpression="SET #state = :state, finished = :now, reason = :reason, manifest = :manifest",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner", "#state": "state"},
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise ClaimLostError("the shard's claim was taken over") from None
            raise

    def release(self, claim: Claim) -> None:
        try:
            self._call(
                "releasing the shard",
                "update_item",
                Key={"id": {"S": shard_key(claim.run_id, claim.shard)}},
                UpdateExpression="SET lease_until = :zero",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":zero": {"N": "0"}, ":owner": {"S": claim.owner}},
            )
        except Exception as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise

    def advance_round(self, run_id: str, current: int, rounds: Mapping[str, Any]) -> bool:
        condition = "#round = :current" if current else "attribute_not_exists(#round) OR #round = :current"
        try:
            self._call(
                "advancing the round",
                "update_item",
                Key={"id": {"S": run_key(run_id)}},
                UpdateExpression="SET #round = :next, rounds = :rounds",
                ConditionExpression=f"attribute_exists(id) AND ({condition})",
                ExpressionAttributeNames={"#round": "round"},
                ExpressionAttributeValues={
                    ":current": {"N": str(current)},
                    ":next": {"N": str(current + 1)},
                    ":rounds": {"S": json.dumps(rounds, separators=(",", ":"))},
                },
            )
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def shards(self, run_id: str, count: int, first: int = 0) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        keys = [shard_key(run_id, shard) for shard in range(first, count)]
        for start in range(0, len(keys), 100):
            pending: Any = {self._table: {"Keys": [{"id": {"S": key}} for key in keys[start : start + 100]]}}
            for attempt in range(self._attempts):
                request = functools.partial(self._ddb.batch_get_item, RequestItems=pending)
                response = _with_retries(
                    request,
                    self._attempts,
                    self._sleep,
                    "reading the shards",
                )
                for item in response.get("Responses", {}).get(self._table, []):
                    found[item["id"]["S"]] = _plain(item)
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                self._sleep(min(2.0, 0.05 * 2**attempt))
            if pending:
                raise StoreError("reading the shards failed (unprocessed keys)")
        return [{"shard": shard, **found.get(shard_key(run_id, shard), {})} for shard in range(first, count)]


class InMemoryRunStore:
    """:class:`RunStore` in memory (tests, the bench); the same conditions as the DynamoDB store."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.rounds: dict[str, tuple[int, str]] = {}
        self.progress_writes = 0
        self._lock = threading.Lock()

    def create_run(self, run_id: str, record: Mapping[str, Any]) -> bool:
        with self._lock:
            if run_id in self.runs:
                return False
            self.runs[run_id] = json.loads(json.dumps(record))
            return True

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self.runs.get(run_id)
            if record is None:
                return None
            copy = dict(json.loads(json.dumps(record)))
            current, rounds = self.rounds.get(run_id, (0, ""))
        copy["round"] = current
        if rounds:
            copy["rounds"] = json.loads(rounds)
        return copy

    def advance_round(self, run_id: str, current: int, rounds: Mapping[str, Any]) -> bool:
        with self._lock:
            if run_id not in self.runs or self.rounds.get(run_id, (0, ""))[0] != current:
                return False
            self.rounds[run_id] = (current + 1, json.dumps(rounds, separators=(",", ":")))
            return True

    def update_run(self, run_id: str, changes: Mapping[str, Any]) -> None:
        with self._lock:
            self.runs.setdefault(run_id, {}).update(json.loads(json.dumps(dict(changes))))

    def claim(self, run_id: str, shard: int, first: int, owner: str, now_ms: int, lease_ms: int) -> Claim:
        with self._lock:
            item = self.items.get(shard_key(run_id, shard))
            if item is not None:
                if "state" in item:
                    raise ShardFinishedError(item["state"])
                if item["lease_until"] >= now_ms:
                    raise ShardBusyError(item["lease_until"])
            item = item or {"next_index": first, "started": now_ms, "attempts": 0}
            item.update(owner=owner, lease_until=now_ms + lease_ms, updated=now_ms, attempts=item["attempts"] + 1)
            self.items[shard_key(run_id, shard)] = item
            return Claim(run_id, shard, owner, item["next_index"], item["attempts"])

    def _owned(self, claim: Claim) -> dict[str, Any]:
        item = self.items.get(shard_key(claim.run_id, claim.shard))
        if item is None or item.get("owner") != claim.owner:
            raise ClaimLostError("the shard's claim was taken over")
        return item

    def progress(self, claim: Claim, next_index: int, counts: Mapping[str, int], now_ms: int, lease_ms: int) -> None:
        with self._lock:
            item = self._owned(claim)
            self.progress_writes += 1
            item.update(next_index=next_index, lease_until=now_ms + lease_ms, updated=now_ms)
            for name, delta in counts.items():
                if delta:
                    item[name] = item.get(name, 0) + delta

    def finish(self, claim: Claim, state: str, reason: str | None, manifest: str | None, now_ms: int) -> None:
        with self._lock:
            item = self._owned(claim)
            item.update(state=state, finished=now_ms, reason=reason or "", manifest=manifest or "")

    def release(self, claim: Claim) -> None:
        with self._lock:
            item = self.items.get(shard_key(claim.run_id, claim.shard))
            if item is not None and item.get("owner") == claim.owner:
                item["lease_until"] = 0

    def shards(self, run_id: str, count: int, first: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"shard": shard, **json.loads(json.dumps(self.items.get(shard_key(run_id, shard), {})))}
                for shard in range(first, count)
            ]


# ---- the manifest bucket ------------------------------------------------------------------------------------


class ManifestStore(Protocol):
    def put(self, key: str, body: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def keys(self, prefix: str) -> list[str]: ...
    def delete(self, keys: Iterable[str]) -> None: ...
    def location(self, key: str) -> str: ...


class S3ManifestStore:
    """:class:`ManifestStore` on an S3 bucket."""

    def __init__(
        self, client: Any, bucket: str, attempts: int = 4, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._s3 = client
        self.bucket = bucket
        self._attempts = attempts
        self._sleep = sleep

    def _retry(self, what: str, call: Callable[[], Any]) -> Any:
        for attempt in range(self._attempts):
            try:
                return call()
            except Exception as exc:
                if _error_code(exc) in ("NoSuchKey", "404") or attempt == self._attempts - 1:
                    if _error_code(exc) in ("NoSuchKey", "404"):
                        raise
                    raise StoreError(f"{what} failed ({_error_code(exc)})") from exc
                self._sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def put(self, key: str, body: bytes) -> None:
        content_type = "application/x-ndjson" if key.endswith(".ndjson") else "application/json"
        self._retry(
            "writing the manifest",
            lambda: self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type),
        )

    def get(self, key: str) -> bytes | None:
        try:
            response = self._retry("reading the manifest", lambda: self._s3.get_object(Bucket=self.bucket, Key=key))
        except StoreError:
            raise
        except Exception:
            return None
        return bytes(response["Body"].read())

    def keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    def delete(self, keys: Iterable[str]) -> None:
        listed = list(keys)
        for start in range(0, len(listed), 1000):
            chunk = [{"Key": key} for key in listed[start : start + 1000]]
            delete = functools.partial(
                self._s3.delete_objects, Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True}
            )
            self._retry("deleting manifest parts", delete)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


class InMemoryManifestStore:
    """:class:`ManifestStore` in memory."""

    def __init__(self, bucket: str = "memory") -> None:
        self.bucket = bucket
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def put(self, key: str, body: bytes) -> None:
        self.puts += 1
        self.objects[key] = bytes(body)

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"
