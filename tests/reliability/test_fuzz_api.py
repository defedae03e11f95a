"""Property-based fuzzing of the HTTP API with schemathesis against docs/openapi.yaml.

Every operation in the spec gets bounded generated requests (valid by the schema and
schema-violating ones) with the API key, sent over real HTTP to the session local stack.
Checks: no 5xx, the status code is documented, the content type is documented, and the
body matches the documented schema. Case counts go to test-artifacts/reliability.jsonl.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks as sc
from schemathesis.core.failures import FailureGroup

from pipeline import PROJECT_ROOT
from tests.reliability.conftest import record_figures

SPEC = Path(PROJECT_ROOT) / "docs" / "openapi.yaml"
MAX_EXAMPLES = 40
CHECKS = [
    sc.not_a_server_error,
    sc.status_code_conformance,
    sc.content_type_conformance,
    sc.response_schema_conformance,
]
CASES: Counter[str] = Counter()


SCHEMA = schemathesis.openapi.from_path(str(SPEC))
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_api_conforms_to_openapi(local_stack, label: str, mode: schemathesis.GenerationMode) -> None:
    """Bounded generated requests for one operation: no 5xx, documented status/type/body."""
    op = OPERATIONS[label]
    headers = {"x-api-key": local_stack.api_key}

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def run(case: schemathesis.Case) -> None:
        CASES[f"{label} {mode.value}"] += 1
        merged = {**(case.headers or {}), **headers}
        response = case.call(base_url=local_stack.api_url, headers=merged, timeout=30)
        case.validate_response(response, checks=CHECKS)

    run()


def test_zz_record_fuzz_figures() -> None:
    """Runs after the fuzz tests in this module: write how many cases were sent."""
    if CASES:
        record_figures("schemathesis", {"operations": len(OPERATIONS), "cases": sum(CASES.values()),
                                        "per_operation_mode": dict(CASES), "max_examples": MAX_EXAMPLES})


def _response(status: int, body: dict[str, object]) -> schemathesis.Response:
    request = requests.Request("GET", "http://127.0.0.1:9/health").prepare()
    return schemathesis.Response(status, {"content-type": ["application/json"]}, json.dumps(body).encode(),
                                 request, 0.01, True)


@pytest.mark.parametrize(("status", "body"), [(500, {"error": {"code": "internal_error", "message": "x"}}),
                                              (200, {"status": "ok"}),
                                              (418, {"error": {"code": "teapot", "message": "x"}})])
def test_the_checks_do_catch_nonconforming_responses(status: int, body: dict[str, object]) -> None:
    """Guard against a fuzz test that cannot fail: a 5xx, a body missing required fields and
    an undocumented status are each rejected by the same checks; a conforming reply passes."""
    case = OPERATIONS["GET /health"].Case()
    with pytest.raises(FailureGroup):
        case.validate_response(_response(status, body), checks=CHECKS)
    ok = {"status": "ok", "checks": {}, "queue_depth": 0, "dlq_depth": 0}
    case.validate_response(_response(200, ok), checks=CHECKS)


@pytest.mark.slow
def test_real_success_responses_match_the_schema(local_stack):
    """Random ids rarely hit existing resources, so the 2xx schemas are also checked on real ones:
    every operation is called on a real image, a succeeded job, a failed job and a sweep."""
    from tests.reliability.conftest import post_file, wait_job
    from tests.unit.imagegen import photo_bytes

    key = {"x-api-key": local_stack.api_key}
    seen: Counter[str] = Counter()

    def call(label: str, expect: int, **kw: object) -> dict:
        case = OPERATIONS[label].Case(media_type="application/json" if "body" in kw else None, **kw)
        response = case.call(base_url=local_stack.api_url, headers=key, timeout=60)
        assert response.status_code == expect, (label, response.status_code, response.text)
        case.validate_response(response, checks=CHECKS)
        seen[f"{label} {expect}"] += 1
        return response.json() if response.content else {}

    data = photo_bytes(64, 48, "png", seed=70)
    recipe = {"format": "webp", "resize": {"width": 32}}
    up = call("POST /uploads", 201, body={"filename": "s.png", "content_type": "image/png",
                                           "size": len(data), "recipe": recipe})
    assert post_file(up["upload"], data, "s.png", "image/png").status_code == 204
    image_id = up["image_id"]
    wait_job(local_stack, up["job_id"])
    job = call("POST /jobs", 202, body={"image_id": image_id, "recipe": {"format": "png"}})
    wait_job(local_stack, job["job_id"])
    bad = call("POST /uploads", 201, body={"filename": "bad.png", "content_type": "image/png", "size": 9,
                                            "recipe": recipe})
    assert post_file(bad["upload"], b"not a png", "bad.png", "image/png").status_code == 204
    assert wait_job(local_stack, bad["job_id"])["status"] == "failed"
    for job_id in (up["job_id"], job["job_id"], bad["job_id"]):
        call("GET /jobs/{job_id}", 200, path_parameters={"job_id": job_id})
    call("GET /jobs", 200, query={"limit": 5})
    call("GET /images", 200, query={"limit": 5})
    for iid in (image_id, bad["image_id"]):
        call("GET /images/{image_id}", 200, path_parameters={"image_id": iid})
    sweep = call("POST /sweeps", 202, body={"image_id": image_id,
                                            "grid": {"formats": ["jpeg"], "qualities": [50, 80]}})
    sweep_id = sweep.get("sweep_id")
    assert sweep_id, sweep
    deadline = time.monotonic() + 90
    while True:  # the schema of a finished sweep (with its points) too
        got = call("GET /sweeps/{sweep_id}", 200, path_parameters={"sweep_id": sweep_id})
        if got["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got["status"] == "succeeded" and len(got.get("points") or []) == 2, got
    call("GET /sweeps", 200, query={"limit": 5})
    study = call("POST /studies", 202, body={"image_ids": [image_id],
                                             "grid": {"formats": ["jpeg", "jxl"], "qualities": [50, 80]}})
    deadline = time.monotonic() + 120
    while True:  # a finished study (per-image points, summary, versions) against the schema
        got = call("GET /studies/{study_id}", 200, path_parameters={"study_id": study["study_id"]})
        if got["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got["status"] == "succeeded" and got["summary"]["curves"], got
    call("GET /studies", 200, query={"limit": 5})
    call("GET /health", 200)
    call("DELETE /images/{image_id}", 204, path_parameters={"image_id": bad["image_id"]})
    record_figures("schema_on_real_resources", {"calls": dict(seen)})
