"""Sweeps on the service: ``POST /sweeps``, ``GET /sweeps[/{id}]`` and the fan-out parts.

One sweep = one image × a grid (``imagepipe.core.sweep``). The API stores a sweep item and
sends one ``{"type": "sweep_part", "sweep_id", "image_id", "part"}`` message per part (one per
format, long formats in chunks), so on AWS the parts run on parallel processor invocations and
locally on the worker pool. Each part decodes + resizes the original once, encodes and measures
its cells, stores every variant in the destination bucket under
``outputs/{image_id}/sweeps/{sweep_id}/{label}.{ext}`` and writes its points as its own item
(a part holds at most ``MAX_PART_CELLS`` points, far below DynamoDB's 400 KB item limit).

DynamoDB items (pk ``IMAGE#{image_id}``):

- sweep: sk ``SWEEP#{sweep_id}``, gsi1 ``SWEEPS`` / ``{created_at}#{sweep_id}``; grid, resize,
  ``parts_total``, string sets ``done_parts`` / ``failed_parts`` (ADD is idempotent, so a
  redelivered part never counts twice), status ``queued → running → succeeded | failed``;
- part: sk ``SWEEP#{sweep_id}#PART#{nnn}``; ``points`` or ``error``.

A sweep is ``succeeded`` when every part succeeded, ``failed`` when every part finished and at
least one failed (the other parts' points are still returned, with ``failed_parts`` and each
part's error).
"""

from __future__ import annotations

import logging
import re
import uuid
from functools import lru_cache
from time import perf_counter
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from pydantic import Field, StrictStr

from imagepipe.core.budget import Budget
from imagepipe.core.limits import Limits
from imagepipe.core.recipe import parse_recipe
from imagepipe.core.sweep import Cell, Grid, parse_grid, plan_parts, sweep_recipe
from imagepipe.errors import ImagePipeError, InternalError, NotFound, RetriesExhausted
from imagepipe.service.awserrors import translate_aws_errors
from imagepipe.service.backend import Backend
from imagepipe.service.images import uploaded_image
from imagepipe.service.messages import SweepPartMessage, sweep_part_message
from imagepipe.service.messages import parse_body as parse_queue_body
from imagepipe.service.records import (
    IMAGE_ID_RE,
    TERMINAL,
    conditional_failed,
    decode_cursor,
    encode_cursor,
    now_iso,
    public,
    query_all,
    to_dynamo,
)
from imagepipe.service.requests import RequestBody, page_params, parse_body

logger = logging.getLogger(__name__)

SWEEP_ID_RE = re.compile(r"^([0-9a-f]{32})-sw([0-9a-f]{14})$")
#: the sweep attributes a listing returns (no points: those live in the part items)
LIST_FIELDS = ("sweep_id", "image_id", "status", "grid", "resize", "parts_total", "cells_total", "created_at",
               "started_at", "finished_at", "done_parts", "failed_parts", "filename")


class SweepRequest(RequestBody):
    """``POST /sweeps``."""

    image_id: StrictStr = Field(min_length=1, max_length=100)
    grid: dict[str, Any]
    resize: dict[str, Any] | None = None


def new_sweep_id(image_id: str) -> str:
    """``{image_id}-sw{14 hex}``: the image id inside makes ``GET /sweeps/{id}`` one GetItem."""
    return f"{image_id}-sw{uuid.uuid4().hex[:14]}"


def split_sweep_id(sweep_id: str) -> str | None:
    """The image id inside ``sweep_id`` or ``None`` when malformed."""
    m = SWEEP_ID_RE.match(sweep_id or "")
    return m.group(1) if m else None


def _part_name(i: int) -> str:
    return f"p{i:03d}"


def variant_key(backend: Backend, image_id: str, sweep_id: str, point: dict[str, Any]) -> str:
    """Where a sweep variant is stored in the destination bucket."""
    return f"{backend.config.output_prefix}{image_id}/sweeps/{sweep_id}/{point['label']}.{point['extension']}"


