"""The JPEG encoders besides Pillow's libjpeg-turbo: mozjpeg (through libvips) and jpegli.

- ``mozjpeg``: libvips ``jpegsave`` with trellis quantisation, overshoot deringing, quant table
  3 (ImageMagick's, tuned by mozjpeg for photos; ``jpeg.quant_table`` picks another of libvips'
  0–8, or ``auto``: the auto-quality search sets one per probe, core/auto.py) and, when
  progressive, optimized scans. The
  ``pyvips-binary`` wheel's libjpeg is mozjpeg; :func:`has_mozjpeg` checks that trellis
  quantisation really changes the output (a plain libjpeg-turbo silently ignores it).
- ``jpegli``: pyjpegli, whose bindings take packed RGB and a quality only: the output is a
  baseline (sequential) 4:2:0 JPEG whatever ``jpeg.progressive`` / ``jpeg.optimize`` say, and
  grayscale is encoded as RGB. ``jpeg.subsampling`` other than 4:2:0 is refused.

Neither library writes our metadata, so EXIF (APP1) and ICC (APP2) segments are inserted
after the SOI/JFIF marker exactly as Pillow lays them out.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image

from imagepipe.core.recipe import JpegOptions
from imagepipe.errors import InternalError, InvalidRecipe

_ICC_CHUNK = 65519  # 65535 - 2 (length) - 14 ("ICC_PROFILE\0" + seq + count)


def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) + 2 > 0xFFFF:
        raise ValueError(f"a JPEG APP{marker - 0xE0} segment cannot hold {len(payload):,} bytes")
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def insert_metadata(data: bytes, exif: bytes | None, icc: bytes | None) -> bytes:
    """``data`` with an EXIF APP1 and ICC APP2 segments after SOI (and after JFIF APP0 if any)."""
    if not exif and not icc:
        return data
    pos = 2
    if data[2:4] == b"\xff\xe0":  # keep JFIF first, as the JFIF spec wants
        pos = 4 + int.from_bytes(data[4:6], "big")
    segs = b""
    if exif:
        segs += _segment(0xE1, exif if exif.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + exif)
    if icc:
        chunks = [icc[i:i + _ICC_CHUNK] for i in range(0, len(icc), _ICC_CHUNK)]
        if len(chunks) > 255:
            raise ValueError("the ICC profile is too large for JPEG")
        for i, c in enumerate(chunks, 1):
            segs += _segment(0xE2, b"ICC_PROFILE\x00" + bytes((i, len(chunks))) + c)
    return data[:pos] + segs + data[pos:]


def _pyvips():  # type: ignore[no-untyped-def]
    """pyvips as the engine configures it (core/vips.py: no operation cache, untrusted loaders
    blocked, its concurrency); a missing library is a deployment bug, never a fallback."""
    from imagepipe.core import vips

    pv = vips._pyvips()
    if pv is None:
        raise InternalError("jpeg.encoder mozjpeg needs pyvips + libvips (pyvips-binary), "
                            "which cannot be imported")
    return pv


def encode_mozjpeg(im: Image.Image, quality: int, opts: JpegOptions) -> bytes:
    """``im`` (RGB or L) as a mozjpeg JPEG through libvips ``jpegsave``."""
    chroma = opts.chroma(quality)
    if chroma == "4:2:2":
        raise InvalidRecipe("jpeg.encoder mozjpeg (libvips) writes 4:2:0 or 4:4:4 chroma, not 4:2:2",
                            details=[{"field": "jpeg.subsampling", "message": "mozjpeg: use 4:2:0 or 4:4:4"}])
    if opts.quant_table == "auto":  # the auto-quality search sets a table on every probe
        msg = ('jpeg.quant_table "auto" is chosen by the quality "auto" search; a single encode '
               'needs a table 0–8')
        raise InvalidRecipe(msg, details=[{"field": "jpeg.quant_table", "message": msg}])
    pyvips = _pyvips()
    bands = len(im.getbands())
    v = pyvips.Image.new_from_memory(im.tobytes(), im.width, im.height, bands, "uchar")
    v = v.copy(interpretation="b-w" if bands == 1 else "srgb")
    return bytes(v.jpegsave_buffer(
        Q=quality, optimize_coding=opts.optimize, interlace=opts.progressive,
        trellis_quant=True, overshoot_deringing=True, optimize_scans=opts.progressive,
        quant_table=3 if opts.quant_table is None else opts.quant_table,
        subsample_mode="off" if chroma == "4:4:4" else "on", keep="none"))


def encode_jpegli(im: Image.Image, quality: int, opts: JpegOptions) -> bytes:
    """``im`` (RGB or L) as a jpegli JPEG (baseline 4:2:0; see the module docstring)."""
    if opts.subsampling != "4:2:0":
        raise InvalidRecipe(f"jpeg.encoder jpegli (pyjpegli) writes 4:2:0 chroma only, not "
                            f"{opts.subsampling}",
                            details=[{"field": "jpeg.subsampling", "message": "jpegli: only 4:2:0"}])
    try:
        import pyjpegli
    except ImportError as exc:
        raise InternalError(f"jpeg.encoder jpegli needs pyjpegli: {exc}") from None
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    return bytes(pyjpegli.encode(rgb.tobytes(), rgb.width, rgb.height, quality))


@lru_cache(maxsize=1)
def has_mozjpeg() -> bool:
    """True when libvips' libjpeg honours trellis quantisation (i.e. it is mozjpeg)."""
    pyvips = _pyvips()
    img = pyvips.Image.gaussnoise(64, 64, mean=128, sigma=40).cast("uchar")
    plain = img.jpegsave_buffer(Q=75, keep="none")
    return bool(len(img.jpegsave_buffer(Q=75, keep="none", trellis_quant=True)) != len(plain))


def dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version  # ~10 ms of start-up: on use only

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Versions of the libraries behind the extra encoders (for study exports)."""
    out: dict[str, str | None] = {"pyjpegli": dist_version("pyjpegli"), "pyvips": dist_version("pyvips")}
    try:
        pyvips = _pyvips()
        out["libvips"] = f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
    except InternalError:
        out["libvips"] = None
    return out
