"""History at scale: ``python -m pipeline.bench.history [--sizes 1000,10000,100000]``.

One local stack per size (each its own temp data dir) is seeded with that many synthetic
finished jobs (``pipeline/seed.py``); then the stacks are measured side by side, round-robin
(``--rounds``, the order alternating each round), so a change in the shared machine's load
falls on every size alike:

- **History cold load**: the History page run in Streamlit's AppTest against the stack's API
  with every ``st.cache_data`` cleared first (two ``GET /stats``, one page of jobs, one of
  images, every chart built), p50 of ``--runs``;
- **GET /stats** for a 90-day range through HTTP, p50 of ``--stats-runs`` per round (the API
  keeps decoded day items between requests, as a warm Lambda does), and the same read and
  answer without that cache, in this process against the stack's emulator (what the first
  request of a fresh API container pays);
- **exactness**: ``rollups.check`` (the rollups against a full scan of the job records) and the
  90-day totals against the scan's count, with the scan's own time (what a page reading every
  job would at least pay);
- **rollup write cost**: a job's terminal write as it is now (one ``TransactWriteItems``: the
  conditional status change + the rollup ``ADD``) against the same conditional ``UpdateItem``
  alone (the write before rollups), interleaved on freshly made ``running`` job items, p50 each;
- the emulator's resident memory.

Writes the figures as JSON (``--json``) and prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pipeline  # noqa: F401  (lambda_src on sys.path)
from pipeline import PROJECT_ROOT


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _p50(xs: list[float]) -> float:
    return round(statistics.median(xs), 2)


def history_cold_ms(api_url: str, api_key: str, runs: int) -> list[float]:
    """Wall time of the History page's script run, caches cleared before each."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["IMAGEPIPE_API_URL"], os.environ["IMAGEPIPE_API_KEY"] = api_url, api_key
    out = []
    for _ in range(runs):
        at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=300).run()
        st.cache_data.clear()
        t = time.perf_counter()
        at.switch_page("pages/history.py").run()
        out.append((time.perf_counter() - t) * 1000)
        assert not at.exception, [e.value for e in at.exception]
    return out


def stats_ms(client: Any, runs: int) -> tuple[list[float], dict[str, Any]]:
    today = datetime.now(UTC).date()
    window = {"from": (today - timedelta(days=89)).isoformat(), "to": today.isoformat()}
    out, body = [], {}
    for _ in range(runs):
        t = time.perf_counter()
        body = client.stats(**window)
        out.append((time.perf_counter() - t) * 1000)
    return out, body


def stats_uncached_ms(table: Any, runs: int) -> list[float]:
    """``GET /stats``'s own work for 90 days without the per-process day cache (what the first
    request of a fresh API container pays), in this process against the stack's emulator."""
    from imagepipe.service import rollups, stats

    today = datetime.now(UTC).date()
    day_from, day_to = (today - timedelta(days=89)).isoformat(), today.isoformat()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        read = rollups.read(table, day_from, day_to, cache=None)
        stats.answer(read.cells, day_from, day_to, {})
        out.append((time.perf_counter() - t) * 1000)
    return out


def rollup_write_ms(table: Any, pairs: int) -> tuple[list[float], list[float]]:
    """(transaction with rollup, plain conditional update) times over fresh running jobs."""
    from imagepipe.service.records import Records, now_iso, to_dynamo
    from pipeline.seed import job_item, synthetic_jobs

    records = Records(table)
    with_rollup, plain = [], []
    jobs = list(synthetic_jobs(2 * pairs, days=1, seed=int(time.time())))
    for i, job in enumerate(jobs):
        job = {**job, "job_id": f"{uuid.uuid4().hex}-{job['recipe_hash']}"}
        job["image_id"] = job["job_id"].split("-")[0]
        result = job.pop("result", None) or {"format": "webp", "bytes": 10, "original_bytes": 100}
        job.pop("error", None)
        item = job_item({**job, "status": "running"})
        if i % 2:  # the write without rollup is kept out of the job list (gsi1), so check stays exact
            item.pop("gsi1pk"), item.pop("gsi1sk")
        table.put_item(Item=item)
        running = {**job, "status": "running"}
        key = {"pk": item["pk"], "sk": item["sk"]}
        t = time.perf_counter()
        if i % 2 == 0:
            assert records.succeed_job(job["job_id"], result, {"x": 1}, job=running)
            with_rollup.append((time.perf_counter() - t) * 1000)
        else:  # the terminal write before rollups: the same conditional UpdateItem alone
            table.update_item(
                Key=key, UpdateExpression="SET #s = :ok, #r = :r, facts = :f, out_format = :fmt, "
                "finished_at = :t, updated_at = :t REMOVE #e",
                ConditionExpression="attribute_exists(pk) AND #s = :running",
                ExpressionAttributeNames={"#s": "status", "#r": "result", "#e": "error"},
                ExpressionAttributeValues={":ok": "succeeded", ":running": "running", ":r": to_dynamo(result),
                                           ":f": '{"x":1}', ":fmt": "webp", ":t": now_iso()})
            plain.append((time.perf_counter() - t) * 1000)
    return with_rollup, plain


