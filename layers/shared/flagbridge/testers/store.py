"""The tester registry on DynamoDB (low-level client): one table, TTL on ``expires_at``.

Layout: partition ``pk = "{traffic_type}#{key}"`` (the profiles table's user id, so lookups spread over
partitions like the users do). Sort key ``TESTER`` is the registration; ``AUDIT#{epoch ms}#{nonce}`` are its
audit entries, kept :data:`~flagbridge.testers.registry.AUDIT_RETENTION_SECONDS` (their own ``expires_at``).
Registrations also carry ``listed = "TESTER"``: the sparse index ``by-listing`` (partition ``listed``, sort
``pk``) pages through them in user id order without reading the audit entries.

Every write is a transaction of the registration change and its audit entry, so the audit trail never misses
a change and never records one that did not happen. With a Split segment following the registry, registrations
also carry ``segment_state`` (``pending`` until the key is in the segment, then ``synced``); segment changes are
audited after Split answered (``segment_add``/``segment_remove`` entries, written in batches).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Sequence
from typing import Any, cast

from flagbridge.testers.registry import (
    AUDIT_BATCH_WRITE,
    AUDIT_RETENTION_SECONDS,
    BATCH_GET_LIMIT,
    TRANSACTION_REGISTRATIONS,
    AuditEntry,
    Registration,
    RegistryUnavailableError,
    SegmentState,
    user_id,
)

_ACTIONS = ("register", "remove", "segment_add", "segment_remove")
MARKS_PER_TRANSACTION = 100  # TransactWriteItems' limit

TESTER_SK = "TESTER"
AUDIT_PREFIX = "AUDIT#"
LISTING_INDEX = "by-listing"
LISTED = "TESTER"


def registration_item(registration: Registration) -> dict[str, Any]:
    item = {
        "pk": {"S": registration.user_id},
        "sk": {"S": TESTER_SK},
        "listed": {"S": LISTED},
        "traffic_type": {"S": registration.traffic_type},
        "key": {"S": registration.key},
        "expires_at": {"N": str(registration.expires_at)},
        "reason": {"S": registration.reason},
        "registered_by": {"S": registration.registered_by},
        "registered_at": {"N": str(registration.registered_at)},
    }
    if registration.segment is not None:
        item["segment_state"] = {"S": registration.segment}
    return item


def item_registration(item: dict[str, Any]) -> Registration:
    return Registration(
        traffic_type=item["traffic_type"]["S"],
        key=item["key"]["S"],
        expires_at=int(item["expires_at"]["N"]),
        reason=item.get("reason", {}).get("S", ""),
        registered_by=item.get("registered_by", {}).get("S", ""),
        registered_at=int(item.get("registered_at", {}).get("N", "0")),
        segment=cast(SegmentState, item["segment_state"]["S"])
        if item.get("segment_state", {}).get("S") in _STATES
        else None,
    )


_STATES = ("pending", "synced")


def audit_item(audit: AuditEntry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": audit.user_id},
        "sk": {"S": f"{AUDIT_PREFIX}{audit.at:013d}#{secrets.token_hex(4)}"},
        "traffic_type": {"S": audit.traffic_type},
        "key": {"S": audit.key},
        "action": {"S": audit.action},
        "actor": {"S": audit.actor},
        "at": {"N": str(audit.at)},
        "reason": {"S": audit.reason},
        "expires_at": {"N": str(audit.at // 1000 + AUDIT_RETENTION_SECONDS)},
    }
    if audit.expires_at is not None:
        item["tester_expires_at"] = {"N": str(audit.expires_at)}
    if audit.detail is not None:
        item["detail"] = {"S": audit.detail}
    return item


def item_audit(item: dict[str, Any]) -> AuditEntry:
    action = item["action"]["S"]
    return AuditEntry(
        traffic_type=item["traffic_type"]["S"],
        key=item["key"]["S"],
        action=action if action in _ACTIONS else "register",
        actor=item["actor"]["S"],
        at=int(item["at"]["N"]),
        reason=item.get("reason", {}).get("S", ""),
        expires_at=int(item["tester_expires_at"]["N"]) if "tester_expires_at" in item else None,
        detail=item["detail"]["S"] if "detail" in item else None,
    )


class DynamoDBTesterStore:
    """:class:`~flagbridge.testers.registry.TesterStore` on a DynamoDB table with ``pk``/``sk`` string keys."""

    def __init__(self, dynamodb_client: Any, table_name: str, read_attempts: int = 6) -> None:
        self._ddb = dynamodb_client
        self._table = table_name
        self._read_attempts = read_attempts

    def put(self, registrations: Sequence[Registration], audits: Sequence[AuditEntry]) -> None:
        audit_of = {audit.user_id: audit for audit in audits}
        for start in range(0, len(registrations), TRANSACTION_REGISTRATIONS):
            items: list[dict[str, Any]] = []
            for registration in registrations[start : start + TRANSACTION_REGISTRATIONS]:
                items.append({"Put": {"TableName": self._table, "Item": registration_item(registration)}})
                items.append({"Put": {"TableName": self._table, "Item": audit_item(audit_of[registration.user_id])}})
            self._transact(items)

    def delete(self, traffic_type: str, key: str, audit: AuditEntry) -> bool:
        items = [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": user_id(traffic_type, key)}, "sk": {"S": TESTER_SK}},
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            {"Put": {"TableName": self._table, "Item": audit_item(audit)}},
        ]
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except self._ddb.exceptions.TransactionCanceledException as exc:
            reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False
            raise RegistryUnavailableError(f"tester registry write cancelled: {reasons}") from exc
        return True

    def _transact(self, items: list[dict[str, Any]]) -> None:
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except self._ddb.exceptions.TransactionCanceledException as exc:
            reasons = sorted({str(reason.get("Code")) for reason in exc.response.get("CancellationReasons", [])})
            raise RegistryUnavailableError(f"tester registry write cancelled: {reasons}") from exc

    def get_many(self, user_ids: Collection[str]) -> dict[str, Registration]:
        keys = [{"pk": {"S": user}, "sk": {"S": TESTER_SK}} for user in sorted(set(user_ids))]
        found: dict[str, Registration] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys[start : start + BATCH_GET_LIMIT],
                    "ProjectionExpression": (
                        "pk, traffic_type, #k, expires_at, reason, registered_by, registered_at, segment_state"
                    ),
                    "ExpressionAttributeNames": {"#k": "key"},
                }
            }
            for attempt in range(self._read_attempts):
                response = self._ddb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    found[item["pk"]["S"]] = item_registration(item)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * (2**attempt)))
            else:
                raise RegistryUnavailableError("DynamoDB kept returning unprocessed tester keys")
        return found

    def page(self, limit: int, after: str | None) -> tuple[list[Registration], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": LISTING_INDEX,
            "KeyConditionExpression": "listed = :listed",
            "ExpressionAttributeValues": {":listed": {"S": LISTED}},
            "Limit": limit,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {"listed": {"S": LISTED}, "pk": {"S": after}, "sk": {"S": TESTER_SK}}
        response = self._ddb.query(**kwargs)
        registrations = [item_registration(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return registrations, (last["pk"]["S"] if last else None)

    def history(self, traffic_type: str, key: str) -> list[AuditEntry]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :audit)",
            "ExpressionAttributeValues": {":pk": {"S": user_id(traffic_type, key)}, ":audit": {"S": AUDIT_PREFIX}},
            "ConsistentRead": True,
        }
        entries: list[AuditEntry] = []
        while True:
            response = self._ddb.query(**kwargs)
            entries.extend(item_audit(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return entries
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def mark_segment(self, registrations: Sequence[Registration], state: SegmentState) -> int:
        """Set ``segment`` on registrations still as given (same ``registered_at``: a newer registration of the
        key keeps its own state), :data:`MARKS_PER_TRANSACTION` a request; how many were marked."""
        marked = 0
        for start in range(0, len(registrations), MARKS_PER_TRANSACTION):
            chunk = registrations[start : start + MARKS_PER_TRANSACTION]
            try:
                self._ddb.transact_write_items(TransactItems=[self._mark(r, state) for r in chunk])
                marked += len(chunk)
            except self._ddb.exceptions.TransactionCanceledException:
                marked += self._mark_one_by_one(chunk, state)  # one was re-registered or removed meanwhile
        return marked

    def _mark(self, registration: Registration, state: SegmentState) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": registration.user_id}, "sk": {"S": TESTER_SK}},
                "UpdateExpression": "SET segment_state = :state",
                "ConditionExpression": "registered_at = :at",
                "ExpressionAttributeValues": {
                    ":state": {"S": state},
                    ":at": {"N": str(registration.registered_at)},
                },
            }
        }

    def _mark_one_by_one(self, registrations: Sequence[Registration], state: SegmentState) -> int:
        marked = 0
        for registration in registrations:
            try:
                self._ddb.update_item(**self._mark(registration, state)["Update"])
                marked += 1
            except self._ddb.exceptions.ConditionalCheckFailedException:
                continue
        return marked

    def write_audits(self, audits: Sequence[AuditEntry]) -> None:
        """Audit entries in batches of :data:`~flagbridge.testers.registry.AUDIT_BATCH_WRITE`."""
        for start in range(0, len(audits), AUDIT_BATCH_WRITE):
            request: dict[str, Any] = {
                self._table: [
                    {"PutRequest": {"Item": audit_item(a)}} for a in audits[start : start + AUDIT_BATCH_WRITE]
                ]
            }
            for attempt in range(self._read_attempts):
                request = self._ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * (2**attempt)))
            else:
                raise RegistryUnavailableError("DynamoDB kept returning unprocessed audit entries")
