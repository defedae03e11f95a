"""Encoders: one Pillow ``save`` per format, with the mode conversions each format needs.

Only the conversions a format requires are made (RGB stays RGB for every format, alpha is
flattened onto ``background`` only for JPEG, grayscale stays L where the format has it).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, features

from imagepipe.core import jpegenc, plugins
from imagepipe.core.recipe import Recipe
from imagepipe.core.transform import SRGB_ICC, gray_of, has_alpha, i16_to_l
from imagepipe.errors import InvalidRecipe, OutputTooLarge

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif",
                 "gif": "image/gif", "jxl": "image/jxl"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif", "jxl": "jxl"}
ANIMATABLE = ("gif", "webp", "png", "avif")
_PIL = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "gif": "GIF", "jxl": "JXL"}

#: largest side each encoder (and its decoders) supports
MAX_SIDE = {"jpeg": 65500, "webp": 16383, "avif": 32768, "gif": 65535, "png": 2**31 - 1, "jxl": 2**30}

#: every encoder by the name facts, sweeps, studies and the cost table (core/budget.py) use
ENCODERS: tuple[str, ...] = ("jpeg:turbo", "jpeg:mozjpeg", "jpeg:jpegli", "webp", "avif", "jxl", "png", "gif")


def encoder_name(fmt: str, recipe: Recipe) -> str:
    """The encoder that writes ``fmt`` under ``recipe``: ``jpeg:<jpeg.encoder>`` or the format."""
    return f"jpeg:{recipe.jpeg.encoder}" if fmt == "jpeg" else fmt


def split_encoder(name: str) -> tuple[str, dict[str, dict[str, str]] | None]:
    """``"jpeg:mozjpeg"`` -> ``("jpeg", {"jpeg": {"encoder": "mozjpeg"}})``; a format -> (it, None)."""
    fmt, _, enc = name.partition(":")
    return fmt, ({fmt: {"encoder": enc}} if enc else None)


def codec_versions() -> dict[str, str | None]:
    """The codec and library versions behind every encoder (recorded with study exports)."""
    pillow = {f"pillow_{k}": features.version(k) for k in ("jpg", "webp", "avif", "zlib")}
    return {"pillow": Image.__version__, **pillow, **jpegenc.versions(),
            "pillow_jxl_plugin": jpegenc.dist_version("pillow-jxl-plugin"),
            "pillow_heif": plugins.register().__version__}

#: EXIF tags kept by ``metadata: keep_copyright_icc``
COPYRIGHT_TAGS = (0x013B, 0x8298)  # Artist, Copyright


@dataclass
class Metadata:
    """What to embed in the output: serialised EXIF and ICC profile (None = nothing)."""

    exif: bytes | None = None
    icc: bytes | None = None


@dataclass
class Frames:
    """An animation ready to encode: equally sized frames + per-frame durations (ms).

    ``loop`` as the source says it (0 = forever); None = the source plays once (no GIF loop block).
    """

    images: list[Image.Image]
    durations: list[int] = field(default_factory=list)
    loop: int | None = 0


def resolve_format(fmt: str, input_format: str) -> str:
    """``original`` -> the input's format (TIFF input -> PNG); concrete formats unchanged."""
    if fmt == "original":  # HEIC/HEIF is read, never written: an iPhone photo becomes a JPEG
        return {"tiff": "png", "heif": "jpeg"}.get(input_format, input_format)
    return fmt


