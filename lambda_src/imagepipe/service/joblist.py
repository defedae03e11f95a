"""``GET /jobs`` with filters: newest first from ``gsi1``'s ``JOBS`` partition, the date range
as the key condition, status / output format / preset / way in as a filter, paginated with the
same opaque cursors as the unfiltered list (``records.encode_cursor``)."""

from __future__ import annotations

from functools import reduce
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key

from imagepipe.service.awserrors import translate_aws_errors
from imagepipe.service.records import Page, decode_cursor, encode_cursor, public
from imagepipe.service.rollups import NO_PRESET

#: DynamoDB reads per request at most: a rare filter returns a short page with a cursor
#: rather than reading the whole index in one request
MAX_READS = 20
READ_SIZE = 200


def _where(filters: dict[str, frozenset[str]]) -> ConditionBase | None:
    parts: list[ConditionBase] = []
    if "status" in filters:
        parts.append(Attr("status").is_in(sorted(filters["status"])))
    if "format" in filters:
        parts.append(Attr("out_format").is_in(sorted(filters["format"])))
    if "preset" in filters:
        named = sorted(filters["preset"] - {NO_PRESET})
        cond: ConditionBase | None = Attr("preset").is_in(named) if named else None
        if NO_PRESET in filters["preset"]:
            none = Attr("preset").not_exists() | Attr("preset").attribute_type("NULL")
            cond = none if cond is None else cond | none
        if cond is not None:
            parts.append(cond)
    if "arrival" in filters:
        cond = Attr("arrival").is_in(sorted(filters["arrival"]))
        if "presigned" in filters["arrival"]:
            cond = cond | Attr("arrival").not_exists()  # records from before arrivals were kept
        parts.append(cond)
    return reduce(lambda a, b: a & b, parts) if parts else None


@translate_aws_errors
def list_jobs_where(table: Any, limit: int, cursor: str | None, day_from: str, day_to: str,
                    filters: dict[str, frozenset[str]]) -> Page:
    """One page of the jobs created on ``day_from..day_to`` (UTC, inclusive) that pass
    ``filters``, newest first, and the next page's cursor (``None`` at the end)."""
    kwargs: dict[str, Any] = {
        "IndexName": "gsi1",
        "KeyConditionExpression": Key("gsi1pk").eq("JOBS") & Key("gsi1sk").between(day_from, day_to + "~"),
        "ScanIndexForward": False,
        "Limit": READ_SIZE,
    }
    where = _where(filters)
    if where is not None:
        kwargs["FilterExpression"] = where
    if cursor:
        kwargs["ExclusiveStartKey"] = decode_cursor(cursor, "JOBS")
    items: list[dict[str, Any]] = []
    for _ in range(MAX_READS):
        kwargs["Limit"] = READ_SIZE if where is not None else limit - len(items)
        resp = table.query(**kwargs)
        found = resp.get("Items", [])
        last = resp.get("LastEvaluatedKey")
        if len(items) + len(found) >= limit:
            kept = found[:limit - len(items)]
            items.extend(kept)
            more = len(found) > len(kept) or last is not None
            key = {k: kept[-1][k] for k in ("pk", "sk", "gsi1pk", "gsi1sk")}
            return [public(i) or {} for i in items], encode_cursor(key) if more else None
        items.extend(found)
        if last is None:
            return [public(i) or {} for i in items], None
        kwargs["ExclusiveStartKey"] = last
    return [public(i) or {} for i in items], encode_cursor(kwargs["ExclusiveStartKey"])
