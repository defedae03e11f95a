"""Running jobs: claim, download the original, call the engine, store the output, record
the result. Permanent failures mark the job ``failed``; transient ones raise
``TransientError`` so the queue redelivers the message."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from threading import Event
from time import monotonic, perf_counter
from typing import Any

from imagepipe.core.budget import Budget
from imagepipe.core.limits import Limits
from imagepipe.core.recipe import Recipe, parse_recipe
from imagepipe.errors import (
    AttemptKilled,
    ImagePipeError,
    InternalError,
    NotFound,
    RetriesExhausted,
    TooLarge,
)
from imagepipe.service.backend import Backend
from imagepipe.service.drops import record_drop
from imagepipe.service.messages import ExportMessage, JobMessage, ObjectCreated, SweepPartMessage, Work
from imagepipe.service.records import ISO_FORMAT, make_job_id, now_iso, parse_iso, split_job_id
from imagepipe.service.storage import output_key

logger = logging.getLogger(__name__)

Engine = Callable[..., Any]  # (data, recipe, limits[, budget=Budget]) -> Result


def _default_engine(data: bytes, recipe: Any, limits: Limits, budget: Any = None) -> Any:
    from imagepipe.core import process  # imported lazily: keeps API cold starts light

    return process(data, recipe, limits, budget=budget)


def _ms(start: float) -> float:
    return round((perf_counter() - start) * 1000.0, 3)


def _since_ms(iso: str | None) -> float | None:
    """Milliseconds from an ISO timestamp written by ``now_iso`` until now (None if unparsable)."""
    then = parse_iso(iso)
    if then is None:
        return None
    return round((datetime.now(UTC) - then).total_seconds() * 1000.0, 3)


def new_job(image: dict[str, Any], recipe: dict[str, Any], recipe_hash: str, *, trigger: str,
            preset: str | None, drop_rule: str | None = None) -> dict[str, Any]:
    """A job record (status set by ``Records.create_job``). It carries its image's ``arrival``
    (``presigned`` when the image has none: records from before arrivals were stored) and, for
    the job a drop rule made, the rule (``drop_rule``)."""
    job = {
        "job_id": make_job_id(image["image_id"], recipe_hash),
        "image_id": image["image_id"],
        "recipe": recipe,
        "recipe_hash": recipe_hash,
        "preset": preset,
        "trigger": trigger,
        "source_key": image["key"],
        "filename": image.get("filename"),
        "created_at": now_iso(),
        "attempts": 0,
        "arrival": image.get("arrival") or "presigned",
    }
    if drop_rule is not None:
        job["drop_rule"] = drop_rule
    return job


def summarize(facts: dict[str, Any], key: str, timings: dict[str, float]) -> dict[str, Any]:
    """The job's ``result`` from the engine's facts plus the service's stage timings."""
    out = facts.get("output") or {}
    metrics = facts.get("metrics") or {}
    return {
        "format": out.get("format"),
        "width": out.get("width"),
        "height": out.get("height"),
        "bytes": out.get("bytes"),
        "frames": out.get("frames"),
        "content_type": out.get("content_type"),
        "encoder": out.get("encoder"),
        "original_bytes": (facts.get("input") or {}).get("bytes"),
        "compression_ratio": facts.get("compression_ratio"),
        "bits_per_pixel": facts.get("bits_per_pixel"),
        "ssim": metrics.get("ssim"),
        "psnr": metrics.get("psnr"),
        **({"ssimulacra2": metrics["ssimulacra2"]} if metrics.get("ssimulacra2") is not None else {}),
        "output_key": key,
        "timings_ms": {**(facts.get("timings_ms") or {}), **timings},
    }


