"""Pixel transforms: size planning, JPEG draft, resize, auto-orient, colour, ops, letterbox.

Order (cheapest first, every step on as few pixels as possible):

1. plan the output size from the header (oriented dimensions) — ``plan_resize``;
2. JPEG only: ``draft`` — libjpeg decodes at 1/2, 1/4 or 1/8 scale in the DCT domain when the
   target is at least ``DRAFT_GAP``× smaller (``apply_draft``), before any pixel is decoded;
3. normalise the mode only where Pillow cannot resample it correctly (P, 1, I, F, ...);
4. ``resize`` with ``reducing_gap`` (an integer-factor ``reduce`` before the final filter),
   cropping for ``cover`` via the ``box`` argument (no intermediate full-size crop);
5. auto-orient (transpose the *small* image; a centred crop commutes with every EXIF rotation);
6. colour: ICC → sRGB with LittleCMS (skipped when the profile already is sRGB), CMYK → RGB;
7. ops (grayscale, sharpen, blur), letterbox padding for ``contain``, then the watermark.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms, ImageFilter

from imagepipe.core.recipe import Recipe, Resize
from imagepipe.errors import CorruptImage

FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
#: JPEG draft: decode in the DCT domain down to no less than this multiple of the target size.
#: 1.0 = libvips-style shrink-on-load (2.7–3× faster on 2560×1600 → 1024 JPEGs; SSIM 0.989–0.997
#: against a full-size decode + Lanczos, see docs/engine.md).
DRAFT_GAP = 1.0
#: ``Image.resize(reducing_gap=...)``: integer ``reduce`` down to this multiple, then the filter
#: (2.0 is Pillow's ``thumbnail`` default; SSIM ≥ 0.999 against a plain Lanczos resize).
REDUCING_GAP = 2.0

# EXIF orientation -> transpose (as ImageOps.exif_transpose)
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
SRGB_ICC: bytes = _SRGB.tobytes()


@dataclass(frozen=True)
class Plan:
    """Output geometry, in *oriented* coordinates (what a viewer sees).

    ``content`` is the size of the resampled picture, ``crop`` the centred region of the source
    (oriented coordinates, floats) it comes from, ``canvas`` the letterbox size for ``contain``
    (None = no padding). ``content`` equal to the source size and no crop: no resampling.
    """

    content: tuple[int, int]
    crop: tuple[float, float] | None = None
    canvas: tuple[int, int] | None = None

    @property
    def out_size(self) -> tuple[int, int]:
        return self.canvas or self.content


def swaps_axes(orientation: int) -> bool:
    """True for EXIF orientations 5–8 (the stored image is rotated by 90°)."""
    return orientation in (5, 6, 7, 8)


def plan_resize(w: int, h: int, resize: Resize | None) -> Plan:
    """The output geometry for a ``w``×``h`` (oriented) source."""
    if resize is None:
        return Plan(content=(w, h))
    bw, bh = resize.width, resize.height
    if resize.fit == "fill":
        assert bw is not None and bh is not None
        if not resize.upscale:
            bw, bh = min(bw, w), min(bh, h)
        return Plan(content=(bw, bh))
    if resize.fit == "cover":
        assert bw is not None and bh is not None
        s = max(bw / w, bh / h)
        if not resize.upscale:
            s = min(s, 1.0)
        cw, ch = min(bw, max(1, round(w * s))), min(bh, max(1, round(h * s)))
        crop = (min(w, cw / s), min(h, ch / s))
        if abs(crop[0] - w) < 1e-6 and abs(crop[1] - h) < 1e-6:
            return Plan(content=(cw, ch))
        return Plan(content=(cw, ch), crop=crop)
    # inside / contain
    scales = [b / s for b, s in ((bw, w), (bh, h)) if b is not None]
    s = min(scales)
    if not resize.upscale:
        s = min(s, 1.0)
    cw, ch = max(1, round(w * s)), max(1, round(h * s))
    if bw is not None:
        cw = min(cw, bw) if s <= bw / w else cw
    if bh is not None:
        ch = min(ch, bh) if s <= bh / h else ch
    canvas = None
    if resize.fit == "contain" and bw is not None and bh is not None and (cw, ch) != (bw, bh):
        canvas = (bw, bh)
    return Plan(content=(cw, ch), canvas=canvas)


def _raw(size: tuple[float, float], orientation: int) -> tuple[float, float]:
    return (size[1], size[0]) if swaps_axes(orientation) else size


def apply_draft(im: Image.Image, plan: Plan, orientation: int, src: tuple[int, int]) -> bool:
    """Ask libjpeg to decode a JPEG at 1/2..1/8 scale when the target is small enough.

    Must be called before the pixels are loaded. Returns True when the decode scale changed.
    """
    if im.format not in ("JPEG", "MPO") or plan.content == src and plan.crop is None:
        return False
    ow, oh = src  # oriented
    cw, ch = plan.content
    cropw, croph = plan.crop or (ow, oh)
    # size the whole (uncropped) source will be scaled to
    full_w, full_h = cw * ow / cropw, ch * oh / croph
    rw, rh = _raw((full_w * DRAFT_GAP, full_h * DRAFT_GAP), orientation)
    before = im.size
    try:
        im.draft(None, (math.ceil(rw), math.ceil(rh)))
    except (OSError, ValueError) as exc:
        raise CorruptImage(f"cannot decode the JPEG: {exc}") from None
    return im.size != before


def orientation_from(exif: Image.Exif) -> int:
    """EXIF orientation 1–8 (1 when absent or invalid)."""
    value = exif.get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def i16_to_l(im: Image.Image) -> Image.Image:
    a = np.asarray(im)
    if a.dtype != np.uint16:
        a = np.clip(a, 0, 65535).astype(np.uint16)
    return Image.fromarray((a >> 8).astype(np.uint8))


def normalise_mode(im: Image.Image, keep_16bit: bool) -> Image.Image:
    """Convert modes Pillow cannot resample or encode well; leave the common ones alone."""
    mode = im.mode
    if mode in ("RGB", "RGBA", "L", "LA", "CMYK"):
        return im
    if mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode == "PA":
        return im.convert("RGBA")
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I;16") or mode == "I":
        if keep_16bit:
            if mode == "I;16":
                return im
            a = np.clip(np.asarray(im), 0, 65535).astype("<u2")
            return Image.frombytes("I;16", im.size, a.tobytes())
        return i16_to_l(im)
    if mode == "F":
        return Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8))
    if mode in ("La", "RGBa"):
        return im.convert("LA" if mode == "La" else "RGBA")
    return im.convert("RGB")  # YCbCr, LAB, HSV, RGBX, ...


def resize(im: Image.Image, plan: Plan, orientation: int, filter_name: str,
           src_raw: tuple[int, int]) -> Image.Image:
    """Resample ``im`` (raw, un-oriented, maybe drafted from ``src_raw``) to ``plan.content``."""
    tw, th = (int(v) for v in _raw(plan.content, orientation))
    w, h = im.size
    box = None
    if plan.crop is not None:
        # the crop is in oriented coordinates of the original source; the image may be drafted
        cw, ch = _raw(plan.crop, orientation)
        cw, ch = cw * w / src_raw[0], ch * h / src_raw[1]
        box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    if (tw, th) == (w, h) and box is None:
        return im
    gap = None if im.mode.startswith("I;16") else REDUCING_GAP  # Image.reduce has no I;16 support
    return im.resize((tw, th), FILTERS[filter_name], box=box, reducing_gap=gap)


def orient(im: Image.Image, orientation: int) -> Image.Image:
    """Apply the EXIF orientation to the pixels."""
    method = _TRANSPOSE.get(orientation)
    return im if method is None else im.transpose(method)


def profile_description(icc: bytes | None) -> str | None:
    """The ICC profile's description, or None when absent or unreadable."""
    if not icc:
        return None
    try:
        prof = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return (ImageCms.getProfileDescription(prof) or "").strip() or None
    except Exception:  # noqa: BLE001 - an unreadable profile is reported as None
        return None


