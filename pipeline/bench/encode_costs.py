"""Fit the encode-time table of ``imagepipe.core.budget`` (``ENCODE_COSTS``).

``python -m pipeline.bench.encode_costs [--write] [--corpus DIR] [--images N]``

Each encoder setting encodes a few photos (the corpus, or generated photo-like images when
there is none) at two sizes (about 0.5 and 2 MP) with the engine's own ``encode_image``; per image
a line ``ms = fixed + per_mp × MP`` is fitted through the two points (CPU time of all the
encoder's threads, best of ``--repeat`` runs each: wall time on a shared machine would measure
the neighbours), and the table keeps, per setting, the slowest image's line (photos differ; the budget
adds its ``SAFETY`` factor on top). ``--write`` replaces the generated block in
``lambda_src/imagepipe/core/budget.py``; without it the table is printed. With a corpus it also
measures the memory table, ``ENCODE_MEMORY_BPP`` and ``ENCODE_MEMORY_FIXED_MB`` (the growth of
the peak RSS during one encode, the peak reset just before it, at 3 and 12 MP on two photos,
each encode in a fresh process; the line ``fixed MiB + bytes per pixel`` that lies above every
point). ``make bench`` runs it with ``--write``.

Figures are for the machine that runs it: set ``IMAGEPIPE_ENCODE_COST_SCALE`` on a slower one
(a 1024 MB Lambda has ≈ 0.6 vCPU: ≈ 1.7).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline import PROJECT_ROOT

BUDGET_PY = PROJECT_ROOT / "lambda_src" / "imagepipe" / "core" / "budget.py"
SIZES_MP = (0.5, 2.0)
#: encoder -> (format, recipe overrides for a setting, settings measured)
SETTINGS: dict[str, tuple[str, Any, tuple[int, ...]]] = {
    "avif": ("avif", lambda s: {"avif": {"speed": s}}, (5, 6, 7, 8, 9, 10)),
    "webp": ("webp", lambda s: {"webp": {"method": s}}, (0, 1, 2, 3, 4, 5, 6)),
    "webp:lossless": ("webp", lambda s: {"webp": {"method": s, "lossless": True}}, (0, 2, 4, 6)),
    "jpeg:turbo": ("jpeg", lambda s: {"jpeg": {"progressive": bool(s), "optimize": bool(s)}}, (0, 1)),
    "jpeg:mozjpeg": ("jpeg", lambda s: {"jpeg": {"encoder": "mozjpeg", "progressive": bool(s),
                                                 "optimize": bool(s)}}, (0, 1)),
    "jpeg:jpegli": ("jpeg", lambda s: {"jpeg": {"encoder": "jpegli", "progressive": bool(s),
                                                "optimize": bool(s)}}, (0, 1)),
    "jxl": ("jxl", lambda s: {"jxl": {"effort": s}}, (1, 3, 5, 7, 8, 9)),
    "png": ("png", lambda s: {"png": {"compress_level": s}}, (1, 3, 6, 9)),
    "gif": ("gif", lambda s: {}, (0,)),
}
PHOTOS = ("forest-path.jpg", "colorful-cups.jpg", "hubble_deep_field.jpg", "fallen-leaf.jpg")


def _photos(corpus: Path | None, n: int) -> list[tuple[str, Image.Image]]:
    if corpus is not None and corpus.is_dir():
        names = [p for p in PHOTOS if (corpus / p).exists()][:n]
        if names:
            return [(p, Image.open(corpus / p).convert("RGB")) for p in names]
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.unit.imagegen import photo_like  # generated stand-ins when there is no corpus

    return [(f"generated-{i}", photo_like(2000, 1500, seed=i)) for i in range(n)]


def _at(im: Image.Image, mp: float) -> Image.Image:
    s = (mp * 1e6 / (im.width * im.height)) ** 0.5
    return im.resize((max(16, int(im.width * s)), max(16, int(im.height * s))), Image.Resampling.LANCZOS)


def _time_ms(fmt: str, im: Image.Image, recipe: Any, repeat: int) -> float:
    """CPU time of one encode (all threads), best of ``repeat``: on a shared machine wall time
    measures the neighbours' load; CPU time is what the encode costs one free core."""
    from imagepipe.core.encode import Metadata, encode_image

    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        encode_image(im, fmt, 80, recipe, Metadata())
        best = min(best, (time.process_time() - t) * 1000.0)
    return best


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """``(fixed ms, ms per MP)`` of the least-squares line through ``(mp, ms)`` points (fixed ≥ 0)."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else my / max(mx, 1e-9)
    fixed = my - slope * mx
    if fixed < 0:  # a line through the origin instead
        slope = sum(p[0] * p[1] for p in points) / sum(p[0] ** 2 for p in points)
        fixed = 0.0
    return round(fixed, 1), round(max(slope, 0.1), 1)


def measure(images: list[tuple[str, Image.Image]], repeat: int,
            log: Any = print, only: list[str] | None = None) -> dict[str, dict[int, tuple[float, float]]]:
    """The table: encoder -> setting -> the slowest image's (fixed, per_mp) (``only``: these encoders)."""
    from imagepipe.core.recipe import parse_recipe

    scaled = [(name, [_at(im, mp) for mp in SIZES_MP]) for name, im in images]
    table: dict[str, dict[int, tuple[float, float]]] = {}
    for encoder, (fmt, overrides, settings) in SETTINGS.items():
        if only is not None and encoder not in only:
            continue
        table[encoder] = {}
        for s in settings:
            recipe = parse_recipe(overrides(s))
            lines = []
            for name, sized in scaled:
                pts = [(x.width * x.height / 1e6, _time_ms(fmt, x, recipe, repeat)) for x in sized]
                lines.append(fit(pts))
                log(f"{encoder} {s} {name}: " + ", ".join(f"{mp:.2f} MP {ms:.0f} ms" for mp, ms in pts))
            table[encoder][s] = max(lines, key=lambda line: line[0] + line[1] * 4)  # slowest at 4 MP
    return table


