"""End-to-end smoke test of a running ImagePipe stack, deployed or local.

It drives the stack only through :class:`pipeline.client.Client` (real HTTP, real presigned
S3 POSTs), so the same flow runs against AWS and against ``python -m pipeline serve``:

1. S3-event trigger: upload an image *with* a recipe; the ObjectCreated event runs the job.
2. API trigger: upload an image without a recipe, then ``POST /jobs`` for it.
3. Idempotency: asking for the same image + recipe again returns the same job id.
4. Metadata: ``GET /images/{id}`` has the input facts and lists the job.
5. Download every output through its presigned URL and decode it with Pillow.

Usage::

    python scripts/smoke.py --api-url https://abc.execute-api.eu-west-1.amazonaws.com --api-key KEY
    python scripts/smoke.py --stack-name imagepipe            # URL + key from CloudFormation/Secrets Manager
    python scripts/smoke.py --api-url http://127.0.0.1:8787 --api-key dev   # local stack

Exit status 0 when every step passed; a JSON report goes to stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from pipeline.client import Client  # noqa: E402

SOURCE_SIZE = (640, 480)
S3_RECIPE: dict[str, Any] = {
    "resize": {"width": 320, "height": 320, "fit": "inside"},
    "format": "webp",
    "quality": 80,
}
API_RECIPE: dict[str, Any] = {"resize": {"width": 100, "height": 100, "fit": "cover"}, "format": "png"}


@dataclass
class Step:
    """One checked step of the smoke run."""

    name: str
    ok: bool
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class SmokeReport:
    """Every step, and whether all of them passed."""

    api_url: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"api_url": self.api_url, "ok": self.ok, "steps": [asdict(s) for s in self.steps]}


class SmokeFailure(AssertionError):
    """A smoke step did not see what it expected."""


class StepFailed(Exception):
    """Raised by :meth:`Smoke.step` after recording a failed step; ends the run."""


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` for dicts, ``obj.name`` for objects (the client may return either)."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def make_image(size: tuple[int, int] = SOURCE_SIZE) -> bytes:
    """A photo-like JPEG generated in code (gradients + shapes), so no fixture is needed."""
    w, h = size
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    r = Image.linear_gradient("L").rotate(90).resize((w, h))
    b = Image.radial_gradient("L").resize((w, h))
    img = Image.merge("RGB", (r, img.getchannel("G"), b))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    """Fully decode ``data`` (``load()`` forces the pixel data, not just the header)."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _job_id(obj: Any) -> str:
    job_id = field_of(obj, "job_id")
    check(isinstance(job_id, str) and bool(job_id), f"no job_id in {obj!r}")
    return str(job_id)


def _succeeded(client: Client, job_id: str, timeout: float) -> Any:
    job = client.wait(job_id, timeout=timeout)
    status = field_of(job, "status")
    check(status == "succeeded", f"job {job_id} ended {status!r}: {field_of(job, 'error')!r}")
    return job


