"""Hostile and odd inputs for the reliability suite, generated in code.

Each :class:`Case` is one kind of input with the outcome the stack must produce:
``succeeded`` (with a pixel check), ``failed`` with an engine error code, or ``rejected``
by S3's POST policy before anything is stored.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from tests.unit.imagegen import _icc_v2_rgb, photo_bytes  # _icc_v2_rgb: the shared ICC builder

#: a lossless output so pixel checks compare exact-ish values
PNG_RECIPE: dict[str, Any] = {"format": "png"}
SMALL_WEBP: dict[str, Any] = {"resize": {"width": 64, "height": 64, "fit": "inside"}, "format": "webp"}


@dataclass
class Case:
    """One kind of input and its expected outcome through the whole stack."""

    name: str
    data: bytes
    filename: str = "input.jpg"
    content_type: str = "image/jpeg"
    recipe: dict[str, Any] = field(default_factory=lambda: dict(PNG_RECIPE))
    expect: str = "succeeded"  # succeeded | failed | rejected
    code: str | None = None  # engine error code (failed) or S3 error code (rejected)
    check: Callable[[bytes, dict[str, Any]], None] | None = None  # (output bytes, job) -> assert
    announce: int | None = None  # size announced to POST /uploads (default: len(data))
    trigger: str = "s3"  # s3 (recipe at upload) | job (POST /jobs after upload)


# --- building blocks ------------------------------------------------------------------------


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def bitflip(data: bytes, start: int, count: int, seed: int) -> bytes:
    """Flip ``count`` random bits at or after byte ``start`` (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    buf = bytearray(data)
    for pos in rng.integers(start, len(buf), count):
        buf[int(pos)] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf)


def quadrants(w: int = 48, h: int = 32) -> Image.Image:
    """An asymmetric image: red top-left, green top-right, blue bottom-left, white bottom-right."""
    im = Image.new("RGB", (w, h))
    im.paste((255, 0, 0), (0, 0, w // 2, h // 2))
    im.paste((0, 255, 0), (w // 2, 0, w, h // 2))
    im.paste((0, 0, 255), (0, h // 2, w // 2, h))
    im.paste((255, 255, 255), (w // 2, h // 2, w, h))
    return im


def exif_jpeg(im: Image.Image, orientation: int | None = None, extra: dict[int, Any] | None = None) -> bytes:
    ex = Image.Exif()
    if orientation:
        ex[0x0112] = orientation
    for tag, value in (extra or {}).items():
        ex[tag] = value
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=98, subsampling=0, exif=ex.tobytes())
    return buf.getvalue()


def one_bit_bomb_png(w: int = 12000, h: int = 12000) -> bytes:
    """A real, fully valid 1-bit PNG of w×h: a few KB on disk, w*h pixels when decoded."""
    row = b"\x00" + b"\x00" * ((w + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def rgb16_png(w: int = 40, h: int = 24) -> tuple[bytes, np.ndarray]:
    """A 16-bit-per-channel RGB PNG (written by hand) and its expected 8-bit pixels."""
    rng = np.random.default_rng(7)
    arr16 = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
    raw = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))
    return data, (arr16 >> 8).astype(np.uint8)


def p3_icc() -> bytes:
    """A Display-P3-like ICC profile (P3 primaries adapted to D50, gamma 2.2)."""
    # ImageCms cannot build arbitrary primaries: a matrix/TRC profile written byte by byte
    # Display P3 primaries adapted to D50 (colorants as in Apple's Display P3 profile)
    return _icc_v2_rgb("ImagePipe test Display P3", (0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419),
                       (0.1571, 0.0666, 0.7841), 2.2)


def saturated_swatches(w: int = 48, h: int = 16) -> Image.Image:
    im = Image.new("RGB", (w, h))
    for i, col in enumerate([(0, 200, 0), (200, 0, 0), (0, 0, 200)]):
        im.paste(col, (i * w // 3, 0, (i + 1) * w // 3, h))
    return im


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("evil.js", "alert(1)")
    return buf.getvalue()


def jpeg_claiming(w: int, h: int) -> bytes:
    """A small real JPEG whose SOF0 header is patched to claim ``w``×``h``."""
    data = bytearray(photo_bytes(32, 32, "jpeg", seed=5))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def html_bytes() -> bytes:
    return b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>\n"


def svg_script_bytes() -> bytes:
    return (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" '
            b'onload="alert(1)"><script>fetch("http://169.254.169.254/")</script>'
            b'<rect width="10" height="10"/></svg>')


def gif_js_polyglot() -> bytes:
    """``GIF89a`` that is also valid JavaScript (the classic GIFAR/GIF-JS trick)."""
    return b"GIF89a/*\x0a\x00\x0a\x00\x00\x00\x00*/=1;alert(document.domain);/*\x00;*/"


def random_bytes(n: int = 4096, seed: int = 9) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def pixels(data: bytes, mode: str = "RGB") -> np.ndarray:
    """Decoded pixels as an int array."""
    return np.asarray(Image.open(io.BytesIO(data)).convert(mode), dtype=np.int32)


def frames_png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))