def is_srgb(description: str | None) -> bool:
    """Profiles named sRGB (IEC 61966-2.1, 'sRGB built-in', ...) need no conversion."""
    return bool(description) and description.lower().startswith("srgb")  # type: ignore[union-attr]


@lru_cache(maxsize=16)
def _rgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """profile → sRGB transform for ``mode`` (cached: building one costs ~10 ms); None if not RGB."""
    src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if src.profile.xcolor_space.strip() != "RGB":
        return None
    return ImageCms.buildTransform(src, _SRGB, mode, mode)


def to_srgb(im: Image.Image, icc: bytes | None, description: str | None) -> tuple[Image.Image, bool]:
    """Convert ``im`` from its embedded profile to sRGB. Returns (image, converted?).

    CMYK always ends as RGB (through its profile when present, else Pillow's naive formula).
    Grayscale profiles are not converted (the pixels stay L/LA).
    """
    if im.mode == "CMYK":
        if icc:
            try:
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                return ImageCms.profileToProfile(im, src, _SRGB, outputMode="RGB"), True  # type: ignore[return-value]
            except (ImageCms.PyCMSError, OSError, ValueError):
                pass  # a bad CMYK profile: fall through to the formula, reported as not converted
        return im.convert("RGB"), False
    if not icc or is_srgb(description) or im.mode not in ("RGB", "RGBA"):
        return im, False
    try:
        transform = _rgb_transform(icc, im.mode)
        if transform is None:
            return im, False
        out = transform.apply(im)
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        raise CorruptImage(f"the embedded ICC profile cannot be applied: {exc}") from None
    return out, True


