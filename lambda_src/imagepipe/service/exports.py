"""CSV exports of every job matching History's filters, produced by the processor into the
destination bucket and handed over as a presigned download.

``POST /exports`` records the export (``pk = EXPORT#{id}``, ``sk = EXPORT``) with the number of
rows the rollups expect, and queues ``{"type": "export", "export_id"}``. The processor reads the
matching jobs page by page (``joblist.list_jobs_where``) and writes them as one S3 multipart
upload under ``outputs/_exports/``; after every part (≥ 5 MiB) the export item records the part
list, the rows written and the job-list cursor after the last row, so progress is visible and a
slice that runs out of time (``SLICE_S``) re-queues the export and the next one carries on from
the last part. ``GET /exports/{id}`` answers the progress and, once done, a presigned GET.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from time import monotonic
from typing import Any

from pydantic import Field, StrictStr

from imagepipe.errors import NotFound
from imagepipe.service import rollups
from imagepipe.service.awserrors import translate_aws_errors
from imagepipe.service.backend import Backend
from imagepipe.service.joblist import list_jobs_where
from imagepipe.service.records import now_iso
from imagepipe.service.requests import RequestBody, parse_body
from imagepipe.service.stats import FILTERS, MAX_DAYS, matches, parse_filters

logger = logging.getLogger(__name__)

#: seconds one processor invocation spends on an export before re-queueing the rest
SLICE_S = 8.0
PART_BYTES = 5 * 1024 * 1024  # S3's minimum part size (all parts but the last)
PAGE = 100
EXPORT_DIR = "_exports"
COLUMNS = ["job_id", "image_id", "filename", "created_at", "finished_at", "status", "preset", "arrival",
           "format", "bytes_in", "bytes_out", "compression_ratio", "bits_per_pixel", "ssim", "psnr",
           "ssimulacra2", *[f"ms_{s}" for s in rollups.STAGES], "error_code", "error_message", "attempts"]


class ExportRequest(RequestBody):
    """``POST /exports``: the History filters, as in ``GET /stats`` (comma-separated lists)."""

    from_: StrictStr | None = Field(default=None, alias="from", max_length=10)
    to: StrictStr | None = Field(default=None, max_length=10)
    status: StrictStr | None = Field(default=None, max_length=2000)
    format: StrictStr | None = Field(default=None, max_length=2000)
    preset: StrictStr | None = Field(default=None, max_length=5000)
    arrival: StrictStr | None = Field(default=None, max_length=2000)


def _key(export_id: str) -> dict[str, str]:
    return {"pk": f"EXPORT#{export_id}", "sk": "EXPORT"}


def csv_row(job: dict[str, Any]) -> list[Any]:
    """One job as a CSV row (``COLUMNS``)."""
    result = job.get("result") or {}
    timings = result.get("timings_ms") or {}
    error = job.get("error") or {}
    return [job.get("job_id"), job.get("image_id"), job.get("filename"), job.get("created_at"),
            job.get("finished_at"), job.get("status"), job.get("preset") or rollups.NO_PRESET,
            job.get("arrival") or "presigned",
            job.get("out_format") or (result.get("format") or "").lower(),
            result.get("original_bytes"), result.get("bytes"), result.get("compression_ratio"),
            result.get("bits_per_pixel"), result.get("ssim"), result.get("psnr"), result.get("ssimulacra2"),
            *[timings.get(s) for s in rollups.STAGES], error.get("code"), error.get("message"),
            job.get("attempts")]


def _csv(rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


@translate_aws_errors
def create_export(backend: Backend, raw_body: str | bytes | None) -> dict[str, Any]:
    """``POST /exports`` → the export's record (``queued``) with the rows the rollups expect."""
    req: ExportRequest = parse_body(ExportRequest, raw_body or "{}")
    query = {k: v for k, v in req.model_dump(by_alias=True).items() if v is not None}
    day_from, day_to, filters = parse_filters(query, default_days=MAX_DAYS)
    totals = rollups.read(backend.records.table, day_from, day_to).totals
    expected = sum(c["n"] for d, c in totals.items() if matches(d, filters))
    export_id = uuid.uuid4().hex
    cfg = backend.config
    item = {
        **_key(export_id), "export_id": export_id, "status": "queued", "created_at": now_iso(),
        "from": day_from, "to": day_to, "filters": json.dumps({k: sorted(v) for k, v in filters.items()}),
        "key": f"{cfg.output_prefix}{EXPORT_DIR}/{export_id}.csv", "rows": 0, "expected_rows": expected,
        "parts": "[]", "cursor": None, "upload_id": None, "bytes": 0,
    }
    backend.records.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
    backend.enqueue(json.dumps({"type": "export", "export_id": export_id}))
    return present(backend, item)


