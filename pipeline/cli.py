"""``python -m pipeline process INPUT... --out DIR``: the batch CLI on the Lambda's engine.

Files and folders (recursive) are processed in parallel worker processes with
``imagepipe.core.process``, exactly the code the processing Lambda runs. A bad file is
reported with its error code and skipped; the batch goes on. Exit status: 0 all ok, 1 any
file failed, 2 usage error (bad flags, bad recipe, missing input), 130 interrupted.

Outputs are ``{stem}.{ext}`` in ``--out``; stems are made unique within the batch (``photo``,
``photo-2``, ...), so two inputs never write the same file; a file left by an earlier run with the
same name is replaced (atomically: temp file + rename).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NoReturn

import pipeline  # noqa: F401  (puts lambda_src on sys.path)
from imagepipe.errors import ImagePipeError, InvalidRecipe, TooLarge, WorkerFailure
from pipeline import cli_output
from pipeline.cli_args import (
    UsageError,
    build_parser,
    describe_invalid,
    load_recipe_file,
    preset_recipe,
    recipe_from_args,
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".avif",
                              ".tif", ".tiff", ".heic", ".heif", ".jxl"})
_EXT_BY_FORMAT = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif", "jxl": "jxl"}


@dataclasses.dataclass(frozen=True)
class Task:
    """One file to process and the output stem reserved for it."""

    index: int
    source: Path
    stem: str


def discover(inputs: list[str], out_dir: Path) -> list[Path]:
    """Files named explicitly (any extension) plus image files found under folders, de-duplicated.

    Folders are walked recursively in sorted order, skipping hidden entries and the output folder.
    A missing path is a usage error.
    """
    out_resolved = out_dir.resolve()
    seen: set[Path] = set()
    found: list[Path] = []

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(path)

    for raw in inputs:
        path = Path(raw)
        if path.is_file():
            add(path)
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                root_path = Path(root)
                dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                                 and (root_path / d).resolve() != out_resolved)
                for name in sorted(files):
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                        add(root_path / name)
        else:
            raise UsageError(f"no such file or folder: {raw}")
    return found


def assign_stems(sources: list[Path]) -> list[str]:
    """Output stems unique within the batch (case-insensitively): ``a``, ``a-2``, ``a-3``, ..."""
    used: set[str] = set()
    stems = []
    for src in sources:
        stem, n = src.stem or "image", 1
        candidate = stem
        while candidate.casefold() in used:
            n += 1
            candidate = f"{stem}-{n}"
        used.add(candidate.casefold())
        stems.append(candidate)
    return stems


# --- the worker side --------------------------------------------------------------------------

_RECIPE: Any = None
_LIMITS: Any = None
_OUT_DIR: Path | None = None
_METRICS = True


def _init_worker(recipe: dict[str, Any], limits: Any, out_dir: str, metrics: bool = True) -> None:
    """Parse the recipe once per worker process."""
    global _RECIPE, _LIMITS, _OUT_DIR, _METRICS
    from imagepipe.core.recipe import parse_recipe

    _RECIPE, _LIMITS, _OUT_DIR, _METRICS = parse_recipe(recipe), limits, Path(out_dir), metrics


def _extension(facts: dict[str, Any]) -> str:
    out = facts.get("output") or {}
    ext = out.get("extension") or _EXT_BY_FORMAT.get(str(out.get("format", "")).lower()) or "bin"
    return str(ext).lstrip(".")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run_task(task: Task) -> dict[str, Any]:
    """Process one file in a worker; every failure becomes a record with a code, never a raise."""
    assert _OUT_DIR is not None, "worker not initialised"
    started = time.perf_counter()
    record: dict[str, Any] = {"index": task.index, "input": str(task.source), "output": None}
    try:
        from imagepipe.core import process

        size = task.source.stat().st_size
        if _LIMITS is not None and size > _LIMITS.max_bytes:
            raise TooLarge(f"input is {size} bytes, over the cap of {_LIMITS.max_bytes}")
        result = process(task.source.read_bytes(), _RECIPE, _LIMITS, compute_metrics=_METRICS)
        out_path = _OUT_DIR / f"{task.stem}.{_extension(result.facts)}"
        _write_atomic(out_path, result.data)
        record.update(status="ok", output=str(out_path), facts=result.facts)
    except ImagePipeError as exc:
        record.update(status="failed", error={"code": exc.code, "message": exc.message})
    except OSError as exc:  # unreadable input or unwritable output: this file fails, the batch goes on
        record.update(status="failed", error={"code": "internal_error",
                                              "message": f"I/O error: {exc.strerror or exc}"})
    except Exception as exc:  # an engine bug must not stop the batch; reported with its type
        record.update(status="failed", error={"code": "internal_error",
                                              "message": f"{type(exc).__name__}: {exc}"})
    record["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return record


# --- the parent side --------------------------------------------------------------------------


def _crashed(task: Task, detail: str) -> dict[str, Any]:
    err = WorkerFailure(f"the worker process died while processing this file ({detail})")
    return {"index": task.index, "input": str(task.source), "output": None, "status": "failed",
            "error": {"code": err.code, "message": err.message}, "elapsed_ms": 0.0}


def _pool(jobs: int, init: tuple[Any, ...]) -> ProcessPoolExecutor:
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    return ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=init)


def _isolated(task: Task, init: tuple[Any, ...]) -> dict[str, Any]:
    """Re-run one task alone after a pool crash, so only the file that kills a worker fails."""
    with _pool(1, init) as pool:
        try:
            return pool.submit(run_task, task).result()
        except BrokenProcessPool:
            return _crashed(task, "crashed again when run alone")


def run_batch(tasks: list[Task], jobs: int, init: tuple[Any, ...]) -> Iterator[dict[str, Any]]:
    """Yield one record per task as they finish; at most ``2 * jobs`` tasks in flight."""
    pending = list(reversed(tasks))
    window = max(1, 2 * jobs)
    while pending:
        pool = _pool(jobs, init)
        inflight: dict[Future[dict[str, Any]], Task] = {}
        broken: list[Task] = []
        refused = False  # the pool broke before a failed future told us
        try:
            while pending or inflight:
                while pending and len(inflight) < window and not broken and not refused:
                    task = pending.pop()
                    try:
                        inflight[pool.submit(run_task, task)] = task
                    except BrokenProcessPool:
                        pending.append(task)
                        refused = True
                if not inflight:
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = inflight.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken.append(task)
                if (broken or refused) and not inflight:
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for task in sorted(broken, key=lambda t: t.index):
            yield _isolated(task, init)


def _limits(args: Any) -> Any:
    from imagepipe.core import Limits

    limits = Limits.from_env()
    changes = {k: v for k, v in (("max_pixels", args.max_pixels), ("max_bytes", args.max_input_bytes))
               if v is not None}
    for key, value in changes.items():
        if value <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive")
    return dataclasses.replace(limits, **changes) if changes else limits


def main(argv: list[str] | None = None) -> int:
    """Run the batch CLI; returns the exit status (0 ok, 1 some files failed, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "process":
        argv = argv[1:]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, a usage error is 2
        return int(exc.code or 0)
    try:
        return _run(args)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except InvalidRecipe as exc:
        print(describe_invalid(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: Any) -> int:
    from imagepipe.core.recipe import parse_recipe

    if args.report is not None and args.report.suffix.lower() not in (".csv", ".json"):
        raise UsageError("--report must end in .csv or .json")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    base = load_recipe_file(args.recipe) if args.recipe else {}
    if args.preset:
        base = preset_recipe(args.preset)
    recipe = recipe_from_args(args, base)
    parse_recipe(recipe)  # a bad recipe is a usage error before any file is touched
    limits = _limits(args)
    sources = discover(args.inputs, args.out)
    if not sources:
        raise UsageError("no input images found")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder {args.out}: {exc.strerror}") from None
    stems = assign_stems(sources)
    tasks = [Task(i, src, stem) for i, (src, stem) in enumerate(zip(sources, stems, strict=True))]
    jobs = min(args.jobs or os.cpu_count() or 1, len(tasks))
    progress = cli_output.Progress(len(tasks), enabled=None if not args.quiet else False)
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    try:
        for rec in run_batch(tasks, jobs, (recipe, limits, str(args.out), args.metrics)):
            records.append(rec)
            progress.advance(rec["status"] == "ok", Path(rec["input"]).name)
    finally:
        progress.close()
    records.sort(key=lambda r: r["index"])
    for rec in records:
        rec.pop("index", None)
    summary = cli_output.totals(records, time.perf_counter() - started)
    if not args.quiet:
        print(cli_output.format_table(cli_output.SUMMARY_HEADER, cli_output.summary_rows(records)))
        print()
    for rec in records:
        if rec["status"] != "ok":
            err = rec["error"]
            print(f"failed: {rec['input']}: [{err['code']}] {err['message']}", file=sys.stderr)
    print(cli_output.totals_line(summary))
    if args.report is not None:
        cli_output.write_report(args.report, records, summary, recipe)
    return 0 if summary["failed"] == 0 else 1


def single_threaded_blas() -> None:
    """Give numpy's OpenBLAS one thread (``OPENBLAS_NUM_THREADS=1``) unless the user chose a number.

    For the command-line entry points, before numpy is imported (OpenBLAS reads the variable
    when it loads). The engine makes no BLAS call on a job's path, and the batch already runs
    one worker process per core, but OpenBLAS starts a thread per core when it loads, and those
    busy-wait for a while: ~35–45 ms of CPU per command here, a sixth of a one-image command
    (pipeline/bench/notes.md)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def exit_now(status: int) -> NoReturn:
    """End the process with ``status`` at once, without the interpreter's teardown.

    For the command-line entry points only, after :func:`main` returned: by then every output
    and report file is closed and the worker pools are shut down (their processes joined), so
    the teardown (freeing every module and object: numpy, pydantic, Pillow, libvips; ~50 ms of
    CPU, a sixth of a one-image command, pipeline/bench/notes.md) would do nothing the user
    needs. stdout and stderr are flushed here; if that fails (a closed pipe), the status is 120,
    as the interpreter's own exit would report."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        status = status or 120
    os._exit(status)


if __name__ == "__main__":
    single_threaded_blas()
    exit_now(main())
