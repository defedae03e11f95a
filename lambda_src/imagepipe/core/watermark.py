"""Watermarks: text (Pillow's built-in FreeType font, no font files) or a base64 image.

The mark is sized relative to the output (``scale`` = mark width / output width, capped so it
also fits the height), placed on a 3×3 grid with ``margin`` × the shorter output side of
padding, or tiled across the whole image; ``opacity`` multiplies the mark's own alpha.
"""

from __future__ import annotations

import base64
import binascii
import io
from functools import lru_cache
from typing import Any

from PIL import Image

from imagepipe.core.decode import load_image
from imagepipe.core.recipe import Watermark
from imagepipe.errors import ImagePipeError, InvalidRecipe

#: a watermark image is decoded with these caps (it travels inside the recipe)
MAX_MARK_PIXELS = 4_000_000
_MARK_FORMATS = ["PNG", "WEBP", "GIF", "JPEG"]


def _bad_image(message: str) -> InvalidRecipe:
    return InvalidRecipe(f"watermark.image_b64: {message}",
                         details=[{"field": "watermark.image_b64", "message": message}])


@lru_cache(maxsize=8)
def _decode_mark(image_b64: str) -> Image.Image:
    try:
        raw = base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_image("not valid base64") from None
    try:
        im = Image.open(io.BytesIO(raw), formats=_MARK_FORMATS)
        if im.width * im.height > MAX_MARK_PIXELS:
            raise _bad_image(f"image is {im.width}x{im.height}, above {MAX_MARK_PIXELS:,} pixels")
        load_image(im, "watermark image")  # the engine's guarded decode (never a truncated image)
        return im.convert("RGBA")
    except InvalidRecipe:
        raise
    except ImagePipeError as exc:  # the decode's CorruptImage / TooManyPixels: the recipe is at fault
        raise _bad_image(exc.message) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means a bad watermark image
        raise _bad_image(f"not a decodable PNG/WebP/GIF/JPEG image ({type(exc).__name__}: {exc})") from None


# ImageDraw/ImageFont (FreeType) are imported on the first text watermark, not at start-up
@lru_cache(maxsize=1)
def _draw() -> Any:
    from PIL import ImageDraw

    return ImageDraw.Draw(Image.new("L", (1, 1)))


@lru_cache(maxsize=32)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _text_mark(text: str, target_w: int, max_h: int) -> Image.Image:
    from PIL import ImageDraw

    probe = 100
    font = _font(probe)
    stroke = max(1, probe // 14)
    x0, t, r, b = _draw().textbbox((0, 0), text, font=font, stroke_width=stroke)
    tw, th = max(1, r - x0), max(1, b - t)
    size = max(6, int(probe * min(target_w / tw, max_h / th)))
    font = _font(size)
    stroke = max(1, size // 14)
    x0, t, r, b = _draw().textbbox((0, 0), text, font=font, stroke_width=stroke)
    mark = Image.new("RGBA", (max(1, r - x0), max(1, b - t)), (0, 0, 0, 0))
    ImageDraw.Draw(mark).text((-x0, -t), text, font=font, fill=(255, 255, 255, 255), stroke_width=stroke,
                              stroke_fill=(0, 0, 0, 255))
    return mark


def _image_mark(image_b64: str, target_w: int, max_h: int) -> Image.Image:
    src = _decode_mark(image_b64)
    s = min(target_w / src.width, max_h / src.height)
    size = (max(1, round(src.width * s)), max(1, round(src.height * s)))
    return src.resize(size, Image.Resampling.LANCZOS) if size != src.size else src.copy()


def render_mark(wm: Watermark, out_w: int, out_h: int) -> Image.Image:
    """The RGBA mark at its final size with ``opacity`` applied."""
    target_w = max(1, round(out_w * wm.scale))
    max_h = max(1, round(out_h * wm.scale)) if wm.position == "tiled" else max(1, out_h)
    if wm.text is not None:
        mark = _text_mark(wm.text, target_w, max_h)
    else:
        assert wm.image_b64 is not None
        mark = _image_mark(wm.image_b64, target_w, max_h)
    if wm.opacity < 1.0:
        alpha = mark.getchannel("A").point(lambda a: round(a * wm.opacity))
        mark.putalpha(alpha)
    return mark


def _tile_grid(wm: Watermark, out_w: int, out_h: int, mw: int, mh: int) -> tuple[range, range]:
    """Left edges (columns) and top edges (rows) of the tiles; the steps keep tiles apart."""
    m = round(wm.margin * min(out_w, out_h))
    step_x, step_y = mw + max(m, mw // 2), mh + max(m, mh)
    return range(m, out_w, max(1, step_x)), range(m, out_h, max(1, step_y))


def positions(wm: Watermark, out_w: int, out_h: int, mw: int, mh: int) -> list[tuple[int, int]]:
    """Top-left corners where the mark goes."""
    if wm.position == "tiled":
        xs, ys = _tile_grid(wm, out_w, out_h, mw, mh)
        return [(x, y) for y in ys for x in xs]
    m = round(wm.margin * min(out_w, out_h))
    vert, _, horiz = wm.position.rpartition("-") if "-" in wm.position else ("", "", wm.position)
    if wm.position in ("top", "bottom"):
        vert, horiz = wm.position, "center"
    elif wm.position in ("left", "right", "center"):
        vert, horiz = "center", wm.position
    x = {"left": m, "center": (out_w - mw) // 2, "right": out_w - mw - m}[horiz]
    y = {"top": m, "center": (out_h - mh) // 2, "bottom": out_h - mh - m}[vert]
    return [(max(0, x), max(0, y))]


def apply_watermark(im: Image.Image, wm: Watermark | None) -> Image.Image:
    """Composite the watermark onto ``im`` (a new image; the input is not modified)."""
    if wm is None:
        return im
    mark = render_mark(wm, im.width, im.height)
    if wm.position == "tiled":
        # one strip holding a whole row of tiles, composited once per row: rows + columns
        # pastes instead of rows × columns (a tiny mark on a large image is millions of tiles)
        xs, ys = _tile_grid(wm, im.width, im.height, mark.width, mark.height)
        strip = Image.new("RGBA", (max(1, im.width - xs.start), mark.height), (0, 0, 0, 0))
        for x in xs:
            strip.paste(mark, (x - xs.start, 0))
        mark, spots = strip, [(xs.start, y) for y in ys]
    else:
        spots = positions(wm, im.width, im.height, mark.width, mark.height)
    if im.mode == "RGBA":
        out = im.copy()
        for xy in spots:
            out.alpha_composite(mark, dest=xy)
        return out
    if im.mode in ("L", "LA"):
        gray = mark.convert("LA")
        out = im.copy()
        for xy in spots:
            out.paste(gray.getchannel("L"), xy, mask=gray.getchannel("A"))
        return out
    out = im if im.mode == "RGB" else im.convert("RGB")
    out = out.copy() if out is im else out
    rgb, alpha = mark.convert("RGB"), mark.getchannel("A")
    for xy in spots:
        out.paste(rgb, xy, mask=alpha)
    return out
