"""Test images generated in code (no fixtures on disk), shared by every test suite.

Stable API — other suites import these; add functions, don't change signatures:

- ``photo_like(w, h, mode="RGB", seed=0)``: smooth gradients + texture + hard edges; compresses
  like a photograph (neither flat nor white noise).
- ``encode(img, fmt, **kw) -> bytes``: save to ``fmt`` (``jpeg|png|webp|avif|gif|tiff``).
- ``photo_bytes(w, h, fmt="jpeg", mode="RGB", seed=0, **kw) -> bytes``: the two above at once.
- ``rgba_logo(w, h)``: a transparent RGBA image with an opaque shape (for watermarks, alpha tests).
- ``animated_gif(n_frames, w, h) -> bytes`` / ``animated_webp(n_frames, w, h) -> bytes``.
- ``with_exif_orientation(jpeg_bytes_or_img, orientation) -> bytes``: JPEG with that EXIF tag.
- ``exif_bytes(make=..., model=..., gps=..., orientation=..., artist=..., copyright=...)``.
- ``srgb_icc()`` / ``adobe_like_icc()``: ICC profile bytes; ``with_icc(img, fmt, icc)``.
- ``jxl_header_only(w, h)``: a JPEG XL codestream whose SizeHeader claims w × h (no pixels);
  ``encode(img, "jxl" | "heif")`` writes JPEG XL / HEIC through the registered plugins.
- bad inputs: ``truncated(data, keep=0.5)``, ``png_header_only(w, h)``, ``pdf_bytes()``,
  ``eps_bytes()``, ``svg_bytes()``, ``text_bytes()``.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageCms, ImageDraw

from imagepipe.core import plugins

plugins.register()  # the JPEG XL and HEIF plugins, for ``encode`` (the engine registers them lazily)

_FMT = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "gif": "GIF",
        "tiff": "TIFF", "tif": "TIFF", "bmp": "BMP", "jxl": "JXL", "heif": "HEIF", "heic": "HEIF"}


def _rgb_array(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    fx = x / max(w - 1, 1)
    fy = y / max(h - 1, 1)
    ph = rng.uniform(0, 2 * np.pi, 3)
    r = 128 + 90 * np.sin(2.1 * np.pi * fx + ph[0]) * np.cos(1.3 * np.pi * fy)
    g = 128 + 80 * np.cos(1.7 * np.pi * (fx + fy) + ph[1])
    b = 120 + 100 * fy - 40 * np.sin(3.0 * np.pi * fx + ph[2])
    img = np.stack([r, g, b], axis=-1)
    # mid-frequency texture: smoothed noise (separable box blur of white noise)
    noise = rng.normal(0, 1, (h, w, 1)).astype(np.float32)
    k = 3
    if h > 2 * k and w > 2 * k:
        c = np.cumsum(np.pad(noise, ((k, k), (0, 0), (0, 0)), mode="edge"), axis=0)
        noise = (c[2 * k:] - c[:-2 * k]) / (2 * k)
        c = np.cumsum(np.pad(noise, ((0, 0), (k, k), (0, 0)), mode="edge"), axis=1)
        noise = (c[:, 2 * k:] - c[:, :-2 * k]) / (2 * k)
        noise = noise[:h, :w]
    img += noise * 18.0
    img += rng.normal(0, 2.0, img.shape).astype(np.float32)  # sensor-ish grain
    return np.clip(img, 0, 255).astype(np.uint8)


def photo_like(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A deterministic photo-like image of ``w``×``h`` in ``mode``.

    Modes: RGB, RGBA and LA (alpha gradient + fully transparent top-left corner), L, P (64
    colours), ``"Pt"`` (mode P with ``info["transparency"]``, top-left corner transparent),
    CMYK, I;16, 1, and anything else ``Image.convert`` accepts.
    """
    base = Image.fromarray(_rgb_array(w, h, seed))
    draw = ImageDraw.Draw(base)
    # hard edges: a few rectangles / ellipses
    rng = np.random.default_rng(seed + 1)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, max(w // 2, 1))), int(rng.integers(0, max(h // 2, 1)))
        x1, y1 = x0 + max(1, w // 4), y0 + max(1, h // 4)
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=col)
        else:
            draw.ellipse([x0, y0, x1, y1], fill=col)
    if mode == "RGB":
        return base
    if mode in ("RGBA", "LA"):
        a = np.linspace(255, 60, w, dtype=np.float32)[None, :].repeat(h, axis=0)
        a[: h // 4, : w // 4] = 0  # a fully transparent corner
        alpha = Image.fromarray(a.astype(np.uint8))
        out = base.convert("RGBA") if mode == "RGBA" else base.convert("LA")
        out.putalpha(alpha)
        return out
    if mode == "P":
        return base.quantize(64)
    if mode == "Pt":
        p = base.quantize(63)
        arr = np.array(p)
        arr[: h // 4, : w // 4] = 63
        p2 = Image.frombytes("P", (w, h), arr.astype(np.uint8).tobytes())
        pal = p.getpalette() or []
        pal = (pal + [0] * 768)[:768]
        p2.putpalette(pal)
        p2.info["transparency"] = 63
        return p2
    if mode == "I;16":
        lum = np.array(base.convert("L"), dtype=np.uint16) * 257
        return Image.frombytes("I;16", (w, h), lum.astype("<u2").tobytes())
    if mode == "1":
        return base.convert("L").point(lambda v: 255 if v > 128 else 0).convert("1")
    return base.convert(mode)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    """Encode ``img`` as ``fmt`` (jpeg/png/webp/avif/gif/tiff/bmp); ``kw`` go to ``save``."""
    pil = _FMT[fmt.lower()]
    if pil == "JPEG" and img.mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")
    if pil == "GIF" and img.mode not in ("P", "L", "1"):
        img = img.convert("RGB").quantize(256)
    buf = io.BytesIO()
    img.save(buf, pil, **kw)
    return buf.getvalue()


def photo_bytes(w: int, h: int, fmt: str = "jpeg", mode: str = "RGB", seed: int = 0, **kw: object) -> bytes:
    """``encode(photo_like(w, h, mode, seed), fmt, **kw)``."""
    return encode(photo_like(w, h, mode, seed), fmt, **kw)


def rgba_logo(w: int, h: int) -> Image.Image:
    """Transparent RGBA canvas with an opaque red ring and a half-transparent blue bar."""
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse([w * 0.1, h * 0.1, w * 0.9, h * 0.9], outline=(220, 20, 20, 255), width=max(1, w // 10))
    d.rectangle([w * 0.2, h * 0.45, w * 0.8, h * 0.55], fill=(20, 40, 220, 128))
    return img


def _frames(n_frames: int, w: int, h: int) -> list[Image.Image]:
    frames = []
    for i in range(n_frames):
        f = Image.new("RGB", (w, h), (30, 30, 30))
        d = ImageDraw.Draw(f)
        x = int((w - w // 4) * i / max(n_frames - 1, 1))
        d.rectangle([x, h // 3, x + w // 4, 2 * h // 3], fill=(255, 200 - (i * 7) % 200, 40))
        frames.append(f)
    return frames


def animated_gif(n_frames: int, w: int, h: int, duration: int = 80) -> bytes:
    """An animated GIF of ``n_frames`` distinct frames (a moving bar)."""
    frames = [f.quantize(32) for f in _frames(n_frames, w, h)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return buf.getvalue()


def animated_webp(n_frames: int, w: int, h: int, duration: int = 80) -> bytes:
    """An animated WebP of ``n_frames`` distinct frames."""
    frames = _frames(n_frames, w, h)
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=duration, loop=0,
                   quality=70)
    return buf.getvalue()


def exif_bytes(
    *,
    make: str | None = None,
    model: str | None = None,
    orientation: int | None = None,
    gps: bool = False,
    artist: str | None = None,
    copyright: str | None = None,  # noqa: A002 - the EXIF tag's name
) -> bytes:
    """Serialised EXIF with the given tags (GPS adds a small GPS IFD)."""
    ex = Image.Exif()
    if make:
        ex[0x010F] = make
    if model:
        ex[0x0110] = model
    if orientation:
        ex[0x0112] = orientation
    if artist:
        ex[0x013B] = artist
    if copyright:
        ex[0x8298] = copyright
    if gps:
        ex.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 0.0), 3: "E", 4: (4.0, 53.0, 0.0)})
    return ex.tobytes()


def with_exif_orientation(src: bytes | Image.Image, orientation: int, **exif_kw: object) -> bytes:
    """A JPEG (q95) of ``src`` whose EXIF orientation tag is ``orientation`` (1–8).

    The stored pixels are ``src`` unchanged; a viewer applying the tag sees it transformed.
    """
    img = Image.open(io.BytesIO(src)) if isinstance(src, bytes | bytearray) else src
    img = img.convert("RGB") if img.mode not in ("RGB", "L") else img
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif_bytes(orientation=orientation, **exif_kw))  # type: ignore[arg-type]
    return buf.getvalue()


def srgb_icc() -> bytes:
    """An sRGB ICC profile (built by LittleCMS)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _icc_v2_rgb(description: str, red: tuple[float, float, float], green: tuple[float, float, float],
                blue: tuple[float, float, float], gamma: float) -> bytes:
    """A minimal ICC v2 matrix/TRC RGB display profile, built byte by byte."""

    def pad4(b: bytes) -> bytes:
        return b + b"\x00" * (-len(b) % 4)

    def xyz(v: tuple[float, float, float]) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + b"".join(_s15(c) for c in v)

    desc_ascii = description.encode("ascii") + b"\x00"
    desc = (b"desc\x00\x00\x00\x00" + struct.pack(">I", len(desc_ascii)) + desc_ascii
            + struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\x00" * 67)
    curv = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(gamma * 256))
    cprt = b"text\x00\x00\x00\x00" + b"No copyright, test profile\x00"
    d50 = (0.9642, 1.0, 0.8249)
    tags = [(b"desc", desc), (b"cprt", cprt), (b"wtpt", xyz(d50)), (b"rXYZ", xyz(red)),
            (b"gXYZ", xyz(green)), (b"bXYZ", xyz(blue)), (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += pad4(data)
    total = offset + len(body)
    header = (struct.pack(">I", total) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"APPL" + b"\x00" * 4
              + b"\x00" * 8 + b"\x00" * 8 + struct.pack(">I", 0) + b"".join(_s15(c) for c in d50)
              + b"\x00" * 4 + b"\x00" * 16 + b"\x00" * 28)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def adobe_like_icc() -> bytes:
    """A wide-gamut RGB profile ("ImagePipe test AdobeRGB-like": Adobe RGB primaries, gamma 2.2).

    Converting its pixels to sRGB changes saturated values measurably (greens especially).
    """
    return _icc_v2_rgb("ImagePipe test AdobeRGB-like", (0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609),
                       (0.1492, 0.0632, 0.7446), 2.2)


def with_icc(img: Image.Image, fmt: str, icc: bytes, **kw: object) -> bytes:
    """Encode ``img`` as ``fmt`` with an embedded ICC profile."""
    return encode(img, fmt, icc_profile=icc, **kw)


# --- bad inputs -----------------------------------------------------------------------------


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` fraction of ``data``."""
    return data[: max(1, int(len(data) * keep))]


def png_header_only(w: int, h: int, mode: str = "RGB") -> bytes:
    """A PNG whose IHDR claims ``w``×``h`` followed by a tiny IDAT and IEND (a 'bomb' header)."""
    color_type = {"L": 0, "RGB": 2, "RGBA": 6}[mode]

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(tag + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_with_late_exif(img: Image.Image, orientation: int) -> bytes:
    """A PNG of ``img`` whose EXIF orientation sits in an eXIf chunk *after* the image data.

    Pillow sees such a chunk only once the pixels are decoded (the PNG spec asks for eXIf before
    IDAT, but writers do not all follow it).
    """
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = buf.getvalue()
    body = exif_bytes(orientation=orientation).removeprefix(b"Exif\x00\x00")
    chunk = (struct.pack(">I", len(body)) + b"eXIf" + body
             + struct.pack(">I", zlib.crc32(b"eXIf" + body) & 0xFFFFFFFF))
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + chunk + data[iend:]


def pdf_bytes() -> bytes:
    """A minimal one-page PDF."""
    return (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
            b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
            b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 10 10]>>endobj\n"
            b"trailer<</Root 1 0 R>>\n%%EOF\n")


def eps_bytes() -> bytes:
    """A minimal EPS file (Pillow would hand it to Ghostscript — must never be opened)."""
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
            b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")


def svg_bytes() -> bytes:
    """A tiny SVG document."""
    return (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b'<rect width="10" height="10"/></svg>')


def text_bytes() -> bytes:
    """Plain text that is not an image."""
    return b"hello, this is definitely not an image\n" * 4


def jxl_header_only(w: int, h: int) -> bytes:
    """A JPEG XL codestream signature + SizeHeader claiming ``w`` × ``h`` (and nothing else)."""
    bits: list[int] = []

    def put(v: int, n: int) -> None:
        bits.extend((v >> i) & 1 for i in range(n))

    def size(v: int) -> None:
        for sel, n in enumerate((9, 13, 18, 30)):
            if v - 1 < (1 << n):
                put(sel, 2)
                put(v - 1, n)
                return

    put(0, 1)  # not div8
    size(h)
    put(0, 3)  # explicit width
    size(w)
    bits += [0] * (-len(bits) % 8)
    body = bytes(sum(bits[i + j] << j for j in range(8)) for i in range(0, len(bits), 8))
    return b"\xff\x0a" + body + b"\x00" * 16
