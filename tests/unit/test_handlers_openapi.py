"""docs/openapi.yaml matches the API handler: the same routes, and real responses (errors
included) validate against the documented schema for their status code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imagepipe.handlers.api as api_handler
from imagepipe.service.jobs import JobRunner
from tests.unit.service_env import FakeEngine, mocked_backend
from tests.unit.test_handlers_api import call, event

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
_DOC_ONLY = {"nullable", "example", "description", "default"}


def _resolve(ref: str) -> Any:
    node: Any = SPEC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: refs inlined, ``nullable`` as ``anyOf [.., null]``."""
    if isinstance(node, list):
        return [to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return to_jsonschema(_resolve(node["$ref"]))
    out = {k: to_jsonschema(v) for k, v in node.items() if k not in _DOC_ONLY}
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") else out


def check(method: str, template: str, status: int, body: Any) -> None:
    op = SPEC["paths"][template][method.lower()]
    assert str(status) in op["responses"], f"{method} {template} answered undocumented {status}"
    resp = op["responses"][str(status)]
    if "$ref" in resp:
        resp = _resolve(resp["$ref"])
    if "content" not in resp:
        assert body is None
        return
    schema = to_jsonschema(resp["content"]["application/json"]["schema"])
    jsonschema.validate(body, schema)


def test_spec_and_handler_have_the_same_routes():
    app = api_handler.app
    handler_routes = {(r.method, r.openapi_path) for r in app._static_routes + app._dynamic_routes}
    spec_routes = {(m.upper(), p) for p, ops in SPEC["paths"].items() for m in ops if m != "parameters"}
    assert handler_routes == spec_routes


def test_every_operation_documents_401_and_500():
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            assert {"401", "500"} <= set(op["responses"]), f"{method} {path}"


@pytest.fixture
def backend(monkeypatch):
    with mocked_backend() as b:
        monkeypatch.setattr(api_handler, "BACKEND", b)
        yield b


def test_responses_match_the_spec(backend):
    def do(method: str, path: str, template: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, got = call(event(method, path, body, **kw))
        check(method, template, status, got)
        return status, got

    # uploads: 201, 400, 401, 413, 415, 422
    _, up = do("POST", "/uploads", "/uploads", {"filename": "a.png", "content_type": "image/png", "size": 9,
                                                "recipe": {"format": "webp"}, "preset": "web"})
    do("POST", "/uploads", "/uploads", {"filename": "a.png"})
    do("POST", "/uploads", "/uploads", {"filename": "a", "content_type": "image/png", "size": 9}, key="bad")
    do("POST", "/uploads", "/uploads", {"filename": "a", "content_type": "image/png", "size": 10**9})
    do("POST", "/uploads", "/uploads", {"filename": "a", "content_type": "text/plain", "size": 9})
    do("POST", "/uploads", "/uploads", {"filename": "a", "content_type": "image/png", "size": 9,
                                        "recipe": {"format": "bmp"}})
    image_id, auto_job = up["image_id"], up["job_id"]
    # jobs before the upload: 409; unknown image: 404; bad recipe: 422
    do("POST", "/jobs", "/jobs", {"image_id": image_id, "recipe": {}})
    do("POST", "/jobs", "/jobs", {"image_id": "f" * 32})
    do("POST", "/jobs", "/jobs", {"image_id": image_id, "recipe": {"quality": 101}})
    backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=up["key"], Body=b"123456789")
    status, accepted = do("POST", "/jobs", "/jobs", {"image_id": image_id, "recipe": {"format": "png"}})
    assert status == 202
    runner = JobRunner(backend, engine=FakeEngine())
    runner.run(accepted["job_id"])
    runner.run(auto_job)
    status, job = do("GET", f"/jobs/{accepted['job_id']}", "/jobs/{job_id}")
    assert status == 200 and job["result"]["download_url"]
    do("GET", "/jobs/nope", "/jobs/{job_id}")
    status, page = do("GET", "/jobs", "/jobs", query={"limit": "1"})
    assert len(page["items"]) == 1 and page["next_cursor"]
    do("GET", "/jobs", "/jobs", query={"limit": "0"})
    do("GET", "/images", "/images")
    do("GET", "/images", "/images", query={"cursor": "x"})
    status, image = do("GET", f"/images/{image_id}", "/images/{image_id}")
    assert len(image["jobs"]) == 2 and image["facts"]
    do("GET", "/images/zzz", "/images/{image_id}")
    do("GET", "/health", "/health")
    status, _ = do("DELETE", f"/images/{image_id}", "/images/{image_id}")
    assert status == 204
    do("DELETE", f"/images/{image_id}", "/images/{image_id}")


# --- fuzz: random bodies and parameters never produce a 5xx or an undocumented answer -------


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_upload_fields = st.fixed_dictionaries({}, optional={
    "filename": st.text(max_size=300) | _json, "content_type": st.sampled_from(
        ["image/png", "image/jpeg", "IMAGE/WEBP", "text/plain", ""]) | _json,
    "size": st.integers(min_value=-5, max_value=10**12) | _json, "recipe": _json | st.fixed_dictionaries(
        {}, optional={"format": st.sampled_from(["webp", "bmp", "png"]), "quality": _json,
                      "resize": _json}),
    "preset": _json, "extra": _json,
})


@pytest.fixture(scope="module")
def fuzz_backend():
    with mocked_backend() as b:
        yield b


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_upload_fields | _json, raw=st.none() | st.text(max_size=40))
def test_fuzz_post_bodies(fuzz_backend, monkeypatch, body, raw):
    monkeypatch.setattr(api_handler, "BACKEND", fuzz_backend)
    payload = raw if raw is not None else json.dumps(body)
    for path in ("/uploads", "/jobs"):
        status, got = call(event("POST", path, payload))
        assert status < 500, got
        check("POST", path, status, got)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ident=st.text(max_size=60), limit=st.text(max_size=6), cursor=st.text(max_size=60))
def test_fuzz_params(fuzz_backend, monkeypatch, ident, limit, cursor):
    monkeypatch.setattr(api_handler, "BACKEND", fuzz_backend)
    ident = quote(ident, safe="") or "x"
    for method, path, template in (("GET", f"/jobs/{ident}", "/jobs/{job_id}"),
                                   ("GET", f"/images/{ident}", "/images/{image_id}"),
                                   ("DELETE", f"/images/{ident}", "/images/{image_id}")):
        status, got = call(event(method, path))
        assert status < 500, got
        check(method, template, status, got)
    for template in ("/images", "/jobs"):
        status, got = call(event("GET", template, query={"limit": limit, "cursor": cursor}))
        assert status < 500, got
        check("GET", template, status, got)
