"""Optional libvips front end: decode + shrink-on-load + Lanczos resize in one streaming pass.

Off unless ``IMAGEPIPE_VIPS=on``; then ``pyvips`` must be importable, or jobs fail with
``internal_error`` instead of silently taking the Pillow path (pyvips is a dev/bench dependency,
not in ``lambda_src/requirements.txt``; the template sets the variable to ``off``).

Used only for the plain "make it smaller" case, where Pillow has to hold the whole decoded
image (a 4096² WebP peaks at ~260 MB in Pillow's loader):

- PNG or WebP input, 8-bit modes (RGB, RGBA, L, LA, P, 1), one frame kept (JPEG stays on
  Pillow: its DCT-domain draft is already faster and leaner than libvips here);
- ``resize`` with ``fit`` inside/contain/fill and the ``lanczos`` filter (libvips' thumbnail
  kernel), target smaller than the source.

Everything else stays on Pillow: the safety checks (allowlist, byte/pixel/frame caps, PNG CRCs)
all run on the header *before* libvips sees the bytes; libvips decodes with
``fail_on=error`` (truncated → ``corrupt_image``) and untrusted loaders blocked; orientation,
colour (ICC → sRGB), ops, letterbox, watermark, encoding and metrics then run in Pillow on the
small image, exactly as on the Pillow path. ``facts.fast_paths`` says when it was used.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from PIL import Image

from imagepipe.core.transform import Plan, swaps_axes
from imagepipe.errors import CorruptImage, InternalError

ENV = "IMAGEPIPE_VIPS"
_FORMATS = ("png", "webp")  # JPEG: Pillow's draft path is faster and leaner (docs/engine.md)
_MODES = ("RGB", "RGBA", "L", "LA", "P", "1")
_BANDS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@lru_cache(maxsize=1)
def _pyvips() -> Any:
    try:
        import pyvips  # type: ignore[import-not-found]
    except (ImportError, OSError):
        return None
    pyvips.cache_set_max(0)  # no operation cache: nothing stays resident between jobs
    if hasattr(pyvips, "block_untrusted_set"):
        pyvips.block_untrusted_set(True)
    return pyvips


def enabled() -> bool:
    """``IMAGEPIPE_VIPS=on``; asking for it without pyvips installed is an error, not a fallback."""
    if os.environ.get(ENV, "off").strip().lower() != "on":
        return False
    if _pyvips() is None:
        raise InternalError(f"{ENV}=on but pyvips (and libvips) is not installed")
    return True


def eligible(fmt: str, mode: str, frames_kept: int, resize: Any, plan: Plan,
             oriented: tuple[int, int]) -> bool:
    """True when the libvips front end can do this job's decode + resize exactly."""
    if fmt not in _FORMATS or mode not in _MODES or frames_kept != 1 or resize is None:
        return False
    if resize.fit not in ("inside", "contain", "fill") or resize.filter != "lanczos" or plan.crop is not None:
        return False
    cw, ch = plan.content
    return cw < oriented[0] and ch < oriented[1]


def thumbnail(data: bytes, plan: Plan, orientation: int) -> Image.Image:
    """Decode and resize ``data`` to ``plan.content`` (stored orientation; Pillow orients after)."""
    pyvips = _pyvips()
    cw, ch = plan.content
    rw, rh = (ch, cw) if swaps_axes(orientation) else (cw, ch)
    try:
        im = pyvips.Image.thumbnail_buffer(data, rw, height=rh, size="force", no_rotate=True,
                                           option_string="fail_on=error")
        if im.format != "uchar":
            im = im.cast("uchar", shift=True)  # 16-bit → 8-bit by >> 8 (scaled, not clipped)
        mode = _BANDS.get(im.bands)
        if mode is None:
            raise CorruptImage(f"libvips produced {im.bands} bands")
        buf = im.write_to_memory()
    except pyvips.Error as exc:
        raise CorruptImage(f"the image is truncated or damaged (libvips: {str(exc).strip()[:300]})") from None
    if (im.width, im.height) != (rw, rh):
        raise CorruptImage(f"libvips returned {im.width}x{im.height}, expected {rw}x{rh}")
    return Image.frombuffer(mode, (rw, rh), buf, "raw", mode, 0, 1)
