"""Two speed-ups of moto internals for the embedded server (results unchanged; see each function for why it is
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
