"""History's rollups from the command line: ``seed``, ``backfill``, ``check``, ``seal``.

    python -m pipeline.rollups_cli check --endpoint-url http://127.0.0.1:PORT --table NAME

``--endpoint-url`` / ``--table`` default to ``AWS_ENDPOINT_URL`` / ``IMAGEPIPE_TABLE`` (``make serve``
prints the endpoint; without one, boto3 talks to AWS with its usual credentials). ``check``
exits 1 when the rollups differ from a full scan of the job records.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import pipeline  # noqa: F401  (puts lambda_src on sys.path)


def table_for(endpoint_url: str | None, table: str, region: str | None = None) -> Any:
    """The metadata table as a boto3 resource (the emulator's fake credentials when local)."""
    import boto3

    kwargs: dict[str, Any] = {"region_name": region or os.environ.get("AWS_REGION") or "us-east-1"}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
        kwargs.setdefault("aws_access_key_id", os.environ.get("AWS_ACCESS_KEY_ID", "testing"))
        kwargs.setdefault("aws_secret_access_key", os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"))
    return boto3.resource("dynamodb", **kwargs).Table(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.rollups_cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["seed", "backfill", "check", "seal"])
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"))
    p.add_argument("--table", default=os.environ.get("IMAGEPIPE_TABLE"))
    p.add_argument("--jobs", type=int, default=1000, help="seed: how many jobs (default 1000)")
    p.add_argument("--days", type=int, default=90, help="seed: spread over the last N days (default 90)")
    p.add_argument("--seed", type=int, default=1, help="seed: random seed (default 1)")
    args = p.parse_args(argv)
    if not args.table:
        p.error("--table (or IMAGEPIPE_TABLE) is required")
    from imagepipe.service import rollups

    table = table_for(args.endpoint_url, args.table)
    if args.command == "seed":
        from pipeline.seed import seed

        out: dict[str, Any] = seed(table, args.jobs, args.days, args.seed)
    elif args.command == "backfill":
        out = rollups.backfill(table)
    elif args.command == "seal":
        out = {"sealed": rollups.seal(table)}
    else:
        out = rollups.check(table)
    print(json.dumps(out, indent=2, default=str))
    return 0 if out.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
