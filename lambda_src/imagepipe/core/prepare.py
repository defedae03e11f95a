"""Decode + transform once, encode and measure many times (no boto3).

- ``prepare(source_bytes, recipe, limits) -> Prepared``: decode and transform, once;
- ``encode_variant(prepared, fmt, quality, options) -> (bytes, facts)``: one encode;
- ``reference(prepared)`` and ``measure(prepared, data, ref) -> {"ssim", "psnr"}``: quality
  metrics against the prepared image, its reference side computed once.

``engine.process`` runs a whole job on these; sweeps (``core/sweep.py``) and auto quality /
best format (``core/auto.py``) reuse one prepared image for many encodes.
"""

from __future__ import annotations

import copy
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from imagepipe.core import plugins, vips
from imagepipe.core import transform as tf
from imagepipe.core.decode import Opened, load_image, open_image, png_exif_chunk, seek_frame, sniff_format
from imagepipe.core.encode import (
    ANIMATABLE,
    CONTENT_TYPES,
    COPYRIGHT_TAGS,
    EXTENSIONS,
    Frames,
    Metadata,
    check_dimensions,
    check_output,
    encode_frames,
    encode_image,
    encoder_name,
    resolve_format,
)
from imagepipe.core.limits import Limits
from imagepipe.core.metrics import DEFAULT_METRICS, Reference, compare_to
from imagepipe.core.recipe import Recipe, parse_recipe
from imagepipe.core.watermark import apply_watermark
from imagepipe.errors import (
    CorruptImage,
    ImagePipeError,
    InternalError,
    InvalidRecipe,
    TooManyFrames,
    TooManyPixels,
)

vips.check_startup()  # IMAGEPIPE_ENGINE=vips without libvips: fail at import (cold start), not per job


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


@dataclass
class Prepared:
    """A decoded and transformed image, ready for one or many encodes.

    ``image`` is the first (or only) frame exactly as it is handed to the encoder; it is also
    the metrics reference. ``frames`` holds every transformed frame when the animation is kept.
    """

    recipe: Recipe
    limits: Limits
    format: str  # the recipe's output format with ``original`` resolved (may be ``best``)
    image: Image.Image
    frames: Frames | None
    meta: Metadata
    input_facts: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)
    fast_paths: list[str] = field(default_factory=list)


# --- input facts ------------------------------------------------------------------------------


def _exif_summary(exif: Image.Exif) -> dict[str, Any]:
    make = str(exif.get(0x010F, "") or "").strip("\x00 ")
    model = str(exif.get(0x0110, "") or "").strip("\x00 ")
    camera = model if model.lower().startswith(make.lower()) else f"{make} {model}".strip()
    gps = False
    if 0x8825 in exif:
        try:
            gps = bool(exif.get_ifd(0x8825))
        except Exception:  # noqa: BLE001 - a damaged GPS IFD still means GPS data was present
            gps = True
    orientation = exif.get(0x0112)
    return {
        "camera": camera or None,
        "gps_present": gps,
        "orientation": orientation if isinstance(orientation, int) else None,
    }


def _read_exif(im: Image.Image) -> Image.Exif:
    try:
        return im.getexif()
    except Exception:  # noqa: BLE001 - unreadable EXIF is treated as absent
        return Image.Exif()


def _input_facts(opened: Opened, icc_desc: str | None, exif: Image.Exif) -> dict[str, Any]:
    return {
        "format": opened.format,
        "width": opened.width,
        "height": opened.height,
        "mode": opened.mode,
        "bytes": opened.bytes,
        "frames": opened.frames,
        "icc_profile": icc_desc,
        "exif": _exif_summary(exif),
    }


