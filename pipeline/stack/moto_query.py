"""DynamoDB ``Query`` in the emulator in time proportional to the partition, not the table.

moto 5 answers every ``Query`` by listing and sorting *every item of the table*
(``Table.all_items()``), then keeping the queried partition; a ``gsi1`` query sorts the
partition again. So each query cost O(N log N) in the table's size: History's rollup reads
(a few small partitions) took seconds once the table held 10,000 jobs, though DynamoDB
answers them in time proportional to what they return. Here, for the duration of one query:

- ``all_items()`` returns only the candidate items — the base table's partition
  (``Table.items[hash_key]``), or for an index the items whose index hash attribute has the
  queried value — in the order moto's own ``all_items()`` gives them;
- an index partition's sorted order (``sorted_items``) is kept until the table changes.

The rest of moto's query runs unchanged (range conditions, filters, paging, projection), so
answers are the same; ``tests/unit/test_moto_query.py`` compares them with moto's own after
writes of every kind. A per-table version, bumped by every write path (``Table.put_item``,
``Table.delete_item``, ``DynamoDBBackend.update_item``, a transaction's undo), invalidates the
cache. Queries on one table are serialized (moto's structures are not thread-safe anyway).
"""

from __future__ import annotations

import bisect
import functools
import threading
from typing import Any

_LOCK = threading.RLock()


def _version(table: Any) -> int:
    return getattr(table, "_ip_version", 0)


def bump(table: Any) -> None:
    """Mark ``table`` changed (drops its cached index partitions)."""
    with _LOCK:
        table._ip_version = _version(table) + 1
        table._ip_cache = {}


def install() -> None:
    """Patch moto's ``Table.query`` and the write paths that must invalidate its cache."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "_ip_original", None) is not None:
        return
    original_query = Table.query

    for cls, name in ((Table, "put_item"), (Table, "delete_item")):
        def wrapped(self: Any, *args: Any, _orig: Any = getattr(cls, name), **kwargs: Any) -> Any:
            bump(self)
            try:
                return _orig(self, *args, **kwargs)
            finally:
                bump(self)
        setattr(cls, name, functools.wraps(getattr(cls, name))(wrapped))

    backend_update = DynamoDBBackend.update_item

    @functools.wraps(backend_update)
    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        table = self.tables.get(table_name)
        if table is not None:
            bump(table)
        try:
            return backend_update(self, table_name, *args, **kwargs)
        finally:
            if table is not None:
                bump(table)

    DynamoDBBackend.update_item = update_item

    def candidates(self: Any, hash_key: Any, index_name: str | None,
                   hash_key_conditions: list[tuple[str, Any]] | None) -> list[Any] | None:
        """The items moto's query would keep, in ``all_items()`` order; None: not a case handled."""
        if not index_name:
            part = self.items.get(hash_key) if hash_key is not None else None
            if part is None:
                return []
            items = list(part.values()) if self.range_key_attr else [part]
            if self.range_key_attr:
                items.sort(key=lambda x: x.range_key)
            return items
        if not hash_key_conditions or len(hash_key_conditions) != 1:
            return None
        attr, value = hash_key_conditions[0]
        key = ("candidates", index_name, attr, value)
        cache = self.__dict__.setdefault("_ip_cache", {})
        if key not in cache:  # one pass over the table, then moto's own order for the few kept
            parts = self.items.values()
            kept = [i for part in parts for i in (part.values() if self.range_key_attr else [part])
                    if (v := i.attrs.get(attr)) is not None and v == value]
            kept.sort(key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)
            cache[key] = kept
        return cache[key]

    original_sorted = Table.sorted_items

    def window(self: Any, subset: list[Any], index_name: str, range_comparison: Any, range_objs: Any,
               limit: Any, exclusive_start_key: Any, scan_index_forward: Any) -> list[Any] | None:
        """For a ``Limit``-ed page of an index partition whose range keys are unique strings: the
        few items (ascending) the page can reach — the range condition's window (bisect), after
        the start key, ``limit + 1`` long. ``None``: a case left to moto's whole-partition walk."""
        if not limit or range_comparison not in (None, "BETWEEN"):
            return None
        ranges = [k["AttributeName"] for k in self.get_index(index_name).schema if k["KeyType"] == "RANGE"]
        if len(ranges) != 1 or any(o.type != "S" for o in range_objs or []):
            return None
        attr = ranges[0]
        cache = self.__dict__.setdefault("_ip_cache", {})
        okey = ("ordered", index_name, id(subset))
        if okey not in cache:
            items = [i for i in subset if (v := i.attrs.get(attr)) is not None and v.type == "S"]
            keys = [i.attrs[attr].value for i in items]
            order = sorted(range(len(items)), key=keys.__getitem__)
            items, keys = [items[k] for k in order], [keys[k] for k in order]
            unique = len(items) == len(subset) and len(set(keys)) == len(keys)
            cache[okey] = (items, keys) if unique else None
        found = cache[okey]
        if found is None:
            return None
        items, keys = found
        lo, hi = 0, len(items)
        if range_comparison == "BETWEEN":
            lo = bisect.bisect_left(keys, range_objs[0].value)
            hi = bisect.bisect_right(keys, range_objs[1].value)
        start = (exclusive_start_key or {}).get(attr)
        if start is not None:
            if "S" not in start:
                return None
            if scan_index_forward is False:
                hi = min(hi, bisect.bisect_left(keys, start["S"]))
            else:
                lo = max(lo, bisect.bisect_right(keys, start["S"]))
        n = int(limit) + 1
        return items[lo:min(hi, lo + n)] if scan_index_forward is not False else items[max(lo, hi - n):hi]

    @functools.wraps(original_query)
    def query(self: Any, hash_key: Any, range_comparison: Any, range_objs: Any, limit: Any,
              exclusive_start_key: Any, scan_index_forward: Any, projection_expressions: Any,
              index_name: str | None = None, consistent_read: bool = False, filter_expression: Any = None,
              hash_key_conditions: list[tuple[str, Any]] | None = None, range_key_conditions: Any = None,
              **filter_kwargs: Any) -> Any:
        def run() -> Any:
            return original_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                                  scan_index_forward, projection_expressions, index_name, consistent_read,
                                  filter_expression, hash_key_conditions=hash_key_conditions,
                                  range_key_conditions=range_key_conditions, **filter_kwargs)

        with _LOCK:
            subset = candidates(self, hash_key, index_name, hash_key_conditions)
            if subset is None:
                return run()
            cache = self.__dict__.setdefault("_ip_cache", {})
            if index_name:
                page = window(self, subset, index_name, range_comparison, range_objs, limit,
                              exclusive_start_key, scan_index_forward)
                if page is not None:  # moto walks, sorts and pages these few as it would the whole
                    self.all_items = lambda: list(page)
                    try:
                        return run()
                    finally:
                        del self.all_items

            def sorted_items(hash_attrs: Any, range_attrs: Any, results: list[Any]) -> list[Any]:
                ids = tuple(map(id, results))
                skey = ("sorted", index_name, tuple(hash_attrs), tuple(a or "" for a in range_attrs))
                hit = cache.get(skey)
                if hit is not None and hit[0] == ids:
                    return list(hit[1])
                out = original_sorted(self, hash_attrs, range_attrs, results)
                cache[skey] = (ids, list(out))
                return out

            self.all_items = lambda: list(subset)
            self.sorted_items = sorted_items
            try:
                return run()
            finally:
                del self.all_items
                del self.sorted_items

    query._ip_original = original_query  # type: ignore[attr-defined]
    Table.query = query