class JobRunner:
    """Runs jobs and handles queue work for one backend."""

    def __init__(self, backend: Backend, limits: Limits | None = None, engine: Engine | None = None) -> None:
        self.backend = backend
        self.limits = limits or Limits.from_env()
        self.engine = engine or _default_engine

    # --- queue work -------------------------------------------------------------------

    def handle(self, work: Work, *, final_attempt: bool = False, first_delivery: bool = True,
               budget: Budget | None = None) -> str:
        """Do one unit of queue work; returns what happened (for logs and tests).

        Work is done ahead of the claim (see :meth:`run`) only for a message's first delivery:
        a redelivered message is likely a job that already ran, and its engine run would be
        thrown away. ``budget`` is the invocation's time (core/budget.py): the engine adapts to
        it or refuses, and long encodes stop at its deadline."""
        if isinstance(work, JobMessage):
            return self.run_guarded(work.job_id, final_attempt=final_attempt,
                                    source_key=work.source_key if first_delivery else None,
                                    recipe_hint=work.recipe if first_delivery else None, budget=budget)
        if isinstance(work, ObjectCreated):
            return self.object_created(work, final_attempt=final_attempt, budget=budget)
        if isinstance(work, SweepPartMessage):  # the compression lab's fan-out (service/sweeps.py)
            from imagepipe.service.sweeps import run_sweep_part

            return run_sweep_part(self.backend, work, self.limits, final_attempt=final_attempt,
                                  **({"budget": budget} if budget is not None else {}))
        if isinstance(work, ExportMessage):  # History's CSV export (service/exports.py)
            from imagepipe.service.exports import run_export

            return run_export(self.backend, work.export_id)
        raise InternalError(f"unknown work item {type(work).__name__}")

    def object_created(self, ev: ObjectCreated, *, final_attempt: bool = False,
                       budget: Budget | None = None) -> str:
        """An original landed: record it, and run the image's upload recipe if it has one."""
        cfg, records = self.backend.config, self.backend.records
        if ev.bucket != cfg.source_bucket or not ev.key.startswith(cfg.upload_prefix):
            logger.error("refusing S3 event for s3://%s/%s: not the source bucket/upload prefix",
                         ev.bucket, ev.key)
            return "refused"
        image_id = ev.key[len(cfg.upload_prefix):].split("/", 1)[0]
        landed = now_iso()
        image = records.record_upload(image_id, ev.key, ev.size, ev.etag, at=landed)  # conditional on the key
        if image is None:  # not made by POST /uploads or POST /images: dropped by an S3 client
            return self.object_dropped(ev, final_attempt=final_attempt, budget=budget)
        if image.get("recipe") is None:
            return "uploaded"
        job_id = image.get("job_id") or make_job_id(image_id, image["recipe_hash"])
        # the first event for this upload works ahead of the claim; a duplicate event (the image
        # was already recorded as landed) claims first and is skipped without running the engine
        first = image.get("uploaded_at") == landed
        outcome = self.run_guarded(job_id, final_attempt=final_attempt, source_key=ev.key if first else None,
                                   recipe_hint=image["recipe"] if first else None, budget=budget)
        if outcome != "missing":
            return outcome
        # POST /uploads writes the job with the image; without it (a record written by an older
        # version, or restored from a backup) the upload recipe still runs: create it, then run.
        job = new_job(image, image["recipe"], image["recipe_hash"], trigger="s3", preset=image.get("preset"))
        records.create_job(job)
        return self.run_guarded(job["job_id"], final_attempt=final_attempt, source_key=ev.key,
                                recipe_hint=image["recipe"], budget=budget)

    def object_dropped(self, ev: ObjectCreated, *, final_attempt: bool = False,
                       budget: Budget | None = None) -> str:
        """An object dropped into the source bucket by any S3 client: record it once per object
        version (``service/drops.py``) and run what its drop rule says. An object over the byte
        cap is not downloaded: its job fails with the engine's ``too_large``."""
        records = self.backend.records
        drop = record_drop(self.backend, self.backend.catalog, ev)
        if drop is None:
            return "ignored"
        image, first = drop.image, drop.created
        if image.get("recipe") is None:
            return "uploaded"  # a skip rule: recorded, not processed
        job = new_job(image, image["recipe"], image["recipe_hash"], trigger="s3", preset=image.get("preset"),
                      drop_rule=image.get("drop_rule"))
        stored, _ = records.create_job(job)  # conditional: a duplicate event finds the same job
        size = int(image.get("bytes") or 0)
        err: ImagePipeError | None = None
        if drop.superseded:
            err = NotFound(f"s3://{ev.bucket}/{ev.key} was overwritten before this version was processed; "
                           "the newer upload is its own image")
        elif size > self.limits.max_bytes:
            err = TooLarge(f"input is {size:,} bytes, above the cap of {self.limits.max_bytes:,}; "
                           "it was recorded, not downloaded")
        if err is not None:  # conditional: a job already done (a duplicate event) stays as it is
            return "failed" if records.fail_job(stored["job_id"], err.code, err.message) else "skipped"
        return self.run_guarded(stored["job_id"], final_attempt=final_attempt,
                                source_key=ev.key if first else None,
                                recipe_hint=image["recipe"] if first else None, budget=budget)

    def run_guarded(self, job_id: str, *, final_attempt: bool, source_key: str | None = None,
                    recipe_hint: dict[str, Any] | None = None, budget: Budget | None = None) -> str:
        """``run`` and, when this was the last delivery, mark a still-open job ``failed``
        with ``retries_exhausted`` before re-raising (the message then goes to the DLQ)."""
        try:
            return self.run(job_id, source_key=source_key, recipe_hint=recipe_hint, budget=budget)
        except Exception as exc:
            if budget is not None:  # a transient failure: the redelivery is a new attempt, not a killed one
                try:
                    self.backend.records.end_attempt(job_id)
                except Exception:
                    logger.exception("could not end the attempt of job %s", job_id)
            if final_attempt:  # conditional write: a no-op when the job is already terminal
                err = RetriesExhausted(f"gave up after the final attempt: {exc}")
                try:
                    self.backend.records.fail_job(job_id, err.code, err.message)
                except Exception:
                    logger.exception("could not mark job %s failed; the reconciler will", job_id)
            raise

    # --- the job itself ----------------------------------------------------------------

    def run(self, job_id: str, *, source_key: str | None = None,
            recipe_hint: dict[str, Any] | None = None, budget: Budget | None = None) -> str:
        """Run one job. ``skipped`` when already terminal (a duplicate), ``failed`` on a
        permanent error (recorded), ``succeeded``; raises on transient errors.

        ``source_key`` and ``recipe_hint`` (from the queue message or the image record) let the
        download, and the engine too when the recipe is known, run while the job is claimed.
        The claimed record decides: a hint that disagrees with it is thrown away and the work
        is redone from the record. A duplicate delivery wastes that speculative work (it is
        waited for, never left running), which is rare next to the claim it saves on every job."""
        t_all = perf_counter()
        backend = self.backend
        records, storage, cfg = backend.records, backend.storage, backend.config
        id_parts = split_job_id(job_id)
        if id_parts is None:
            logger.error("dropping malformed job id %r", job_id)
            return "missing"
        early = None
        hint = _recipe_or_none(recipe_hint)  # parsed once: its hash is checked, the engine takes it
        hint_hash = hint.recipe_hash() if hint is not None else None
        if hint_hash != id_parts[1]:  # the id names its recipe's hash
            hint, hint_hash = None, None  # a hint for another recipe is no hint: only the download goes ahead
        if source_key and source_key.startswith(cfg.upload_prefix):
            downloaded = Event()
            early = _POOL.submit(self._fetch_and_process, job_id, source_key, hint, downloaded, budget)
            if hint is not None:
                # The engine goes ahead too: let the download finish before the claim is sent.
                # Both are boto3 calls in one process; side by side they fight for the GIL and
                # the engine starts later, while the claim has the engine's whole run to land.
                downloaded.wait(_CLAIM_WAITS_FOR_DOWNLOAD_S)
        t = perf_counter()
        # conditional: refuses terminal and missing jobs; with a budget the record keeps this
        # attempt's deadline, so that the next claim can tell when this attempt was killed
        claimed = records.claim_job(job_id, *([_deadline_iso(budget)] if budget is not None else []))
        claim_ms = _ms(t)
        if claimed is None:
            _discard(early)
            job = records.get_job(job_id)
            if job is None:
                logger.warning("job %s no longer exists (image deleted?)", job_id)
                return "missing"
            logger.info("job %s already %s: duplicate delivery, nothing to do", job_id, job.get("status"))
            return "skipped"
        queue_wait_ms = _since_ms(claimed.get("created_at"))
        image_id = claimed["image_id"]
        key = claimed.get("source_key") or (records.get_image(image_id) or {}).get("key")
        if not key:
            _discard(early)
            records.fail_job(job_id, NotFound.code, "the image record is gone")
            return "failed"

        killed = killed_attempt(claimed)
        if killed is not None:  # deterministic work that was killed would be killed again
            _discard(early)
            logger.warning("job %s: %s", job_id, killed.message)
            records.fail_job(job_id, killed.code, killed.message)
            return "failed"

        try:
            hint_agrees = key == source_key and hint_hash in (None, claimed.get("recipe_hash"))
            if early is not None and hint_agrees:
                data, download_ms, result = early.result()  # result is None without a recipe hint
            else:
                _discard(early)
                data, download_ms, result = self._fetch_and_process(job_id, key, None)
            if result is None:
                result = self._process(job_id, data, claimed.get("recipe") or {}, budget)
        except ImagePipeError as exc:
            if not exc.permanent:
                raise
            logger.info("job %s failed permanently: %s %s", job_id, exc.code, exc.message)
            records.fail_job(job_id, exc.code, exc.message, job=claimed)
            return "failed"

        facts = dict(result.facts)
        out = facts.get("output") or {}
        ext = out.get("extension") or out.get("format") or "bin"
        out_key = output_key(cfg, image_id, claimed["recipe_hash"], str(ext))
        t = perf_counter()
        storage.put_output(out_key, result.data, out.get("content_type") or "application/octet-stream")
        upload_ms = _ms(t)
        timings = {
            "download": download_ms,
            "upload": upload_ms,
            "record": claim_ms,
            "service_total": _ms(t_all),
        }
        if queue_wait_ms is not None:
            timings["queue_wait"] = queue_wait_ms
        ok = records.succeed_job(job_id, summarize(facts, out_key, timings), facts, job=claimed)
        # the original's facts go to the image item after the job's result, which is what a
        # client is waiting for (the emulator serializes writes: side by side, the facts write
        # could go first). A failure raises: the message is retried (the job stays succeeded).
        if facts.get("input"):
            records.set_image_facts(image_id, facts["input"])
        return "succeeded" if ok else "skipped"

    def _process(self, job_id: str, data: bytes, recipe: Recipe | dict[str, Any],
                 budget: Budget | None = None) -> Any:
        """The engine on one original; an engine bug becomes ``InternalError`` (no retry loop)."""
        recipe = parse_recipe(recipe)  # a Recipe passes through as it is
        try:
            if budget is not None:
                return self.engine(data, recipe, self.limits, budget=budget)
            return self.engine(data, recipe, self.limits)
        except ImagePipeError:
            raise
        except Exception as exc:
            logger.exception("engine crashed on job %s", job_id)
            raise InternalError(f"the engine failed unexpectedly: {type(exc).__name__}") from exc

    def _fetch_and_process(self, job_id: str, key: str, recipe: Recipe | None,
                           downloaded: Event | None = None,
                           budget: Budget | None = None) -> tuple[bytes, float, Any]:
        """Download the original, and process it when a recipe is given: ``(data, ms, result)``.
        ``downloaded`` is set once the download is over (done or failed)."""
        try:
            data, download_ms = _timed(self.backend.storage.get_source,
                                       self.backend.config.source_bucket, key)
        finally:
            if downloaded is not None:
                downloaded.set()
        result = None if recipe is None else self._process(job_id, data, recipe, budget)
        return data, download_ms, result