def _metadata(recipe: Recipe, exif: Image.Exif, icc: bytes | None, converted: bool,
              was_cmyk: bool) -> Metadata:
    """The EXIF/ICC to embed: nothing for ``strip``; orientation always dropped."""
    if recipe.metadata == "strip":
        return Metadata()
    out_icc = tf.SRGB_ICC if converted else icc
    if was_cmyk and not converted:
        out_icc = None  # a CMYK profile no longer describes RGB pixels
    if recipe.metadata == "keep":
        kept = Image.Exif()
        try:
            kept.load(exif.tobytes()) if len(exif) else None
        except Exception:  # noqa: BLE001 - unserialisable EXIF is dropped rather than fail the job
            kept = Image.Exif()
        kept.pop(0x0112, None)
        return Metadata(exif=kept.tobytes() if len(kept) else None, icc=out_icc)
    kept = Image.Exif()
    for tag in COPYRIGHT_TAGS:
        if tag in exif:
            kept[tag] = exif[tag]
    return Metadata(exif=kept.tobytes() if len(kept) else None, icc=out_icc)


# --- prepare -----------------------------------------------------------------------------------


def _transform_frame(im: Image.Image, recipe: Recipe, plan: tf.Plan, orientation: int, out_fmt: str,
                     icc: bytes | None, icc_desc: str | None,
                     src_raw: tuple[int, int]) -> tuple[Image.Image, bool]:
    """One frame through normalise → resize → orient → colour → ops → letterbox → watermark."""
    keep16 = out_fmt == "png" and not recipe.png.palette
    im = tf.normalise_mode(im, keep_16bit=keep16)
    im = tf.resize(im, plan, orientation, recipe.resize.filter if recipe.resize else "lanczos", src_raw)
    im = tf.orient(im, orientation)
    converted = False
    if recipe.color == "srgb" or im.mode == "CMYK":
        im, converted = tf.to_srgb(im, icc if recipe.color == "srgb" else None, icc_desc)
    im = tf.apply_ops(im, recipe)
    if plan.canvas is not None:
        im = tf.letterbox(im, plan.canvas, recipe.background_rgb())
    if recipe.watermark is not None:
        if im.mode == "I;16":
            im = tf.i16_to_l(im)
        im = apply_watermark(im, recipe.watermark)
    return im, converted


def _check_plan(plan: tf.Plan, out_fmt: str, frames_kept: int, limits: Limits) -> None:
    """Refuse an output geometry above the pixel cap or the output format's side limit."""
    out_w, out_h = plan.out_size
    if out_w * out_h > limits.max_pixels:  # upscaling (or a one-sided box) can exceed the cap
        raise TooManyPixels(
            f"the output would be {out_w}x{out_h} = {out_w * out_h:,} pixels, above the cap of "
            f"{limits.max_pixels:,}",
            details={"width": out_w, "height": out_h, "max_pixels": limits.max_pixels})
    if out_fmt in CONTENT_TYPES:
        check_dimensions(out_fmt, out_w, out_h)  # fail before decoding, not after resizing
    if frames_kept > 1 and out_w * out_h * frames_kept > limits.max_pixels:
        raise TooManyPixels(
            f"kept animation would hold {frames_kept} × {out_w}x{out_h} = "
            f"{out_w * out_h * frames_kept:,} pixels, above the cap of {limits.max_pixels:,}")


