"""Security: every route refuses a missing or wrong API key; presigned POST policies are
decoded and checked (exact key, size range, content type, expiry ≤ 15 min) and S3 refuses
uploads that step outside them; presigned GETs expire within 15 minutes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.reliability.conftest import api, post_file, presign, record_figures, upload, wait_job
from tests.reliability.test_fuzz_api import OPERATIONS
from tests.unit.imagegen import photo_bytes

SAMPLE_ID = "0123456789abcdef0123456789abcdef"


def _routes() -> list[tuple[str, str]]:
    """Every documented operation (path parameters filled in) plus an unknown route."""
    out = []
    for label in sorted(OPERATIONS):
        method, path = label.split(" ", 1)
        path = (path.replace("{image_id}", SAMPLE_ID).replace("{job_id}", f"{SAMPLE_ID}-0123456789abcdef")
                .replace("{sweep_id}", SAMPLE_ID))
        out.append((method, path))
    return out + [("GET", "/no-such-route"), ("POST", "/images")]


def _bad_keys(good: str) -> dict[str, list[tuple[str, str]]]:
    bad = {
        "missing": {},
        "empty": {"x-api-key": ""},
        "wrong": {"x-api-key": "not-the-key"},
        "prefix": {"x-api-key": good[:-1]},
        "longer": {"x-api-key": good + "x"},
        "upper": {"x-api-key": good.upper()},
        "inner_space": {"x-api-key": f"{good[:4]} {good[4:]}"},
        "as_bearer": {"authorization": f"Bearer {good}"},
        "other_header": {"x-api-token": good},
    }
    out = {name: list(h.items()) for name, h in bad.items()}
    # a wrong key next to the right one (API Gateway joins repeated headers with a comma)
    out["wrong_then_right"] = [("x-api-key", "wrong"), ("x-api-key", good)]
    return out


def test_every_route_rejects_a_missing_or_wrong_key(local_stack):
    body = json.dumps({"filename": "x.jpg", "content_type": "image/jpeg", "size": 10})
    routes = _routes()
    bad = _bad_keys(local_stack.api_key)
    tried = 0
    with httpx.Client(base_url=local_stack.api_url, timeout=30) as c:
        for method, path in routes:
            for name, headers in bad.items():
                r = c.request(method, path, headers=[*headers, ("content-type", "application/json")],
                              content=body if method in ("POST", "PUT") else None)
                tried += 1
                assert r.status_code == 401, (method, path, name, r.status_code, r.text)
                assert r.json()["error"]["code"] == "unauthorized", (method, path, name)
            # the key in the query string is not a key
            r = c.request(method, path, params={"x-api-key": local_stack.api_key})
            assert r.status_code == 401, (method, path, "query")
            tried += 1
        # and the right key gets past the door on the same routes (no 401)
        for method, path in routes:
            good = {"x-api-key": local_stack.api_key, "content-type": "application/json"}
            r = c.request(method, path, headers=good, content=body if method == "POST" else None)
            assert r.status_code != 401, (method, path)
    record_figures("auth", {"routes": len(routes), "bad_key_requests": tried, "all_401": True})


def _policy(fields: dict[str, str]) -> dict:
    return json.loads(base64.b64decode(fields["policy"]))


def test_presigned_post_policy_pins_key_size_type_and_expiry(local_stack):
    with api(local_stack) as c:
        r = presign(c, "my photo.png", "image/png", 12345)
    assert r.status_code == 201, r.text
    reply = r.json()
    fields = reply["upload"]["fields"]
    policy = _policy(fields)
    conds = policy["conditions"]
    assert {"key": reply["key"]} in conds
    assert reply["key"] == f"uploads/{reply['image_id']}/my photo.png"
    assert not any(isinstance(cd, list) and str(cd[0]).lower() == "starts-with" for cd in conds)
    assert ["content-length-range", 1, 12345] in conds  # no more than announced
    assert {"Content-Type": "image/png"} in conds and fields["Content-Type"] == "image/png"
    assert {"bucket": "imagepipe-source"} in conds
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    remaining = (expires - datetime.now(UTC)).total_seconds()
    assert 0 < remaining <= 15 * 60
    assert reply["expires_in"] <= 900


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("key", "AccessDenied"),
        ("content_type", "AccessDenied"),
        ("policy", "SignatureDoesNotMatch"),
        ("signature", "SignatureDoesNotMatch"),
        ("extra_field", "AccessDenied"),
        ("no_policy", "AccessDenied"),
    ],
)
def test_s3_refuses_uploads_outside_the_signed_policy(local_stack, tamper, code):
    data = photo_bytes(32, 32, "png")
    with api(local_stack) as c:
        reply = presign(c, "p.png", "image/png", len(data)).json()
    upload_ = {"url": reply["upload"]["url"], "fields": dict(reply["upload"]["fields"])}
    f = upload_["fields"]
    ctype = "image/png"
    if tamper == "key":
        f["key"] = f"uploads/{SAMPLE_ID}/p.png"
    elif tamper == "content_type":
        f["Content-Type"] = ctype = "text/html"
    elif tamper == "policy":
        p = _policy(f)
        p["conditions"] = [cd for cd in p["conditions"] if not (isinstance(cd, list) and
                                                                 cd[0] == "content-length-range")]
        f["policy"] = base64.b64encode(json.dumps(p).encode()).decode()
    elif tamper == "signature":
        f["x-amz-signature"] = "0" * 64
    elif tamper == "extra_field":
        f["x-amz-meta-owner"] = "mallory"
    elif tamper == "no_policy":
        f = {"key": f["key"], "Content-Type": f["Content-Type"]}
        upload_["fields"] = f
    r = post_file(upload_, data, "p.png", ctype)
    assert r.status_code in (400, 403), (tamper, r.status_code, r.text)
    assert f"<Code>{code}</Code>".encode() in r.content, (tamper, r.text)


def test_presigned_downloads_expire_within_15_minutes(local_stack):
    reply = upload(local_stack, photo_bytes(40, 30, "jpeg"), "dl.jpg",
                   recipe={"format": "webp", "resize": {"width": 20}})
    job = wait_job(local_stack, reply["job_id"])
    with api(local_stack) as c:
        image = c.get(f"/images/{reply['image_id']}").json()
    for url in (job["result"]["download_url"], image["download_url"]):
        q = parse_qs(urlparse(url).query)
        assert 0 < int(q["X-Amz-Expires"][0]) <= 900, url
        assert httpx.get(url, timeout=30).status_code == 200
