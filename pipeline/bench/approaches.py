"""The three ways of doing the same work: fit inside 1024x1024, save JPEG q85 / WebP q80.

Each approach is ``prepare() -> run(data: bytes, fmt: str) -> (bytes, extra: dict)``; the heavy
imports happen in ``prepare`` so a child process only loads what its approach needs.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

BOX = 1024
QUALITY = {"jpeg": 85, "webp": 80}
APPROACHES = ("naive", "engine", "engine_metrics", "engine_vips", "vips", "vips_moz", "hybrid")
#: approaches that only make sense for some output formats
ONLY_FOR = {"vips_moz": {"jpeg"}}

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
        elif fmt == "webp" and im.mode not in ("RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
        im = im.resize(fit_inside(*im.size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        im.save(out, "JPEG" if fmt == "jpeg" else "WEBP", quality=QUALITY[fmt])
        return out.getvalue(), {}

    return run


def engine_recipe(fmt: str) -> dict[str, Any]:
    """The engine recipe equivalent to the naive work (other fields at their defaults)."""
    return {
        "resize": {"width": BOX, "height": BOX, "fit": "inside"},
        "format": fmt,
        "quality": QUALITY[fmt],
    }


def prepare_engine(with_metrics: bool = False) -> Runner:
    """ImagePipe's engine, exactly as the Lambda runs it (``imagepipe.core.process``).

    Metrics are switched off when ``process`` has a ``compute_metrics`` (or ``metrics``) keyword;
    otherwise they run and the report subtracts the engine's own ``timings_ms["metrics"]``.
    """
    import inspect

    import pipeline  # noqa: F401  (puts lambda_src on sys.path)
    from imagepipe.core import parse_recipe, process

    params = inspect.signature(process).parameters
    switch = next((name for name in ("compute_metrics", "metrics") if name in params), None)
    metrics_off = switch is not None and not with_metrics
    kwargs: dict[str, Any] = {switch: False} if metrics_off and switch else {}
    recipes = {fmt: parse_recipe(engine_recipe(fmt)) for fmt in QUALITY}

    def run(data: bytes, fmt: str) -> tuple[bytes, dict[str, Any]]:
        result = process(data, recipes[fmt], **kwargs)
        facts = result.facts
        return result.data, {"timings_ms": facts.get("timings_ms", {}), "metrics_off": metrics_off,
                             "fast_paths": facts.get("fast_paths")}

    return run


def prepare_engine_vips() -> Runner:
    """The engine with its optional libvips front end on (``IMAGEPIPE_VIPS=on``), metrics off:
    PNG/WebP shrink jobs decode through libvips, everything else is the Pillow path."""
    import os

    os.environ["IMAGEPIPE_VIPS"] = "on"  # this child process only
    return prepare_engine()


def prepare_vips() -> Runner:
    """The speed reference: libvips ``thumbnail`` (shrink-on-load) + save, metadata stripped."""
    import pyvips

    pyvips.cache_set_max(0)  # no operation cache: every repeat does the full work

    def run(data: bytes, fmt: str) -> tuple[bytes, dict[str, Any]]:
        im = pyvips.Image.thumbnail_buffer(data, BOX, height=BOX, size="down")
        if fmt == "jpeg":
            out = im.jpegsave_buffer(Q=QUALITY[fmt], keep="none", background=[255])
        else:
            out = im.webpsave_buffer(Q=QUALITY[fmt], keep="none")
        return out, {}

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


def prepare_hybrid() -> Runner:
    """The candidate "optional libvips path": libvips decodes with shrink-on-load and resizes
    (``thumbnail_buffer``), Pillow gets the small image and encodes it as the engine does."""
    import pyvips
    from PIL import Image

    pyvips.cache_set_max(0)

    def run(data: bytes, fmt: str) -> tuple[bytes, dict[str, Any]]:
        small = pyvips.Image.thumbnail_buffer(data, BOX, height=BOX, size="down")
        if small.format != "uchar":
            small = small.cast("uchar")
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[small.bands]
        im = Image.frombuffer(mode, (small.width, small.height), small.write_to_memory(), "raw", mode, 0, 1)
        if fmt == "jpeg" and im.mode != "RGB":
            if "A" in im.mode:
                bg = Image.new("RGB", im.size, (255, 255, 255))
                bg.paste(im.convert("RGBA"), mask=im.getchannel("A"))
                im = bg
            else:
                im = im.convert("RGB")
        out = io.BytesIO()
        if fmt == "jpeg":
            im.save(out, "JPEG", quality=QUALITY[fmt], progressive=True, optimize=True)
        else:
            im.save(out, "WEBP", quality=QUALITY[fmt], method=4)
        return out.getvalue(), {}

    return run


PREPARE: dict[str, Callable[[], Runner]] = {
    "naive": prepare_naive,
    "engine": prepare_engine,
    "engine_metrics": lambda: prepare_engine(with_metrics=True),
    "engine_vips": prepare_engine_vips,
    "vips": prepare_vips,
    "vips_moz": prepare_vips_moz,
    "hybrid": prepare_hybrid,
}
