"""The Compare page's pure helpers (no stack): chart layers and data, difference heatmap."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pages.ui.compare_chart import diff_heatmap, rd_chart
from pipeline import lab


def _points() -> list[dict]:
    pts = []
    for fmt, scale in (("jpeg", 1.0), ("webp", 0.8)):
        for q in (30, 60, 90):
            b = int(scale * q * 200)
            pts.append({"format": fmt, "quality": q, "option_name": None, "option_value": None, "bytes": b,
                        "bpp": b / 10000, "ssim": 0.9 + q / 1000, "psnr": 30 + q / 10, "encode_ms": 5.0,
                        "width": 100, "height": 100, "label": f"{fmt}-q{q}"})
    return pts


@pytest.mark.parametrize("size,metric", [("bytes", "ssim"), ("bpp", "psnr")])
def test_rd_chart_layers(size: str, metric: str) -> None:
    df = lab.points_frame(_points(), metric)
    assert list(df[df["pareto"]]["label"]) == ["webp-q30", "webp-q60", "webp-q90"]
    spec = rd_chart(df, size, metric).to_dict()
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["line", "line", "point", "point"]
    x = spec["layer"][0]["encoding"]["x"]["field"]
    assert x == ("kib" if size == "bytes" else "bpp")
    assert spec["layer"][0]["encoding"]["y"]["field"] == metric
    # clicking a point selects its label (the page makes it B)
    pick = [p for p in spec.get("params", []) if p["name"] == "pick"]  # altair hoists layer params
    assert pick and pick[0]["select"]["fields"] == ["label"] and pick[0]["select"]["on"] == "click"
    datasets = spec["datasets"]
    sizes = sorted(len(v) for v in datasets.values())
    assert sizes == [3, 6]  # the frontier (3 webp points) and every point


def test_diff_heatmap() -> None:
    a = Image.fromarray(np.full((20, 30, 3), 100, np.uint8))
    arr = np.full((20, 30, 3), 100, np.uint8)
    arr[5, 7] = (200, 100, 100)
    heat, stats = diff_heatmap(a, Image.fromarray(arr), gain=1.0)
    h = np.asarray(heat)
    assert heat.size == (30, 20) and h[0, 0].tolist() == [0, 0, 0] and h[5, 7].sum() > 0
    assert stats["max_abs"] == 100 and stats["share_over_8"] == round(1 / 600, 4)
    same, s2 = diff_heatmap(a, a)
    assert np.asarray(same).max() == 0 and s2["mean_abs"] == 0
    with pytest.raises(ValueError):
        diff_heatmap(a, a.resize((10, 10)))