def flatten(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite an image with alpha onto an opaque ``background`` (RGB or L result)."""
    if im.mode == "LA":
        bg = Image.new("L", im.size, gray_of(background))
        bg.paste(im.getchannel("L"), mask=im.getchannel("A"))
        return bg
    if im.mode != "RGBA":
        im = im.convert("RGBA")
    bg = Image.new("RGB", im.size, background)
    bg.paste(im, mask=im.getchannel("A"))
    return bg


def _for_jpeg(im: Image.Image, bg: tuple[int, int, int]) -> Image.Image:
    if im.mode in ("RGB", "L", "CMYK"):
        return im
    if has_alpha(im):
        return flatten(im if im.mode in ("RGBA", "LA") else im.convert("RGBA"), bg)
    if im.mode == "I;16":
        return i16_to_l(im)
    return im.convert("RGB")


def _to_8bit(im: Image.Image) -> Image.Image:
    if im.mode == "I;16":
        return i16_to_l(im)
    return im


def _for_gif(im: Image.Image, colors: int = 256) -> Image.Image:
    """Quantise to a palette; pixels with alpha < 128 map to a reserved transparent index."""
    if im.mode == "P":
        return im
    im = _to_8bit(im)
    if im.mode in ("RGBA", "LA"):
        rgba = im.convert("RGBA")
        alpha = rgba.getchannel("A")
        p = rgba.convert("RGB").quantize(min(colors, 255), method=Image.Quantize.FASTOCTREE)
        idx = min(colors, 255)
        pal = (p.getpalette() or [])[: idx * 3]
        pal += [0] * (768 - len(pal))
        p.putpalette(pal)
        mask = alpha.point(lambda a: 255 if a < 128 else 0)
        p.paste(idx, mask=mask)
        p.info["transparency"] = idx
        return p
    if im.mode == "L":
        return im.convert("P") if colors >= 256 else im.quantize(colors)
    return im.convert("RGB").quantize(colors, method=Image.Quantize.FASTOCTREE)


def _for_png(im: Image.Image, recipe: Recipe) -> Image.Image:
    if recipe.png.palette:
        if im.mode == "P":
            return im
        im = _to_8bit(im)
        if im.mode in ("RGBA", "LA"):
            return im.convert("RGBA").quantize(recipe.png.colors, method=Image.Quantize.FASTOCTREE)
        return im.convert("RGB").quantize(recipe.png.colors, method=Image.Quantize.FASTOCTREE)
    if im.mode in ("RGB", "RGBA", "L", "LA", "I;16", "P", "1"):
        return im
    return im.convert("RGBA" if "A" in im.mode else "RGB")


def _for_webp_avif(im: Image.Image, fmt: str) -> Image.Image:
    im = _to_8bit(im)
    if im.mode in ("RGB", "RGBA"):
        return im
    if fmt in ("avif", "jxl") and im.mode == "L":
        return im
    if fmt == "jxl" and im.mode == "LA":
        return im
    if has_alpha(im):  # LA, PA, P with a transparent index (RGBA returned above)
        return im.convert("RGBA")
    return im.convert("RGB")


def prepare_for(im: Image.Image, fmt: str, recipe: Recipe) -> Image.Image:
    """The image converted to a mode ``fmt`` can store (no conversion when already fine)."""
    bg = recipe.background_rgb()
    if fmt == "jpeg":
        return _for_jpeg(im, bg)
    if fmt == "png":
        return _for_png(im, recipe)
    if fmt in ("webp", "avif", "jxl"):
        return _for_webp_avif(im, fmt)
    if fmt == "gif":
        return _for_gif(im)
    raise InvalidRecipe(f"cannot encode format {fmt!r}", details=[{"field": "format", "message": fmt}])


_KEEP_INFO = ("transparency", "duration", "loop", "background")


def clean_info(im: Image.Image) -> Image.Image:
    """Drop metadata Pillow would otherwise copy from ``im.info`` into the output (PNG does)."""
    for key in list(im.info):
        if key not in _KEEP_INFO:
            del im.info[key]
    return im


def save_options(fmt: str, quality: float, recipe: Recipe, meta: Metadata) -> dict[str, Any]:
    """Keyword arguments for ``Image.save`` for ``fmt`` at ``quality`` under ``recipe``."""
    opts: dict[str, Any] = {}
    if fmt == "jpeg":
        opts = {"quality": quality, "progressive": recipe.jpeg.progressive, "optimize": recipe.jpeg.optimize,
                "subsampling": recipe.jpeg.chroma(quality)}
    elif fmt == "png":
        opts = {"compress_level": recipe.png.compress_level}
    elif fmt == "webp":
        opts = {"quality": quality, "method": recipe.webp.method, "lossless": recipe.webp.lossless}
    elif fmt == "avif":
        opts = {"quality": quality, "speed": recipe.avif.speed, "subsampling": recipe.avif.chroma(quality)}
    elif fmt == "jxl":
        opts = {"quality": quality, "effort": recipe.jxl.effort, "lossless": recipe.jxl.lossless,
                "use_container": bool(meta.exif)}
    elif fmt == "gif":
        opts = {"optimize": False}
    if fmt == "jxl":  # the plugin writes EXIF but no ICC profile (JPEG XL's default space is sRGB)
        if meta.exif:
            opts["exif"] = meta.exif
        if meta.icc and meta.icc != SRGB_ICC:
            msg = "jxl output cannot embed this ICC profile; use color: srgb"
            raise InvalidRecipe(msg, details=[{"field": "color", "message": msg}])
    elif fmt != "gif":
        if meta.exif:
            opts["exif"] = meta.exif
        if meta.icc:
            opts["icc_profile"] = meta.icc
    return opts


def _pil_format(fmt: str) -> str:
    """Pillow's format name for ``fmt``, its plugin loaded (core/plugins.py: JPEG XL's registered
    on first use, Pillow's own imported alone rather than all of them by ``Image.init()``)."""
    if fmt == "jxl":
        plugins.register()
    plugins.load_for_save(fmt)
    return _PIL[fmt]


def check_dimensions(fmt: str, width: int, height: int) -> None:
    """Raise ``InvalidRecipe`` (field ``format``) when ``fmt`` cannot store a side this long."""
    limit = MAX_SIDE[fmt]
    if max(width, height) > limit:
        msg = f"{fmt} supports at most {limit} px per side; the output would be {width}x{height}"
        raise InvalidRecipe(msg, details=[{"field": "format", "message": msg}])


def check_output(data: bytes, max_output_bytes: int) -> bytes:
    """Raise ``OutputTooLarge`` when the encoded output is above the cap."""
    if len(data) > max_output_bytes:
        raise OutputTooLarge(f"encoded output is {len(data):,} bytes, above the cap of {max_output_bytes:,}",
                             details={"bytes": len(data), "max_output_bytes": max_output_bytes})
    return data


def encode_image(im: Image.Image, fmt: str, quality: float, recipe: Recipe,
                 meta: Metadata) -> tuple[bytes, str]:
    """Encode one still image. Returns (bytes, mode actually written)."""
    out = clean_info(prepare_for(im, fmt, recipe))
    if fmt == "jpeg" and recipe.jpeg.encoder != "turbo":
        enc = jpegenc.encode_mozjpeg if recipe.jpeg.encoder == "mozjpeg" else jpegenc.encode_jpegli
        out = out if out.mode in ("RGB", "L") else out.convert("RGB")
        data = jpegenc.insert_metadata(enc(out, quality, recipe.jpeg), meta.exif, meta.icc)
        return data, "RGB" if recipe.jpeg.encoder == "jpegli" else out.mode
    buf = io.BytesIO()
    out.save(buf, _pil_format(fmt), **save_options(fmt, quality, recipe, meta))
    return buf.getvalue(), out.mode


def encode_frames(frames: Frames, fmt: str, quality: int, recipe: Recipe,
                  meta: Metadata) -> tuple[bytes, str]:
    """Encode an animation (``fmt`` must be in ``ANIMATABLE``)."""
    if fmt not in ANIMATABLE:
        raise InvalidRecipe(f"format {fmt} cannot hold an animation",
                            details=[{"field": "animation.keep", "message": f"format {fmt} cannot animate"}])
    ims = [clean_info(prepare_for(f, fmt, recipe)) for f in frames.images]
    if fmt == "webp" or fmt == "avif":  # these encoders want one mode across frames
        mode = "RGBA" if any(i.mode == "RGBA" for i in ims) else ims[0].mode
        ims = [i if i.mode == mode else i.convert(mode) for i in ims]
    opts = save_options(fmt, quality, recipe, meta)
    opts.update(save_all=True, append_images=ims[1:])
    if frames.loop is not None:
        opts["loop"] = frames.loop
    elif fmt != "gif":
        opts["loop"] = 1  # play once (WebP/APNG/AVIF count plays; their 0 means forever)
    if frames.durations:
        opts["duration"] = frames.durations
    if fmt == "gif":
        opts["disposal"] = 2
    buf = io.BytesIO()
    ims[0].save(buf, _pil_format(fmt), **opts)
    return buf.getvalue(), ims[0].mode
