"""Pillow helpers for showing results: checkerboard, wipe comparison, 1:1 zoom crops.

Everything here works on decoded first frames and returns Pillow images; the pages turn
them into PNG bytes for ``st.image``. No HTML is built from image data. So formats a browser
may not show (JPEG XL, HEIC/HEIF) are previewed like any other: decoded here (their Pillow
plugins are registered below) and shown as PNG; downloads stay the real files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pillow_heif
import pillow_jxl  # noqa: F401  (registers the JPEG XL plugin)
from PIL import Image, ImageDraw, ImageOps

pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

#: longest side of the images the pages display (larger ones are downscaled for the screen)
DISPLAY_MAX_SIDE = 1200
#: refuse to preview anything larger than the engine's default pixel cap
PREVIEW_MAX_PIXELS = 50_000_000
CHECKER_LIGHT = (236, 236, 236)
CHECKER_DARK = (200, 200, 200)


class PreviewError(Exception):
    """The bytes cannot be previewed (not an image Pillow can open, or too large)."""


def open_first_frame(data: bytes, target: tuple[int, int] | None = None) -> Image.Image:
    """Decode the first frame, upright (EXIF orientation applied), as RGB or RGBA.

    ``target`` lets JPEG decoding skip detail it would throw away (``Image.draft``).
    """
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > PREVIEW_MAX_PIXELS:
            raise PreviewError(f"{img.width}x{img.height} is too large to preview")
        if target is not None and img.format == "JPEG":
            img.draft("RGB", target)
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
    except PreviewError:
        raise
    except Exception as exc:  # Pillow raises many types for bad data
        raise PreviewError(f"cannot decode: {exc}") from exc
    if has_alpha(img):
        return img.convert("RGBA")
    return img.convert("RGB")


def has_alpha(img: Image.Image) -> bool:
    """True when the image carries transparency (alpha band or a transparent palette entry)."""
    return (
        img.mode in {"RGBA", "LA", "PA"}
        or (img.mode == "P" and "transparency" in img.info)
        or img.mode == "RGBa"
    )


def checkerboard(size: tuple[int, int], cell: int = 10) -> Image.Image:
    """A light grey checkerboard of ``size``, the usual backdrop for transparency."""
    w, h = size
    tile = Image.new("RGB", (cell * 2, cell * 2), CHECKER_LIGHT)
    draw = ImageDraw.Draw(tile)
    draw.rectangle((cell, 0, cell * 2 - 1, cell - 1), fill=CHECKER_DARK)
    draw.rectangle((0, cell, cell - 1, cell * 2 - 1), fill=CHECKER_DARK)
    board = Image.new("RGB", (w, h))
    for y in range(0, h, cell * 2):
        for x in range(0, w, cell * 2):
            board.paste(tile, (x, y))
    return board


def on_checkerboard(img: Image.Image, cell: int = 10) -> Image.Image:
    """RGB version of ``img``: transparent parts show a checkerboard, opaque images are unchanged."""
    if not has_alpha(img):
        return img.convert("RGB")
    board = checkerboard(img.size, cell).convert("RGBA")
    board.alpha_composite(img.convert("RGBA"))
    return board.convert("RGB")


def fit_within(img: Image.Image, max_side: int = DISPLAY_MAX_SIDE) -> Image.Image:
    """Downscale (never upscale) so the longest side is at most ``max_side``."""
    if max(img.size) <= max_side:
        return img
    scale = max_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def to_png(img: Image.Image) -> bytes:
    """PNG bytes for ``st.image`` (fast settings: these are screen previews)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass
class Pair:
    """The original and the output, decoded, at the output's pixel size (as the metrics see them)."""

    before: Image.Image
    after: Image.Image
    alpha: bool


def make_pair(original: bytes, output: bytes) -> Pair:
    """Decode both; resize the original to the output's size so pixels line up."""
    after = open_first_frame(output)
    before = open_first_frame(original, target=after.size)
    alpha = has_alpha(before) or has_alpha(after)
    if before.size != after.size:
        before = _cover_resize(before, after.size)
    if alpha:
        before, after = before.convert("RGBA"), after.convert("RGBA")
    return Pair(before=before, after=after, alpha=alpha)


def _cover_resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to cover ``size`` and centre-crop: matches outputs made with fit inside/contain/cover.

    For ``fit: fill`` (aspect changed) it degrades to a plain stretch, which is what fill did.
    """
    src_ratio = img.width / img.height
    dst_ratio = size[0] / size[1]
    if abs(src_ratio - dst_ratio) / dst_ratio < 0.02 or size[0] < 2 or size[1] < 2:
        return img.resize(size, Image.Resampling.LANCZOS)
    return ImageOps.fit(img, size, Image.Resampling.LANCZOS)


def wipe(pair: Pair, fraction: float, max_side: int = DISPLAY_MAX_SIDE) -> Image.Image:
    """Left ``fraction`` of the original, the rest the output, with a divider line."""
    fraction = min(1.0, max(0.0, fraction))
    before = fit_within(on_checkerboard(pair.before), max_side)
    after = fit_within(on_checkerboard(pair.after), max_side)
    x = round(before.width * fraction)
    out = after.copy()
    if x > 0:
        out.paste(before.crop((0, 0, x, before.height)), (0, 0))
    draw = ImageDraw.Draw(out)
    line_x = min(max(x, 1), out.width - 2)
    draw.line((line_x - 1, 0, line_x - 1, out.height), fill=(20, 20, 20), width=1)
    draw.line((line_x, 0, line_x, out.height), fill=(255, 255, 255), width=2)
    return out


def crop_box(size: tuple[int, int], cx: float, cy: float, side: int) -> tuple[int, int, int, int]:
    """A ``side``-pixel square (clamped to the image) centred at fractions ``cx``, ``cy``."""
    w, h = size
    cw, ch = min(side, w), min(side, h)
    left = round(cx * w - cw / 2)
    top = round(cy * h - ch / 2)
    left = min(max(left, 0), w - cw)
    top = min(max(top, 0), h - ch)
    return left, top, left + cw, top + ch


def zoom(img: Image.Image, box: tuple[int, int, int, int], factor: int) -> Image.Image:
    """The region at 1:1 (``factor`` 1) or magnified with nearest-neighbour so pixels stay square."""
    region = on_checkerboard(img.crop(box), cell=4)
    if factor <= 1:
        return region
    return region.resize((region.width * factor, region.height * factor), Image.Resampling.NEAREST)


def mark_region(img: Image.Image, box: tuple[int, int, int, int], max_side: int = 480) -> Image.Image:
    """A small overview of ``img`` with ``box`` outlined, so the user sees where the crop is."""
    base = on_checkerboard(img)
    scaled = fit_within(base, max_side)
    s = scaled.width / base.width
    draw = ImageDraw.Draw(scaled)
    rect = (box[0] * s, box[1] * s, box[2] * s - 1, box[3] * s - 1)
    draw.rectangle(rect, outline=(255, 255, 255), width=3)
    draw.rectangle(rect, outline=(230, 57, 70), width=1)
    return scaled