def prepare(source_bytes: bytes, recipe: Recipe | dict[str, Any] | None = None,
            limits: Limits | None = None) -> Prepared:
    """Decode (with every safety check) and transform once; encode later, as often as needed."""
    t0 = time.perf_counter()
    recipe = parse_recipe(recipe)
    limits = limits or Limits()
    data = bytes(source_bytes)
    opened = open_image(data, limits)
    im = opened.image
    # PNG's getexif() decodes the whole image (eXIf may follow the pixel data): the eXIf chunk is
    # found by walking the chunk headers instead; the Pillow path looks again after its decode
    is_png = opened.format == "png"
    exif = _exif_of(png_exif_chunk(data)) if is_png else _read_exif(im)
    orientation = tf.orientation_from(exif)
    out_fmt = resolve_format(recipe.format, opened.format)
    # MPO (camera JPEG + preview pictures) and multi-page TIFF have frames but are not animations
    keep_anim = recipe.animation.keep and opened.frames > 1 and im.format not in ("MPO", "TIFF")
    if keep_anim:
        if opened.frames > recipe.animation.max_frames:
            raise TooManyFrames(
                f"animation has {opened.frames} frames, above the recipe's animation.max_frames "
                f"{recipe.animation.max_frames}",
                details={"frames": opened.frames, "max_frames": recipe.animation.max_frames})
        if out_fmt not in ANIMATABLE and out_fmt != "best":
            raise InvalidRecipe(f"format {out_fmt} cannot hold an animation (animation.keep is true)",
                                details=[{"field": "animation.keep",
                                          "message": f"{out_fmt} cannot animate; use gif/webp/png/avif"}])
    ow, oh = (opened.height, opened.width) if tf.swaps_axes(orientation) else (opened.width, opened.height)
    plan = tf.plan_resize(ow, oh, recipe.resize)
    _check_plan(plan, out_fmt, opened.frames if keep_anim else 1, limits)  # before decoding
    fast: list[str] = []
    src_raw = (opened.width, opened.height)
    filter_name = recipe.resize.filter if recipe.resize else "lanczos"
    keep16 = out_fmt == "png" and not recipe.png.palette
    if vips.handles(opened.format, opened.mode, keep_anim, keep16):
        # libvips (core/vips.py) decodes with shrink-on-load and, for plain Lanczos downscales,
        # resizes; Pillow finishes whatever is left (crop, other filters) exactly as below
        decoded = vips.decode(data, opened.format, opened.mode, src_raw, plan, orientation, filter_name)
        im = decoded.image
        fast.append(decoded.note)
    else:
        if not keep_anim and tf.apply_draft(im, plan, orientation, (ow, oh)):
            fast.append(f"jpeg_draft:{src_raw[0]}x{src_raw[1]}->{im.size[0]}x{im.size[1]}")
        load_image(im, opened.format)
        if is_png:
            exif = _read_exif(im)  # also EXIF in text chunks, which only the decode reads
            if tf.orientation_from(exif) != orientation:
                orientation = tf.orientation_from(exif)
                ow, oh = (opened.height, opened.width) if tf.swaps_axes(orientation) else src_raw
                plan = tf.plan_resize(ow, oh, recipe.resize)
                _check_plan(plan, out_fmt, opened.frames if keep_anim else 1, limits)
    icc = opened.image.info.get("icc_profile") or None
    icc_desc = tf.profile_description(icc)
    t_decode = _ms(t0)

    t1 = time.perf_counter()
    frames: Frames | None = None
    if keep_anim:
        images, durations = [], []
        for i in range(opened.frames):
            fr = seek_frame(im, i, opened.format) if i else im
            durations.append(int(fr.info.get("duration", 100) or 100))
            done, converted = _transform_frame(fr, recipe, plan, orientation, out_fmt, icc, icc_desc, src_raw)
            images.append(done.copy() if done is im else done)  # never keep the seekable file object
        loop = im.info.get("loop")  # absent: a GIF without a NETSCAPE loop block plays once
        frames = Frames(images=images, durations=durations, loop=None if loop is None else int(loop))
        first = images[0]
    else:
        first, converted = _transform_frame(im, recipe, plan, orientation, out_fmt, icc, icc_desc, src_raw)
    meta = _metadata(recipe, exif, icc, converted, was_cmyk=opened.mode == "CMYK")
    t_transform = _ms(t1)
    return Prepared(
        recipe=recipe, limits=limits, format=out_fmt, image=first, frames=frames, meta=meta,
        input_facts=_input_facts(opened, icc_desc, exif),
        timings_ms={"decode": t_decode, "transform": t_transform}, fast_paths=fast,
    )


def _exif_of(raw: bytes | None) -> Image.Exif:
    """EXIF parsed from raw bytes (a PNG eXIf chunk); empty when absent or unreadable."""
    exif = Image.Exif()
    if raw:
        try:
            exif.load(raw)
        except Exception:  # noqa: BLE001 - unreadable EXIF is treated as absent
            return Image.Exif()
    return exif


# --- encode ------------------------------------------------------------------------------------


