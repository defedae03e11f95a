"""Corpus studies on the service: ``POST /studies``, ``GET /studies[/{id}]``.

A study = N uploaded images × one grid. ``POST /studies`` checks every image first (404 / 409
before anything is created), then starts **one ordinary sweep per image** (``sweeps.start_sweep``:
the same fan-out, parts, storage and retries as ``POST /sweeps``; each sweep item carries the
``study_id``) and stores the study item. ``GET /studies/{id}`` reads the sweeps' items, sums
their progress and aggregates the points of every finished sweep with ``core/study.py``:
rate–distortion curves per encoder and bytes saved against the baseline at equal SSIMULACRA2
and SSIM with a bootstrap 95% interval over the images. The codec and library versions that
encoded the parts (recorded by each part) are returned with it.

DynamoDB: pk ``STUDY#{study_id}``, sk ``STUDY``, gsi1 ``STUDIES`` / ``{created_at}#{study_id}``;
``image_ids``, ``sweep_ids``, ``grid``, ``resize``, ``baseline``, ``name``. Deleting an image
deletes its sweep; the study then lists that image as ``missing``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from boto3.dynamodb.conditions import Key
from pydantic import Field, StrictStr

from imagepipe.core.study import aggregate
from imagepipe.core.sweep import Grid, canonical_encoder, parse_grid
from imagepipe.errors import InvalidRecipe, NotFound
from imagepipe.service.awserrors import translate_aws_errors
from imagepipe.service.backend import Backend
from imagepipe.service.images import uploaded_image
from imagepipe.service.records import TERMINAL, decode_cursor, encode_cursor, now_iso, public, to_dynamo
from imagepipe.service.requests import RequestBody, page_params, parse_body
from imagepipe.service.sweeps import SweepStore, start_sweep, validated_resize

STUDY_ID_RE = re.compile(r"^st[0-9a-f]{16}$")
MAX_IMAGES = 50
#: what each point keeps in a study answer (no keys or URLs: the sweeps have those)
POINT_FIELDS = ("label", "encoder", "format", "quality", "bytes", "bpp", "ssim", "psnr", "ssimulacra2",
                "encode_ms", "width", "height")


class StudyRequest(RequestBody):
    """``POST /studies``."""

    image_ids: list[StrictStr] = Field(min_length=1, max_length=MAX_IMAGES)
    grid: dict[str, Any]
    resize: dict[str, Any] | None = None
    baseline: StrictStr = "jpeg:turbo"
    name: StrictStr | None = Field(default=None, max_length=200)


def _bad(field: str, message: str) -> InvalidRecipe:
    return InvalidRecipe(f"invalid study: {field}: {message}", details=[{"field": field, "message": message}])


def study_grid(raw: dict[str, Any]) -> Grid:
    """The sweep grid of a study: no codec ``option`` (a study compares encoders), and
    SSIMULACRA2 always measured (the study's main score)."""
    if isinstance(raw, dict) and raw.get("option") is not None:
        raise _bad("grid.option", "a study compares encoders; sweep one image to vary an option")
    grid = parse_grid(raw)  # every malformed grid (metrics included) is refused here, typed
    if "ssimulacra2" not in grid.metrics:
        grid = parse_grid({**raw, "metrics": [*(raw.get("metrics") or []), "ssimulacra2"]})
    return grid


class StudyStore:
    """Study items in the metadata table."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @staticmethod
    def key(study_id: str) -> dict[str, str]:
        return {"pk": f"STUDY#{study_id}", "sk": "STUDY"}

    @translate_aws_errors
    def create(self, study: dict[str, Any]) -> None:
        item = {**to_dynamo(study), **self.key(study["study_id"]), "gsi1pk": "STUDIES",
                "gsi1sk": f"{study['created_at']}#{study['study_id']}"}
        self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")

    @translate_aws_errors
    def get(self, study_id: str) -> dict[str, Any] | None:
        if not STUDY_ID_RE.match(study_id or ""):
            return None
        return public(self.table.get_item(Key=self.key(study_id), ConsistentRead=True).get("Item"))

    @translate_aws_errors
    def list(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        kwargs: dict[str, Any] = {"IndexName": "gsi1", "KeyConditionExpression": Key("gsi1pk").eq("STUDIES"),
                                  "ScanIndexForward": False, "Limit": limit}
        if cursor:
            kwargs["ExclusiveStartKey"] = decode_cursor(cursor, "STUDIES")
        resp = self.table.query(**kwargs)
        return [public(i) or {} for i in resp.get("Items", [])], encode_cursor(resp.get("LastEvaluatedKey"))


def create_study(backend: Backend, raw_body: str | bytes | None) -> dict[str, Any]:
    """``POST /studies`` → 202 ``{study_id, status, sweeps, images, cells}``."""
    req: StudyRequest = parse_body(StudyRequest, raw_body)
    if len(set(req.image_ids)) != len(req.image_ids):
        raise _bad("image_ids", "duplicate image id")
    grid = study_grid(req.grid)
    baseline = canonical_encoder(req.baseline)
    encoders = [canonical_encoder(f) for f in grid.formats]
    if baseline not in encoders:
        raise _bad("baseline", f"{req.baseline!r} is not among the grid's formats {list(grid.formats)}")
    resize = validated_resize(req.resize)
    images = [uploaded_image(backend, i) for i in req.image_ids]  # every 404 / 409 before any work
    study_id = f"st{uuid.uuid4().hex[:16]}"
    sweeps = [start_sweep(backend, im, grid, resize, study_id=study_id) for im in images]
    study = {"study_id": study_id, "name": req.name, "image_ids": [im["image_id"] for im in images],
             "filenames": [im.get("filename") for im in images], "sweep_ids": [s["sweep_id"] for s in sweeps],
             "grid": grid.to_dict(), "resize": resize, "baseline": baseline, "created_at": now_iso()}
    StudyStore(backend.records.table).create(study)
    return {"study_id": study_id, "status": "queued", "sweeps": study["sweep_ids"], "images": len(images),
            "cells": sum(s["cells"] for s in sweeps)}


def _status(statuses: list[str]) -> str:
    if all(s in TERMINAL or s == "missing" for s in statuses):
        return "succeeded" if all(s == "succeeded" for s in statuses) else "failed"
    return "queued" if all(s == "queued" for s in statuses) else "running"


def get_study(backend: Backend, study_id: str) -> dict[str, Any]:
    """``GET /studies/{id}``: progress, per-image points, the aggregate (``summary``) over the
    images whose sweep succeeded, and the codec ``versions`` that encoded them."""
    study = StudyStore(backend.records.table).get(study_id)
    if study is None:
        raise NotFound(f"no study {study_id!r}")
    store = SweepStore(backend.records.table)
    images: list[dict[str, Any]] = []
    per_image: dict[str, list[dict[str, Any]]] = {}
    versions: list[dict[str, Any]] = []
    totals = {"parts_total": 0, "parts_done": 0, "parts_failed": 0}
    filenames = study.get("filenames") or [None] * len(study["image_ids"])
    for image_id, sweep_id, filename in zip(study["image_ids"], study["sweep_ids"], filenames, strict=True):
        sweep = store.get(sweep_id)
        if sweep is None:
            images.append({"image_id": image_id, "sweep_id": sweep_id, "filename": filename,
                           "status": "missing", "points": [], "errors": []})
            continue
        points: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for part in store.parts(sweep_id):
            if part.get("status") == "succeeded":
                points.extend({k: p.get(k) for k in POINT_FIELDS} for p in part.get("points") or [])
                if part.get("versions") and part["versions"] not in versions:
                    versions.append(part["versions"])
            elif part.get("error"):
                errors.append({"part": part.get("part"), **part["error"]})
        for k in totals:
            totals[k] += int(sweep["progress"][k])
        if sweep["status"] == "succeeded":
            per_image[image_id] = points
        images.append({"image_id": image_id, "sweep_id": sweep_id, "filename": filename,
                       "status": sweep["status"], "progress": sweep["progress"], "points": points,
                       "errors": errors})
    statuses = [im["status"] for im in images]
    done = totals["parts_done"] + totals["parts_failed"]
    study.update({
        "status": _status(statuses),
        "progress": {**totals,
                     "fraction": round(done / totals["parts_total"], 4) if totals["parts_total"] else 1.0,
                     "images_total": len(images),
                     "images_done": sum(s in TERMINAL or s == "missing" for s in statuses),
                     "images_aggregated": len(per_image)},
        "images": images,
        "summary": aggregate(per_image, study["baseline"]),
        "versions": versions[0] if len(versions) == 1 else versions,
    })
    return study


def list_studies(backend: Backend, query: dict[str, str] | None) -> dict[str, Any]:
    """``GET /studies`` newest first (study items only, no aggregate)."""
    limit, cursor = page_params(query)
    items, next_cursor = StudyStore(backend.records.table).list(limit, cursor)
    return {"items": items, "next_cursor": next_cursor}
