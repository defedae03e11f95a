"""Property-based fuzzing of the HTTP API with schemathesis against docs/openapi.yaml.

Every operation in the spec gets bounded generated requests (valid by the schema and
schema-violating ones) with the API key, sent over real HTTP to the session local stack.
Checks: no 5xx, the status code is documented, the content type is documented, and the
body matches the documented schema. Case counts go to test-artifacts/reliability.jsonl.
"""

from __future__ import annotations

import json
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