def _deep_update(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out


def encode_variant(prepared: Prepared, fmt: str | None = None, quality: int | float | None = None,
                   options: dict[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
    """Encode the prepared image as ``fmt`` at ``quality`` (defaults: the recipe's).

    ``options`` overrides codec settings with partial recipe sections, e.g.
    ``{"jpeg": {"subsampling": "4:4:4"}, "webp": {"method": 6}, "png": {"palette": True}}``
    (validated like a recipe). Returns ``(bytes, output facts)``; raises ``OutputTooLarge``.
    """
    t0 = time.perf_counter()
    recipe = prepared.recipe
    if options:
        allowed = {"jpeg", "webp", "avif", "jxl", "png", "background"}
        unknown = set(options) - allowed
        if unknown:
            raise InvalidRecipe(f"unknown encode options: {sorted(unknown)}",
                                details=[{"field": k, "message": "not an encoder option"}
                                         for k in sorted(unknown)])
        recipe = parse_recipe(_deep_update(recipe.model_dump(mode="json"), options))
    fmt = resolve_format(fmt or prepared.format, prepared.input_facts["format"])
    if fmt not in CONTENT_TYPES:
        raise InvalidRecipe(f"cannot encode format {fmt!r} directly",
                            details=[{"field": "format", "message": f"{fmt} is not a concrete format"}])
    q = recipe.quality if quality is None else quality
    # JPEG XL takes a fractional quality (libjxl's distance is continuous): auto quality refines to 0.1
    fractional = fmt == "jxl" and isinstance(q, float)
    if (not isinstance(q, int) and not fractional) or isinstance(q, bool) or not 1 <= q <= 100:
        raise InvalidRecipe("encode_variant needs an integer quality 1–100 (JPEG XL: 1.0–100.0)",
                            details=[{"field": "quality", "message": f"got {q!r}"}])
    meta = prepared.meta if fmt != "gif" else Metadata()
    check_dimensions(fmt, *prepared.image.size)
    try:
        if prepared.frames is not None:
            data, mode = encode_frames(prepared.frames, fmt, q, recipe, meta)
            n_frames = len(prepared.frames.images)
        else:
            data, mode = encode_image(prepared.image, fmt, q, recipe, meta)
            n_frames = 1
    except ImagePipeError:
        raise
    except (OSError, ValueError) as exc:
        raise CorruptImage(f"the {fmt} encoder failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - an encoder bug must still surface as a typed error
        raise InternalError(f"the {fmt} encoder failed unexpectedly: {type(exc).__name__}: {exc}") from None
    check_output(data, prepared.limits.max_output_bytes)
    w, h = prepared.image.size
    facts = {
        "format": fmt, "width": w, "height": h, "mode": mode, "bytes": len(data), "frames": n_frames,
        "content_type": CONTENT_TYPES[fmt], "extension": EXTENSIONS[fmt], "quality": q,
        "encoder": encoder_name(fmt, recipe), "encode_ms": _ms(t0),
    }
    return data, facts


_OUTPUT_FORMATS = ["JPEG", "PNG", "WEBP", "AVIF", "GIF", "JXL"]


def decode_output(data: bytes) -> Image.Image:
    """Decode our own encoded output (first frame) for measuring."""
    formats = plugins.open_formats(data, _OUTPUT_FORMATS)
    plugins.load_for_open(formats, sniff_format(data))
    im = Image.open(io.BytesIO(data), formats=formats)
    im.load()
    return im


def reference(prepared: Prepared) -> Reference:
    """The metrics reference of the prepared (pre-encode) image: made once, it serves every
    encode of it (its reference side is computed once)."""
    return Reference(prepared.image, prepared.recipe.background_rgb())


def measure(prepared: Prepared, data: bytes, ref: Reference | None = None,
            names: Sequence[str] = DEFAULT_METRICS) -> dict[str, float | None]:
    """SSIM and PSNR (or the metrics ``names``) of encoded ``data`` against the prepared
    (pre-encode) image, through ``ref`` (:func:`reference`) when given."""
    return compare_to(reference(prepared) if ref is None else ref, decode_output(data), names)


# --- process -----------------------------------------------------------------------------------


