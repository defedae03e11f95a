"""What the metrics stage costs, and what the cheaper designs tried for issue 14 would cost and
move: ``python -m pipeline.bench.metrics_cost [--corpus DIR] [--formats jpeg,webp]``.

For every corpus image, in this process (CPU time, ``time.process_time``, median of ``--repeat``
runs; libvips with one thread, as the engine runs it), fit 1024 as the CLI benchmark does:

- ``job``: the whole ``process()`` with metrics, and its stages: ``prepare`` + ``encode``,
  ``decode`` (our output decoded again, Pillow: what ``measure`` does) and ``compare`` (SSIM +
  PSNR against a fresh reference, as one job computes it);
- designs tried (none changes what is measured unless its row says so):
  - ``decode_L`` (JPEG): Pillow's ``draft("L")`` decodes only the luma plane, all SSIM needs;
    PSNR is over RGB, so the job would still need the RGB decode: the row shows the saving it
    would be *if* PSNR were dropped, and ``dSSIM_L`` how far SSIM moves (JPEG's decoded Y is not
    exactly BT.601 luma of the decoded, upsampled RGB);
  - ``decode_vips``: libvips' loader (``jpegload_buffer`` / ``webpload_buffer``) into a Pillow
    image;
  - ``ssim_vips``: SSIM's window statistics in libvips (double precision, no numpy: it would
    spare the CLI numpy's ~0.1 s import) and ``dSSIM_vips`` against the engine's value.

Prints a markdown table (medians per format, and the largest SSIM moves) for
``pipeline/bench/notes.md``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline import PROJECT_ROOT
from pipeline.bench.approaches import QUALITY
from pipeline.bench.corpus import default_corpus, list_images

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _cpu_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1000.0


def _vips_ssim(pyvips: Any, ya: Image.Image, yb: Image.Image) -> float:
    """The engine's SSIM (8×8 windows every 4 px from exact 4×4 block sums) in libvips doubles."""
    h4, w4 = ya.height // 4 * 4, ya.width // 4 * 4

    def load(y: Image.Image) -> Any:
        im = pyvips.Image.new_from_memory(y.tobytes(), y.width, y.height, 1, "uchar")
        return im.crop(0, 0, w4, h4).cast("double")

    def windows(x: Any) -> Any:  # mean of every 8×8 window = 2×2 neighbouring 4×4 blocks
        s = x.shrink(4, 4) * 16.0
        w, h = s.width - 1, s.height - 1
        return (s.crop(0, 0, w, h) + s.crop(0, 1, w, h) + s.crop(1, 0, w, h) + s.crop(1, 1, w, h)) / 64.0

    a, b = load(ya), load(yb)
    mu_a, mu_b = windows(a), windows(b)
    aa = windows(a * a) - mu_a * mu_a
    bb = windows(b * b) - mu_b * mu_b
    ab = windows(a * b) - mu_a * mu_b
    num = (mu_a * 2 * mu_b + _C1) * (ab * 2 + _C2)
    den = (mu_a * mu_a + mu_b * mu_b + _C1) * (aa + bb + _C2)
    return float((num / den).avg())


