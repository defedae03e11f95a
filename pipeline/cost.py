"""Estimated AWS cost per 1,000 processed images, from measured durations and the Lambda memory size.

Prices are list prices for us-east-1 (checked 2025); they are named constants so the
dashboard can show exactly what the estimate assumes. Free tier, data transfer, CloudWatch
and DynamoDB are left out (see ``ASSUMPTIONS``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Lambda compute on arm64 (Graviton), USD per GB-second
LAMBDA_ARM64_PRICE_PER_GB_S = 0.0000133334
#: Lambda requests, USD per 1 million invocations (same on both architectures)
LAMBDA_PRICE_PER_1M_REQUESTS = 0.20
#: S3 Standard PUT/COPY/POST/LIST, USD per 1,000 requests
S3_PUT_PRICE_PER_1K = 0.005
#: S3 Standard GET/SELECT, USD per 1,000 requests
S3_GET_PRICE_PER_1K = 0.0004

#: requests each processed image costs: the presigned upload + the output written (PUT),
#: the processor reading the original + the user downloading the output (GET)
S3_PUTS_PER_IMAGE = 2
S3_GETS_PER_IMAGE = 2
#: Lambda invocations per image: the processor twice (one record per invocation: the upload's S3
#: event, then the job's message) + POST /uploads + POST /jobs + ~2 GET /jobs polls
LAMBDA_INVOCATIONS_PER_IMAGE = 6
#: added to a measured processor time (``timings_ms.service_total``: S3 read + engine + S3 write)
#: for what it does not cover: the final DynamoDB write and the handler's own overhead (assumed)
SERVICE_OVERHEAD_MS = 15.0
#: added to the engine's time when a job has no ``service_total`` (S3 read/write, DynamoDB), assumed
ENGINE_ONLY_OVERHEAD_MS = 60.0
#: the SAM template's ProcessorMemorySize default
DEFAULT_MEMORY_MB = 1792

ASSUMPTIONS: list[tuple[str, str]] = [
    (
        "Lambda compute (arm64)",
        f"${LAMBDA_ARM64_PRICE_PER_GB_S:.10f}".rstrip("0") + " per GB-second, billed per 1 ms",
    ),
    ("Lambda requests", f"${LAMBDA_PRICE_PER_1M_REQUESTS:.2f} per 1M invocations"),
    (
        "Lambda invocations per image",
        f"{LAMBDA_INVOCATIONS_PER_IMAGE} (processor: S3 event + job; API: upload, job, 2 polls)",
    ),
    ("S3 PUT", f"${S3_PUT_PRICE_PER_1K} per 1,000 requests, {S3_PUTS_PER_IMAGE} per image"),
    ("S3 GET", f"${S3_GET_PRICE_PER_1K} per 1,000 requests, {S3_GETS_PER_IMAGE} per image"),
    (
        "Processor duration",
        "measured per job: S3 read + engine + S3 write (timings_ms.service_total) "
        f"+ {SERVICE_OVERHEAD_MS:.0f} ms assumed for the final DynamoDB write; jobs without it: engine "
        f"total + {ENGINE_ONLY_OVERHEAD_MS:.0f} ms. API Lambda compute is not counted",
    ),
    (
        "CPU",
        "Lambda gives CPU in proportion to memory (1 vCPU at 1,769 MB); the local machine's "
        "speed differs, so treat compute as an order of magnitude",
    ),
    ("Not included", "free tier, data transfer out, S3 storage, SQS, DynamoDB, CloudWatch Logs"),
]


@dataclass(frozen=True)
class CostEstimate:
    """USD per 1,000 images, by component."""

    images: int
    memory_mb: int
    mean_billed_ms: float
    lambda_compute: float
    lambda_requests: float
    s3_put: float
    s3_get: float

    @property
    def total(self) -> float:
        """All components summed."""
        return self.lambda_compute + self.lambda_requests + self.s3_put + self.s3_get

    def as_rows(self) -> list[dict[str, float | str]]:
        """One row per component plus the total, for a table."""
        return [
            {"component": "Lambda compute", "usd_per_1000_images": self.lambda_compute},
            {"component": "Lambda requests", "usd_per_1000_images": self.lambda_requests},
            {"component": "S3 PUT", "usd_per_1000_images": self.s3_put},
            {"component": "S3 GET", "usd_per_1000_images": self.s3_get},
            {"component": "Total", "usd_per_1000_images": self.total},
        ]


def billed_ms(duration_ms: float) -> int:
    """Lambda bills each invocation in whole milliseconds, rounded up, at least 1 ms."""
    return max(1, math.ceil(duration_ms))


def processor_duration_ms(timings_ms: dict[str, float | None]) -> float | None:
    """A job's estimated processor invocation time from its recorded ``timings_ms``."""
    service = timings_ms.get("service_total")
    if service is not None:
        return float(service) + SERVICE_OVERHEAD_MS
    engine = timings_ms.get("total")
    if engine is not None:
        return float(engine) + ENGINE_ONLY_OVERHEAD_MS
    return None


def estimate_per_1000(
    durations_ms: Sequence[float],
    memory_mb: int = DEFAULT_MEMORY_MB,
    io_overhead_ms: float = 0.0,
) -> CostEstimate:
    """Cost of 1,000 images whose processor invocations take ``durations_ms`` (a measured sample).

    Compute is linear in duration, so the mean billed duration of the sample prices the batch.
    """
    if not durations_ms:
        raise ValueError("need at least one measured duration")
    if memory_mb < 128 or memory_mb > 10240:
        raise ValueError("Lambda memory must be between 128 and 10240 MB")
    billed = [billed_ms(d + io_overhead_ms) for d in durations_ms]
    mean_billed = sum(billed) / len(billed)
    n = 1000
    gb_s = n * (memory_mb / 1024) * (mean_billed / 1000)
    return CostEstimate(
        images=n,
        memory_mb=memory_mb,
        mean_billed_ms=mean_billed,
        lambda_compute=gb_s * LAMBDA_ARM64_PRICE_PER_GB_S,
        lambda_requests=n * LAMBDA_INVOCATIONS_PER_IMAGE * LAMBDA_PRICE_PER_1M_REQUESTS / 1_000_000,
        s3_put=n * S3_PUTS_PER_IMAGE * S3_PUT_PRICE_PER_1K / 1000,
        s3_get=n * S3_GETS_PER_IMAGE * S3_GET_PRICE_PER_1K / 1000,
    )


def estimate_from_totals(timed_jobs: int, processor_ms_total: float,
                         memory_mb: int = DEFAULT_MEMORY_MB) -> CostEstimate:
    """Cost of 1,000 images from the rollups' sums over a period (``GET /stats`` totals:
    ``timed_jobs`` jobs whose processor time adds up to ``processor_ms_total``).

    Compute is linear in duration, so the mean prices the batch; only Lambda's per-invocation
    rounding up to the next millisecond is taken on the mean instead of on each job (at most
    1 ms per invocation)."""
    if timed_jobs <= 0:
        raise ValueError("need at least one measured job")
    mean = processor_ms_total / timed_jobs
    return estimate_per_1000([mean + SERVICE_OVERHEAD_MS], memory_mb)
