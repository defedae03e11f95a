"""Safe decoding of untrusted bytes.

Every input is hostile until decoded. ``open_image`` checks, in this order and before any
pixel is decoded: the byte cap, the format allowlist (Pillow is only ever asked to try the
allowlisted plugins, so EPS/PDF/FITS/... never reach Ghostscript or any other parser), the pixel
cap from the header (Pillow's ``DecompressionBombWarning`` is raised as an error inside the
open call) and the frame cap. ``load_image`` then decodes the pixels; truncated or damaged data
fails (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set). Every failure is a typed error from
``imagepipe.errors``; no other exception escapes.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

from imagepipe.core import plugins
from imagepipe.core.limits import Limits
from imagepipe.errors import (
    CorruptImage,
    ImagePipeError,
    TooLarge,
    TooManyFrames,
    TooManyPixels,
    UnsupportedFormat,
)

#: Pillow plugin name -> our format name. TIFF is accepted as input only.
ALLOWED_FORMATS: dict[str, str] = {
    "JPEG": "jpeg",
    "MPO": "jpeg",  # a JPEG with extra pictures (camera phones); Pillow reports it as MPO
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "AVIF": "avif",
    "TIFF": "tiff",
    "JXL": "jxl",  # pillow-jxl-plugin (core/plugins.py)
    "HEIF": "heif",  # pillow-heif, HEIC and HEIF (core/plugins.py); input only
}
# AVIF before HEIF: an AVIF is Pillow's own plugin's, even when its brands also say mif1
_OPEN_FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "AVIF", "TIFF", "JXL", "HEIF"]

#: magic-number sniffing, only to tell "damaged file of an allowed format" (corrupt_image)
#: from "not an allowed format" (unsupported_format) when Pillow cannot identify the bytes.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (8, b"WEBP", "webp"),
    (4, b"ftypavif", "avif"),
    (4, b"ftypavis", "avif"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, plugins.JXL_CODESTREAM, "jxl"),
    (0, plugins.JXL_CONTAINER, "jxl"),
    *((4, b"ftyp" + brand, "heif") for brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis",
                                                   b"mif1", b"msf1")),
)

# Exceptions Pillow's decoders raise on damaged data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
                  struct.error, zlib.error, ZeroDivisionError, RuntimeError)


def check_png_chunks(data: bytes) -> None:
    """Verify every PNG chunk's CRC up to IEND (Pillow skips the CRC of image data chunks).

    zlib's crc32 runs at several GB/s, so this costs well under a millisecond per megabyte.
    """
    pos, n = 8, len(data)
    view = memoryview(data)
    while pos + 12 <= n:
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 12 + length
        if end > n:
            raise CorruptImage("the png is truncated (a chunk runs past the end of the file)")
        ctype = data[pos + 4:pos + 8]
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[pos + 4:end - 4]) & 0xFFFFFFFF != crc:
            raise CorruptImage(f"the png is damaged (bad CRC in a {ctype.decode('latin-1')!r} chunk)")
        if ctype == b"IEND":
            return
        pos = end
    raise CorruptImage("the png is truncated (no IEND chunk)")


def png_exif_chunk(data: bytes) -> bytes | None:
    """The payload of a PNG's eXIf chunk wherever it is (before or after the image data), read
    from the chunk headers without decoding; None when there is none."""
    pos, n = 8, len(data)
    while pos + 12 <= n:
        (length,) = struct.unpack_from(">I", data, pos)
        ctype = data[pos + 4:pos + 8]
        if ctype == b"eXIf":
            return bytes(data[pos + 8:pos + 8 + length])
        if ctype == b"IEND":
            return None
        pos += 12 + length
    return None


def sniff_format(data: bytes) -> str | None:
    """The allowlisted format ``data`` claims to be by its magic number, else None."""
    for offset, magic, name in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return name
    return None


@dataclass
class Opened:
    """An opened, header-checked image whose pixels are not decoded yet."""

    image: Image.Image
    format: str  # ours: jpeg|png|webp|gif|avif|tiff|jxl|heif
    width: int
    height: int
    mode: str
    bytes: int
    frames: int


@contextmanager
def _bomb_is_error(limits: Limits) -> Iterator[None]:
    """Turn Pillow's DecompressionBombWarning into an exception for the duration of a call.

    ``warnings.catch_warnings`` saves and restores the filter list around the block. The list
    is process-wide, so concurrent threads may restore each other's snapshot; safety does not
    rely on it: ``open_image`` checks width × height against the cap right after the open, and
    Pillow's hard ``DecompressionBombError`` is raised regardless. When the configured cap is
    above Pillow's own threshold the warning is ignored instead: our header check decides.
    """
    with warnings.catch_warnings():
        action = "error" if limits.max_pixels <= (Image.MAX_IMAGE_PIXELS or 0) else "ignore"
        warnings.simplefilter(action, Image.DecompressionBombWarning)
        yield


def _too_many_pixels(w: int, h: int, limits: Limits) -> TooManyPixels:
    return TooManyPixels(
        f"image is {w}x{h} = {w * h:,} pixels, above the cap of {limits.max_pixels:,}",
        details={"width": w, "height": h, "pixels": w * h, "max_pixels": limits.max_pixels},
    )


def open_image(data: bytes, limits: Limits) -> Opened:
    """Open ``data`` (header only) and enforce byte, format, pixel and frame caps."""
    n = len(data)
    if n == 0:
        raise CorruptImage("the input is empty (0 bytes)")
    if n > limits.max_bytes:
        raise TooLarge(f"input is {n:,} bytes, above the cap of {limits.max_bytes:,}",
                       details={"bytes": n, "max_bytes": limits.max_bytes})
    claimed = sniff_format(data)
    if claimed == "jxl":  # the JXL plugin decodes every pixel inside Image.open: check the header first
        try:
            jw, jh = plugins.jxl_size(data)
        except ValueError as exc:
            raise CorruptImage(f"the jxl header is damaged or incomplete: {exc}") from None
        if jw * jh > limits.max_pixels:
            raise _too_many_pixels(jw, jh, limits)
    formats = plugins.open_formats(data, _OPEN_FORMATS)
    plugins.load_for_open(formats, claimed)
    try:
        with _bomb_is_error(limits):
            im = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(f"image exceeds the pixel cap of {limits.max_pixels:,} ({exc})") from None
    except UnidentifiedImageError:
        if claimed is not None:
            raise CorruptImage(f"the {claimed} header is damaged or incomplete") from None
        raise UnsupportedFormat(
            "not an accepted image format (accepted: JPEG, PNG, WebP, GIF, AVIF, TIFF, JPEG XL, HEIC/HEIF)"
        ) from None
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot read the {claimed or 'image'} header: {exc}") from None
    fmt = ALLOWED_FORMATS.get(im.format or "")
    if fmt is None:  # defensive: Image.open was limited to allowlisted plugins
        raise UnsupportedFormat(f"format {im.format} is not accepted")
    if fmt == "png":
        check_png_chunks(data)
    if fmt == "gif" and not data.rstrip(b"\x00").endswith(b";"):
        # Pillow silently stops at the end of a cut-off GIF and reports fewer frames
        raise CorruptImage("the gif is truncated (no trailer byte)")
    w, h = im.size
    if w <= 0 or h <= 0:
        raise CorruptImage(f"invalid dimensions {w}x{h}")
    if w * h > limits.max_pixels:
        raise _too_many_pixels(w, h, limits)
    try:
        frames = int(getattr(im, "n_frames", 1) or 1)
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot count the frames of the {fmt}: {exc}") from None
    if frames > limits.max_frames:
        raise TooManyFrames(f"animation has {frames} frames, above the cap of {limits.max_frames}",
                            details={"frames": frames, "max_frames": limits.max_frames})
    return Opened(image=im, format=fmt, width=w, height=h, mode=im.mode, bytes=n, frames=frames)


def load_image(im: Image.Image, what: str = "image") -> Image.Image:
    """Decode the current frame's pixels; damaged or truncated data raises ``CorruptImage``."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone set it globally: refuse to decode half an image
        raise CorruptImage("refusing to decode: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set")
    try:
        im.load()
    except ImagePipeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(str(exc)) from None
    except MemoryError:
        raise TooManyPixels(f"not enough memory to decode the {what}") from None
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"the {what} is truncated or damaged: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any other decoder failure is a damaged file
        raise CorruptImage(f"the {what} cannot be decoded: {type(exc).__name__}: {exc}") from None
    return im


def seek_frame(im: Image.Image, index: int, what: str = "animation") -> Image.Image:
    """Seek to frame ``index`` and decode it, mapping decoder failures to ``CorruptImage``."""
    try:
        im.seek(index)
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"frame {index} of the {what} is damaged: {exc}") from None
    return load_image(im, f"frame {index} of the {what}")


def decode_bytes(data: bytes, limits: Limits) -> Opened:
    """``open_image`` + ``load_image`` of the first frame (no draft): the simple path."""
    opened = open_image(data, limits)
    load_image(opened.image, opened.format)
    return opened
