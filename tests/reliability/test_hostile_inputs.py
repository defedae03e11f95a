"""Hostile and odd inputs through the whole stack: presign → multipart POST to S3 → process
(S3 event or ``POST /jobs``) → poll → download.

Valid-but-odd inputs must succeed with the right pixels; bad ones must fail with the
engine's error code (or be refused by S3's POST policy). After the batch: the stack still
serves, every stored original is still in the source bucket unchanged, and no worker ran
out of memory.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from pipeline.stack.runtime import WORKER_OOM
from tests.reliability import inputs as gen
from tests.reliability.conftest import (
    SOURCE_BUCKET,
    api,
    assert_serving,
    download,
    post_file,
    presign,
    record_figures,
    s3,
    submit_job,
    wait_jobs,
)
from tests.reliability.inputs import Case
from tests.unit import imagegen as ig

# --- pixel checks ----------------------------------------------------------------------------


def same_pixels(expected: Image.Image | bytes, tol: float = 1.0) -> Any:
    """Check: the output decodes to ``expected`` (mean abs difference ≤ ``tol``)."""
    if isinstance(expected, bytes):
        exp = gen.pixels(expected)
    else:
        exp = np.asarray(expected.convert("RGB"), np.int32)

    def check(out: bytes, job: dict[str, Any]) -> None:
        got = gen.pixels(out)
        assert got.shape == exp.shape, (got.shape, exp.shape)
        assert np.abs(got - exp).mean() <= tol

    return check


def oriented(src: bytes, orientation: int) -> Any:
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(src))).convert("RGB")
    stored = np.asarray(Image.open(io.BytesIO(src)).convert("RGB"), np.int32)
    base = same_pixels(expected, tol=1.0)

    def check(out: bytes, job: dict[str, Any]) -> None:
        base(out, job)
        got = gen.pixels(out)
        if orientation != 1:  # the tag was applied, not ignored
            assert got.shape != stored.shape or np.abs(got - stored).mean() > 20
        assert job["result"]["width"] == expected.width and job["result"]["height"] == expected.height

    return check


def gray16(src: bytes) -> Any:
    want = np.asarray(Image.open(io.BytesIO(src)), np.int64)

    def check(out: bytes, job: dict[str, Any]) -> None:
        im = Image.open(io.BytesIO(out))
        got = np.asarray(im, np.int64)
        if im.mode not in ("I;16", "I"):  # an 8-bit output must be the top byte
            got = got * 257
        assert got.shape == want.shape and np.abs(got - want).max() <= 257

    return check


def rgb16(expected8: np.ndarray) -> Any:
    def check(out: bytes, job: dict[str, Any]) -> None:
        assert np.abs(gen.pixels(out) - expected8.astype(np.int32)).max() <= 1

    return check


def palette_alpha(src: bytes) -> Any:
    ref = Image.open(io.BytesIO(src)).convert("RGBA")

    def check(out: bytes, job: dict[str, Any]) -> None:
        got = np.asarray(Image.open(io.BytesIO(out)).convert("RGBA"), np.int32)
        want = np.asarray(ref, np.int32)
        h, w = got.shape[:2]
        assert got[0, 0, 3] == 0 and got[h - 1, w - 1, 3] == 255  # transparency kept
        opaque = want[..., 3] == 255
        assert np.abs(got[opaque][:, :3] - want[opaque][:, :3]).max() <= 1

    return check


def p3_to_srgb(img: Image.Image, icc: bytes) -> Any:
    expected = ImageCms.profileToProfile(
        img, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"), outputMode="RGB"
    )
    untagged = np.asarray(img, np.int32)
    base = same_pixels(expected, tol=1.0)

    def check(out: bytes, job: dict[str, Any]) -> None:
        base(out, job)
        assert np.abs(gen.pixels(out) - untagged).max() >= 10  # the profile was honoured

    return check


def stripped_of_exif(src_img: Image.Image, max_bytes: int) -> Any:
    base = same_pixels(src_img, tol=2.0)

    def check(out: bytes, job: dict[str, Any]) -> None:
        base(out, job)
        assert len(out) < max_bytes
        assert 0x9286 not in Image.open(io.BytesIO(out)).getexif()

    return check


def no_zip_inside(src: bytes) -> Any:
    base = same_pixels(src, tol=1.0)

    def check(out: bytes, job: dict[str, Any]) -> None:
        base(out, job)
        assert b"PK\x03\x04" not in out  # the appended archive did not survive re-encoding

    return check


def size_is(w: int, h: int, fmt: str | None = None) -> Any:
    def check(out: bytes, job: dict[str, Any]) -> None:
        im = Image.open(io.BytesIO(out))
        assert im.size == (w, h)
        if fmt:
            assert im.format == fmt
        assert (job["result"]["width"], job["result"]["height"]) == (w, h)

    return check


def key_name(expected_name: str) -> Any:
    def check(out: bytes, job: dict[str, Any]) -> None:
        assert job["source_key"].endswith("/" + expected_name), job["source_key"]
        assert len(job["source_key"].rsplit("/", 1)[1]) <= 200

    return check


# --- the cases -------------------------------------------------------------------------------


def build_cases() -> list[Case]:
    """Every kind of input with its expected outcome (≥ 30 kinds)."""
    jpg = ig.photo_bytes(64, 48, "jpeg", seed=1)
    png = ig.photo_bytes(64, 48, "png", seed=2)
    gif = ig.animated_gif(3, 24, 16)
    failed = "failed"
    bad: list[Case] = [
        Case("zero_bytes", b"", announce=1, expect="rejected", code="EntityTooSmall"),
        Case("larger_than_announced", ig.photo_bytes(200, 150, "jpeg"), announce=1000,
             expect="rejected", code="EntityTooLarge"),
        Case("truncated_jpeg", ig.truncated(jpg, 0.5), expect=failed, code="corrupt_image"),
        Case("truncated_png", ig.truncated(png, 0.6), "t.png", "image/png", expect=failed,
             code="corrupt_image"),
        Case("truncated_gif", gif[:-40], "t.gif", "image/gif", expect=failed, code="corrupt_image"),
        Case("jpeg_header_only", jpg[:180], expect=failed, code="corrupt_image", trigger="job"),
        Case("bitflipped_jpeg", gen.bitflip(jpg, 300, 30, seed=1), expect=failed, code="corrupt_image"),
        Case("bitflipped_png", gen.bitflip(png, 40, 5, seed=3), "b.png", "image/png", expect=failed,
             code="corrupt_image", trigger="job"),
        Case("random_bytes", gen.random_bytes(), expect=failed, code="unsupported_format"),
        Case("text_as_jpg", ig.text_bytes(), expect=failed, code="unsupported_format"),
        Case("html_as_jpg", gen.html_bytes(), expect=failed, code="unsupported_format", trigger="job"),
        Case("svg_with_script_as_jpg", gen.svg_script_bytes(), expect=failed, code="unsupported_format"),
        Case("pdf_as_jpg", ig.pdf_bytes(), expect=failed, code="unsupported_format"),
        Case("eps_as_jpg", ig.eps_bytes(), expect=failed, code="unsupported_format", trigger="job"),
        Case("zip_as_jpg", gen.zip_bytes(), expect=failed, code="unsupported_format"),
        Case("bmp_as_png", ig.photo_bytes(16, 16, "bmp"), "x.png", "image/png", expect=failed,
             code="unsupported_format"),
        Case("gif_js_polyglot", gen.gif_js_polyglot(), "x.gif", "image/gif", expect=failed,
             code="corrupt_image"),
        Case("png_header_20000x10000", ig.png_header_only(20000, 10000), "big.png", "image/png",
             expect=failed, code="too_many_pixels"),
        Case("jpeg_header_60000x60000", gen.jpeg_claiming(60000, 60000), expect=failed,
             code="too_many_pixels", trigger="job"),
        Case("png_1bit_12000x12000_bomb", gen.one_bit_bomb_png(), "bomb.png", "image/png", expect=failed,
             code="too_many_pixels"),
        Case("gif_500_frames", ig.animated_gif(500, 16, 16), "anim.gif", "image/gif", expect=failed,
             code="too_many_frames"),
        Case("truncated_heic", ig.truncated(ig.encode(ig.photo_like(64, 48), "heif"), 0.5), "t.heic",
             "image/heic", expect=failed, code="corrupt_image"),
        Case("jxl_header_20000x15000", ig.jxl_header_only(20000, 15000), "big.jxl", "image/jxl",
             expect=failed, code="too_many_pixels", trigger="job"),
    ]
    odd: list[Case] = []
    quad = gen.quadrants()
    for o in range(1, 9):
        src = gen.exif_jpeg(quad, o)
        odd.append(Case(f"exif_orientation_{o}", src, f"o{o}.jpg", check=oriented(src, o),
                        trigger="job" if o % 2 else "s3"))
    cmyk = ig.photo_bytes(40, 30, "jpeg", mode="CMYK", seed=4)
    g16 = ig.photo_bytes(40, 30, "png", mode="I;16", seed=5)
    c16, c16_expected = gen.rgb16_png()
    pal = ig.photo_bytes(40, 30, "png", mode="Pt", seed=6)
    la = ig.photo_bytes(40, 30, "png", mode="LA", seed=7)
    swatch, p3 = gen.saturated_swatches(), gen.p3_icc()
    big_exif = gen.exif_jpeg(quad, 1, {0x9286: b"ASCII\x00\x00\x00" + b"A" * 60000})
    polyglot = jpg + gen.zip_bytes()
    name_src = ig.photo_bytes(32, 24, "jpeg", seed=8)
    long_name = "n" * 296 + ".jpg"
    odd += [
        Case("cmyk_jpeg", cmyk, check=same_pixels(cmyk, tol=1.0)),
        Case("gray_16bit_png", g16, "g16.png", "image/png", check=gray16(g16)),
        Case("rgb_16bit_png", c16, "c16.png", "image/png", check=rgb16(c16_expected), trigger="job"),
        Case("palette_with_transparency", pal, "p.png", "image/png", check=palette_alpha(pal)),
        Case("gray_alpha_png", la, "la.png", "image/png", check=size_is(40, 30, "PNG")),
        Case("huge_exif_block_60kB", big_exif, check=stripped_of_exif(quad, 20_000)),
        Case("display_p3_icc", ig.encode(swatch, "png", icc_profile=p3), "p3.png", "image/png",
             check=p3_to_srgb(swatch, p3), trigger="job"),
        Case("jpeg_zip_polyglot", polyglot, check=no_zip_inside(jpg)),
        Case("png_sent_as_image_jpeg", png, "mislabelled.jpg", "image/jpeg", check=same_pixels(png, 0)),
        Case("tiff_as_jpeg", ig.photo_bytes(20, 10, "tiff"), "t.tiff", "image/jpeg", check=size_is(20, 10)),
        Case("webp_input", ig.photo_bytes(30, 20, "webp"), "w.webp", "image/webp", check=size_is(30, 20)),
        Case("avif_input", ig.photo_bytes(30, 20, "avif"), "a.avif", "image/avif", check=size_is(30, 20)),
        Case("heic_input", ig.photo_bytes(30, 20, "heif"), "a.heic", "image/heic", check=size_is(30, 20)),
        Case("jxl_input", ig.photo_bytes(30, 20, "jxl"), "a.jxl", "image/jxl", check=size_is(30, 20),
             trigger="job"),
        Case("animated_gif_first_frame", gif, "anim.gif", "image/gif", check=size_is(24, 16, "PNG")),
        Case("one_pixel", ig.photo_bytes(1, 1, "png"), "1.png", "image/png", check=size_is(1, 1)),
        Case("extreme_aspect_10000x1", ig.photo_bytes(10000, 1, "png"), "wide.png", "image/png",
             recipe=dict(gen.SMALL_WEBP), check=size_is(64, 1, "WEBP")),
        Case("filename_spaces", name_src, "my holiday photo.jpg", check=key_name("my holiday photo.jpg")),
        Case("filename_plus", name_src, "a+b+c.jpg", check=key_name("a+b+c.jpg"), trigger="job"),
        Case("filename_percent", name_src, "100% real %20 %2F.jpg", check=key_name("100% real %20 %2F.jpg")),
        Case("filename_unicode", name_src, "фото café 写真 🎉.jpg", check=key_name("фото café 写真 🎉.jpg")),
        Case("filename_300_chars", name_src, long_name, check=key_name("n" * 196 + ".jpg")),
    ]
    return bad + odd


def _run_case(stack: Any, case: Case) -> dict[str, Any]:
    """Presign and upload one case; returns what happened at the door."""
    recipe = case.recipe if case.trigger == "s3" else None
    with api(stack) as c:
        r = presign(c, case.filename, case.content_type, case.announce or len(case.data), recipe)
    assert r.status_code == 201, (case.name, r.text)
    reply = r.json()
    post = post_file(reply["upload"], case.data, case.filename, case.content_type)
    return {"reply": reply, "post": post}


@pytest.mark.slow
def test_hostile_and_odd_inputs_through_the_whole_stack(local_stack):
    cases = build_cases()
    assert len(cases) >= 30 and len({c.name for c in cases}) == len(cases)
    runtime = local_stack.processor
    oom_before = runtime.stats.get(WORKER_OOM, 0)
    client = s3(local_stack)

    started: dict[str, dict[str, Any]] = {}
    for case in cases:
        started[case.name] = _run_case(local_stack, case)

    job_of: dict[str, str] = {}
    for case in cases:
        got = started[case.name]
        post = got["post"]
        if case.expect == "rejected":
            assert post.status_code in (400, 403), (case.name, post.status_code)
            assert f"<Code>{case.code}</Code>".encode() in post.content, (case.name, post.text)
            continue
        assert post.status_code in (200, 201, 204), (case.name, post.text)
        if case.trigger == "job":
            job_of[case.name] = submit_job(local_stack, got["reply"]["image_id"], case.recipe)
        else:
            assert got["reply"]["job_id"], case.name
            job_of[case.name] = got["reply"]["job_id"]

    jobs = wait_jobs(local_stack, list(job_of.values()), timeout=150)
    outcomes: dict[str, str] = {}
    for case in cases:
        reply = started[case.name]["reply"]
        if case.expect == "rejected":
            # refused at the door: nothing stored under the presigned key
            assert client.list_objects_v2(Bucket=SOURCE_BUCKET, Prefix=reply["key"]).get("KeyCount", 0) == 0
            outcomes[case.name] = f"rejected {case.code}"
            continue
        job = jobs[job_of[case.name]]
        assert job["status"] == case.expect, (case.name, job)
        if case.expect == "failed":
            assert job["error"]["code"] == case.code, (case.name, job["error"])
            assert job["error"]["message"], case.name
            outcomes[case.name] = f"failed {case.code}"
        else:
            out = download(job)
            assert case.check is not None
            case.check(out, job)
            res = job["result"]
            outcomes[case.name] = f"succeeded {res['format']} {res['width']}x{res['height']}"
        # the original is still there, byte for byte
        head = client.head_object(Bucket=SOURCE_BUCKET, Key=reply["key"])
        assert head["ContentLength"] == len(case.data), case.name
        body = client.get_object(Bucket=SOURCE_BUCKET, Key=reply["key"])["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(case.data).digest(), case.name
        assert not str((job.get("error") or {}).get("code", "")).startswith("worker_"), (case.name, job)

    assert_serving(local_stack)
    assert runtime.stats.get(WORKER_OOM, 0) == oom_before
    peaks = [o.result.peak_rss_mb for o in list(local_stack.event_source.history) if o.result.peak_rss_mb]
    limit = runtime.spec.memory_mb
    assert max(peaks) < limit
    record_figures("hostile_inputs", {
        "kinds": len(cases),
        "outcomes": outcomes,
        "summary": dict(Counter(v.split()[0] for v in outcomes.values())),
        "worker_peak_rss_mb": round(max(peaks), 1),
        "worker_memory_limit_mb": limit,
    })


def test_zero_byte_announcement_is_refused_by_the_api(local_stack):
    with api(local_stack) as c:
        r = presign(c, "empty.jpg", "image/jpeg", 0)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def test_disallowed_content_types_and_oversize_announcements(local_stack):
    cap = int(local_stack.env["IMAGEPIPE_MAX_UPLOAD_BYTES"])
    with api(local_stack) as c:
        for ctype in ("image/svg+xml", "application/pdf", "text/html", "application/postscript"):
            r = presign(c, "x.jpg", ctype, 100)
            assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", ctype
        r = presign(c, "x.jpg", "image/jpeg", cap + 1)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        r = presign(c, "x.jpg", "image/jpeg", 100, recipe={"resize": {"width": -5}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_recipe"
