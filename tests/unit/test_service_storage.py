"""Presigned POST policy, safe file names, download URLs, recursion guards."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from imagepipe.errors import BadRequest
from imagepipe.service.storage import content_disposition, output_key, safe_filename, upload_key
from tests.unit.service_env import make_config, mocked_backend


@pytest.fixture
def backend():
    with mocked_backend() as b:
        yield b


def _policy(fields: dict[str, str]) -> dict:
    return json.loads(base64.b64decode(fields["policy"]))


def test_presigned_post_policy_pins_key_size_type_and_expiry(backend):
    key = upload_key(backend.config, "a" * 32, "my photo.jpg")
    post = backend.storage.presign_upload(key, "image/jpeg")
    policy = _policy(post["fields"])
    conds = policy["conditions"]
    assert {"key": key} in conds
    assert {"bucket": backend.config.source_bucket} in conds
    assert {"Content-Type": "image/jpeg"} in conds
    assert ["content-length-range", 1, backend.config.max_upload_bytes] in conds
    # no starts-with escape hatch on the key
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in conds)
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    remaining = (expires - datetime.now(UTC)).total_seconds()
    assert 0 < remaining <= 15 * 60
    assert post["fields"]["key"] == key
    assert post["fields"]["Content-Type"] == "image/jpeg"


def test_presigned_post_range_is_capped_at_the_announced_size(backend):
    key = upload_key(backend.config, "b" * 32, "x.png")
    conds = _policy(backend.storage.presign_upload(key, "image/png", 1234)["fields"])["conditions"]
    assert ["content-length-range", 1, 1234] in conds
    too_big = backend.config.max_upload_bytes * 2
    conds = _policy(backend.storage.presign_upload(key, "image/png", too_big)["fields"])["conditions"]
    assert ["content-length-range", 1, backend.config.max_upload_bytes] in conds


def test_presigned_get_carries_content_disposition(backend):
    url = backend.storage.presign_download(backend.config.dest_bucket, "outputs/x/y.webp", "café.webp")
    q = parse_qs(urlparse(url).query)
    disp = q["response-content-disposition"][0]
    assert "filename*=UTF-8''caf%C3%A9.webp" in disp
    assert int(q["X-Amz-Expires"][0]) <= 900


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "....etcpasswd"),
        ("a/b\\c.png", "abc.png"),
        ("tab\there\x00.gif", "tabhere.gif"),
        ("日本語 写真.webp", "日本語 写真.webp"),
        ("..", "upload"),
        ("", "upload"),
        ("   ", "upload"),
    ],
)
def test_safe_filename(raw, expected):
    assert safe_filename(raw) == expected


def test_safe_filename_caps_length_and_keeps_extension():
    name = safe_filename("x" * 500 + ".jpeg")
    assert len(name) == 200 and name.endswith(".jpeg")


def test_keys_layout():
    cfg = make_config()
    assert upload_key(cfg, "ab" * 16, "a b+c.jpg") == f"uploads/{'ab' * 16}/a b+c.jpg"
    expected = f"outputs/{'ab' * 16}/0123456789abcdef.webp"
    assert output_key(cfg, "ab" * 16, "0123456789abcdef", ".webp") == expected


def test_content_disposition_ascii_fallback():
    value = content_disposition('naïve "quote".png')
    assert value.startswith('inline; filename="na_ve \'quote\'.png"')
    assert unquote(value.split("''", 1)[1]) == 'naïve "quote".png'


def test_source_reads_refuse_other_buckets_and_prefixes(backend):
    s3 = backend.clients.s3
    s3.put_object(Bucket=backend.config.dest_bucket, Key="uploads/x/y.png", Body=b"x")
    s3.put_object(Bucket=backend.config.source_bucket, Key="elsewhere/y.png", Body=b"x")
    with pytest.raises(BadRequest):
        backend.storage.get_source(backend.config.dest_bucket, "uploads/x/y.png")
    with pytest.raises(BadRequest):
        backend.storage.get_source(backend.config.source_bucket, "elsewhere/y.png")
    with pytest.raises(BadRequest):
        backend.storage.put_output("uploads/x/y.png", b"x", "image/png")


def test_head_and_delete_prefix(backend):
    s3, cfg = backend.clients.s3, backend.config
    assert backend.storage.head(cfg.source_bucket, "uploads/none/x.png") is None
    for i in range(3):
        s3.put_object(Bucket=cfg.dest_bucket, Key=f"outputs/img/{i}.png", Body=b"x")
    s3.put_object(Bucket=cfg.dest_bucket, Key="outputs/other/0.png", Body=b"x")
    assert backend.storage.delete_prefix(cfg.dest_bucket, "outputs/img/") == 3
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=cfg.dest_bucket)["Contents"]]
    assert left == ["outputs/other/0.png"]


def test_presigned_urls_name_the_buckets_region_on_real_aws(monkeypatch):
    """Without an endpoint override, presigned URLs must use the regional virtual host: the
    global ``bucket.s3.amazonaws.com`` answers 307 for a new bucket outside us-east-1 (and the
    redirect breaks the POST upload and the GET signature)."""
    from imagepipe.service.aws import Clients
    from imagepipe.service.storage import Storage

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = make_config(region="eu-west-3")
    storage = Storage(Clients.create(config).s3, config)  # presigning is local: no request is sent
    host = f"{config.source_bucket}.s3.eu-west-3.amazonaws.com"
    assert urlparse(storage.presign_upload("uploads/a/b.png", "image/png", 10)["url"]).netloc == host
    assert urlparse(storage.presign_download(config.source_bucket, "uploads/a/b.png")).netloc == host
