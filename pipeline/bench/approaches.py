"""The ways of doing the same work: fit inside 1024x1024, save JPEG q85 / WebP q80 / AVIF q60.

Each approach is ``prepare() -> run(data: bytes, fmt: str) -> (bytes, extra: dict)``; the heavy
imports happen in ``prepare`` so a child process only loads what its approach needs.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

BOX = 1024
QUALITY = {"jpeg": 85, "webp": 80, "avif": 60}
APPROACHES = ("naive", "engine", "engine_metrics", "engine_pillow", "engine_pillow_metrics", "vips",
              "vips_moz")
#: what ``make bench`` runs (vips_moz only on request: --approaches)
DEFAULT_APPROACHES = tuple(a for a in APPROACHES if a != "vips_moz")
#: approaches that only make sense for some output formats
ONLY_FOR = {"vips_moz": {"jpeg"}}
_PIL_FORMAT = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}

Runner = Callable[[bytes, str], tuple[bytes, dict[str, Any]]]


def fit_inside(width: int, height: int, box: int = BOX) -> tuple[int, int]:
    """Size that fits ``box`` x ``box`` keeping the aspect ratio, never upscaling."""
    scale = min(1.0, box / width, box / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_naive() -> Runner:
    """The typical Lambda: open, convert as needed, LANCZOS resize, save. No draft, no reduce."""
    from PIL import Image

    def run(data: bytes, fmt: str) -> tuple[bytes, dict[str, Any]]:
        im = Image.open(io.BytesIO(data))
        if fmt == "jpeg" and im.mode != "RGB":
            im = im.convert("RGB")
        elif fmt != "jpeg" and im.mode not in ("RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
        im = im.resize(fit_inside(*im.size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        im.save(out, _PIL_FORMAT[fmt], quality=QUALITY[fmt])
        return out.getvalue(), {}

    return run


def engine_recipe(fmt: str) -> dict[str, Any]:
    """The engine recipe equivalent to the naive work (other fields at their defaults)."""
    return {
        "resize": {"width": BOX, "height": BOX, "fit": "inside"},
        "format": fmt,
        "quality": QUALITY[fmt],
    }


def prepare_engine(with_metrics: bool = False, engine: str = "vips") -> Runner:
    """ImagePipe's engine, exactly as the Lambda runs it (``imagepipe.core.process``), on the
    libvips decoder (``IMAGEPIPE_ENGINE=vips``, the default) or the all-Pillow path (``pillow``);
    ``with_metrics`` = the SSIM/PSNR stage on, as every job and the CLI run it."""
    import os

    os.environ["IMAGEPIPE_ENGINE"] = engine  # this child process only, before the engine is imported
    import pipeline  # noqa: F401  (puts lambda_src on sys.path)
    from imagepipe.core import parse_recipe, process

    recipes = {fmt: parse_recipe(engine_recipe(fmt)) for fmt in QUALITY}

    def run(data: bytes, fmt: str) -> tuple[bytes, dict[str, Any]]:
        result = process(data, recipes[fmt], compute_metrics=with_metrics)
        facts = result.facts
        return result.data, {"timings_ms": facts.get("timings_ms", {}), "metrics_off": not with_metrics,
                             "fast_paths": facts.get("fast_paths")}

    return run


def prepare_vips() -> Runner:
    """The speed reference: libvips ``thumbnail`` (shrink-on-load) + save, metadata stripped,
    exactly as ``pipeline.bench.vips_batch`` (the CLI comparison) does it."""
    import pyvips

    from pipeline.bench.vips_batch import save

    pyvips.cache_set_max(0)  # no operation cache: every repeat does the full work

    def run(data: bytes, fmt: str) -> tuple[bytes, dict[str, Any]]:
        im = pyvips.Image.thumbnail_buffer(data, BOX, height=BOX, size="down")
        return save(im, fmt, QUALITY[fmt]), {}

    return run


def prepare_vips_moz() -> Runner:
    """libvips with mozjpeg's size tools (trellis, deringing, scan optimisation, table 3), JPEG only:
    what an optional libvips engine could emit, for the bytes-at-equal-SSIM comparison."""
    import pyvips

    pyvips.cache_set_max(0)

    def run(data: bytes, fmt: str) -> tuple[bytes, dict[str, Any]]:
        im = pyvips.Image.thumbnail_buffer(data, BOX, height=BOX, size="down")
        out = im.jpegsave_buffer(Q=QUALITY["jpeg"], keep="none", background=[255], optimize_coding=True,
                                 interlace=True, trellis_quant=True, overshoot_deringing=True,
                                 optimize_scans=True, quant_table=3)
        return out, {}

    return run


PREPARE: dict[str, Callable[[], Runner]] = {
    "naive": prepare_naive,
    "engine": prepare_engine,
    "engine_metrics": lambda: prepare_engine(with_metrics=True),
    "engine_pillow": lambda: prepare_engine(engine="pillow"),
    "engine_pillow_metrics": lambda: prepare_engine(with_metrics=True, engine="pillow"),
    "vips": prepare_vips,
    "vips_moz": prepare_vips_moz,
}
