"""The delivery ledger: claims that make sends to non-idempotent destinations happen at most once.

Split's events API creates a new event for every POST, so before sending, each event id (per
destination) is *claimed* with a conditional write; only claimed ids are sent. After a successful send
the claims are marked ``sent`` (kept until their TTL); after a failed send they are released so the
retry can claim them again. A claim left ``pending`` by a crashed invocation becomes claimable again
after ``stale_after_seconds`` (longer than the function timeout), like Powertools idempotency's
in-progress expiry: only a crash between Split's 202 and the ``sent`` mark can then repeat a send.
Until then such ids are :meth:`Ledger.pending`, not done: their message must be retried, not
acknowledged (Powertools' "already in progress"), or a crash before the send would lose them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

TRANSACTION_LIMIT = 100
BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
# Errors worth retrying a ledger write for: a "sent" mark that cannot be written would make the send repeat.
TRANSIENT_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class Ledger(Protocol):
    def claim(self, ids: Sequence[str]) -> list[str]: ...

    def pending(self, ids: Sequence[str]) -> list[str]:
        """Of ``ids`` (not claimable just now), those claimed but neither sent nor released yet."""
        ...

    def mark_sent(self, ids: Sequence[str]) -> None: ...

    def release(self, ids: Sequence[str]) -> None: ...


class DynamoDBLedger:
    """Ledger on a DynamoDB table with string key ``id`` and TTL attribute ``expires_at``."""

    def __init__(self, client: Any, table: str, ttl_seconds: int = 7 * 86_400, stale_after_seconds: int = 300) -> None:
        self._ddb = client
        self._table = table
        self._ttl = ttl_seconds
        self._stale = stale_after_seconds

    def claim(self, ids: Sequence[str]) -> list[str]:
        """Claim every id not already pending or sent; returns the ids this caller now owns."""
        owned: list[str] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), TRANSACTION_LIMIT):
            owned.extend(self._claim_chunk(unique[start : start + TRANSACTION_LIMIT]))
        return owned

    def _claim_chunk(self, ids: list[str]) -> list[str]:
        now = int(time.time())
        remaining = list(ids)
        while remaining:
            try:
                self._ddb.transact_write_items(TransactItems=[self._claim_item(i, now) for i in remaining])
                return remaining
            except self._ddb.exceptions.TransactionCanceledException as exc:
                reasons = exc.response.get("CancellationReasons", [])
                taken = {
                    remaining[index]
                    for index, reason in enumerate(reasons)
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                if not taken:
                    raise
                remaining = [i for i in remaining if i not in taken]
        return []

    def _claim_item(self, item_id: str, now: int) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "id": {"S": item_id},
                    "status": {"S": "pending"},
                    "claimed_at": {"N": str(now)},
                    "expires_at": {"N": str(now + self._ttl)},
                },
                "ConditionExpression": "attribute_not_exists(id) OR (#s = :pending AND claimed_at < :stale)",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":pending": {"S": "pending"}, ":stale": {"N": str(now - self._stale)}},
            }
        }

    def pending(self, ids: Sequence[str]) -> list[str]:
        """The ids whose claim is ``pending`` (consistent reads): a delivery in progress, or one that crashed."""
        found: list[str] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            keys = [{"id": {"S": item_id}} for item_id in unique[start : start + BATCH_GET_LIMIT]]
            request: dict[str, Any] = {
                self._table: {"Keys": keys, "ConsistentRead": True, "ProjectionExpression": "id, #s"}
            }
            request[self._table]["ExpressionAttributeNames"] = {"#s": "status"}
            for attempt in range(8):
                response = self._ddb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    if item.get("status", {}).get("S") == "pending":
                        found.append(item["id"]["S"])
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
        return found

    def mark_sent(self, ids: Sequence[str]) -> None:
        now = int(time.time())
        self._batch_write(
            [
                {
                    "PutRequest": {
                        "Item": {
                            "id": {"S": item_id},
                            "status": {"S": "sent"},
                            "sent_at": {"N": str(now)},
                            "expires_at": {"N": str(now + self._ttl)},
                        }
                    }
                }
                for item_id in ids
            ]
        )

    def release(self, ids: Sequence[str]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": {"id": {"S": item_id}}}} for item_id in ids])

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            pending: dict[str, Any] = {self._table: requests[start : start + BATCH_WRITE_LIMIT]}
            for attempt in range(8):
                try:
                    response = self._ddb.batch_write_item(RequestItems=pending)
                except Exception as exc:  # throttled or failed after botocore's retries: retry a few more times
                    if attempt == 7 or _error_code(exc) not in TRANSIENT_ERRORS:
                        raise
                else:
                    pending = response.get("UnprocessedItems") or {}
                    if not pending:
                        break
                time.sleep(min(1.0, 0.05 * 2**attempt))


class InMemoryLedger:
    """Ledger in a dict (tests and benchmarks)."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}

    def claim(self, ids: Sequence[str]) -> list[str]:
        owned = []
        for item_id in dict.fromkeys(ids):
            if item_id not in self.status:
                self.status[item_id] = "pending"
                owned.append(item_id)
        return owned

    def pending(self, ids: Sequence[str]) -> list[str]:
        return [item_id for item_id in dict.fromkeys(ids) if self.status.get(item_id) == "pending"]

    def mark_sent(self, ids: Sequence[str]) -> None:
        for item_id in ids:
            self.status[item_id] = "sent"

    def release(self, ids: Sequence[str]) -> None:
        for item_id in ids:
            self.status.pop(item_id, None)
