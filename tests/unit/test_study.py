"""Corpus studies: the aggregate math (core/study.py) and the service (service/studies.py, moto)."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import pytest

from imagepipe.core.limits import Limits
from imagepipe.core.study import aggregate, bootstrap_ci, bytes_saved, curves, log_ratio
from imagepipe.errors import Conflict, InvalidRecipe, NotFound
from imagepipe.service import studies, sweeps
from imagepipe.service.jobs import JobRunner
from imagepipe.service.messages import SweepPartMessage, parse_body
from imagepipe.service.records import now_iso
from tests.unit.imagegen import photo_bytes
from tests.unit.service_env import mocked_backend


def _pts(encoder: str, pairs: list[tuple[float, float]], metric: str = "ssimulacra2") -> list[dict[str, Any]]:
    return [{"encoder": encoder, "format": encoder.split(":")[0], "quality": 10 * (i + 1), "bpp": bpp,
             metric: score, "ssim": 0.9 + score / 1000, "encode_ms": 5.0}
            for i, (bpp, score) in enumerate(pairs)]


BASE = [(0.5, 60.0), (1.0, 70.0), (2.0, 80.0), (4.0, 88.0)]


# --- math --------------------------------------------------------------------------------------


def test_constant_ratio_at_equal_score_is_found_exactly() -> None:
    test = [(b * 0.8, s) for b, s in BASE]
    lr = log_ratio(_pts("jpeg:turbo", BASE), _pts("jxl", test), "ssimulacra2")
    assert lr == pytest.approx(math.log(0.8))
    per = {f"img{i}": _pts("jpeg:turbo", BASE) + _pts("jxl", test) for i in range(4)}
    out = bytes_saved(per, "jpeg:turbo", "ssimulacra2")
    assert out["jxl"]["bytes_ratio"] == pytest.approx(0.8) and out["jxl"]["saved_pct"] == pytest.approx(20.0)
    assert out["jxl"]["saved_pct_ci"] == pytest.approx([20.0, 20.0]) and out["jxl"]["n_images"] == 4
    assert out["jpeg:turbo"]["saved_pct"] == 0.0


def test_only_the_shared_score_range_counts_and_disjoint_curves_are_left_out() -> None:
    # the test encoder only covers scores 70..80 and is half the size there
    half = [(0.5, 70.0), (1.0, 80.0)]
    lr = log_ratio(_pts("a", BASE), _pts("b", half), "ssimulacra2")
    assert lr == pytest.approx(math.log(0.5), abs=0.01)
    assert log_ratio(_pts("a", BASE), _pts("b", [(0.1, 10.0), (0.2, 20.0)]), "ssimulacra2") is None
    assert log_ratio(_pts("a", BASE), _pts("b", [(1.0, 75.0)]), "ssimulacra2") is None  # one point: no curve
    out = bytes_saved({"x": _pts("jpeg:turbo", BASE) + _pts("b", [(0.1, 10.0), (0.2, 20.0)])},
                      "jpeg:turbo", "ssimulacra2")
    assert out["b"] == {"bytes_ratio": None, "saved_pct": None, "saved_pct_ci": None, "n_images": 0}


def test_points_that_do_not_improve_are_ignored() -> None:
    noisy = [(0.5, 60.0), (0.8, 59.0), (1.0, 70.0), (2.0, 80.0), (4.0, 88.0)]  # 0.8 bpp scores lower
    assert log_ratio(_pts("a", BASE), _pts("b", noisy), "ssimulacra2") == pytest.approx(0.0)


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible() -> None:
    vals = [math.log(r) for r in (0.6, 0.7, 0.75, 0.8, 0.9, 0.95)]
    lo, hi = bootstrap_ci(vals)
    mean = sum(vals) / len(vals)
    assert lo < mean < hi and (lo, hi) == bootstrap_ci(vals)
    per = {f"i{k}": _pts("jpeg:turbo", BASE) + _pts("jxl", [(b * r, s) for b, s in BASE])
           for k, r in enumerate((0.6, 0.7, 0.75, 0.8, 0.9, 0.95))}
    out = bytes_saved(per, "jpeg:turbo", "ssimulacra2")["jxl"]
    low, high = out["saved_pct_ci"]
    assert low < out["saved_pct"] < high
    assert out["bytes_ratio"] == pytest.approx(math.exp(mean), abs=1e-4)


def test_curves_average_per_quality_and_aggregate_shape() -> None:
    per = {"a": _pts("jpeg:turbo", BASE), "b": _pts("jpeg:turbo", [(b * 2, s + 2) for b, s in BASE])}
    c = curves(per)["jpeg:turbo"]
    assert [r["quality"] for r in c] == [10, 20, 30, 40]
    assert c[0]["bpp_mean"] == pytest.approx(0.75) and c[0]["ssimulacra2_mean"] == pytest.approx(61.0)
    assert c[0]["n"] == 2
    agg = aggregate(per, "jpeg:turbo")
    assert set(agg) == {"baseline", "images", "curves", "bytes_saved", "encode_ms_median"}
    assert set(agg["bytes_saved"]) == {"ssimulacra2", "ssim"} and agg["images"] == 2


# --- service (moto) --------------------------------------------------------------------------------


@pytest.fixture
def backend() -> Any:
    with mocked_backend() as b:
        yield b


def _image(backend: Any, data: bytes, uploaded: bool = True) -> str:
    image_id = uuid.uuid4().hex
    key = f"{backend.config.upload_prefix}{image_id}/p.png"
    backend.records.put_image({"image_id": image_id, "key": key, "filename": "p.png",
                               "status": "pending_upload", "created_at": now_iso()})
    if uploaded:
        backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=key, Body=data)
    return image_id


def _run_all(backend: Any) -> list[str]:
    runner = JobRunner(backend, Limits())
    out = []
    while True:
        resp = backend.sqs.receive_message(QueueUrl=backend.config.queue_url, MaxNumberOfMessages=10)
        msgs = resp.get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.extend(runner.handle(w) for w in parse_body(m["Body"]) if isinstance(w, SweepPartMessage))
            backend.sqs.delete_message(QueueUrl=backend.config.queue_url, ReceiptHandle=m["ReceiptHandle"])


GRID = {"formats": ["jpeg", "jpeg:mozjpeg"], "qualities": [50, 70, 90]}


def test_study_fans_out_one_sweep_per_image_and_aggregates(backend: Any) -> None:
    ids = [_image(backend, photo_bytes(96, 64, "png", seed=s)) for s in (1, 2, 3)]
    started = studies.create_study(backend, json.dumps({"image_ids": ids, "grid": GRID, "name": "t"}))
    assert started["images"] == 3 and len(started["sweeps"]) == 3 and started["cells"] == 18
    first = studies.get_study(backend, started["study_id"])
    assert first["status"] == "queued" and first["progress"]["images_aggregated"] == 0
    assert first["grid"]["metrics"] == ["ssim", "psnr", "ssimulacra2"]  # always measured in a study
    assert set(_run_all(backend)) == {"succeeded"}
    done = studies.get_study(backend, started["study_id"])
    assert done["status"] == "succeeded" and done["progress"]["fraction"] == 1.0
    assert done["progress"]["images_aggregated"] == 3
    assert all(len(im["points"]) == 6 and "download_url" not in im["points"][0] for im in done["images"])
    s = done["summary"]
    assert s["baseline"] == "jpeg:turbo" and set(s["curves"]) == {"jpeg:turbo", "jpeg:mozjpeg"}
    moz = s["bytes_saved"]["ssimulacra2"]["jpeg:mozjpeg"]
    assert moz["n_images"] >= 1 and moz["saved_pct_ci"][0] <= moz["saved_pct"] <= moz["saved_pct_ci"][1]
    assert done["versions"]["libvips"] and done["versions"]["pillow"]
    # each sweep is an ordinary sweep that knows its study
    sw = sweeps.get_sweep(backend, started["sweeps"][0])
    assert sw["study_id"] == started["study_id"]
    assert studies.list_studies(backend, None)["items"][0]["study_id"] == started["study_id"]


def test_study_checks_every_image_before_starting(backend: Any) -> None:
    good = _image(backend, photo_bytes(64, 48, "png"))
    pending = _image(backend, b"", uploaded=False)
    with pytest.raises(Conflict):
        studies.create_study(backend, json.dumps({"image_ids": [good, pending], "grid": GRID}))
    with pytest.raises(NotFound):
        studies.create_study(backend, json.dumps({"image_ids": [good, uuid.uuid4().hex], "grid": GRID}))
    assert sweeps.list_sweeps(backend, None)["items"] == []  # nothing was started
    with pytest.raises(NotFound):
        studies.get_study(backend, "st0123456789abcdef")
    with pytest.raises(NotFound):
        studies.get_study(backend, "nonsense")


@pytest.mark.parametrize(("body", "field"), [
    ({"grid": {"formats": ["webp"], "qualities": [50]}}, "baseline"),
    ({"grid": {**GRID, "option": {"name": "jpeg.progressive", "values": [True]}}}, "grid.option"),
    ({"grid": {"formats": ["bmp"], "qualities": [50]}}, "grid.formats"),
    ({"grid": GRID, "duplicate": True}, "image_ids"),
    ({"grid": {**GRID, "metrics": 5}}, "grid.metrics"),
    ({"grid": {**GRID, "metrics": ["ssim", "ssim"]}}, "grid.metrics"),
])
def test_bad_study_requests_are_typed(backend: Any, body: dict[str, Any], field: str) -> None:
    image_id = _image(backend, photo_bytes(64, 48, "png"))
    ids = [image_id, image_id] if body.pop("duplicate", False) else [image_id]
    with pytest.raises(InvalidRecipe) as ei:
        studies.create_study(backend, json.dumps({"image_ids": ids, **body}))
    assert ei.value.details[0]["field"] == field


def test_a_failed_image_does_not_stop_the_others(backend: Any) -> None:
    ids = [_image(backend, photo_bytes(96, 64, "png", seed=4)), _image(backend, b"not an image")]
    started = studies.create_study(backend, json.dumps({"image_ids": ids, "grid": GRID}))
    _run_all(backend)
    done = studies.get_study(backend, started["study_id"])
    assert done["status"] == "failed" and done["progress"]["images_aggregated"] == 1
    bad = next(im for im in done["images"] if im["image_id"] == ids[1])
    assert bad["status"] == "failed" and {e["code"] for e in bad["errors"]} == {"unsupported_format"}
    assert done["summary"]["images"] == 1
