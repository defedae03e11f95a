"""The pyvips reference as a user would write it: ``python -m pipeline.bench.vips_batch IN_DIR OUT_DIR
--format jpeg|webp|avif --quality Q``: for every image, read the file, ``thumbnail_buffer`` to fit
1024×1024 (shrink-on-load, never upscale), save without metadata, write the file. libvips'
defaults otherwise (its thread pool, baseline JPEG); the operation cache is off, as in the engine.
AVIF uses ``effort=3``, the libvips name for the aom speed (cpu-used 6) the engine's default
``avif.speed: 6`` asks libavif for, so both encoders do the same work.

``--progressive`` (JPEG only) writes what the engine's default recipe writes instead:
progressive (``interlace``) with optimized Huffman tables (``optimize_coding``); a labelled
reference row, not the issue's yardstick.

It imports nothing but pyvips and the standard library, as a user's script would: its start-up
is part of what the CLI comparison measures (``cli_bench.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyvips

BOX = 1024
#: the same extensions as ``pipeline.bench.corpus.EXTENSIONS`` (not imported from there: that
#: module imports numpy and Pillow, which a pyvips script does not pay for)
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".avif", ".tif", ".tiff"}


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def save(im: pyvips.Image, fmt: str, quality: int, progressive: bool = False) -> bytes:
    """Encode ``im`` as ``fmt`` at ``quality``, metadata stripped; ``progressive``: a
    progressive JPEG with optimized Huffman tables (the engine's default recipe)."""
    if fmt == "jpeg":
        extra = {"interlace": True, "optimize_coding": True} if progressive else {}
        return im.jpegsave_buffer(Q=quality, keep="none", background=[255], **extra)
    if fmt == "webp":
        return im.webpsave_buffer(Q=quality, keep="none")
    return im.heifsave_buffer(Q=quality, compression="av1", effort=3, keep="none")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench.vips_batch")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--format", choices=("jpeg", "webp", "avif"), default="jpeg")
    p.add_argument("--quality", type=int, default=85)
    p.add_argument("--progressive", action="store_true",
                   help="JPEG: progressive + optimized Huffman tables (the engine's default recipe)")
    args = p.parse_args(argv)
    pyvips.cache_set_max(0)
    args.out.mkdir(parents=True, exist_ok=True)
    ext = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}[args.format]
    for path in list_images(args.src):
        im = pyvips.Image.thumbnail_buffer(path.read_bytes(), BOX, height=BOX, size="down")
        (args.out / f"{path.stem}.{ext}").write_bytes(save(im, args.format, args.quality, args.progressive))
    return 0


if __name__ == "__main__":
    sys.exit(main())