#: Work that overlaps: the original's download (and the engine, when the recipe is known) with
#: the claim.
#: boto3 clients are thread-safe; a few threads are enough for one Lambda invocation.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="imagepipe-io")
#: How long the claim waits for a download that runs ahead with the engine (then it goes anyway).
_CLAIM_WAITS_FOR_DOWNLOAD_S = 2.0


def _deadline_iso(budget: Budget) -> str:
    """The budget's deadline (the invocation's end) as a wall-clock ISO time for the record."""
    left_s = max(0.0, budget.deadline - monotonic())
    return (datetime.now(UTC) + timedelta(seconds=left_s)).strftime(ISO_FORMAT)


def killed_attempt(job: dict[str, Any], now: datetime | None = None) -> AttemptKilled | None:
    """The error to fail ``job`` with when its previous attempt never ended although its
    invocation's deadline has passed: the runtime killed it (the timeout, memory, or a crash),
    and the same deterministic work would be killed again. ``None`` when there was no such
    attempt, or when its deadline is still ahead (it may still be running: a duplicate message)."""
    prev = job.get("previous_attempt")
    if not prev:
        return None
    deadline = parse_iso(prev.get("deadline_at"))
    started = parse_iso(prev.get("started_at"))
    now = now or datetime.now(UTC)
    if deadline is None or now < deadline:
        return None
    budget_s = (deadline - started).total_seconds() if started is not None else None
    ran = f" with a budget of {budget_s:.0f} s" if budget_s is not None else ""
    msg = (f"attempt {prev.get('attempt')} (started {prev.get('started_at')}){ran} was killed before "
           f"it finished: it ran out of time or memory (or crashed), and the same work would be killed "
           f"again, so it is not rerun. Make the work smaller (resize.width/height), use a faster "
           f"setting (avif.speed, webp.method, png.compress_level) or format, or raise the processor's "
           f"timeout/memory")
    return AttemptKilled(msg, details={"previous_attempt": prev})


def _timed(fn: Callable[..., bytes], *args: Any) -> tuple[bytes, float]:
    t = perf_counter()
    return fn(*args), _ms(t)


def _recipe_or_none(recipe: dict[str, Any] | None) -> Recipe | None:
    """A hinted recipe, parsed; ``None`` when there is none or it does not parse (the claimed
    record's recipe is then parsed on the normal path, with its normal errors)."""
    if recipe is None:
        return None
    try:
        return parse_recipe(recipe)
    except ImagePipeError:
        return None


def _discard(future: Future[Any] | None) -> None:
    """Drop work done ahead of the claim: wait for it (no thread outlives the invocation), ignore
    its errors."""
    if future is not None:
        future.cancel() or future.exception()