#: memory row (core/budget.py ``memory_row``) -> the cost-table encoder whose recipe it uses and
#: the settings measured (no setting was seen to change the memory, except JPEG XL's effort:
#: ≈ 18 B/px up to 7, ≈ 275 B/px at 8 and 9)
MEMORY_ROWS: dict[str, tuple[str, tuple[int, ...]]] = {
    "avif": ("avif", (6,)), "webp": ("webp", (4,)), "webp:lossless": ("webp:lossless", (4,)),
    "jpeg:turbo": ("jpeg:turbo", (1,)), "png": ("png", (6,)), "gif": ("gif", (0,)),
    "jpeg:mozjpeg": ("jpeg:mozjpeg", (1,)), "jpeg:jpegli": ("jpeg:jpegli", (0,)),
    "jxl": ("jxl", (5, 7)), "jxl:e8": ("jxl", (8, 9)),
    "jxl:lossless": ("jxl:lossless", (7,)), "jxl:lossless:e8": ("jxl:lossless", (8,)),
}
#: encoders with a memory row but no time row (their recipe overrides per setting)
_MEMORY_ONLY: dict[str, tuple[str, Any, tuple[int, ...]]] = {
    "jxl:lossless": ("jxl", lambda s: {"jxl": {"effort": s, "lossless": True}}, ()),
}
MEMORY_SIZES_MP = (3.0, 12.0)
#: one encode in a fresh process: the peak RSS is reset (``/proc/self/clear_refs`` ← 5) just
#: before it, so the growth is measured from the RSS at that moment. (The previous method took
#: ``ru_maxrss`` before and after: the decode of the full-size original had already set a high
#: peak, which hid any encode that grew less than that: it read 0 B/px for mozjpeg, jpegli and
#: JPEG XL.)
_MEMORY_CHILD = """
import sys
from PIL import Image
from imagepipe.core.encode import Metadata, encode_image
from imagepipe.core.recipe import parse_recipe
def kib(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field))
path, mp, fmt, overrides = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
im = Image.open(path).convert("RGB")
s = (mp * 1e6 / (im.width * im.height)) ** 0.5
im = im.resize((max(16, int(im.width * s)), max(16, int(im.height * s))))
recipe = parse_recipe(eval(overrides))
encode_image(im.resize((64, 64)), fmt, 80, recipe, Metadata())  # codec libraries loaded first
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = kib("VmHWM:")
encode_image(im, fmt, 80, recipe, Metadata())
print(im.width * im.height, (kib("VmHWM:") - base) * 1024)
"""


def memory_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """``(fixed MiB, bytes per pixel)`` of a line above every ``(pixels, growth bytes)`` point:
    the steepest slope between two sizes of one photo (points come in pairs), then the smallest
    non-negative fixed part that puts every point on or under it."""
    slopes = [(g2 - g1) / (p2 - p1) for (p1, g1), (p2, g2) in zip(points[::2], points[1::2], strict=True)
              if p2 > p1]
    bpp = max([0.5, *slopes, *(g / p for p, g in points if g > 0 and not slopes)])
    fixed = max([0.0, *(g - bpp * p for p, g in points)]) / 1048576.0
    return (round(fixed + 0.05, 1) if fixed > 0 else 0.0), round(bpp + 0.05, 1)


