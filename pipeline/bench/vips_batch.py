"""The pyvips reference as a user would write it: ``python -m pipeline.bench.vips_batch IN_DIR OUT_DIR
--format jpeg|webp|avif --quality Q``: for every image, read the file, ``thumbnail_buffer`` to fit
1024×1024 (shrink-on-load, never upscale), save without metadata, write the file. libvips'
defaults otherwise (its thread pool, baseline JPEG); the operation cache is off, as in the engine.
AVIF uses ``effort=3``, the libvips name for the aom speed (cpu-used 6) the engine's default
``avif.speed: 6`` asks libavif for, so both encoders do the same work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyvips

from pipeline.bench.corpus import list_images

BOX = 1024


def save(im: pyvips.Image, fmt: str, quality: int) -> bytes:
    """Encode ``im`` as ``fmt`` at ``quality``, metadata stripped."""
    if fmt == "jpeg":
        return im.jpegsave_buffer(Q=quality, keep="none", background=[255])
    if fmt == "webp":
        return im.webpsave_buffer(Q=quality, keep="none")
    return im.heifsave_buffer(Q=quality, compression="av1", effort=3, keep="none")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench.vips_batch")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--format", choices=("jpeg", "webp", "avif"), default="jpeg")
    p.add_argument("--quality", type=int, default=85)
    args = p.parse_args(argv)
    pyvips.cache_set_max(0)
    args.out.mkdir(parents=True, exist_ok=True)
    ext = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}[args.format]
    for path in list_images(args.src):
        im = pyvips.Image.thumbnail_buffer(path.read_bytes(), BOX, height=BOX, size="down")
        (args.out / f"{path.stem}.{ext}").write_bytes(save(im, args.format, args.quality))
    return 0


if __name__ == "__main__":
    sys.exit(main())