def _yes(ok: bool | None) -> str:
    return "not run" if ok is None else "yes" if ok else "NO"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The figures as the table in docs/benchmarks.md (ratios against the first size)."""
    base = rows[0]

    def ratio(r: dict[str, Any], key: str) -> str:
        return f"{r[key]:.1f} | {r[key] / base[key]:.2f}×"

    out = ["| jobs in the table | seeding (s) | History cold load p50 (ms) | × first | GET /stats 90 d "
           "p50 (ms) | × first | same, no day cache (ms) | × first | rollups = full scan | full scan (s) "
           "| terminal write p50 with rollup / alone / added (ms) | emulator RSS (MiB) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(
            f"| {r['jobs']:,} | {r['seed_s']} | {ratio(r, 'history_cold_ms_p50')} "
            f"| {ratio(r, 'stats_90d_ms_p50')} "
            f"| {ratio(r, 'stats_90d_uncached_ms_p50')} | {_yes(r['check_ok'])} "
            f"| {r['scan_s']} | {r['write_tx_ms_p50']:.2f} / {r['write_plain_ms_p50']:.2f} / "
            f"{r['write_added_ms_p50']:+.2f} | {r['emulator_rss_mib']} |")
    return "\n".join(out)


def _row(size: int, seed_s: float, samples: dict[str, list[float]], body: dict[str, Any],
         report: dict[str, Any], scan_s: float, rss: float) -> dict[str, Any]:
    tx, plain = samples["tx"] or [float("nan")], samples["plain"] or [float("nan")]
    return {
        "jobs": report["jobs_scanned"], "seeded": size, "seed_s": round(seed_s, 1),
        "history_cold_ms_p50": _p50(samples["cold"]), "history_cold_ms": [round(x) for x in samples["cold"]],
        "stats_90d_ms_p50": _p50(samples["stats"]), "stats_90d_jobs": body["totals"]["jobs"],
        "stats_90d_uncached_ms_p50": _p50(samples["stats_uncached"]),
        "stats_source": body.get("source"), "check_ok": report["ok"],
        "jobs_page_failed_filter_ms_p50": _p50(samples["failed_page"]) if samples["failed_page"] else None,
        "jobs_first_page_ms_p50": _p50(samples["first_page"]), "images_page_ms_p50": _p50(samples["images"]),
        "scan_jobs": report["jobs_scanned"], "scan_s": round(scan_s, 2),
        "write_tx_ms_p50": _p50(tx), "write_plain_ms_p50": _p50(plain),
        "write_added_ms_p50": round(_p50(tx) - _p50(plain), 2), "emulator_rss_mib": round(rss),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench.history", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--rounds", type=int, default=5, help="round-robin rounds over the stacks")
    p.add_argument("--runs", type=int, default=1, help="History cold loads per stack and round")
    p.add_argument("--stats-runs", type=int, default=3, help="GET /stats per stack and round")
    p.add_argument("--pairs", type=int, default=12, help="rollup write pairs per stack and round")
    p.add_argument("--json", type=Path, default=Path("bench-history.json"))
    p.add_argument("--quick", action="store_true",
                   help="only the cold load and its parts (no full-scan check, no filtered page, no writes)")
    args = p.parse_args(argv)
    os.environ.setdefault("IMAGEPIPE_LOG_LEVEL", "WARNING")

    from imagepipe.service import rollups
    from pipeline.client import Client
    from pipeline.rollups_cli import table_for
    from pipeline.seed import seed
    from pipeline.stack.serve import LocalStack

    sizes = [int(s) for s in args.sizes.split(",")]
    today = datetime.now(UTC).date()
    window = {"from": (today - timedelta(days=89)).isoformat(), "to": today.isoformat()}
    month = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        stacks: dict[int, tuple[Any, Any, Any, float]] = {}
        try:
            for size in sizes:
                stack = LocalStack(data_dir=Path(tmp) / str(size), port=0, workers=1,
                                   reconcile_interval=3600.0).start()
                table = table_for(stack.endpoint_url, stack.env["IMAGEPIPE_TABLE"])
                t = time.perf_counter()
                seeded = seed(table, size, days=90, seed=size)
                stacks[size] = (stack, table, Client(stack.api_url, stack.api_key, timeout=300),
                                time.perf_counter() - t)
                print(f"[{size}] seeded {seeded['jobs']} in {stacks[size][3]:.1f} s", file=sys.stderr,
                      flush=True)
            kinds = ("stats", "stats_uncached", "first_page", "images", "failed_page", "cold", "tx", "plain")
            samples = {size: {k: [] for k in kinds} for size in sizes}
            bodies: dict[int, dict[str, Any]] = {}
            for r in range(args.rounds):
                for size in sizes if r % 2 == 0 else list(reversed(sizes)):
                    stack, table, client, _ = stacks[size]
                    s = samples[size]
                    times, bodies[size] = stats_ms(client, args.stats_runs)
                    s["stats"] += times
                    s["stats_uncached"] += stats_uncached_ms(table, args.stats_runs)
                    for _ in range(args.stats_runs):  # what History's cold load asks besides /stats
                        t = time.perf_counter()
                        client.list_jobs(limit=50, **month)
                        s["first_page"].append((time.perf_counter() - t) * 1000)
                        t = time.perf_counter()
                        client.list_images(limit=50)
                        s["images"].append((time.perf_counter() - t) * 1000)
                        if not args.quick:
                            t = time.perf_counter()
                            client.list_jobs(limit=50, status="failed", **window)
                            s["failed_page"].append((time.perf_counter() - t) * 1000)
                    s["cold"] += history_cold_ms(stack.api_url, stack.api_key, args.runs)
                    if not args.quick:
                        tx, plain = rollup_write_ms(table, args.pairs)
                        s["tx"] += tx
                        s["plain"] += plain
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
            for size in sizes:
                stack, table, _, seed_s = stacks[size]
                t = time.perf_counter()
                written = 0 if args.quick else args.pairs * args.rounds  # the write test's rolled-up jobs
                report = {"ok": None, "jobs_scanned": size + written} if args.quick else rollups.check(table)
                row = _row(size, seed_s, samples[size], bodies[size], report, time.perf_counter() - t,
                           _rss_mib(stack.emulator.proc.pid))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                args.json.write_text(json.dumps(rows, indent=2))
        finally:
            for stack, *_ in stacks.values():
                stack.stop()
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
