"""Pillow fast-path experiments behind the engine findings (in-process, best of N).

``python -m pipeline.bench.experiments [--corpus DIR]`` prints markdown; ``make bench`` appends it
to docs/benchmarks.md. Each row: what one Pillow knob costs or saves, and what it does to SSIM.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageCms

from pipeline.bench.approaches import fit_inside
from pipeline.bench.quality import Reference, flatten_rgb, ssim

LANCZOS = Image.Resampling.LANCZOS


def _best_ms(fn: Callable[[], Any], n: int = 5) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best, value


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def draft_gap(paths: list[Path]) -> str:
    """JPEG: decode + resize with draft asking for >= 2x the target (engine) vs >= 1x (libvips-like)."""
    rows = []
    for path in paths:
        data = path.read_bytes()
        ref = Reference(data)

        def run(gap: float | None, data: bytes = data) -> Image.Image:
            im = Image.open(io.BytesIO(data))
            target = fit_inside(*im.size)
            if gap:
                im.draft("RGB", (int(target[0] * gap), int(target[1] * gap)))
            return im.resize(target, LANCZOS, reducing_gap=3.0)

        for gap in (None, 2.0, 1.0):
            ms, out = _best_ms(lambda g=gap: run(g))
            rows.append([path.name, "off" if gap is None else f"≥ {gap:g}× target", f"{ms:.1f}",
                         f"{ssim(ref.at(out.size), flatten_rgb(out)):.4f}"])
    return _table(["JPEG", "draft", "decode + resize ms", "SSIM vs exact"], rows)


def reducing_gap(paths: list[Path]) -> str:
    """``Image.resize(reducing_gap=...)`` on already-decoded big images."""
    rows = []
    for path in paths:
        with Image.open(path) as im:
            im.load()
            target = fit_inside(*im.size)
            exact = flatten_rgb(im.resize(target, LANCZOS))
            for gap in (None, 3.0, 2.0, 1.5):
                ms, out = _best_ms(lambda g=gap, im=im, t=target: im.resize(t, LANCZOS, reducing_gap=g), n=3)
                rows.append([f"{path.name} {im.width}×{im.height} {im.mode}",
                             "off" if gap is None else f"{gap:g}",
                             f"{ms:.1f}", f"{ssim(exact, flatten_rgb(out)):.5f}"])
    return _table(["image", "reducing_gap", "resize ms", "SSIM vs reducing_gap off"], rows)


def jpeg_options(path: Path) -> str:
    """Encoding a 1024-px JPEG at q85 with the engine's default options and without them."""
    with Image.open(path) as src:
        im = src.convert("RGB").resize(fit_inside(*src.size), LANCZOS)
    rows = []
    for label, kw in (("baseline", {}), ("optimize", {"optimize": True}),
                      ("progressive", {"progressive": True}),
                      ("progressive + optimize (engine default)", {"progressive": True, "optimize": True})):
        def enc(kw: dict[str, Any] = kw) -> int:
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85, **kw)
            return len(buf.getvalue())

        ms, size = _best_ms(enc, n=7)
        rows.append([label, f"{ms:.1f}", f"{size / 1024:.1f}"])
    return _table([f"JPEG q85 of {path.name} at {im.width}×{im.height}", "encode ms", "KiB"], rows)


def icc_cost(path: Path) -> str | None:
    """Building an ICC → sRGB transform, per image, vs applying it."""
    with Image.open(path) as im:
        icc = im.info.get("icc_profile")
        if not icc:
            return None
        im.load()
        srgb = ImageCms.createProfile("sRGB")
        build_ms, transform = _best_ms(lambda: ImageCms.buildTransform(
            ImageCms.ImageCmsProfile(io.BytesIO(icc)), srgb, "RGB", "RGB"))
        apply_ms, _ = _best_ms(lambda: ImageCms.applyTransform(im, transform))
    return (f"ICC → sRGB for {path.name} ({im.width}×{im.height}): building the transform "
            f"{build_ms:.1f} ms (same for every image with this profile: cacheable), applying it "
            f"{apply_ms:.1f} ms.")


def render(corpus: Path) -> str:
    """All experiments as one markdown section (images missing from ``corpus`` are skipped)."""
    def pick(*names: str) -> list[Path]:
        return [corpus / n for n in names if (corpus / n).exists()]

    parts = ["## Fast-path experiments (Pillow knobs, in-process, best of 3–7)", ""]
    jpegs = pick("colorful-cups.jpg", "evening-glow.jpg", "retina.jpg")
    if jpegs:
        parts += ["### JPEG draft (DCT-domain downscale)", "", draft_gap(jpegs), ""]
    big = pick("licorice.webp", "moss-5k.png", "calla-rgba.png")
    if big:
        parts += ["### reduce before LANCZOS", "", reducing_gap(big), ""]
    if jpegs:
        parts += ["### JPEG encoder options", "", jpeg_options(jpegs[0]), ""]
    icc = [s for s in (icc_cost(p) for p in pick("rocket.jpg")) if s]
    if icc:
        parts += ["### Colour management", "", *icc, ""]
    return "\n".join(parts) if len(parts) > 2 else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench.experiments", description=__doc__)
    p.add_argument("--corpus", type=Path, default=Path("/work/shared/corpus"))
    args = p.parse_args(argv)
    print(render(args.corpus))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
