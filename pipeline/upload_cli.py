"""``python -m pipeline upload FILES_OR_DIRS... [--preset NAME | --recipe FILE]``: send files and
folders through the API (presigned uploads, several at a time), wait for their jobs, print a
progress bar and a summary; exit 1 if any file failed, 2 on a usage error.

It talks to ``IMAGEPIPE_API_URL`` / ``IMAGEPIPE_API_KEY`` (or ``--api-url`` / ``--api-key``):
the local stack (``python -m pipeline serve`` prints both) or a deployed one alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pipeline  # noqa: F401  (puts lambda_src on sys.path)
from imagepipe.errors import ImagePipeError
from pipeline import cli_output
from pipeline.cli import discover
from pipeline.cli_args import UsageError, load_recipe_file
from pipeline.client import Client


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline upload",
        description="Upload image files and folders (recursive) through the ImagePipe API with presigned "
                    "uploads, processed with a preset or a recipe; exit 1 if any file failed.",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR",
                   help="files (any name) and folders (image files inside, recursively)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--preset", help="a preset name (GET /presets); default: the service's default preset")
    how.add_argument("--recipe", type=Path, help="a recipe JSON file (docs/architecture.md)")
    p.add_argument("--api-url", default=os.environ.get("IMAGEPIPE_API_URL"),
                   help="the API's base URL (default: IMAGEPIPE_API_URL)")
    p.add_argument("--api-key", default=os.environ.get("IMAGEPIPE_API_KEY"),
                   help="the API key (default: IMAGEPIPE_API_KEY)")
    p.add_argument("-j", "--jobs", type=int, default=4, help="uploads in flight at once (default 4)")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="do not wait for the jobs: a file counts as done once uploaded")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each job (default 300)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no per-file table")
    return p


def upload_one(client: Client, path: Path, recipe: dict[str, Any] | None, preset: str,
               wait: bool, timeout: float) -> dict[str, Any]:
    """Upload one file (and wait for its job): a record with ``status`` ``ok`` or ``failed``."""
    started = time.perf_counter()
    rec: dict[str, Any] = {"input": str(path)}
    try:
        up = client.upload(path, recipe=recipe, preset=preset)
        rec.update(image_id=up["image_id"], job_id=up.get("job_id"), bytes=up["bytes"])
        if wait and up.get("job_id"):
            job = client.wait(up["job_id"], timeout=timeout)
            result = job.get("result") or {}
            rec.update(job_status=job["status"], output_bytes=result.get("bytes"),
                       format=result.get("format"))
            if job["status"] == "failed":
                rec.update(status="failed",
                           error=job.get("error") or {"code": "internal_error", "message": ""})
                return rec
        rec["status"] = "ok"
    except ImagePipeError as exc:
        rec.update(status="failed", error={"code": exc.code, "message": exc.message})
    except OSError as exc:
        rec.update(status="failed", error={"code": "unreadable", "message": str(exc)})
    finally:
        rec["elapsed_ms"] = (time.perf_counter() - started) * 1000
    return rec


def _rows(records: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in records:
        if r["status"] == "ok":
            out = f"{r['output_bytes'] / 1024:.1f}" if isinstance(r.get("output_bytes"), int) else ""
            rows.append([r["input"], "ok", f"{r['bytes'] / 1024:.1f}", out, (r.get("format") or "").lower(),
                         r.get("image_id", ""), ""])
        else:
            err = r.get("error") or {}
            rows.append([r["input"], f"FAILED {err.get('code')}", "", "", "", r.get("image_id", ""),
                         str(err.get("message", ""))[:120]])
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.api_url or not args.api_key:
            raise UsageError("no API: set IMAGEPIPE_API_URL and IMAGEPIPE_API_KEY (python -m pipeline serve "
                             "prints them), or pass --api-url and --api-key")
        files = discover(args.inputs, Path(os.devnull))
        if not files:
            raise UsageError("no image files found in the given folders")
        recipe = load_recipe_file(args.recipe) if args.recipe else None
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with Client(args.api_url, args.api_key, timeout=60) as client:
        preset = args.preset
        try:
            if recipe is None and preset is None:
                preset = client.presets()["default"]
            elif preset is not None and preset not in {p["name"] for p in client.presets()["items"]}:
                print(f"error: unknown preset {preset!r}; GET /presets lists them", file=sys.stderr)
                return 2
        except ImagePipeError as exc:
            print(f"error: cannot reach the API at {args.api_url}: {exc.code}: {exc.message}",
                  file=sys.stderr)
            return 1
        started = time.perf_counter()
        progress = cli_output.Progress(len(files), enabled=None if not args.quiet else False)
        records: list[dict[str, Any]] = []
        try:
            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                futures = [pool.submit(upload_one, client, f, recipe, preset, args.wait, args.timeout)
                           for f in files]
                for fut in as_completed(futures):
                    rec = fut.result()
                    records.append(rec)
                    progress.advance(rec["status"] == "ok", Path(rec["input"]).name)
        finally:
            progress.close()
    wall = time.perf_counter() - started
    order = {str(f): i for i, f in enumerate(files)}
    records.sort(key=lambda r: order[r["input"]])
    failed = sum(r["status"] != "ok" for r in records)
    if not args.quiet:
        header = ["file", "status", "KiB", "out KiB", "format", "image_id", "error"]
        print(cli_output.format_table(header, _rows(records)))
    how = f"preset {preset!r}" if recipe is None else f"recipe {args.recipe}"
    print(f"{len(records) - failed} of {len(records)} uploaded"
          f"{' and processed' if args.wait else ''} with {how} in {wall:.1f} s; {failed} failed")
    return 1 if failed else 0
