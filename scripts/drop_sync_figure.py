"""The bucket-drop figure of issue 13: time from an ``s3 sync`` of a folder into the source
bucket to the last output, on a fresh local stack, and how many image records, jobs and
outputs it made (one of each per file).

    .venv/bin/python scripts/drop_sync_figure.py /work/shared/corpus --runs 3 [--workers 2]

The sync is the AWS CLI (``aws --endpoint-url ... s3 sync``) when ``aws`` is on PATH or in the
venv, else boto3's ``upload_file`` from 10 threads (what ``aws s3 sync`` does). The end is the
latest ``finished_at`` the processor stamped on a job (checked every 0.25 s), measured from the
moment the sync starts. Each run starts its own stack on an empty data dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pipeline  # noqa: E402, F401  (puts lambda_src on sys.path)
from imagepipe.service.records import parse_iso  # noqa: E402
from pipeline.client import Client  # noqa: E402
from pipeline.stack.provision import clients  # noqa: E402
from pipeline.stack.testing import ServeProcess  # noqa: E402

PREFIX = "uploads/holiday/"


def _aws() -> str | None:
    venv_aws = Path(sys.executable).with_name("aws")
    return str(venv_aws) if venv_aws.exists() else shutil.which("aws")


def sync(folder: Path, endpoint: str, bucket: str) -> str:
    """Copy every file of ``folder`` under ``PREFIX``; returns which tool did it."""
    aws = _aws()
    if aws:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        subprocess.run(
            [
                aws,
                "--endpoint-url",
                endpoint,
                "s3",
                "sync",
                "--only-show-errors",
                str(folder),
                f"s3://{bucket}/{PREFIX}",
            ],
            check=True,
            env=env,
        )
        return "aws s3 sync"
    s3 = clients(endpoint)["s3"]
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda p: s3.upload_file(str(p), bucket, PREFIX + str(p.relative_to(folder))), files))
    return "boto3 upload_file x10 threads"


def upload_cli(folder: Path, api_url: str, api_key: str) -> str:
    """The same files through ``python -m pipeline upload`` (presigned POSTs, 4 at a time, the
    default preset), without waiting for the jobs: the comparison row."""
    env = {**os.environ, "IMAGEPIPE_API_URL": api_url, "IMAGEPIPE_API_KEY": api_key}
    subprocess.run(
        [sys.executable, "-m", "pipeline", "upload", "-q", "--no-wait", str(folder)],
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
    )
    return "python -m pipeline upload --no-wait"


def one_run(folder: Path, workers: int, timeout: float, way: str = "sync") -> dict[str, Any]:
    expected = sum(1 for p in folder.rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory(prefix="imagepipe-sync-") as tmp:
        stack = ServeProcess(
            Path(tmp) / "data", workers=workers, env={"IMAGEPIPE_LOG_LEVEL": "WARNING"}
        ).start()
        try:
            s3 = clients(stack.endpoint_url)["s3"]
            with Client(stack.api_url, stack.api_key) as client:
                t0 = time.time()
                if way == "sync":
                    tool = sync(folder, stack.endpoint_url, "imagepipe-source")
                else:
                    tool = upload_cli(folder, stack.api_url, stack.api_key)
                synced = time.time() - t0
                deadline = time.monotonic() + timeout
                while True:
                    jobs = list(client.iter_jobs())
                    done = [j for j in jobs if j["status"] in ("succeeded", "failed")]
                    if len(done) >= expected or time.monotonic() > deadline:
                        break
                    time.sleep(0.25)
                images = list(client.iter_images())
                outputs = s3.list_objects_v2(Bucket="imagepipe-destination").get("KeyCount", 0)
                last = max(
                    (parse_iso(j["finished_at"]).timestamp() for j in done if j.get("finished_at")),
                    default=float("nan"),
                )
        finally:
            stack.stop()
    return {
        "tool": tool,
        "files": expected,
        "sync_s": round(synced, 2),
        "last_output_s": round(last - t0, 2),
        "images": len(images),
        "jobs": len(jobs),
        "succeeded": sum(j["status"] == "succeeded" for j in jobs),
        "outputs": outputs,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument(
        "--compare-upload",
        action="store_true",
        help="also time the presigned way (python -m pipeline upload), alternating run by run",
    )
    args = p.parse_args()
    ways = ["sync", "upload"] if args.compare_upload else ["sync"]
    all_runs = [
        one_run(args.folder, args.workers, args.timeout, way) for _ in range(args.runs) for way in ways
    ]
    for way in ways[1:]:
        runs = [r for r in all_runs if not r["tool"].startswith("aws") and "boto3" not in r["tool"]]
        for r in runs:
            print(json.dumps(r))
        print(
            json.dumps(
                {"way": way, "median_last_output_s": statistics.median(r["last_output_s"] for r in runs)}
            )
        )
    runs = [r for r in all_runs if r["tool"].startswith("aws") or "boto3" in r["tool"]]
    for r in runs:
        print(json.dumps(r))
    print(
        json.dumps(
            {
                "median_last_output_s": statistics.median(r["last_output_s"] for r in runs),
                "median_sync_s": statistics.median(r["sync_s"] for r in runs),
                "workers": args.workers,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