def apply_ops(im: Image.Image, recipe: Recipe) -> Image.Image:
    """Grayscale, then sharpen (unsharp mask), then gaussian blur."""
    ops = recipe.ops
    if (ops.grayscale or ops.sharpen > 0 or ops.blur > 0) and im.mode == "I;16":
        im = i16_to_l(im)
    if ops.grayscale and im.mode not in ("L", "LA"):
        im = im.convert("LA" if im.mode == "RGBA" else "L")
    if ops.sharpen > 0:
        im = im.filter(ImageFilter.UnsharpMask(radius=1.5, percent=round(ops.sharpen * 100), threshold=2))
    if ops.blur > 0:
        im = im.filter(ImageFilter.GaussianBlur(radius=ops.blur))
    return im


def has_alpha(im: Image.Image) -> bool:
    """True for modes with an alpha channel and palettes with a transparent index."""
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def gray_of(rgb: tuple[int, int, int]) -> int:
    """The BT.601 luma (0–255) of an RGB colour, as Pillow's ``convert("L")`` computes it."""
    r, g, b = rgb
    return round(0.299 * r + 0.587 * g + 0.114 * b)


def letterbox(im: Image.Image, canvas: tuple[int, int], background: tuple[int, int, int]) -> Image.Image:
    """Centre ``im`` on a ``canvas`` (transparent when ``im`` has alpha, else ``background``)."""
    if im.mode == "RGBA":
        fill: object = (0, 0, 0, 0)
    elif im.mode == "LA":
        fill = (0, 0)
    elif im.mode == "L":
        fill = gray_of(background)
    elif im.mode == "I;16":
        fill = gray_of(background) * 257
    else:
        fill = background
    out = Image.new(im.mode, canvas, fill)  # type: ignore[arg-type]
    out.paste(im, ((canvas[0] - im.width) // 2, (canvas[1] - im.height) // 2))
    return out
