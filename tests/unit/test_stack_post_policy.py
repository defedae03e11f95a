"""S3 presigned POST policy enforcement in the emulator, with boto3 policies and real HTTP POSTs."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from pipeline.stack.emulator import Emulator
from pipeline.stack.post_policy import PolicyError, check_post

BUCKET = "policy-test"
KEY = "uploads/abc/photo.jpg"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = Emulator(tmp_path_factory.mktemp("emu")).start()
    s3 = _s3(emu)
    s3.create_bucket(Bucket=BUCKET)
    yield emu
    emu.stop()


def _s3(emu: Emulator, secret: str = "testing") -> Any:  # noqa: S107 - the dummy local secret
    return boto3.client(
        "s3",
        endpoint_url=emu.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4"),
    )


def _presign(
    emu: Emulator,
    key: str = KEY,
    max_bytes: int = 1000,
    expires: int = 300,
    secret: str = "testing",  # noqa: S107 - the dummy local secret
    ctype: str = "image/jpeg",
) -> dict[str, Any]:
    return _s3(emu, secret).generate_presigned_post(
        BUCKET,
        key,
        Fields={"Content-Type": ctype},
        Conditions=[{"Content-Type": ctype}, ["content-length-range", 1, max_bytes]],
        ExpiresIn=expires,
    )


def _post(
    p: dict[str, Any], data: bytes, fields: dict[str, str] | None = None, ctype: str = "image/jpeg"
) -> httpx.Response:
    form = {**p["fields"], **(fields or {})}
    return httpx.post(p["url"], data=form, files={"file": ("photo.jpg", data, ctype)}, timeout=30)


def _exists(emu: Emulator, key: str = KEY) -> bool:
    try:
        _s3(emu).head_object(Bucket=BUCKET, Key=key)
        return True
    except Exception:
        return False


def test_valid_upload_is_stored(emulator):
    r = _post(_presign(emulator), b"x" * 500)
    assert r.status_code == 204, r.text
    assert _s3(emulator).get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"x" * 500


def test_too_large_is_entity_too_large(emulator):
    key = "uploads/big/photo.jpg"
    r = _post(_presign(emulator, key=key, max_bytes=100), b"x" * 101)
    assert r.status_code == 400
    assert b"<Code>EntityTooLarge</Code>" in r.content
    assert b"Your proposed upload exceeds the maximum allowed size" in r.content
    assert b"<MaxSizeAllowed>100</MaxSizeAllowed>" in r.content
    assert not _exists(emulator, key)


def test_empty_file_is_entity_too_small(emulator):
    key = "uploads/empty/photo.jpg"
    r = _post(_presign(emulator, key=key), b"")
    assert r.status_code == 400 and b"EntityTooSmall" in r.content
    assert not _exists(emulator, key)


def test_other_key_is_denied(emulator):
    r = _post(_presign(emulator, key="uploads/mine/a.jpg"), b"abc", {"key": "uploads/theirs/a.jpg"})
    assert r.status_code == 403
    assert b"<Code>AccessDenied</Code>" in r.content and b"Policy Condition failed" in r.content
    assert not _exists(emulator, "uploads/theirs/a.jpg")


def test_other_content_type_is_denied(emulator):
    key = "uploads/ctype/a.jpg"
    r = _post(_presign(emulator, key=key), b"abc", {"Content-Type": "text/html"}, ctype="text/html")
    assert r.status_code == 403 and b"Policy Condition failed" in r.content
    assert not _exists(emulator, key)


def test_extra_field_not_in_policy_is_denied(emulator):
    key = "uploads/extra/a.jpg"
    r = _post(_presign(emulator, key=key), b"abc", {"x-amz-meta-evil": "1"})
    assert r.status_code == 403 and b"Extra input fields: x-amz-meta-evil" in r.content


def test_x_ignore_fields_are_allowed(emulator):
    key = "uploads/ignore/a.jpg"
    r = _post(_presign(emulator, key=key), b"abc", {"x-ignore-tracking": "1"})
    assert r.status_code == 204, r.text


def test_expired_policy_is_denied(emulator):
    key = "uploads/expired/a.jpg"
    p = _presign(emulator, key=key, expires=1)
    time.sleep(1.5)
    r = _post(p, b"abc")
    assert r.status_code == 403 and b"Policy expired" in r.content
    assert not _exists(emulator, key)


def test_wrong_secret_is_signature_mismatch(emulator):
    key = "uploads/sig/a.jpg"
    r = _post(_presign(emulator, key=key, secret="not-the-secret"), b"abc")
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content
    assert not _exists(emulator, key)


def test_tampered_policy_is_signature_mismatch(emulator):
    p = _presign(emulator, key="uploads/tamper/a.jpg", max_bytes=10)
    policy = json.loads(base64.b64decode(p["fields"]["policy"]))
    policy["conditions"] = [c for c in policy["conditions"] if not isinstance(c, list)] + [
        ["content-length-range", 1, 10**9]
    ]
    forged = base64.b64encode(json.dumps(policy).encode()).decode()
    r = _post(p, b"x" * 100, {"policy": forged})
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content


def test_anonymous_form_post_is_denied(emulator):
    r = httpx.post(
        f"{emulator.endpoint_url}/{BUCKET}",
        data={"key": "uploads/anon/a.jpg"},
        files={"file": ("a.jpg", b"abc", "image/jpeg")},
    )
    assert r.status_code == 403 and b"AccessDenied" in r.content
    assert not _exists(emulator, "uploads/anon/a.jpg")


def test_signed_api_calls_pass_through(emulator):
    s3 = _s3(emulator)
    s3.put_object(Bucket=BUCKET, Key="direct/put.txt", Body=b"hi")
    assert s3.get_object(Bucket=BUCKET, Key="direct/put.txt")["Body"].read() == b"hi"


# -- check_post directly (conditions syntax) ---------------------------------------------------
def _fields(policy: dict[str, Any], **extra: str) -> dict[str, str]:
    import hashlib
    import hmac

    from pipeline.stack.post_policy import signing_key

    b64 = base64.b64encode(json.dumps(policy).encode()).decode()
    sig = hmac.new(signing_key("s", "20260101", "us-east-1", "s3"), b64.encode(), hashlib.sha256).hexdigest()
    return {
        "policy": b64,
        "x-amz-signature": sig,
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": "ak/20260101/us-east-1/s3/aws4_request",
        "x-amz-date": "20260101T000000Z",
        **extra,
    }


_BASE = [
    {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
    {"x-amz-credential": "ak/20260101/us-east-1/s3/aws4_request"},
    {"x-amz-date": "20260101T000000Z"},
    {"bucket": "b"},
]


def test_starts_with_and_eq_conditions():
    policy = {
        "expiration": "2099-01-01T00:00:00.000Z",
        "conditions": [*_BASE, ["starts-with", "$key", "uploads/"], ["eq", "$Content-Type", "image/png"]],
    }
    check_post("b", _fields(policy, key="uploads/x.png", **{"content-type": "image/png"}), 5, {"ak": "s"})
    with pytest.raises(PolicyError) as exc:
        check_post("b", _fields(policy, key="outputs/x.png", **{"content-type": "image/png"}), 5, {"ak": "s"})
    assert exc.value.status == 403
    with pytest.raises(PolicyError):
        check_post(
            "other-bucket",
            _fields(policy, key="uploads/x.png", **{"content-type": "image/png"}),
            5,
            {"ak": "s"},
        )


def test_unknown_access_key_and_missing_file():
    policy = {"expiration": "2099-01-01T00:00:00Z", "conditions": _BASE}
    with pytest.raises(PolicyError) as exc:
        check_post("b", _fields(policy), 5, {"other": "s"})
    assert exc.value.code == "InvalidAccessKeyId"
    with pytest.raises(PolicyError) as exc:
        check_post("b", _fields(policy), None, {"ak": "s"})
    assert exc.value.status == 400


def test_legacy_sigv2_policy_is_verified_too(emulator):
    s3v2 = boto3.client(
        "s3",
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )  # boto3's default: SigV2 POST
    p = s3v2.generate_presigned_post(BUCKET, "uploads/v2/a.jpg", Conditions=[["content-length-range", 1, 10]])
    assert "AWSAccessKeyId" in p["fields"]
    ok = httpx.post(p["url"], data=p["fields"], files={"file": ("a.jpg", b"abc", "image/jpeg")})
    assert ok.status_code == 204, ok.text
    big = httpx.post(p["url"], data=p["fields"], files={"file": ("a.jpg", b"x" * 11, "image/jpeg")})
    assert big.status_code == 400 and b"EntityTooLarge" in big.content
    forged = httpx.post(
        p["url"], data={**p["fields"], "signature": "AAAA"}, files={"file": ("a.jpg", b"abc")}
    )
    assert forged.status_code == 403 and b"SignatureDoesNotMatch" in forged.content


# -- ways around the policy that moto alone would accept ----------------------------------------
def test_second_file_part_cannot_carry_an_oversized_body(emulator):
    # moto stores the last file part whatever its name; the policy must not be checked on another
    p = _presign(emulator, key="uploads/two/parts.jpg", max_bytes=1000)
    files = [("file", ("a.jpg", b"x" * 10, "image/jpeg")), ("other", ("b.jpg", b"y" * 5000, "image/jpeg"))]
    r = httpx.post(p["url"], data=p["fields"], files=files, timeout=30)
    assert r.status_code == 400 and b"InvalidArgument" in r.content, r.text
    assert not _exists(emulator, "uploads/two/parts.jpg")


def test_field_repeated_in_another_case_cannot_change_the_key(emulator):
    # moto reads the field named exactly "key"; the policy was checked on "KEY"
    p = _presign(emulator, key="uploads/case/ok.jpg")
    fields = {"KEY": p["fields"]["key"], **{k: v for k, v in p["fields"].items() if k != "key"}}
    fields["key"] = "outputs/case/evil.jpg"
    r = httpx.post(p["url"], data=fields, files={"file": ("a.jpg", b"x" * 10, "image/jpeg")}, timeout=30)
    assert r.status_code == 400 and b"InvalidArgument" in r.content, r.text
    assert not _exists(emulator, "outputs/case/evil.jpg")
    assert not _exists(emulator, "uploads/case/ok.jpg")


def test_virtual_hosted_form_post_is_checked_too(emulator):
    r = httpx.post(
        f"{emulator.endpoint_url}/",
        headers={"Host": f"{BUCKET}.s3.amazonaws.com"},
        data={"key": "uploads/vhost/a.jpg"},
        files={"file": ("a.jpg", b"abc", "image/jpeg")},
    )
    assert r.status_code == 403 and b"AccessDenied" in r.content, r.text
    assert not _exists(emulator, "uploads/vhost/a.jpg")


def test_urlencoded_form_post_is_checked_too(emulator):
    # moto takes the body from a url-encoded "file" field as well
    r = httpx.post(f"{emulator.endpoint_url}/{BUCKET}", data={"key": "uploads/urlenc/a.jpg", "file": "abc"})
    assert r.status_code == 403 and b"AccessDenied" in r.content, r.text
    assert not _exists(emulator, "uploads/urlenc/a.jpg")


def test_authorization_header_does_not_exempt_a_form_upload(emulator):
    r = httpx.post(
        f"{emulator.endpoint_url}/{BUCKET}",
        headers={"Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request"},
        data={"key": "uploads/authz/a.jpg"},
        files={"file": ("a.jpg", b"abc", "image/jpeg")},
    )
    assert r.status_code == 403 and b"AccessDenied" in r.content, r.text
    assert not _exists(emulator, "uploads/authz/a.jpg")


# -- the parsed form left for moto (moto_speedups lets moto's request take it) ----------------
def _middleware_call(
    fields: dict[str, str], data: bytes, limits: tuple[Any, ...] | None = None
) -> tuple[str, dict[str, Any] | None]:
    """A multipart POST through PostPolicyMiddleware alone: (status, environ moto would get)."""
    import io

    from werkzeug.datastructures import ImmutableMultiDict

    from pipeline.stack import post_policy

    files = {"file": ("a.jpg", data, "image/jpeg")}
    req = httpx.Request("POST", "http://127.0.0.1/b", data=fields, files=files)
    body = req.read()
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("204 No Content", [])
        return [b""]

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/b",
        "CONTENT_TYPE": req.headers["content-type"],
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    status: list[str] = []
    mw = post_policy.PostPolicyMiddleware(app, {"ak": "s"}, clock=lambda: 0.0)
    original = post_policy.moto_form_limits
    if limits is not None:
        post_policy.moto_form_limits = lambda: (*limits, ImmutableMultiDict)  # type: ignore[assignment]
    try:
        mw(environ, lambda s, _h: status.append(s))
    finally:
        post_policy.moto_form_limits = original  # type: ignore[assignment]
    return status[0], (seen or None)


_SHARED_POLICY = {
    "expiration": "2099-01-01T00:00:00Z",
    "conditions": [*_BASE, {"key": "uploads/a.jpg"}, ["content-length-range", 1, 4096]],
}


def test_the_checked_form_is_left_for_moto_with_the_file_part_rewound():
    from pipeline.stack.post_policy import SHARED_FORM, SharedForm, moto_form_limits

    data = b"\xff\xd8 photo \r\n--not-a-boundary\r\n\xff\xd9"
    status, environ = _middleware_call(_fields(_SHARED_POLICY, key="uploads/a.jpg"), data)
    assert status.startswith("204") and environ is not None
    shared = environ[SHARED_FORM]
    assert type(shared) is SharedForm and shared.limits == moto_form_limits()
    assert shared.body is environ["imagepipe.body"] and shared.content_type == environ["CONTENT_TYPE"]
    _stream, form, files = shared.data
    assert form["key"] == "uploads/a.jpg"
    assert files["file"].stream.read() == data  # from the start: moto stores what was checked
    assert environ["wsgi.input"].read() == shared.body  # moto without the speed-ups parses this


def test_policy_is_as_strict_when_the_form_is_over_moto_limits():
    """Over moto's limits the form is parsed again without them (moto answers 413 itself);
    the policy is still checked and nothing is shared."""
    from pipeline.stack.post_policy import SHARED_FORM

    big = {"x-ignore-pad": "p" * 300}
    tiny = (200, None, 1000)
    status, environ = _middleware_call(_fields(_SHARED_POLICY, key="uploads/a.jpg", **big), b"x", tiny)
    assert status.startswith("204") and environ is not None and SHARED_FORM not in environ
    for fields, data, want in (
        (_fields(_SHARED_POLICY, key="uploads/other.jpg", **big), b"x", "403"),  # key not allowed
        (_fields(_SHARED_POLICY, key="uploads/a.jpg", **big), b"x" * 4097, "400"),  # too large
        (_fields(_SHARED_POLICY, key="uploads/a.jpg", extra="p" * 300), b"x", "403"),  # uncovered field
    ):
        status, environ = _middleware_call(fields, data, tiny)
        assert status.startswith(want) and environ is None, (status, fields.get("key"))