def measure_image(path: Path, fmt: str, repeat: int) -> dict[str, float]:
    """The figures of one image (see the module docstring)."""
    import pyvips

    from imagepipe.core import encode_variant, prepare, process
    from imagepipe.core import metrics as m
    from imagepipe.core.prepare import decode_output, reference

    data = path.read_bytes()
    recipe = {"resize": {"width": 1024, "height": 1024, "fit": "inside"}, "format": fmt,
              "quality": QUALITY[fmt]}
    p = prepare(data, recipe)
    out, _ = encode_variant(p)
    decoded = decode_output(out)
    row: dict[str, float] = {
        "job": _cpu_ms(lambda: process(data, recipe), max(3, repeat // 3)),
        "decode": _cpu_ms(lambda: decode_output(out), repeat),
        "compare": _cpu_ms(lambda: m.compare_to(reference(p), decoded), repeat),
    }
    ref = reference(p)
    base = m.comparable(decoded, ref.background)
    mode = base.mode if base.mode == ref.base.mode else "RGB"
    ya, yb = m._luma(ref.side(mode)["image"]), m._luma(base.convert(mode))
    engine_ssim = m.LumaReference(np.asarray(ya)).ssim(np.asarray(yb))
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    row["ssim_vips"] = _cpu_ms(lambda: _vips_ssim(pyvips, ya, yb), repeat)
    row["ssim_numpy"] = _cpu_ms(lambda: m.LumaReference(np.asarray(ya)).ssim(np.asarray(yb)), repeat)
    row["dSSIM_vips"] = abs(_vips_ssim(pyvips, ya, yb) - engine_ssim)
    loader = {"jpeg": "jpegload_buffer", "webp": "webpload_buffer"}.get(fmt)
    if loader:
        def vips_decode() -> Image.Image:
            v = getattr(pyvips.Image, loader)(out, access="sequential")
            mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[v.bands]
            return Image.frombuffer(mode, (v.width, v.height), v.write_to_memory(), "raw", mode, 0, 1)

        row["decode_vips"] = _cpu_ms(vips_decode, repeat)
    if fmt == "jpeg" and ya.size == decoded.size and decoded.mode == "RGB":
        def decode_l() -> Image.Image:
            im = Image.open(io.BytesIO(out))
            im.draft("L", None)
            im.load()
            return im

        row["decode_L"] = _cpu_ms(decode_l, repeat)
        y_direct = decode_l()
        if y_direct.size == ya.size:
            row["dSSIM_L"] = abs(m.LumaReference(np.asarray(ya)).ssim(np.asarray(y_direct)) - engine_ssim)
    return row


def render(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """Medians per format and the largest SSIM moves."""
    lines = ["| output | images | job ms | decode ms | compare ms | metrics share of the job | "
             "decode_L ms | decode_vips ms | ssim numpy ms | ssim_vips ms | max dSSIM_L | max dSSIM_vips |",
             "| " + " | ".join(["---"] * 12) + " |"]
    for fmt, per in rows.items():
        vals = list(per.values())

        def med(key: str, vals: list[dict[str, float]] = vals) -> str:
            got = [v[key] for v in vals if key in v]
            return f"{statistics.median(got):.2f}" if got else "—"

        def top(key: str, vals: list[dict[str, float]] = vals) -> str:
            got = [v[key] for v in vals if key in v]
            return f"{max(got):.1e}" if got else "—"

        share = statistics.median((v["decode"] + v["compare"]) / v["job"] for v in vals)
        lines.append(f"| {fmt.upper()} | {len(vals)} | {med('job')} | {med('decode')} | {med('compare')} | "
                     f"{share:.0%} | {med('decode_L')} | {med('decode_vips')} | {med('ssim_numpy')} | "
                     f"{med('ssim_vips')} | {top('dSSIM_L')} | {top('dSSIM_vips')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    p = argparse.ArgumentParser(prog="python -m pipeline.bench.metrics_cost", description=__doc__)
    p.add_argument("--corpus", type=Path, default=default_corpus(PROJECT_ROOT))
    p.add_argument("--formats", default="jpeg,webp")
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--only", help="comma-separated image names")
    args = p.parse_args(argv)
    if args.corpus is None:
        print("no corpus (../shared/corpus)", file=sys.stderr)
        return 2
    paths = list_images(args.corpus)
    if args.only:
        paths = [x for x in paths if x.name in set(args.only.split(","))]
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for fmt in [f for f in args.formats.split(",") if f]:
        rows[fmt] = {}
        for path in paths:
            rows[fmt][path.name] = measure_image(path, fmt, args.repeat)
            print(f"{fmt} {path.name}: " + ", ".join(f"{k} {v:.3g}" for k, v in rows[fmt][path.name].items()),
                  file=sys.stderr, flush=True)
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