def measure_memory(image_paths: list[Path], log: Any = print,
                   only: list[str] | None = None) -> dict[str, tuple[float, float]]:
    """memory row -> ``(fixed MiB, bytes per pixel)`` of one encode's peak memory growth, over
    the photos at ``MEMORY_SIZES_MP``, each encode in a fresh process."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "lambda_src")}
    out: dict[str, tuple[float, float]] = {}
    for row, (encoder, settings) in MEMORY_ROWS.items():
        if only is not None and row not in only and encoder not in only:
            continue
        fmt, overrides_of, _timed = {**SETTINGS, **_MEMORY_ONLY}[encoder]
        points: list[tuple[float, float]] = []
        for setting in settings:
            overrides = overrides_of(setting)
            for path in image_paths:
                for mp in MEMORY_SIZES_MP:
                    r = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(path), str(mp), fmt,
                                        repr(overrides)], capture_output=True, text=True, env=env,
                                       timeout=900, check=True)
                    pixels, growth = (float(x) for x in r.stdout.split())
                    points.append((pixels, growth))
        log(f"memory {row}: " + ", ".join(f"{p / 1e6:.1f} MP {g / p:.1f} B/px" for p, g in points))
        out[row] = memory_line(points)
    return out


def _dict_lines(name: str, items: list[str]) -> str:
    lines = [f"{name}: dict[str, float] = {{"]
    for i in range(0, len(items), 5):  # five entries a line: the module stays ruff-clean
        lines.append("    " + ", ".join(items[i:i + 5]) + ",")
    return "\n".join([*lines, "}"])


def render_memory(memory: dict[str, tuple[float, float]]) -> str:
    """The generated memory block of core/budget.py."""
    return "\n".join([
        _dict_lines("ENCODE_MEMORY_BPP", [f'"{k}": {v[1]}' for k, v in memory.items()]),
        _dict_lines("ENCODE_MEMORY_FIXED_MB", [f'"{k}": {v[0]}' for k, v in memory.items() if v[0] > 0])])


def render(table: dict[str, dict[int, tuple[float, float]]]) -> str:
    """The generated block of core/budget.py."""
    lines = ["ENCODE_COSTS: dict[str, dict[int, tuple[float, float]]] = {"]
    for encoder, rows in table.items():
        cells = [f"{s}: ({a}, {b})" for s, (a, b) in sorted(rows.items())]
        lines.append(f'    "{encoder}": {{')
        for i in range(0, len(cells), 4):  # four settings a line: the module stays ruff-clean
            lines.append("        " + ", ".join(cells[i:i + 4]) + ",")
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines)


def _replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(# BEGIN {name} \(generated\)\n).*?(\n# END {name})", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no {name} markers in {BUDGET_PY}")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def write(table: dict[str, dict[int, tuple[float, float]]], path: Path = BUDGET_PY,
          memory: dict[str, tuple[float, float]] | None = None) -> None:
    """Replace the blocks between the BEGIN/END markers in ``path``."""
    text = _replace_block(path.read_text(encoding="utf-8"), "ENCODE_COSTS", render(table))
    if memory is not None:
        text = _replace_block(text, "ENCODE_MEMORY_BPP", render_memory(memory))
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the table in core/budget.py")
    ap.add_argument("--corpus", type=Path, default=None, help="photo folder (default ../shared/corpus)")
    ap.add_argument("--images", type=int, default=3, help="photos per setting (default 3)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per point, the best kept (default 1)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    ap.add_argument("--only", help="comma-separated encoders to measure; with --write their rows "
                                   "replace those in the table, the others are kept")
    args = ap.parse_args(argv)
    only = args.only.split(",") if args.only else None
    if only is not None and set(only) - set(SETTINGS):
        ap.error(f"unknown encoders {sorted(set(only) - set(SETTINGS))}; known: {sorted(SETTINGS)}")
    from pipeline.bench import corpus as corpus_mod

    folder = args.corpus or corpus_mod.default_corpus(PROJECT_ROOT)
    images = _photos(Path(folder) if folder else None, max(1, args.images))
    print(f"images: {[n for n, _ in images]}, sizes {SIZES_MP} MP, best of {args.repeat}", file=sys.stderr)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    table = measure(images, max(1, args.repeat), log=log, only=only)
    memory = None
    if folder and not args.no_memory:
        memory = measure_memory([Path(folder) / name for name, _ in images[:2]], log=log, only=only)
    if only is not None:  # the rows not measured stay as they are
        from imagepipe.core import budget

        table = {**budget.ENCODE_COSTS, **table}
        kept = {row: (budget.ENCODE_MEMORY_FIXED_MB.get(row, 0.0), bpp)
                for row, bpp in budget.ENCODE_MEMORY_BPP.items()}
        memory = None if memory is None else {**kept, **memory}
    print(render(table))
    if memory is not None:
        print(render_memory(memory))
    if args.write:
        write(table, memory=memory)
        print(f"written to {BUDGET_PY}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
