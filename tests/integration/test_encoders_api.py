"""Issue 15 end to end through the running local stack: HEIC and JPEG XL uploads (presigned, real
S3 POST), mozjpeg / jpegli / JPEG XL outputs, ``best`` over candidates, a sweep with the encoder
axis, and a corpus study (``POST /studies`` → one sweep per image → aggregate)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image, JpegImagePlugin

from imagepipe.errors import InvalidRecipe, NotFound, UnsupportedMediaType
from pipeline.client import Client
from tests.unit import imagegen as g


@pytest.fixture(scope="module")
def client(local_stack: Any) -> Any:
    with Client(local_stack.api_url, local_stack.api_key, timeout=30) as c:
        yield c


def _open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.mark.parametrize(("fmt", "content_type"), [("heif", "image/heic"), ("jxl", "image/jxl")])
def test_heic_and_jxl_uploads_are_processed(client: Client, fmt: str, content_type: str) -> None:
    data = g.encode(g.photo_like(200, 120), fmt, quality=90)
    up = client.upload(data, f"phone.{fmt}")  # the client sniffs the content type
    image = client.get_image(up["image_id"])
    assert image["content_type"] == content_type
    job = client.wait(client.process(up["image_id"], {"format": "webp", "resize": {"width": 100}})["job_id"],
                      timeout=60, raise_on_failure=True)
    assert job["status"] == "succeeded" and job["result"]["encoder"] == "webp"
    out = _open(client.download(job))
    assert out.format == "WEBP" and out.size == (100, 60)
    image = client.get_image(up["image_id"])
    assert image["facts"]["format"] == fmt
    assert client.download(image["download_url"]) == data  # the original stays untouched


def test_heif_content_type_is_accepted_and_garbage_heic_fails_typed(client: Client) -> None:
    up = client.upload(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 200, "broken.heic", content_type="image/heif")
    job = client.wait(client.process(up["image_id"], {"format": "jpeg"})["job_id"], timeout=60)
    assert job["status"] == "failed" and job["error"]["code"] == "corrupt_image"


def test_bmp_is_still_refused_at_upload(client: Client) -> None:
    with pytest.raises(UnsupportedMediaType):
        client.upload(g.encode(g.photo_like(20, 20), "bmp"), "x.bmp", content_type="image/bmp")


@pytest.mark.parametrize("recipe", [
    {"format": "jpeg", "jpeg": {"encoder": "mozjpeg"}, "quality": 80},
    {"format": "jpeg", "jpeg": {"encoder": "jpegli"}, "quality": 80},
    {"format": "jxl", "quality": 75, "jxl": {"effort": 5}},
    {"format": "best", "candidates": ["jpeg:mozjpeg", "jxl"], "quality": "auto",
     "target": {"metric": "ssimulacra2", "min": 70}},
    {"format": "jpeg", "jpeg": {"encoder": "mozjpeg", "subsampling": "auto", "quant_table": 2},
     "quality": "auto", "target": {"metric": "ssimulacra2", "min": 70}},
    {"format": "jxl", "quality": "auto", "target": {"metric": "ssimulacra2", "min": 70}},
])
def test_new_encoders_as_jobs(client: Client, recipe: dict[str, Any]) -> None:
    up = client.upload(g.photo_bytes(240, 160, "png", seed=31), "enc.png")
    job = client.wait(client.process(up["image_id"], recipe)["job_id"], timeout=90, raise_on_failure=True)
    out = _open(client.download(job))
    assert out.size == (240, 160)
    encoder = job["result"]["encoder"]
    if recipe["format"] == "jpeg":
        assert out.format == "JPEG" and encoder == f"jpeg:{recipe['jpeg']['encoder']}"
    elif recipe["format"] == "jxl":
        assert out.format == "JXL" and encoder == "jxl"
    else:
        assert encoder in ("jpeg:mozjpeg", "jxl")
    if recipe.get("target"):
        assert job["result"]["ssimulacra2"] >= recipe["target"]["min"]
        search = client.get_job(job["job_id"])["facts"]["search"]
        if recipe["format"] == "jpeg":
            # the chroma the search chose is the one written
            sampling = {"4:4:4": 0, "4:2:0": 2}[search["chosen"]["subsampling"]]
            assert JpegImagePlugin.get_sampling(out) == sampling
            assert {t["subsampling"] for t in search["trace"]} == {"4:2:0", "4:4:4"}
        if recipe["format"] == "jxl":  # refined between two whole qualities
            assert any(not float(t["quality"]).is_integer() for t in search["trace"])


def test_auto_quant_table_as_a_job(client: Client) -> None:
    """``jpeg.quant_table: auto`` through the stack: every candidate table probed, the chosen one
    written (the output's tables are mozjpeg's at that table and quality), and without a score
    target the job is refused at submission naming the field."""
    from imagepipe.core import auto, process

    src = g.photo_bytes(240, 160, "png", seed=33)
    up = client.upload(src, "tables.png")
    recipe = {"format": "jpeg", "quality": "auto", "target": {"metric": "ssimulacra2", "min": 70},
              "jpeg": {"encoder": "mozjpeg", "subsampling": "auto", "quant_table": "auto"}}
    job = client.wait(client.process(up["image_id"], recipe)["job_id"], timeout=120, raise_on_failure=True)
    assert job["result"]["encoder"] == "jpeg:mozjpeg" and job["result"]["ssimulacra2"] >= 70
    search = client.get_job(job["job_id"])["facts"]["search"]
    assert {t["quant_table"] for t in search["trace"]} == set(auto.QUANT_TABLE_CANDIDATES)
    chosen = search["chosen"]
    assert chosen["quant_table"] in auto.QUANT_TABLE_CANDIDATES
    assert JpegImagePlugin.get_sampling(_open(client.download(job))) == {"4:4:4": 0, "4:2:0": 2}[
        chosen["subsampling"]]
    out = _open(client.download(job))
    fixed = process(src, {"format": "jpeg", "quality": chosen["quality"],
                          "jpeg": {"encoder": "mozjpeg", "subsampling": chosen["subsampling"],
                                   "quant_table": chosen["quant_table"]}})
    assert out.quantization == _open(fixed.data).quantization  # type: ignore[attr-defined]
    with pytest.raises(InvalidRecipe) as ei:
        client.process(up["image_id"], {"format": "jpeg", "quality": 80,
                                         "jpeg": {"encoder": "mozjpeg", "quant_table": "auto"}})
    assert ei.value.details[0]["field"] == "jpeg.quant_table"


def test_sweep_with_the_encoder_axis(client: Client) -> None:
    up = client.upload(g.photo_bytes(240, 160, "png", seed=32), "axis.png")
    started = client.sweep(up["image_id"], {"formats": ["jpeg", "jpeg:mozjpeg", "jpeg:jpegli", "jxl"],
                                            "qualities": [50, 80]})
    sweep = client.wait_sweep(started["sweep_id"], timeout=120)
    assert sweep["status"] == "succeeded", sweep.get("errors")
    assert [p["encoder"] for p in sweep["points"]] == [
        "jpeg:turbo", "jpeg:turbo", "jpeg:mozjpeg", "jpeg:mozjpeg", "jpeg:jpegli", "jpeg:jpegli",
        "jxl", "jxl"]
    jxl = sweep["points"][-1]
    data = client.download(jxl["download_url"])
    assert len(data) == jxl["bytes"] and _open(data).format == "JXL"


def test_study_end_to_end(client: Client) -> None:
    ids = [client.upload(g.photo_bytes(200, 140, "png", seed=s), f"corpus-{s}.png")["image_id"]
           for s in (41, 42, 43)]
    started = client.study(ids, {"formats": ["jpeg", "jpeg:mozjpeg", "jxl"], "qualities": [40, 70, 90]},
                           resize={"width": 160}, name="e2e")
    assert started["images"] == 3 and len(started["sweeps"]) == 3
    study = client.wait_study(started["study_id"], timeout=240)
    assert study["status"] == "succeeded" and study["progress"]["images_aggregated"] == 3
    summary = study["summary"]
    assert summary["baseline"] == "jpeg:turbo"
    assert set(summary["curves"]) == {"jpeg:turbo", "jpeg:mozjpeg", "jxl"}
    for enc in ("jpeg:mozjpeg", "jxl"):
        saved = summary["bytes_saved"]["ssimulacra2"][enc]
        assert saved["n_images"] >= 1
        lo, hi = saved["saved_pct_ci"]
        assert lo <= saved["saved_pct"] <= hi
    assert study["versions"]["pillow_jxl_plugin"] and study["versions"]["libvips"]
    assert all(len(im["points"]) == 9 for im in study["images"])
    assert started["study_id"] in {s["study_id"] for s in client.list_studies()["items"]}
    # each image's sweep is an ordinary sweep
    sweep = client.get_sweep(started["sweeps"][0])
    assert sweep["study_id"] == started["study_id"] and len(sweep["points"]) == 9


def test_study_errors_are_typed(client: Client) -> None:
    image_id = client.upload(g.photo_bytes(64, 48, "png"), "s.png")["image_id"]
    with pytest.raises(InvalidRecipe) as ei:
        client.study([image_id], {"formats": ["webp"], "qualities": [50]})
    assert ei.value.details[0]["field"] == "baseline"
    with pytest.raises(NotFound):
        client.study([image_id, "0" * 32], {"formats": ["jpeg"], "qualities": [50]})
    with pytest.raises(NotFound):
        client.get_study("st0000000000000000")
