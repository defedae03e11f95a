"""Start-up: what the engine does NOT import until a job needs it (issue 14, CLI start-up), and
that such jobs still work in a fresh interpreter where nothing registered the plugins first.

Each check runs in a clean interpreter (``-I``): this test process has long imported everything
(``imagegen`` registers the plugins), so only a fresh one shows what importing the engine and
running a plain job loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagepipe.core import plugins, process
from tests.unit import imagegen as g

ROOT = Path(__file__).resolve().parents[2]
#: loaded only by the jobs that need them (plugins.py, watermark.py, engine.py, metrics.py, jpegenc.py)
LAZY = ("pillow_heif", "pillow_jxl", "PIL.ImageFont", "PIL.ImageDraw", "imagepipe.core.auto",
        "imagepipe.core.ssimulacra2")


def _run(code: str, tmp_path: Path, data: bytes, engine: str = "vips") -> dict[str, object]:
    src = tmp_path / "input.bin"
    src.write_bytes(data)
    prelude = ("import json, sys; sys.path[:0] = ['lambda_src']; "
               f"data = open({str(src)!r}, 'rb').read(); ")
    env = {"PATH": os.environ.get("PATH", ""), "IMAGEPIPE_ENGINE": engine}
    r = subprocess.run([sys.executable, "-I", "-c", prelude + code], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


_JOB = ("from imagepipe.core import process; import PIL.Image; r = process(data, {recipe!r}); "
        "print(json.dumps({{'lazy': {{m: m in sys.modules for m in {lazy!r}}}, "
        "'pillow_init': PIL.Image._initialized >= 2, 'eps': 'PIL.EpsImagePlugin' in sys.modules, "
        "'facts': {{k: r.facts[k] for k in ('input', 'output', 'metrics')}}}}))")


@pytest.mark.parametrize("engine", ["vips", "pillow"])
def test_a_plain_job_loads_no_plugin_font_or_search_code(tmp_path: Path, engine: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEPIPE_ENGINE", engine)
    for fmt, out in (("jpeg", "jpeg"), ("png", "webp"), ("webp", "avif"), ("tiff", "png")):
        data, recipe = g.photo_bytes(160, 120, fmt), {"resize": {"width": 64}, "format": out}
        got = _run(_JOB.format(recipe=recipe, lazy=LAZY), tmp_path, data, engine)
        assert got["lazy"] == dict.fromkeys(LAZY, False), fmt
        assert got["facts"]["output"]["format"] == out  # type: ignore[index]
        # the same facts and metric values as in this process, where every plugin is loaded
        assert got["facts"] == json.loads(json.dumps({k: process(data, recipe).facts[k]
                                                      for k in ("input", "output", "metrics")}))
        # only the plugins of the formats involved: Image.init() (all ~45 Pillow plugins) never ran
        assert not got["pillow_init"] and not got["eps"], (fmt, out)


def test_heif_and_jxl_inputs_register_their_plugins_on_first_use(tmp_path: Path) -> None:
    for fmt in ("heif", "jxl"):
        data = g.photo_bytes(96, 64, fmt)
        assert plugins.may_be_plugin_format(data)
        got = _run(_JOB.format(recipe={"format": "png"}, lazy=LAZY), tmp_path, data)
        facts = got["facts"]
        assert facts["input"]["format"] == fmt and facts["output"]["format"] == "png"  # type: ignore[index]
        assert got["lazy"]["pillow_heif"] and got["lazy"]["pillow_jxl"]  # type: ignore[index]


def test_jxl_output_and_text_watermark_work_in_a_fresh_interpreter(tmp_path: Path) -> None:
    recipe = {"format": "jxl", "watermark": {"text": "ImagePipe"}}
    got = _run(_JOB.format(recipe=recipe, lazy=LAZY), tmp_path, g.photo_bytes(160, 120, "jpeg"))
    assert got["facts"]["output"]["format"] == "jxl"  # type: ignore[index]
    assert got["facts"]["metrics"]["ssim"] > 0.8  # type: ignore[index]  (the JXL output decoded again)
    assert got["lazy"]["PIL.ImageFont"] and got["lazy"]["pillow_jxl"]  # type: ignore[index]


def test_plugin_sniffing_matches_the_plugins_own_accept_tests() -> None:
    """``open_formats`` may leave the plugins out only for bytes neither plugin would accept."""
    from PIL import Image

    heif_accept = Image.OPEN["HEIF"][1]
    jxl_accept = Image.OPEN["JXL"][1]
    samples = [g.photo_bytes(32, 24, f) for f in ("jpeg", "png", "webp", "gif", "tiff", "avif", "heif",
                                                   "jxl")]
    samples += [b"", b"\x00" * 16, b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"....ftypmif1....", b"\xff\x0a\x00",
                b"\x00\x00\x00\x0cJXL \r\n\x87\n", b"abcdJXLxyz", g.svg_bytes(), g.pdf_bytes(),
                g.text_bytes()]
    for data in samples:
        if not plugins.may_be_plugin_format(data):
            assert not heif_accept(data[:16]) and not jxl_accept(data[:16]), data[:16]
            assert plugins.open_formats(data, ["JPEG", "JXL", "HEIF"]) == ["JPEG"]
        else:
            assert plugins.open_formats(data, ["JPEG", "JXL", "HEIF"]) == ["JPEG", "JXL", "HEIF"]
    assert plugins.may_be_plugin_format(g.photo_bytes(32, 24, "heif"))
    assert plugins.may_be_plugin_format(g.photo_bytes(32, 24, "jxl"))
    # an AVIF output is decoded for its metrics with a list that has no HEIF: no reason to register
    avif = g.photo_bytes(32, 24, "avif")
    assert plugins.open_formats(avif, ["JPEG", "AVIF", "JXL"]) == ["JPEG", "AVIF"]