class SweepStore:
    """Sweep and part items in the metadata table."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @staticmethod
    def key(sweep_id: str) -> dict[str, str]:
        image_id = split_sweep_id(sweep_id)
        if image_id is None:
            raise NotFound(f"no sweep {sweep_id!r}")
        return {"pk": f"IMAGE#{image_id}", "sk": f"SWEEP#{sweep_id}"}

    @translate_aws_errors
    def create(self, sweep: dict[str, Any]) -> None:
        item = {**to_dynamo(sweep), "status": "queued", **self.key(sweep["sweep_id"]),
                "gsi1pk": "SWEEPS", "gsi1sk": f"{sweep['created_at']}#{sweep['sweep_id']}"}
        self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")

    @translate_aws_errors
    def get(self, sweep_id: str) -> dict[str, Any] | None:
        if split_sweep_id(sweep_id) is None:
            return None
        item = self.table.get_item(Key=self.key(sweep_id), ConsistentRead=True).get("Item")
        return _sweep_public(item)

    @translate_aws_errors
    def parts(self, sweep_id: str) -> list[dict[str, Any]]:
        """Every part item of a sweep, in part order."""
        k = self.key(sweep_id)
        cond = Key("pk").eq(k["pk"]) & Key("sk").begins_with(f"{k['sk']}#PART#")
        items = query_all(self.table, KeyConditionExpression=cond, ConsistentRead=True)
        return sorted((public(i) or {} for i in items), key=lambda p: p.get("part", 0))

    @translate_aws_errors
    def part_done(self, sweep_id: str, part: int) -> bool:
        """Whether the part already has a finished item (a redelivered message)."""
        k = self.key(sweep_id)
        item = self.table.get_item(Key={"pk": k["pk"], "sk": f"{k['sk']}#PART#{_part_name(part)}"},
                                   ConsistentRead=True).get("Item")
        return bool(item and item.get("status") in TERMINAL)

    @translate_aws_errors
    def mark_running(self, sweep_id: str) -> None:
        try:
            self.table.update_item(
                Key=self.key(sweep_id), UpdateExpression="SET #s = :running, started_at = :t",
                ConditionExpression="#s = :queued", ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":running": "running", ":queued": "queued", ":t": now_iso()})
        except ClientError as exc:
            if not conditional_failed(exc):
                raise

    @translate_aws_errors
    def finish_part(self, sweep_id: str, part: int, status: str, payload: dict[str, Any]) -> str:
        """Write the part item, count it (idempotently) and close the sweep when it was the last.
        Returns the sweep's status afterwards (``missing`` when the sweep is gone)."""
        k = self.key(sweep_id)
        name = _part_name(part)
        fields = {**payload, "part": part, "finished_at": now_iso()}
        names = {"#st": "status", **{f"#f{i}": key for i, key in enumerate(fields)}}
        values = {":st": status, **{f":v{i}": to_dynamo(v) for i, v in enumerate(fields.values())}}
        kwargs: dict[str, Any] = {
            # UpdateItem (not PutItem): creates the part item and is all the reconciler may call
            "Key": {"pk": k["pk"], "sk": f"{k['sk']}#PART#{name}"},
            "UpdateExpression": "SET #st = :st, " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
        }
        if status != "succeeded":  # a failure never overwrites a part that succeeded (late DLQ report)
            kwargs["ConditionExpression"] = "attribute_not_exists(pk) OR #st <> :ok"
            values[":ok"] = "succeeded"
        try:
            self.table.update_item(ExpressionAttributeNames=names, ExpressionAttributeValues=values, **kwargs)
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            return str((self.get(sweep_id) or {}).get("status"))
        attr = "done_parts" if status == "succeeded" else "failed_parts"
        try:
            resp = self.table.update_item(
                Key=k, UpdateExpression=f"ADD {attr} :p", ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":p": {name}}, ReturnValues="ALL_NEW")
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            return "missing"  # the sweep was deleted (with its image) while the part ran
        sweep = resp["Attributes"]
        done, failed = set(sweep.get("done_parts") or ()), set(sweep.get("failed_parts") or ())
        if len(done | failed) < int(sweep["parts_total"]):
            return str(sweep.get("status"))
        final = "succeeded" if not failed else "failed"
        try:
            self.table.update_item(
                Key=k, UpdateExpression="SET #s = :final, finished_at = :t",
                ConditionExpression="#s IN (:queued, :running)", ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":final": final, ":queued": "queued", ":running": "running",
                                           ":t": now_iso()})
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
        return final

    @translate_aws_errors
    def for_image(self, image_id: str) -> list[dict[str, Any]]:
        """Every sweep of one image, newest first (part items are filtered out)."""
        items = query_all(
            self.table,
            KeyConditionExpression=Key("pk").eq(f"IMAGE#{image_id}") & Key("sk").begins_with("SWEEP#"),
            FilterExpression=Attr("gsi1pk").eq("SWEEPS"),
            ProjectionExpression=", ".join(f"#p{i}" for i in range(len(LIST_FIELDS))),
            ExpressionAttributeNames={f"#p{i}": name for i, name in enumerate(LIST_FIELDS)},
        )
        out = [_sweep_public(i) or {} for i in items]
        return sorted(out, key=lambda s: (s.get("created_at", ""), s.get("sweep_id", "")), reverse=True)

    @translate_aws_errors
    def list(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        kwargs: dict[str, Any] = {"IndexName": "gsi1", "KeyConditionExpression": Key("gsi1pk").eq("SWEEPS"),
                                  "ScanIndexForward": False, "Limit": limit}
        if cursor:
            kwargs["ExclusiveStartKey"] = decode_cursor(cursor, "SWEEPS")
        resp = self.table.query(**kwargs)
        items = [_sweep_public(i) or {} for i in resp.get("Items", [])]
        return items, encode_cursor(resp.get("LastEvaluatedKey"))


def _sweep_public(item: dict[str, Any] | None) -> dict[str, Any] | None:
    out = public(item)
    if out is None:
        return None
    total = int(out.get("parts_total") or 0)
    done = sorted(out.pop("done_parts", None) or [])
    failed = sorted(out.pop("failed_parts", None) or [])
    out["progress"] = {"parts_total": total, "parts_done": len(done), "parts_failed": len(failed),
                       "fraction": round((len(done) + len(failed)) / total, 4) if total else 0.0}
    out["failed_parts"] = failed
    return out


def _store(backend: Backend) -> SweepStore:
    return SweepStore(backend.records.table)


# --- API ------------------------------------------------------------------------------------


def validated_resize(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The resize validated as the recipe's ``resize`` section (canonical form)."""
    if raw is None:
        return None
    return parse_recipe({"resize": raw}).model_dump(mode="json")["resize"]


def create_sweep(backend: Backend, raw_body: str | bytes | None) -> dict[str, Any]:
    """``POST /sweeps`` → 202 ``{sweep_id, status, parts, cells}``; one queue message per part."""
    req: SweepRequest = parse_body(SweepRequest, raw_body)
    grid = parse_grid(req.grid)
    resize = validated_resize(req.resize)
    image = uploaded_image(backend, req.image_id)
    return start_sweep(backend, image, grid, resize)


def start_sweep(backend: Backend, image: dict[str, Any], grid: Grid, resize: dict[str, Any] | None,
                study_id: str | None = None) -> dict[str, Any]:
    """Store a sweep of an uploaded ``image`` and queue its parts (``POST /sweeps`` and studies)."""
    parts = plan_parts(grid)
    sweep_id = new_sweep_id(image["image_id"])
    sweep = {
        "sweep_id": sweep_id,
        "image_id": image["image_id"],
        "source_key": image["key"],
        "filename": image.get("filename"),
        "grid": grid.to_dict(),
        "resize": resize,
        "parts_total": len(parts),
        "cells_total": len(grid.cells()),
        "created_at": now_iso(),
        **({"study_id": study_id} if study_id else {}),
    }
    store = _store(backend)
    store.create(sweep)
    for i in range(len(parts)):
        try:
            backend.enqueue(sweep_part_message(sweep_id, image["image_id"], i))
        except Exception as exc:  # unsent parts would never run: record them failed so the sweep closes
            err = exc if isinstance(exc, ImagePipeError) else InternalError(f"could not queue: {exc}")
            for unsent in range(i, len(parts)):
                store.finish_part(sweep_id, unsent, "failed",
                                  {"error": {"code": err.code, "message": err.message[:1000]},
                                   "format": parts[unsent][0].format})
            raise
    return {"sweep_id": sweep_id, "image_id": image["image_id"], "status": "queued",
            "parts": len(parts), "cells": sweep["cells_total"]}


def _cell_order(grid: dict[str, Any]) -> dict[str, int]:
    return {c.label(): i for i, c in enumerate(parse_grid(grid).cells())}


def get_sweep(backend: Backend, sweep_id: str) -> dict[str, Any]:
    """``GET /sweeps/{sweep_id}``: status, progress and every measured point (with a presigned
    ``download_url`` for its variant), in grid order; a failed part's error under ``errors``."""
    store = _store(backend)
    sweep = store.get(sweep_id)
    if sweep is None:
        raise NotFound(f"no sweep {sweep_id!r}")
    points: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for part in store.parts(sweep_id):
        if part.get("status") == "succeeded":
            points.extend(part.get("points") or [])
            skipped.extend(part.get("skipped") or [])
        elif part.get("error"):
            errors.append({"part": part.get("part"), **part["error"]})
    order = _cell_order(sweep["grid"])
    points.sort(key=lambda p: order.get(p.get("label", ""), 1 << 30))
    for p in points:
        if p.get("key"):
            p["download_url"] = backend.storage.presign_download(
                backend.config.dest_bucket, p["key"], p["key"].rsplit("/", 1)[-1])
    sweep["points"] = points
    sweep["errors"] = errors
    if skipped:  # cells a part had no time for (core/budget.py), each with its reason
        sweep["skipped"] = skipped
    sweep["progress"]["points"] = len(points)
    sweep["progress"]["cells_total"] = sweep.get("cells_total")
    return sweep


def list_sweeps(backend: Backend, query: dict[str, str] | None) -> dict[str, Any]:
    """``GET /sweeps`` newest first (without points); ``?image_id=`` lists one image's sweeps
    (newest first, at most ``limit``, no further pages)."""
    limit, cursor = page_params(query)
    image_id = (query or {}).get("image_id")
    if image_id:  # one image's sweeps: its partition, newest first, up to ``limit``
        if not IMAGE_ID_RE.match(image_id):
            raise NotFound(f"no image {image_id!r}")
        return {"items": _store(backend).for_image(image_id)[:limit], "next_cursor": None}
    items, next_cursor = _store(backend).list(limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


def fail_dead_letter(backend: Backend, body: str) -> list[str]:
    """For the reconciler: a dead-lettered ``sweep_part`` message marks its part failed
    (``retries_exhausted``) unless it finished; returns ``["{sweep_id}#p003", ...]`` marked."""
    try:
        work = parse_queue_body(body)
    except Exception:
        return []
    marked: list[str] = []
    store = _store(backend)
    for item in work:
        if not isinstance(item, SweepPartMessage) or split_sweep_id(item.sweep_id) is None:
            continue
        if store.get(item.sweep_id) is None or store.part_done(item.sweep_id, item.part):
            continue
        err = RetriesExhausted("the sweep part failed on every attempt (its message is dead-lettered)")
        store.finish_part(item.sweep_id, item.part, "failed",
                          {"error": {"code": err.code, "message": err.message}})
        marked.append(f"{item.sweep_id}#{_part_name(item.part)}")
    return marked


# --- the processor's part of the work ------------------------------------------------------


def run_sweep_part(backend: Backend, msg: SweepPartMessage, limits: Limits, *,
                   final_attempt: bool = False, budget: Budget | None = None) -> str:
    """Run one part: ``succeeded`` / ``failed`` (permanent error, recorded) / ``skipped``
    (already done: a duplicate delivery) / ``missing``; transient errors raise (redelivery),
    and on the final attempt the part is recorded failed with ``retries_exhausted`` first."""
    try:
        return _run_part(backend, msg, limits, budget)
    except Exception as exc:
        if final_attempt:
            err = RetriesExhausted(f"gave up after the final attempt: {exc}")
            try:
                _store(backend).finish_part(msg.sweep_id, msg.part, "failed",
                                            {"error": {"code": err.code, "message": err.message[:1000]}})
            except Exception:
                logger.exception("could not record sweep %s part %s failed", msg.sweep_id, msg.part)
        raise


@lru_cache(maxsize=1)
def _versions() -> dict[str, str | None]:
    """The codec and library versions that encoded a part (studies export them)."""
    from imagepipe.core.encode import codec_versions

    return codec_versions()


def _run_part(backend: Backend, msg: SweepPartMessage, limits: Limits, budget: Budget | None = None) -> str:
    from imagepipe.core.prepare import prepare
    from imagepipe.core.sweep import run_cells

    t0 = perf_counter()
    store = _store(backend)
    sweep = store.get(msg.sweep_id)
    if sweep is None or sweep.get("image_id") != msg.image_id:
        logger.warning("sweep %s no longer exists (image deleted?)", msg.sweep_id)
        return "missing"
    if sweep.get("status") in TERMINAL or store.part_done(msg.sweep_id, msg.part):
        return "skipped"
    grid = parse_grid(sweep["grid"])
    parts = plan_parts(grid)
    if not 0 <= msg.part < len(parts):
        logger.error("sweep %s has no part %s", msg.sweep_id, msg.part)
        return "missing"
    store.mark_running(msg.sweep_id)
    cells: list[Cell] = parts[msg.part]
    cfg = backend.config

    def keep(point: dict[str, Any], data: bytes) -> None:
        key = variant_key(backend, msg.image_id, msg.sweep_id, point)
        backend.storage.put_output(key, data, point["content_type"])
        point["key"] = key

    try:
        t = perf_counter()
        source = backend.storage.get_source(cfg.source_bucket, sweep["source_key"])
        download_ms = round((perf_counter() - t) * 1000.0, 3)
        t = perf_counter()
        try:
            prepared = prepare(source, sweep_recipe(sweep.get("resize")), limits)
            prepare_ms = round((perf_counter() - t) * 1000.0, 3)
            # cells the budget had no room for are reported (``skipped``, with the reason), not failed:
            # a part whose every cell was skipped still succeeds, with no points
            skipped: list[dict[str, Any]] = []
            points = run_cells(prepared, cells, on_variant=keep, metrics=grid.metrics, budget=budget,
                               skipped=skipped)
        except ImagePipeError:
            raise
        except Exception as exc:  # an engine bug must not loop through retries
            logger.exception("engine crashed on sweep %s part %s", msg.sweep_id, msg.part)
            raise InternalError(f"the engine failed unexpectedly: {type(exc).__name__}") from exc
    except ImagePipeError as exc:
        if not exc.permanent:
            raise
        after = store.finish_part(msg.sweep_id, msg.part, "failed",
                                  {"error": {"code": exc.code, "message": exc.message[:1000]},
                                   "format": cells[0].format})
        return "missing" if after == "missing" else "failed"
    after = store.finish_part(msg.sweep_id, msg.part, "succeeded", {
        "points": points, "format": cells[0].format, "encoder": cells[0].encoder_name,
        "versions": _versions(), **({"skipped": skipped} if skipped else {}),
        "timings_ms": {"download": download_ms, "prepare": prepare_ms,
                       "total": round((perf_counter() - t0) * 1000.0, 3)},
    })
    return "missing" if after == "missing" else "succeeded"
