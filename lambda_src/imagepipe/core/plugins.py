"""Pillow plugins beyond Pillow's own: JPEG XL (pillow-jxl-plugin) and HEIF/HEIC (pillow-heif).

:func:`register` registers both with Pillow, once per process, the first time bytes that could
be one of them are opened (:func:`may_be_plugin_format`) or a JPEG XL is written: importing
them costs ~25 ms of every process's start-up (pillow-heif loads libheif), which a batch of
JPEGs never needs. Opening is unchanged by the laziness: the two plugins' own ``accept`` tests
(a JPEG XL signature, or ``ftyp`` at byte 4) are false for any other bytes, so ``Image.open``
would skip them anyway. ``decode.open_image`` still names the plugins it lets ``Image.open``
try (the allowlist), so registering them enables nothing by itself. pillow-heif is used to
*decode* only (its wheels also bundle the GPL x265 encoder, which ImagePipe never calls; tests
use it to make HEIF files).

JPEG XL's Pillow plugin decodes the whole image inside ``Image.open`` (before any pixel cap
could be checked), so :func:`jxl_size` reads the width and height from the codestream's
``SizeHeader`` first, without decoding (ISO/IEC 18181-1, section D.2).
"""

from __future__ import annotations

import struct
from functools import cache, lru_cache
from importlib import import_module
from types import ModuleType

JXL_CODESTREAM = b"\xff\x0a"
JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
#: the Pillow format names these plugins register
FORMATS = ("JXL", "HEIF")


@lru_cache(maxsize=1)
def register() -> ModuleType:
    """Register the JPEG XL and HEIF plugins with Pillow (once per process); returns pillow_heif."""
    import pillow_heif
    import pillow_jxl  # noqa: F401  (importing it registers the "JXL" plugin)

    # no thumbnails, depth or auxiliary images: only the primary picture is ever decoded
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    return pillow_heif


#: Pillow's own plugin module per Pillow format name the engine opens or writes. ``Image.open``
#: with a format list calls ``Image.init()`` — importing all ~45 Pillow plugins, 12–17 ms of CPU
#: — as soon as its loop meets a name whose plugin is not loaded, and ``Image.save`` does for a
#: format it has no saver for; loading just the needed modules first avoids that.
_PILLOW_MODULES = {"JPEG": "JpegImagePlugin", "PNG": "PngImagePlugin", "GIF": "GifImagePlugin",
                   "WEBP": "WebPImagePlugin", "AVIF": "AvifImagePlugin", "TIFF": "TiffImagePlugin"}
_PILLOW_NAMES = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "avif": "AVIF", "tiff": "TIFF"}


@cache
def _load(name: str) -> None:
    module = _PILLOW_MODULES.get(name)
    if module is not None:
        import_module(f"PIL.{module}")


def load_for_save(fmt: str) -> None:
    """Pillow's plugin for writing ``fmt`` (ours: ``jpeg``, ``webp``, ...), without ``Image.init()``."""
    _load(_PILLOW_NAMES.get(fmt, ""))


def load_for_open(formats: list[str], fmt: str | None) -> None:
    """Before ``Image.open(..., formats=formats)`` of bytes that claim to be ``fmt`` (their magic
    number, ``decode.sniff_format``): import Pillow's plugins for every name in ``formats`` up to
    and including ``fmt``'s, in order, so that the open loop reaches the claimed plugin without
    ``Image.init()``. The order and the plugins tried are unchanged; if the claimed plugin fails,
    the loop goes on as before (``init()`` included). Nothing happens for other formats."""
    name = _PILLOW_NAMES.get(fmt or "")
    if name is None or name not in formats:
        return
    for f in formats[:formats.index(name) + 1]:
        _load(f)


def _may_be_jxl(head: bytes) -> bool:
    """pillow-jxl-plugin's ``accept``: ``\\xff\\x0a`` at 0, the container signature or ``JXL`` at 4."""
    return head[:2] == JXL_CODESTREAM or head == JXL_CONTAINER or head[4:7] == b"JXL"


def _may_be_heif(head: bytes) -> bool:
    """What pillow-heif's ``accept`` needs first: ``ftyp`` at byte 4 (AVIF too, which Pillow's own
    plugin is tried for before it)."""
    return head[4:8] == b"ftyp"


def may_be_plugin_format(data: bytes) -> bool:
    """True when one of the two plugins' ``accept`` tests could take ``data``."""
    head = bytes(data[:12])
    return _may_be_jxl(head) or _may_be_heif(head)


def open_formats(data: bytes, formats: list[str]) -> list[str]:
    """``formats`` for ``Image.open(data, formats=...)``: the plugins are registered first when one
    of those named in ``formats`` could take ``data``, else their names are left out
    (``Image.open`` raises ``KeyError`` on a format name no plugin registered, and neither plugin
    could accept such bytes anyway)."""
    head = bytes(data[:12])
    if ("JXL" in formats and _may_be_jxl(head)) or ("HEIF" in formats and _may_be_heif(head)):
        register()
        return formats
    return [f for f in formats if f not in FORMATS]


_RATIOS = ((1, 1), (12, 10), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1))


class _Bits:
    """Least-significant-bit-first reader over bytes (JPEG XL's bit order)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        v = 0
        for i in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("the JPEG XL header is truncated")
            v |= ((self.data[byte] >> (self.pos & 7)) & 1) << i
            self.pos += 1
        return v

    def size(self) -> int:  # U32(Bits(9), Bits(13), Bits(18), Bits(30)) + 1
        return self.u((9, 13, 18, 30)[self.u(2)]) + 1


def _codestream(data: bytes) -> bytes:
    """The start of the codestream: the bytes themselves, or the first jxlc/jxlp box's payload."""
    if data.startswith(JXL_CODESTREAM):
        return data
    if not data.startswith(JXL_CONTAINER):
        raise ValueError("not a JPEG XL file")
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > len(data):
                break
            size, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
        end = len(data) if size == 0 else pos + size
        if size != 0 and size < head:
            raise ValueError("a JPEG XL box has an invalid size")
        if kind == b"jxlc":
            return data[pos + head:end]
        if kind == b"jxlp":
            return data[pos + head + 4:end]
        pos = end
    raise ValueError("the JPEG XL container has no codestream box")


def jxl_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG XL file's SizeHeader; ``ValueError`` when it cannot be read."""
    cs = _codestream(data)
    if not cs.startswith(JXL_CODESTREAM):
        raise ValueError("the JPEG XL codestream has no signature")
    b = _Bits(cs[2:64])
    small = b.u(1)
    height = (b.u(5) + 1) * 8 if small else b.size()
    ratio = b.u(3)
    if ratio:
        num, den = _RATIOS[ratio - 1]
        width = height * num // den
    else:
        width = (b.u(5) + 1) * 8 if small else b.size()
    return width, height
