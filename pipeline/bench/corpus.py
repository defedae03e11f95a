"""Where the benchmark's images come from: ``../shared/corpus`` or a generated set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".avif", ".tif", ".tiff"}


def default_corpus(project_root: Path) -> Path | None:
    """``../shared/corpus`` next to the repo (or ``/work/shared/corpus``) when it has images."""
    for candidate in (project_root.parent / "shared" / "corpus", Path("/work/shared/corpus")):
        if candidate.is_dir() and list_images(candidate):
            return candidate
    return None


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def link_set(paths: list[Path], dest: Path) -> Path:
    """A folder of symlinks to ``paths`` (a subset of the corpus for one command)."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in paths:
        if not (dest / p.name).exists():
            (dest / p.name).symlink_to(p.resolve())
    return dest


def _photo_like(width: int, height: int, seed: int, alpha: bool = False) -> Image.Image:
    """Smooth gradients + blobs + grain: compresses and resamples like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx /= width
    yy /= height
    chans = []
    for c in range(3):
        f1, f2 = rng.uniform(1, 6, 2)
        base = 0.5 + 0.25 * np.sin(2 * np.pi * (f1 * xx + c * 0.3)) * np.cos(2 * np.pi * f2 * yy)
        chans.append(base)
    img = np.stack(chans, axis=-1)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.2)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        img[mask] = rng.uniform(0, 1, 3)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    if alpha:
        a = (np.clip(1.5 - 2 * np.hypot(xx - 0.5, yy - 0.5), 0, 1) * 255).astype(np.uint8)
        im.putalpha(Image.fromarray(a, "L"))
    return im


def generate(folder: Path) -> list[Path]:
    """A small stand-in corpus (used when ``../shared/corpus`` is absent)."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = [
        ("photo-2560x1600.jpg", (2560, 1600), "JPEG", {"quality": 90}, False),
        ("photo-1411x1411.jpg", (1411, 1411), "JPEG", {"quality": 92}, False),
        ("render-5120x2880.png", (5120, 2880), "PNG", {"compress_level": 6}, False),
        ("square-4096x4096.webp", (4096, 4096), "WEBP", {"quality": 90}, False),
        ("cutout-3700x2400.png", (3700, 2400), "PNG", {"compress_level": 6}, True),
        ("small-600x400.png", (600, 400), "PNG", {}, False),
    ]
    paths = []
    for i, (name, size, fmt, opts, alpha) in enumerate(specs):
        path = folder / name
        if not path.exists():
            _photo_like(*size, seed=i, alpha=alpha).save(path, fmt, **opts)
        paths.append(path)
    return paths


def warmup_image(folder: Path, fmt: str) -> Path:
    """A 64x64 file in ``fmt`` (a Pillow format name) for an untimed first call."""
    ext = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "AVIF": ".avif"}.get(fmt, ".png")
    path = folder / f"warmup-{fmt.lower()}{ext}"
    if not path.exists():
        im = _photo_like(64, 64, seed=99)
        im.save(path, fmt)
    return path
