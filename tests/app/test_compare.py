"""AppTest: the Compare page against the running local stack — pick an uploaded image, run a
sweep (progress polled until done), the rate–distortion chart and recommendation appear, two
settings are compared (deltas, wipe, heatmap), and a batch report is produced with CSV."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.client import Client
from tests.app.conftest import APP, photo_jpeg

pytestmark = pytest.mark.integration
K = "compare."


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _chart_specs(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def _run_sweep(at: AppTest) -> dict[str, Any]:
    """Click "Run sweep" and rerun the page (as its polling fragment does) until it has finished."""
    go = at.button(key=K + "go")
    assert not go.disabled
    go.click().run()
    _no_exception(at)
    deadline = time.monotonic() + 90
    while at.session_state[K + "sweep"].get("status") not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, at.session_state[K + "sweep"]
        time.sleep(0.3)
        at.run()
        _no_exception(at)
    at.run()
    _no_exception(at)
    return at.session_state[K + "sweep"]


def test_compare_page_sweep_chart_compare_and_report(app_env: Any) -> None:
    with Client(app_env.api_url, app_env.api_key) as c:
        image_id = c.upload(photo_jpeg(480, 320, seed=7), "lab-photo.jpg")["image_id"]
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("pages/compare.py").run()
    _no_exception(at)
    assert at.title[0].value == "Compare"
    hist = at.selectbox(key=K + "history")
    assert any(o.startswith("lab-photo.jpg") and o.endswith(image_id[:8]) for o in hist.options), hist.options
    hist.set_value(image_id).run()
    at.multiselect(key=K + "formats").set_value(["jpeg", "webp", "avif"]).run()
    at.slider(key=K + "qsteps").set_value(3).run()
    at.number_input(key=K + "width").set_value(240).run()
    _no_exception(at)
    sweep = _run_sweep(at)
    assert sweep["status"] == "succeeded" and len(sweep["points"]) == 9

    charts = _chart_specs(at)
    assert len(charts) == 1, "no rate–distortion chart"
    # a line per format, the dashed frontier line and its rings; tooltips name the settings
    layers = charts[0]["layer"]
    assert [ly["mark"]["type"] for ly in layers] == ["line", "line", "point", "point"]
    assert layers[1]["mark"]["strokeDash"] and layers[0]["encoding"]["color"]["field"] == "series"
    assert "setting" in {t["field"] for t in layers[0]["encoding"]["tooltip"]}
    assert any("Pareto" in t.value for t in at.caption)

    # recommendation table: one row per format, the cheapest first
    rec = next(d.value for d in at.dataframe if "meets" in d.value.columns)
    assert sorted(rec["format"]) == ["avif", "jpeg", "webp"]
    at.number_input(key=K + "target_ssim").set_value(0.9).run()
    _no_exception(at)
    rec = next(d.value for d in at.dataframe if "meets" in d.value.columns)
    assert bool(rec.iloc[0]["meets"])
    met = [p for p in sweep["points"] if p["ssim"] >= 0.9]
    assert rec.iloc[0]["bytes"] == min(p["bytes"] for p in met)

    # compare two sweep points: deltas, comparison images, heatmap
    labels = [p["label"] for p in sweep["points"]]
    at.selectbox(key=K + "a").set_value(labels[0]).run()
    at.selectbox(key=K + "b").set_value(labels[-1]).run()
    _no_exception(at)
    metric_labels = [m.label for m in at.metric]
    assert "B size" in metric_labels and "B SSIM" in metric_labels
    delta = next(m for m in at.metric if m.label == "B size").delta
    assert "vs A" in str(delta)
    assert len(at.image) >= 4  # side by side, wipe, zoom, heatmap
    at.slider(key=K + "gain").set_value(8).run()
    _no_exception(at)
    # a point against the original
    from pages.compare import ORIGINAL

    at.selectbox(key=K + "a").set_value(ORIGINAL).run()
    _no_exception(at)
    assert "SSIM vs original" in [m.label for m in at.metric]
    # only the pair on screen stays decoded in the session (earlier A/B choices are dropped)
    pairs = [k for k in at.session_state["_pairs"] if k.startswith(K)]
    assert pairs == [f"{K}{sweep['sweep_id']}-{ORIGINAL}-{labels[-1]}"], pairs

    # the sweep is listed among the image's earlier sweeps and can be reopened
    prev = at.selectbox(key=K + "previous")
    assert prev.value == sweep["sweep_id"] and "jpeg/webp/avif × 3 qualities" in prev.options[0]
    at.session_state[K + "sweep"] = {"sweep_id": "forgotten", "status": "succeeded"}
    at.button(key=K + "open").click().run()
    _no_exception(at)
    assert len(at.session_state[K + "sweep"]["points"]) == 9

    # batch report over this image with two presets
    at.multiselect(key=K + "rep_images").set_value([image_id]).run()
    at.multiselect(key=K + "rep_presets").set_value(["Web 1600 WebP", "Thumbnail 320 JPEG"]).run()
    at.button(key=K + "rep_go").click().run()
    _no_exception(at)
    rows = at.session_state[K + "report"]
    assert [(r["preset"], r["status"]) for r in rows] == [("Web 1600 WebP", "succeeded"),
                                                          ("Thumbnail 320 JPEG", "succeeded")]
    agg = next(d.value for d in at.dataframe if "median_ssim" in d.value.columns)
    assert list(agg["preset"]) == ["Web 1600 WebP", "Thumbnail 320 JPEG"]
    from pipeline import lab

    parsed = list(csv.DictReader(io.StringIO(lab.to_csv(rows))))
    assert parsed[1]["image_id"] == image_id and float(parsed[1]["saved_pct"]) > 0


def test_compare_page_sweep_with_ssimulacra2(app_env: Any) -> None:
    """The "Also measure SSIMULACRA2" box sends the metric with the grid; every point carries
    the score, the quality axis offers it, and the chart and recommendation use it."""
    with Client(app_env.api_url, app_env.api_key) as c:
        image_id = c.upload(photo_jpeg(320, 240, seed=11), "s2-photo.jpg")["image_id"]
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("pages/compare.py").run()
    at.selectbox(key=K + "history").set_value(image_id).run()
    at.multiselect(key=K + "formats").set_value(["jpeg"]).run()
    at.slider(key=K + "qsteps").set_value(2).run()
    at.number_input(key=K + "width").set_value(160).run()
    at.checkbox(key=K + "ssimulacra2").check().run()
    _no_exception(at)
    sweep = _run_sweep(at)
    assert sweep["status"] == "succeeded" and len(sweep["points"]) == 2
    scores = [p["ssimulacra2"] for p in sweep["points"]]
    assert all(isinstance(s, float) and s < 100 for s in scores)
    # the higher quality scores higher (30 vs 95 on a photo-like image)
    by_q = sorted(sweep["points"], key=lambda p: p["quality"])
    assert by_q[0]["ssimulacra2"] < by_q[-1]["ssimulacra2"]
    axis = at.radio(key=K + "metric")
    assert "ssimulacra2" in axis.options
    axis.set_value("ssimulacra2").run()
    _no_exception(at)
    spec = _chart_specs(at)[0]
    assert spec["layer"][0]["encoding"]["y"]["field"] == "ssimulacra2"


def test_compare_page_study_over_two_images(app_env: Any) -> None:
    """The Study section: two images × two JPEG encoders × two qualities → progress until done,
    the RD chart (a line per encoder), the savings table vs the baseline, CSV and JSON exports
    (the JSON records the codec versions)."""
    with Client(app_env.api_url, app_env.api_key) as c:
        ids = [c.upload(photo_jpeg(240, 160, seed=s), f"study-{s}.jpg")["image_id"] for s in (21, 22)]
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("pages/compare.py").run()
    _no_exception(at)
    at.multiselect(key=K + "study_images").set_value(ids).run()
    at.multiselect(key=K + "study_encoders").set_value(["jpeg", "jpeg:mozjpeg"]).run()
    at.selectbox(key=K + "study_baseline").set_value("jpeg").run()
    at.number_input(key=K + "study_width").set_value(160).run()
    at.slider(key=K + "study_nq").set_value(3).run()
    at.button(key=K + "study_go").click().run()
    _no_exception(at)
    deadline = time.monotonic() + 120
    while at.session_state[K + "study"].get("status") not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, at.session_state[K + "study"].get("progress")
        time.sleep(0.5)
        at.run()
        _no_exception(at)
    at.run()
    _no_exception(at)
    study = at.session_state[K + "study"]
    assert study["status"] == "succeeded" and study["progress"]["images_aggregated"] == 2
    spec = next(s for s in _chart_specs(at) if s.get("mark", {}).get("type") == "line")
    assert spec["encoding"]["color"]["field"] == "encoder"
    savings = next(d.value for d in at.dataframe if "saved_pct" in d.value.columns)
    assert set(savings["encoder"]) == {"jpeg:turbo", "jpeg:mozjpeg"}
    from pipeline import lab

    exported = json.loads(lab.study_json(study))
    assert exported["versions"]["libvips"] and exported["summary"]["baseline"] == "jpeg:turbo"
    rows = list(csv.DictReader(io.StringIO(lab.study_points_csv(study))))
    assert len(rows) == 2 * 2 * 3 and {r["image_id"] for r in rows} == set(ids)
    prev = at.selectbox(key=K + "study_prev")
    assert prev.value == study["study_id"] and "2 images · jpeg/jpeg:mozjpeg" in prev.options[0]
    # a fresh session reopens it
    at.session_state[K + "study"] = None
    at.button(key=K + "study_open").click().run()
    _no_exception(at)
    assert at.session_state[K + "study"]["study_id"] == study["study_id"]
    assert any("saved_pct" in d.value.columns for d in at.dataframe)
