"""The libvips decoder: explicit loader, shrink-on-load and a streaming Lanczos resize.

The engine's default (``IMAGEPIPE_ENGINE=vips``; ``pillow`` selects the all-Pillow path). With
``vips`` configured and pyvips/libvips not importable, importing the engine raises
``InternalError`` (a cold-start error on Lambda), and so does every job: never a silent fallback.

What libvips does here is only *decode + resize*; everything after (orientation, ICC → sRGB,
ops, letterbox, watermark, encoding, metrics) runs in Pillow on the small image, as on the
Pillow path, so both paths share one pipeline and one set of encoders.

Untrusted bytes: every check of ``core/decode.py`` (byte cap, format allowlist, pixel and frame
caps from the header, PNG CRCs, GIF trailer) has already run on the header before libvips sees
the bytes. libvips is then called through the one explicit loader of that format (never
``new_from_buffer`` / ``thumbnail_buffer``, which sniff: pyvips-binary carries an SVG loader),
every other loader is blocked (``operation_block_set``), untrusted operations are blocked,
``fail_on="error"`` turns truncation and decoder errors into errors, access is sequential, the
operation cache is off and the thread pool has ``IMAGEPIPE_VIPS_CONCURRENCY`` threads (default
1: the Lambda below 1769 MB has at most one vCPU; the CLI and the local stack scale with worker
processes). libvips' header must agree with Pillow's, or the input is ``corrupt_image``.

Which jobs (``handles``): one frame (animations kept → Pillow), JPEG/PNG/WebP/TIFF in 8-bit or
16-bit RGB(A)/L(A) (PNG also palette and 1-bit). Pillow keeps CMYK, GIF (its decoder is what
keeps palettes and animations right), 16-bit grey kept 16-bit for PNG output, and AVIF input
(libvips' libheif decoder was 2× slower than Pillow's libavif + dav1d on a 2560×1600 AVIF and
peaked at 746 MB vs 433 MB at the 49 MP cap). docs/engine.md has the line and the figures.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from PIL import Image

from imagepipe.core.transform import Plan, swaps_axes
from imagepipe.errors import CorruptImage, InternalError

ENGINE_ENV = "IMAGEPIPE_ENGINE"
CONCURRENCY_ENV = "IMAGEPIPE_VIPS_CONCURRENCY"
ENGINES = ("vips", "pillow")
DEFAULT_ENGINE = "vips"

#: our format -> the one libvips loader used for it (and the only loaders left unblocked)
LOADERS: dict[str, str] = {
    "jpeg": "jpegload_buffer",
    "png": "pngload_buffer",
    "webp": "webpload_buffer",
    "tiff": "tiffload_buffer",
}
_UNBLOCKED = ("VipsForeignLoadJpegBuffer", "VipsForeignLoadPngBuffer", "VipsForeignLoadWebpBuffer",
              "VipsForeignLoadTiffBuffer")
_MODES = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}
_PNG_ONLY_MODES = {"P", "1"}
_BANDS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def engine() -> str:
    """The configured engine: ``vips`` (default) or ``pillow``; anything else is a deployment bug."""
    value = os.environ.get(ENGINE_ENV, DEFAULT_ENGINE).strip().lower() or DEFAULT_ENGINE
    if value not in ENGINES:
        raise InternalError(f"{ENGINE_ENV}={value!r} is not one of {', '.join(ENGINES)}")
    return value


def concurrency() -> int:
    raw = os.environ.get(CONCURRENCY_ENV, "1").strip() or "1"
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise InternalError(f"{CONCURRENCY_ENV}={raw!r} must be a positive integer")
    return n


@lru_cache(maxsize=1)
def _import() -> Any:
    try:
        import pyvips  # type: ignore[import-not-found]
    except (ImportError, OSError):
        return None
    pyvips.cache_set_max(0)  # no operation cache: nothing stays resident between jobs
    pyvips.cache_set_max_mem(0)
    pyvips.cache_set_max_files(0)
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)  # every loader, then ours back on
    for name in _UNBLOCKED:
        pyvips.operation_block_set(name, False)
    pyvips.concurrency_set(concurrency())
    return pyvips


def _pyvips() -> Any:
    """pyvips, configured for untrusted input, or None when it (or libvips) is not installed."""
    return _import()


def require() -> Any:
    """pyvips when the engine is ``vips``; raise ``InternalError`` when it cannot be loaded."""
    pv = _import()
    if pv is None:
        raise InternalError(f"{ENGINE_ENV}=vips (the default) but pyvips/libvips cannot be imported; "
                            f"install pyvips + pyvips-binary or set {ENGINE_ENV}=pillow")
    return pv


def check_startup() -> None:
    """Cold-start check (run when the engine is imported): a bad engine setting, or ``vips``
    without libvips, fails the import instead of the first job."""
    if engine() == "vips":
        require()


def handles(fmt: str, mode: str, keep_anim: bool, keep_16bit: bool) -> bool:
    """True when this input is decoded by libvips (the line is drawn in docs/engine.md)."""
    if keep_anim or fmt not in LOADERS or engine() != "vips":
        return False
    if mode in _PNG_ONLY_MODES:
        return fmt == "png"
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return fmt == "png" and not keep_16bit
    return mode in _MODES  # CMYK, YCbCr, LAB, F, ... stay on Pillow


@dataclass
class Decoded:
    """A decoded (maybe shrunk or fully resized) frame and how it was made."""

    image: Image.Image
    note: str


def _shrink(src: tuple[int, int], target: tuple[float, float]) -> int:
    """The largest shrink-on-load factor (1, 2, 4, 8) that keeps both sides ≥ the target."""
    f = 1
    for s in (2, 4, 8):
        if math.ceil(src[0] / s) >= target[0] and math.ceil(src[1] / s) >= target[1]:
            f = s
    return f


def _load(pv: Any, data: bytes, fmt: str, shrink: int) -> Any:
    opts: dict[str, Any] = {"access": "sequential", "fail_on": "error"}
    if fmt == "jpeg" and shrink > 1:
        opts["shrink"] = shrink
    elif fmt == "webp" and shrink > 1:
        opts["scale"] = 1.0 / shrink
    return getattr(pv.Image, LOADERS[fmt])(data, **opts)


def decode(data: bytes, fmt: str, mode: str, raw_size: tuple[int, int], plan: Plan, orientation: int,
           filter_name: str) -> Decoded:
    """Decode ``data`` with libvips: shrink-on-load, then (Lanczos, no crop) resize to the plan.

    Returns a Pillow image in stored orientation: ``plan.content`` when libvips resized it,
    else the (maybe shrunk) decode for Pillow to finish (crops, other filters, no resize).
    """
    pv = require()
    w, h = raw_size
    cw, ch = plan.content
    rw, rh = (ch, cw) if swaps_axes(orientation) else (cw, ch)  # target in stored orientation
    resizing = (rw, rh) != (w, h) or plan.crop is not None
    full = (w, h)
    if plan.crop is not None:  # the whole (uncropped) source scaled as the crop is
        cropw, croph = (plan.crop[1], plan.crop[0]) if swaps_axes(orientation) else plan.crop
        full = (rw * w / cropw, rh * h / croph)
    elif resizing:
        full = (rw, rh)
    # shrink-on-load: JPEG in the DCT domain; opaque WebP in libwebp's scaler (which does not
    # premultiply: with alpha it fringes edges, SSIM 0.9936 vs Pillow, so alpha WebP decodes whole)
    can_shrink = fmt == "jpeg" or fmt == "webp" and mode == "RGB"
    shrink = _shrink((w, h), full) if resizing and can_shrink else 1
    vips_resize = resizing and plan.crop is None and filter_name == "lanczos" and rw <= w and rh <= h
    try:
        im = _load(pv, data, fmt, shrink)
        exp = (math.ceil(w / shrink), math.ceil(h / shrink)) if fmt == "jpeg" else \
            (round(w / shrink), round(h / shrink))
        if shrink == 1 and (im.width, im.height) != (w, h) or abs(im.width - exp[0]) > 1 \
                or abs(im.height - exp[1]) > 1:
            raise CorruptImage(f"the {fmt} header is inconsistent (libvips reads {im.width}x{im.height}, "
                               f"expected {w}x{h})")
        if vips_resize and (im.width, im.height) != (rw, rh):
            im = im.thumbnail_image(rw, height=rh, size="force", no_rotate=True)
        if im.format != "uchar":
            im = im.cast("uchar", shift=True) if im.format == "ushort" else im.cast("uchar")
        bands = im.bands
        if bands not in _BANDS:
            raise CorruptImage(f"libvips decoded {bands} bands")
        buf = im.write_to_memory()
        size = (im.width, im.height)
    except pv.Error as exc:
        reason = " ".join(str(exc).split())[:300]
        raise CorruptImage(f"the {fmt} is truncated or damaged (libvips: {reason})") from None
    out_mode = _BANDS[bands]
    pil = Image.frombuffer(out_mode, size, buf, "raw", out_mode, 0, 1)
    if vips_resize:
        note = f"vips_thumbnail:{w}x{h}->{size[0]}x{size[1]}"
    elif shrink > 1:
        note = f"vips_shrink_on_load:{w}x{h}->{size[0]}x{size[1]}"
    else:
        note = f"vips_decode:{w}x{h}"
    return Decoded(image=pil, note=note)
