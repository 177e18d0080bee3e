"""Three speed-ups of moto internals for the embedded server (results unchanged; see each function for why it is
safe). ``FLAGBRIDGE_LOCAL_MOTO_SPEEDUPS=0`` turns them off."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from typing import Any


def speed_up_moto_dispatch() -> bool:
    """Cache moto's list of service modules, which its server rebuilds from the disk on every request.

    moto's ``DomainDispatcherApplication.get_application`` calls ``moto.backends.list_of_moto_modules()`` (an
    ``os.listdir`` plus ~150 ``os.path.isdir`` calls) twice per request *while holding one global lock*, so
    concurrent requests queue behind file system calls. The list cannot change while the process runs; caching it
    returns the same names. Returns whether it is active.
    """
    try:
        from moto import backends
    except ImportError:
        return False
    original = getattr(backends, "list_of_moto_modules", None)
    if original is None or getattr(original, "_flagbridge_cached", False):
        return original is not None
    names = tuple(original())

    def list_of_moto_modules() -> Iterator[str]:
        return iter(names)

    list_of_moto_modules._flagbridge_cached = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules
    return True


def speed_up_moto_queries() -> bool:
    """Make moto's DynamoDB ``Query`` on a table's own key read one partition instead of the whole table.

    moto 5 answers every Query by sorting *all* items of the table (``Table.all_items``) and filtering them, so a
    query costs ~20 ms per 1,000 items (200 ms once 10,000 profile items exist). While a base-table query with a
    hash key runs, this makes ``all_items`` return only that partition's items, sorted the same way: identical
    results, since moto filters on the hash key next anyway. Index queries and scans are untouched. Only applied
    to the embedded moto; ``FLAGBRIDGE_LOCAL_MOTO_SPEEDUPS=0`` turns it off. Returns whether it is active.
    """
    try:
        from moto.dynamodb.models.table import Table
    except ImportError:
        return False
    if getattr(Table, "_flagbridge_partition_query", False):
        return True
    if not (callable(getattr(Table, "query", None)) and callable(getattr(Table, "all_items", None))):
        return False
    original_query, original_all_items = Table.query, Table.all_items
    signature = inspect.signature(original_query)
    if not {"hash_key", "index_name"} <= set(signature.parameters):
        return False
    current = threading.local()

    def all_items(self: Any) -> Any:
        partition = getattr(current, "partition", None)
        if partition is None or partition[0] is not self:
            return original_all_items(self)
        hash_set = self.items.get(partition[1])
        if hash_set is None:
            return []
        items = list(hash_set.values()) if self.range_key_attr else [hash_set]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            arguments = signature.bind(self, *args, **kwargs).arguments
        except TypeError:
            return original_query(self, *args, **kwargs)
        if arguments.get("index_name") or arguments.get("hash_key") is None or not isinstance(self.items, dict):
            return original_query(self, *args, **kwargs)
        current.partition = (self, arguments["hash_key"])
        try:
            return original_query(self, *args, **kwargs)
        finally:
            current.partition = None

    Table.all_items = all_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    Table._flagbridge_partition_query = True  # type: ignore[attr-defined]
    return True


_backing_up = threading.local()
"""Set while a transaction runs under :func:`speed_up_moto_transactions`: moto's table copy is skipped then."""


class _TablesNotCopied:
    """Stands in for the ``copy`` module inside moto's DynamoDB models: a Table is not copied during a transaction
    that backs up its items itself; everything else is the real ``copy``."""

    def __init__(self, real_copy: Any) -> None:
        self._real_copy = real_copy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real_copy, name)

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        if getattr(_backing_up, "active", False) and isinstance(value, Table):
            return value
        return self._real_copy.deepcopy(value, memo)


def _saved_items(backend: Any, transact_items: Any, real_copy: Any) -> list[tuple[Any, Any, Any, Any]] | None:
    """(table, hash key, range key, a copy of the item or None) for every item the transaction names; None when a
    key cannot be read (moto then reports the malformed request itself)."""
    saved = []
    try:
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op["Key"] if op_type != "Put" else _key_of(table, op["Item"])
            hash_key, range_key = backend.get_keys_value(table, key)
            item = table.get_item(hash_key, range_key)
            saved.append((table, hash_key, range_key, None if item is None else real_copy.deepcopy(item)))
    except Exception:
        return None
    return saved


def _key_of(table: Any, item: dict[str, Any]) -> dict[str, Any]:
    key = {table.hash_key_attr: item[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = item[table.range_key_attr]
    return key


def _restore(saved: list[tuple[Any, Any, Any, Any]]) -> None:
    for table, hash_key, range_key, item in reversed(saved):
        if item is None:
            table.delete_item(hash_key, range_key)
        elif range_key is not None:
            table.items[hash_key][range_key] = item
        else:
            table.items[hash_key] = item


def speed_up_moto_transactions() -> bool:
    """Make moto's DynamoDB ``TransactWriteItems`` back up the items it names instead of whole tables.

    moto 5 deep-copies every table a transaction touches, once per item of the transaction, to roll back when a
    condition fails: a transaction of 100 ledger claims on a table of 10,000 items copies a million items, so each
    delivery got slower as the ledgers grew (8 s per Split batch after ~2,000 events). A transaction can only change
    the items it names, so saving those (a deep copy each, taken under :data:`local.moto_isolation.LOCK`, the lock
    every item operation holds) and putting them back on any failure restores exactly the same state; moto's own
    table copy then becomes the table itself, so its rollback is a no-op. When an item's key cannot be read (a
    malformed request) moto's own backup is used, so its errors are unchanged. Returns whether it is active.
    """
    try:
        import moto.dynamodb.models as dynamodb_models
        from moto.dynamodb.models import DynamoDBBackend
    except ImportError:
        return False
    if getattr(DynamoDBBackend, "_flagbridge_item_backup", False):
        return True
    real_copy = getattr(dynamodb_models, "copy", None)
    original = getattr(DynamoDBBackend, "transact_write_items", None)
    if real_copy is None or original is None or not hasattr(DynamoDBBackend, "get_keys_value"):
        return False
    from local.moto_isolation import LOCK

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        with LOCK:
            saved = _saved_items(self, transact_items, real_copy)
            if saved is None:
                return original(self, transact_items)
            _backing_up.active = True
            try:
                return original(self, transact_items)
            except BaseException:
                _restore(saved)
                raise
            finally:
                _backing_up.active = False

    dynamodb_models.copy = _TablesNotCopied(real_copy)  # type: ignore[assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    DynamoDBBackend._flagbridge_item_backup = True  # type: ignore[attr-defined]
    DynamoDBBackend._flagbridge_moto_transact = original  # type: ignore[attr-defined]  # tests of moto's own path
    dynamodb_models._flagbridge_moto_copy = real_copy  # type: ignore[attr-defined]
    return True