def present(backend: Backend, item: dict[str, Any]) -> dict[str, Any]:
    """An export as the API answers it: progress, and a presigned GET once it succeeded."""
    rows = max(int(item.get("rows") or 0), int(item.get("seen") or 0))
    expected = int(item.get("expected_rows") or 0)
    done = item.get("status") == "succeeded"
    out = {
        "export_id": item["export_id"], "status": item["status"], "created_at": item.get("created_at"),
        "finished_at": item.get("finished_at"), "from": item.get("from"), "to": item.get("to"),
        "filters": json.loads(item.get("filters") or "{}"), "rows": rows, "expected_rows": expected,
        "progress": 1.0 if done else (min(0.99, rows / expected) if expected else 0.0),
        "bytes": int(item.get("bytes") or 0), "download_url": None, "error": item.get("error"),
    }
    if done:
        out["download_url"] = backend.storage.presign_download(
            backend.config.dest_bucket, item["key"], f"imagepipe-jobs-{item['from']}-{item['to']}.csv")
    return out


@translate_aws_errors
def get_export(backend: Backend, export_id: str) -> dict[str, Any]:
    """``GET /exports/{id}``."""
    if not export_id.isalnum() or len(export_id) != 32:
        raise NotFound(f"no export {export_id!r}")
    item = backend.records.table.get_item(Key=_key(export_id), ConsistentRead=True).get("Item")
    if item is None:
        raise NotFound(f"no export {export_id!r}")
    return present(backend, item)


@translate_aws_errors
def run_export(backend: Backend, export_id: str, slice_s: float = SLICE_S) -> str:
    """Write the export's CSV for up to ``slice_s`` seconds from where it stopped: ``succeeded``,
    ``continued`` (re-queued after its last complete part) or ``skipped`` (done or unknown)."""
    table, s3, cfg = backend.records.table, backend.clients.s3, backend.config
    item = table.get_item(Key=_key(export_id), ConsistentRead=True).get("Item")
    if item is None or item["status"] in ("succeeded", "failed"):
        return "skipped"
    started = monotonic()
    filters = {k: frozenset(v) for k, v in json.loads(item["filters"]).items() if k in FILTERS}
    parts: list[dict[str, Any]] = json.loads(item.get("parts") or "[]")
    upload_id = item.get("upload_id")
    if upload_id is None:
        upload_id = s3.create_multipart_upload(Bucket=cfg.dest_bucket, Key=item["key"],
                                               ContentType="text/csv; charset=utf-8")["UploadId"]
    rows, written, cursor = int(item.get("rows") or 0), int(item.get("bytes") or 0), item.get("cursor")
    pending: list[bytes] = [] if parts else [_csv([COLUMNS])]
    pending_rows = 0
    while True:
        jobs, cursor = list_jobs_where(table, PAGE, cursor, item["from"], item["to"], filters)
        pending.append(_csv([csv_row(j) for j in jobs]))
        pending_rows += len(jobs)
        size = sum(len(p) for p in pending)
        last = cursor is None
        if size >= PART_BYTES or last:
            body = b"".join(pending)
            number = len(parts) + 1
            etag = s3.upload_part(Bucket=cfg.dest_bucket, Key=item["key"], UploadId=upload_id,
                                  PartNumber=number, Body=body)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
            rows, written, pending, pending_rows = rows + pending_rows, written + len(body), [], 0
            state = {":p": json.dumps(parts), ":c": cursor, ":u": upload_id, ":r": rows, ":b": written,
                     ":s": "running"}
            if last:
                s3.complete_multipart_upload(Bucket=cfg.dest_bucket, Key=item["key"], UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
                state[":s"] = "succeeded"
            expr = "SET parts = :p, #c = :c, upload_id = :u, #r = :r, #b = :b, #s = :s, updated_at = :t"
            expr += ", finished_at = :t" if last else ""
            table.update_item(Key=_key(export_id), UpdateExpression=expr,
                              ExpressionAttributeNames={"#c": "cursor", "#r": "rows", "#b": "bytes",
                                                        "#s": "status"},
                              ExpressionAttributeValues={**state, ":t": now_iso()})
            if last:
                return "succeeded"
            if monotonic() - started > slice_s:
                backend.enqueue(json.dumps({"type": "export", "export_id": export_id}))
                return "continued"
        elif pending_rows % 1000 < PAGE:  # progress between parts (``rows`` moves with the parts)
            table.update_item(Key=_key(export_id), UpdateExpression="SET #s = :s, seen = :r, upload_id = :u",
                              ExpressionAttributeNames={"#s": "status"},
                              ExpressionAttributeValues={":s": "running", ":r": rows + pending_rows,
                                                         ":u": upload_id})
