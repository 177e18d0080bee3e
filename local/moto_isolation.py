"""Serialise moto's DynamoDB backend, so concurrent writers see the isolation the real service gives.

moto 5's ``transact_write_items`` snapshots every table it touches with ``copy.deepcopy`` (to roll back on a
failed condition) without any lock. When another thread writes to the same table meanwhile (the impressions
processor writes a batch's (user, flag) pairs on parallel threads, one of them in a transaction that adds the
user's tester mark), the copy fails with ``RuntimeError: dictionary changed size during iteration``, the
pair is reported as a batch item failure, and a rollback can even restore a snapshot taken before a concurrent
write, losing it. Real DynamoDB isolates transactions from other writes and never fails that way, so the race
is the emulator's: one re-entrant lock around the backend's item operations makes each of them atomic, as
seen by the code under test. The same lock makes a conditional write atomic: moto checks the condition, then
writes, so two threads could both pass the check (two looks both advancing a run's round). Installed for every
test process by ``tests/conftest.py`` and by the local runner's embedded moto server.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

# Every DynamoDBBackend method that reads or writes items (a transaction calls put_item etc. again: re-entrant).
ITEM_OPERATIONS = (
    "put_item",
    "get_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "transact_write_items",
    "batch_get_item",
    "batch_write_item",
    "transact_get_items",
    "execute_statement",
    "execute_transaction",
    "batch_execute_statement",
)

LOCK = threading.RLock()


def isolate_dynamodb_operations() -> bool:
    """Wrap moto's DynamoDB item operations in one process-wide lock (idempotent). Returns whether it applied."""
    try:
        from moto.dynamodb.models import DynamoDBBackend
    except ImportError:  # pragma: no cover - moto is a dev dependency
        return False
    for name in ITEM_OPERATIONS:
        original = getattr(DynamoDBBackend, name, None)
        if original is None or getattr(original, "_flagbridge_isolated", False):
            continue
        setattr(DynamoDBBackend, name, _locked(original))
    return True


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return method(*args, **kwargs)

    locked._flagbridge_isolated = True  # type: ignore[attr-defined]
    return locked