class Smoke:
    """The smoke flow over one client; each public step appends to ``report``."""

    def __init__(self, client: Client, api_url: str, timeout: float = 120.0) -> None:
        self.client = client
        self.timeout = timeout
        self.report = SmokeReport(api_url=api_url)
        self.image_ids: list[str] = []

    def step(self, name: str, fn: Any) -> Any:
        """Run ``fn``; record pass/fail, its duration and the detail dict it returns."""
        start = time.monotonic()
        try:
            value, detail = fn()
        except Exception as exc:  # recorded, then the run stops
            self.report.steps.append(
                Step(
                    name, False, round(time.monotonic() - start, 3), {"error": f"{type(exc).__name__}: {exc}"}
                )
            )
            raise StepFailed(name) from exc
        self.report.steps.append(Step(name, True, round(time.monotonic() - start, 3), detail))
        return value

    def s3_event_trigger(self, source: bytes) -> Any:
        def run() -> tuple[Any, dict[str, Any]]:
            up = self.client.upload(
                source, filename="smoke-s3.jpg", content_type="image/jpeg", recipe=S3_RECIPE
            )
            image_id = field_of(up, "image_id")
            self.image_ids.append(image_id)
            job = _succeeded(self.client, _job_id(up), self.timeout)
            check(field_of(job, "trigger") == "s3", f"expected an S3-triggered job, got {job!r}")
            return job, {"image_id": image_id, "job_id": field_of(job, "job_id"), "trigger": "s3"}

        return self.step("s3_event_trigger", run)

    def api_trigger(self, source: bytes) -> tuple[str, Any]:
        def run() -> tuple[Any, dict[str, Any]]:
            up = self.client.upload(source, filename="smoke-api.jpg", content_type="image/jpeg")
            image_id = field_of(up, "image_id")
            check(bool(image_id), f"upload returned no image_id: {up!r}")
            self.image_ids.append(image_id)
            check(not field_of(up, "job_id"), "an upload without a recipe must not create a job")
            queued = self.client.process(image_id, API_RECIPE)
            job = _succeeded(self.client, _job_id(queued), self.timeout)
            check(field_of(job, "trigger") == "api", f"expected an API-triggered job, got {job!r}")
            again = self.client.process(image_id, API_RECIPE)
            check(_job_id(again) == _job_id(queued), "the same image + recipe must be the same job")
            return (image_id, job), {
                "image_id": image_id,
                "job_id": _job_id(job),
                "duplicate_job_id": _job_id(again),
            }

        return self.step("api_trigger_and_idempotency", run)

    def metadata(self, image_id: str, job_id: str, source: bytes) -> Any:
        def run() -> tuple[Any, dict[str, Any]]:
            image = self.client.get_image(image_id)
            check(field_of(image, "image_id") == image_id, f"wrong image returned: {image!r}")
            jobs = [_job_id(j) for j in field_of(image, "jobs") or []]
            check(job_id in jobs, f"job {job_id} not listed on image {image_id}: {jobs}")
            facts = field_of(image, "facts") or field_of(image, "input") or {}
            dims = (field_of(facts, "width"), field_of(facts, "height"))
            check(dims == SOURCE_SIZE, f"input facts {facts!r} do not say {SOURCE_SIZE}")
            original_url = field_of(image, "download_url")
            check(bool(original_url), "the image has no presigned download_url for its original")
            check(self.client.download(original_url) == source, "the original changed")
            return image, {"image_id": image_id, "jobs": jobs, "input": {"width": dims[0], "height": dims[1]}}

        return self.step("metadata", run)

    def download(
        self, name: str, job: Any, fmt: str, max_side: int, exact: tuple[int, int] | None = None
    ) -> None:
        def run() -> tuple[None, dict[str, Any]]:
            data = self.client.download(job)
            img = decode(data)
            check(img.format == fmt, f"{name}: expected {fmt}, decoded {img.format}")
            check(max(img.size) <= max_side, f"{name}: {img.size} exceeds {max_side}px")
            if exact is not None:
                check(img.size == exact, f"{name}: {img.size} != {exact}")
            return None, {"bytes": len(data), "format": img.format, "size": list(img.size)}

        self.step(f"download_{name}", run)

    def cleanup(self) -> None:
        delete = getattr(self.client, "delete_image", None)
        if delete is None:
            return
        for image_id in self.image_ids:
            try:
                delete(image_id)
            except Exception as exc:  # cleanup must not hide the real result
                print(f"cleanup of {image_id} failed: {exc}", file=sys.stderr)


def run_smoke(client: Client, api_url: str, timeout: float = 120.0, keep: bool = False) -> SmokeReport:
    """Run the whole flow; the report records each step (the first failure stops it)."""
    smoke = Smoke(client, api_url, timeout)
    source = make_image()
    try:
        s3_job = smoke.s3_event_trigger(source)
        smoke.download("s3_event", s3_job, "WEBP", 320, exact=(320, 240))
        image_id, api_job = smoke.api_trigger(source)
        smoke.download("api", api_job, "PNG", 100, exact=(100, 100))
        smoke.metadata(image_id, _job_id(api_job), source)
    except StepFailed as exc:  # the failure is in the report; later steps depend on this one
        print(f"smoke stopped at step {exc}", file=sys.stderr)
    finally:
        if not keep:
            smoke.cleanup()
    return smoke.report


def stack_endpoint(stack_name: str, region: str | None) -> tuple[str, str]:
    """``(ApiUrl, api key)`` of a deployed stack, from its outputs and its Secrets Manager secret."""
    import boto3

    session = boto3.session.Session(region_name=region)
    stack = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    secret = session.client("secretsmanager").get_secret_value(SecretId=outputs["ApiKeySecretArn"])
    return outputs["ApiUrl"], json.loads(secret["SecretString"])["api_key"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api-url")
    parser.add_argument("--api-key")
    parser.add_argument("--stack-name", help="read ApiUrl and the API key from this CloudFormation stack")
    parser.add_argument("--region")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each job")
    parser.add_argument("--keep", action="store_true", help="do not delete the smoke images afterwards")
    args = parser.parse_args(argv)

    if args.stack_name:
        api_url, api_key = stack_endpoint(args.stack_name, args.region)
        api_url, api_key = args.api_url or api_url, args.api_key or api_key
    elif args.api_url and args.api_key:
        api_url, api_key = args.api_url, args.api_key
    else:
        parser.error("give --api-url and --api-key, or --stack-name")

    with Client(api_url, api_key) as client:
        report = run_smoke(client, api_url, timeout=args.timeout, keep=args.keep)
    print(json.dumps(report.to_dict(), indent=2, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
