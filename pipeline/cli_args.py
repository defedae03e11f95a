"""The batch CLI's arguments and how they map onto a recipe (pure functions, unit-tested)."""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagepipe.errors import InvalidRecipe

FORMATS = ("jpeg", "png", "webp", "avif", "gif", "jxl", "original", "best")
FITS = ("contain", "cover", "fill", "inside")
FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
POSITIONS = ("top-left", "top", "top-right", "left", "center", "right",
             "bottom-left", "bottom", "bottom-right", "tiled")


class UsageError(Exception):
    """A command-line mistake: the CLI prints it and exits with status 2."""


def _int_or_auto(expected: str) -> Callable[[str], int | str]:
    """An argparse type taking an integer or ``"auto"``; ``expected`` names the integer's range."""

    def parse(text: str) -> int | str:
        if text == "auto":
            return text
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected {expected} or "auto", got {text!r}') from None

    return parse


_quality = _int_or_auto("an integer 1-100")
_quant_table = _int_or_auto("a table number 0-8")


def build_parser() -> argparse.ArgumentParser:
    """``python -m pipeline process INPUT... --out DIR [recipe flags]``."""
    p = argparse.ArgumentParser(
        prog="python -m pipeline process",
        description="Process image files and folders with the ImagePipe engine (the Lambda's code), "
                    "in parallel. Flags override the fields of --recipe.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders (recursive)")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder (created if missing)")
    base = p.add_mutually_exclusive_group()
    base.add_argument("--recipe", type=Path,
                      help="recipe JSON file (docs/architecture.md); flags override it")
    base.add_argument("--preset", help="start from this preset's recipe (the service's presets file, "
                      "docs/api.md#presets-and-drop-rules); flags override it")
    p.add_argument("-j", "--jobs", type=int, help="worker processes (default: number of cores)")
    p.add_argument("--report", type=Path, help="write every file's facts to this .csv or .json")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no per-file table")
    p.add_argument("--no-metrics", dest="metrics", action="store_false",
                   help="skip SSIM/PSNR of each output (13-16%% of a JPEG job's CPU); a target search "
                        "still measures what it needs")

    r = p.add_argument_group("recipe")
    r.add_argument("-f", "--format", choices=FORMATS)
    r.add_argument("--quality", type=_quality, help='1-100, or "auto" with --target-ssim/--max-bytes')
    r.add_argument("--width", type=int)
    r.add_argument("--height", type=int)
    r.add_argument("--fit", choices=FITS)
    r.add_argument("--filter", choices=FILTERS)
    r.add_argument("--upscale", action=argparse.BooleanOptionalAction, default=None)
    meta = r.add_mutually_exclusive_group()
    meta.add_argument("--strip", dest="metadata", action="store_const", const="strip",
                      help="drop all metadata (default)")
    meta.add_argument("--keep-metadata", dest="metadata", action="store_const", const="keep")
    meta.add_argument("--keep-copyright-icc", dest="metadata", action="store_const",
                      const="keep_copyright_icc", help="keep only copyright/artist EXIF and the ICC profile")
    r.add_argument("--color", choices=("srgb", "keep"))
    r.add_argument("--background", help="#rrggbb used under transparency for JPEG")
    r.add_argument("--grayscale", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--sharpen", type=float)
    r.add_argument("--blur", type=float)
    r.add_argument("--progressive", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--optimize", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--subsampling", choices=("4:4:4", "4:2:2", "4:2:0", "auto"))
    r.add_argument("--jpeg-encoder", choices=("turbo", "mozjpeg", "jpegli"),
                   help="JPEG encoder: libjpeg-turbo (default), mozjpeg (smaller, slower), jpegli")
    r.add_argument("--quant-table", type=_quant_table,
                   help='mozjpeg quant table 0-8 (default 3), or "auto": picked by the target search')
    r.add_argument("--jxl-effort", type=int, help="JPEG XL effort 1 (fast) – 9 (small), default 7")
    r.add_argument("--jxl-lossless", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--webp-method", type=int)
    r.add_argument("--lossless", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--avif-speed", type=int)
    r.add_argument("--png-compress-level", type=int)
    r.add_argument("--palette", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--colors", type=int)
    r.add_argument("--watermark-text")
    r.add_argument("--watermark-image", type=Path, help="PNG/WebP file used as the watermark")
    r.add_argument("--watermark-position", choices=POSITIONS)
    r.add_argument("--watermark-opacity", type=float)
    r.add_argument("--watermark-scale", type=float)
    r.add_argument("--watermark-margin", type=float)
    r.add_argument("--keep-animation", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--max-frames", type=int, help="frames kept from an animation")
    target = r.add_mutually_exclusive_group()
    target.add_argument("--target-ssim", type=float, help='minimum SSIM; implies --quality auto')
    target.add_argument("--target-ssimulacra2", type=float,
                        help="minimum SSIMULACRA2 score (about 70 = high, 90 = visually lossless); "
                        "implies --quality auto")
    r.add_argument("--max-bytes", type=int, help="output byte budget")

    lim = p.add_argument_group("limits (default: the IMAGEPIPE_MAX_* environment, as the Lambda)")
    lim.add_argument("--max-pixels", type=int)
    lim.add_argument("--max-input-bytes", type=int)
    return p


# flag name -> path in the recipe
_FLAT: dict[str, tuple[str, ...]] = {
    "format": ("format",), "quality": ("quality",),
    "width": ("resize", "width"), "height": ("resize", "height"), "fit": ("resize", "fit"),
    "filter": ("resize", "filter"), "upscale": ("resize", "upscale"),
    "metadata": ("metadata",), "color": ("color",), "background": ("background",),
    "grayscale": ("ops", "grayscale"), "sharpen": ("ops", "sharpen"), "blur": ("ops", "blur"),
    "progressive": ("jpeg", "progressive"), "optimize": ("jpeg", "optimize"),
    "subsampling": ("jpeg", "subsampling"), "jpeg_encoder": ("jpeg", "encoder"),
    "quant_table": ("jpeg", "quant_table"),
    "jxl_effort": ("jxl", "effort"), "jxl_lossless": ("jxl", "lossless"),
    "webp_method": ("webp", "method"), "lossless": ("webp", "lossless"),
    "avif_speed": ("avif", "speed"),
    "png_compress_level": ("png", "compress_level"), "palette": ("png", "palette"),
    "colors": ("png", "colors"),
    "watermark_text": ("watermark", "text"), "watermark_position": ("watermark", "position"),
    "watermark_opacity": ("watermark", "opacity"), "watermark_scale": ("watermark", "scale"),
    "watermark_margin": ("watermark", "margin"),
    "keep_animation": ("animation", "keep"), "max_frames": ("animation", "max_frames"),
    "max_bytes": ("max_bytes",),
}


def _set(recipe: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = recipe
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):  # absent or null (e.g. "resize": null): start a section
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def load_recipe_file(path: Path) -> dict[str, Any]:
    """Read a recipe JSON object; a missing or malformed file is a usage error."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read recipe {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"recipe {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"recipe {path} must be a JSON object")
    return raw


def preset_recipe(name: str) -> dict[str, Any]:
    """The preset's recipe by name or slug id (``lambda_src/imagepipe/presets.json``); unknown is
    a usage error."""
    from pipeline.presets import PRESETS, get_preset

    try:
        return get_preset(name)
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}") from None


def recipe_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recipe dict: ``base`` (from --recipe) with every given flag written over it."""
    recipe: dict[str, Any] = json.loads(json.dumps(base or {}))  # deep copy
    for name, path in _FLAT.items():
        value = getattr(args, name, None)
        if value is not None:
            _set(recipe, path, value)
    if getattr(args, "watermark_image", None) is not None:
        try:
            data = args.watermark_image.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read watermark image {args.watermark_image}: {exc.strerror}") from None
        _set(recipe, ("watermark", "image_b64"), base64.b64encode(data).decode("ascii"))
    for metric in ("ssim", "ssimulacra2"):
        minimum = getattr(args, f"target_{metric}", None)
        if minimum is not None:
            _set(recipe, ("target",), {"metric": metric, "min": minimum})
            if args.quality is None:
                recipe["quality"] = "auto"
    return recipe


def describe_invalid(exc: InvalidRecipe) -> str:
    """``invalid_recipe`` as lines naming each bad field, for the terminal."""
    lines = [f"error [{exc.code}]: {exc.message}"]
    for item in exc.details or []:
        lines.append(f"  {item.get('field')}: {item.get('message')}")
    return "\n".join(lines)
