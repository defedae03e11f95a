"""The real batch CLI as a user runs it: ``python -m pipeline process`` in a subprocess."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.unit.imagegen import photo_bytes, truncated

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", "process", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    (src / "nested").mkdir(parents=True)
    (src / "photo.jpg").write_bytes(photo_bytes(640, 400, "jpeg", seed=1))
    (src / "nested" / "photo.png").write_bytes(photo_bytes(300, 500, "png", seed=2))  # same stem
    (src / "nested" / "alpha.webp").write_bytes(photo_bytes(200, 200, "webp", mode="RGBA", seed=3))
    (src / "broken.jpg").write_bytes(truncated(photo_bytes(800, 600, "jpeg", seed=4), keep=0.3))
    (src / "readme.txt").write_text("not an image, not picked up from a folder")
    return src


@pytest.mark.timeout(180)
def test_batch_with_a_corrupt_file_reports_it_and_finishes_the_rest(folder, tmp_path):
    out = tmp_path / "out"
    report = tmp_path / "facts.json"
    proc = _cli(folder, "--out", out, "--format", "webp", "--width", "160", "--height", "160",
                "--jobs", "2", "--report", report)
    assert proc.returncode == 1, proc.stderr
    assert "corrupt_image" in proc.stderr and "broken.jpg" in proc.stderr
    assert "3/4 ok, 1 failed" in proc.stdout

    produced = sorted(p.name for p in out.iterdir())
    assert produced == ["alpha.webp", "photo-2.webp", "photo.webp"]  # no temp files, no collision
    for name in produced:
        with Image.open(out / name) as im:
            assert im.format == "WEBP" and max(im.size) <= 160
    with Image.open(out / "alpha.webp") as im:
        assert "A" in im.getbands()  # alpha kept for WebP

    body = json.loads(report.read_text())
    assert body["summary"]["failed"] == 1 and body["summary"]["ok"] == 3
    by_name = {Path(f["input"]).name: f for f in body["files"]}
    assert by_name["broken.jpg"]["status"] == "failed"
    assert by_name["broken.jpg"]["error"]["code"] == "corrupt_image"
    assert by_name["broken.jpg"]["error"]["message"]
    facts = by_name["photo.jpg"]["facts"]
    assert facts["input"]["width"] == 640 and facts["output"]["format"].lower() == "webp"
    assert facts["output"]["width"] == 160 and facts["output"]["height"] == 100
    assert 0 < facts["metrics"]["ssim"] <= 1


@pytest.mark.timeout(180)
def test_no_metrics_skips_ssim_and_psnr_but_not_a_target_search(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(photo_bytes(320, 200, "png", seed=6))
    plain, searched = tmp_path / "plain.json", tmp_path / "searched.json"
    proc = _cli(src, "--out", tmp_path / "o1", "--format", "jpeg", "--no-metrics", "--report", plain, "-q")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(plain.read_text())["files"][0]["facts"]
    assert facts["metrics"] == {"ssim": None, "psnr": None} and facts["output"]["bytes"] > 0
    assert (tmp_path / "o1" / "a.jpg").stat().st_size == facts["output"]["bytes"]
    # a target needs its score: the search still measures it, and the answer meets the target
    proc = _cli(src, "--out", tmp_path / "o2", "--format", "jpeg", "--no-metrics", "--target-ssimulacra2",
                "70", "--report", searched, "-q")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(searched.read_text())["files"][0]["facts"]
    assert facts["metrics"]["ssimulacra2"] >= 70 and facts["search"]["chosen"]["format"] == "jpeg"


@pytest.mark.timeout(180)
def test_recipe_file_with_flag_override_and_csv_report(tmp_path):
    src = tmp_path / "a.png"
    src.write_bytes(photo_bytes(400, 300, "png", seed=5))
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"format": "png", "resize": {"width": 100}, "quality": 70}))
    out, report = tmp_path / "out", tmp_path / "facts.csv"
    proc = _cli(src, "--out", out, "--recipe", recipe, "--format", "jpeg", "--report", report, "--quiet")
    assert proc.returncode == 0, proc.stderr
    with Image.open(out / "a.jpg") as im:
        assert im.format == "JPEG" and im.size == (100, 75)
    rows = list(csv.DictReader(report.open()))
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["error_code"] == ""
    assert rows[0]["output.width"] == "100"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--quality", "0"], "invalid_recipe"),
        (["--report", "facts.txt"], "--report"),
        (["--width", "abc"], "invalid int value"),
        (["--quant-table", "big"], 'a table number 0-8 or "auto"'),
        (["--jpeg-encoder", "mozjpeg", "--quant-table", "auto", "--quality", "80"], "jpeg.quant_table"),
    ],
)
def test_usage_errors_exit_2_before_touching_files(tmp_path, args, needle):
    src = tmp_path / "a.png"
    src.write_bytes(photo_bytes(64, 64, "png"))
    proc = _cli(src, "--out", tmp_path / "out", *args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(60)
def test_missing_input_is_a_usage_error(tmp_path):
    proc = _cli(tmp_path / "nope", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "no such file" in proc.stderr
