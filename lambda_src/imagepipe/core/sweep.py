"""Sweeps: one image × a grid of encoder settings → measured rate–distortion points.

The image is decoded and transformed (resized) ONCE with :func:`imagepipe.core.prepare`; every
grid cell is then one ``encode_variant`` + one ``measure`` on that prepared image. A grid is

    {"formats": ["jpeg:turbo", "jpeg:mozjpeg", "jpeg:jpegli", "webp", "avif", "jxl"],
     "qualities": [40, 60, 80], "option": {"name": "webp.method", "values": [2, 4, 6]}}   # option optional

``formats`` is the encoder axis: a format, or for JPEG an encoder (``jpeg`` alone = ``jpeg:turbo``,
Pillow's libjpeg-turbo, as before encoders were an axis).

The option varies one codec setting; it only applies to its own format (``webp.method`` to
WebP), every other format gets one point per quality. Lossless PNG ignores quality: one point.
``"metrics": ["ssimulacra2"]`` (optional) adds SSIMULACRA2 to every point; SSIM and PSNR are
always measured (cheap), SSIMULACRA2 only on request (≈ 20–40× the cost of SSIM per point).

Every cell of one prepared image is measured against one ``metrics.Reference`` (the reference
side of SSIM and SSIMULACRA2 is computed once per part, not once per cell), and a cell whose
encoded bytes equal an earlier cell's reuses that cell's scores (same bytes, same scores).

``plan_parts(grid)`` splits a grid into independent parts (one per format, long formats cut
into chunks of at most ``MAX_PART_CELLS`` cells) so that a service can fan them out;
``run_cells(prepared, cells)`` measures any list of cells, ``sweep(source, grid)`` runs a whole
grid in-process.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from imagepipe.core.budget import METRICS_MS_PER_MP, Budget, encode_within
from imagepipe.core.encode import split_encoder
from imagepipe.core.limits import Limits
from imagepipe.core.metrics import DEFAULT_METRICS, METRIC_NAMES, Reference
from imagepipe.core.prepare import Prepared, encode_variant, measure, prepare, reference
from imagepipe.errors import InvalidRecipe, OverBudget

#: encoders a sweep can contain (GIF is palette-only and not a rate–distortion trade-off)
SWEEP_FORMATS: tuple[str, ...] = ("jpeg", "jpeg:turbo", "jpeg:mozjpeg", "jpeg:jpegli", "webp", "avif", "jxl",
                                  "png")
LOSSLESS_FORMATS: frozenset[str] = frozenset({"png"})
MAX_FORMATS = 8
MAX_QUALITIES = 20
MAX_OPTION_VALUES = 4
MAX_CELLS = 160
#: cells per fan-out part: bounds one processor invocation's work (its timeout is 60 s). AVIF
#: is 10–50× slower to encode than JPEG (≈ 2–12 s a cell for a 4 MP image on a loaded 2-core
#: machine), so its parts are small; every part decodes + resizes once.
MAX_PART_CELLS = 20
#: mozjpeg (trellis) encodes ≈ 5× slower than turbo, JPEG XL (effort 7) ≈ 15×.
PART_CELLS = {"jpeg": 20, "jpeg:turbo": 20, "jpeg:mozjpeg": 10, "jpeg:jpegli": 20, "webp": 10, "avif": 3,
              "jxl": 5, "png": 1}
#: smaller parts when the grid asks for SSIMULACRA2 (≈ 0.8 s a point at 4 MP here, 2–3× that on a
#: 1 GB Lambda's ≈ 0.6 vCPU): a JPEG part of 20 such points could approach the 60 s timeout
PART_CELLS_SSIMULACRA2 = {"jpeg": 6, "jpeg:turbo": 6, "jpeg:mozjpeg": 5, "jpeg:jpegli": 6, "webp": 5,
                          "avif": 2, "jxl": 3, "png": 1}

#: option name -> (format, recipe section, field, allowed values)
OPTIONS: dict[str, tuple[str, str, str, tuple[Any, ...]]] = {
    "webp.method": ("webp", "webp", "method", (0, 1, 2, 3, 4, 5, 6)),
    "jpeg.subsampling": ("jpeg", "jpeg", "subsampling", ("4:4:4", "4:2:2", "4:2:0")),
    "jpeg.progressive": ("jpeg", "jpeg", "progressive", (True, False)),
    "avif.speed": ("avif", "avif", "speed", tuple(range(11))),
    "jxl.effort": ("jxl", "jxl", "effort", tuple(range(1, 10))),
}
#: JPEG encoders a JPEG option does not apply to (pyjpegli exposes quality only), and option
#: values an encoder cannot write (libvips has no 4:2:2)
OPTION_SKIPS: dict[str, frozenset[str]] = {"jpeg.subsampling": frozenset({"jpegli"}),
                                           "jpeg.progressive": frozenset({"jpegli"})}
OPTION_UNSUPPORTED: dict[tuple[str, str], tuple[Any, ...]] = {("jpeg.subsampling", "mozjpeg"): ("4:2:2",)}


def canonical_encoder(name: str) -> str:
    """``jpeg`` -> ``jpeg:turbo``; any other name unchanged."""
    return "jpeg:turbo" if name == "jpeg" else name


def _bad(field: str, message: str) -> InvalidRecipe:
    return InvalidRecipe(f"invalid sweep grid: {field}: {message}",
                         details=[{"field": field, "message": message}])


@dataclass(frozen=True)
class Grid:
    """A validated sweep grid."""

    formats: tuple[str, ...]
    qualities: tuple[int, ...]
    option_name: str | None = None
    option_values: tuple[Any, ...] = ()
    metrics: tuple[str, ...] = DEFAULT_METRICS

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what the API stores and returns); ``metrics`` only when it adds one."""
        out: dict[str, Any] = {"formats": list(self.formats), "qualities": list(self.qualities)}
        if self.option_name:
            out["option"] = {"name": self.option_name, "values": list(self.option_values)}
        if self.metrics != DEFAULT_METRICS:
            out["metrics"] = list(self.metrics)
        return out

    def cells(self) -> list[Cell]:
        """Every grid cell, in format / quality / option order."""
        out: list[Cell] = []
        for entry in self.formats:
            fmt, _, enc = entry.partition(":")
            enc_field = enc if enc and enc != "turbo" else None
            if fmt in LOSSLESS_FORMATS:
                out.append(Cell(fmt, None))
                continue
            opt_here = (self.option_name is not None and OPTIONS[self.option_name][0] == fmt
                        and (enc or "turbo") not in OPTION_SKIPS.get(self.option_name, frozenset()))
            for q in self.qualities:
                if opt_here:
                    out.extend(Cell(fmt, q, self.option_name, v, enc_field) for v in self.option_values)
                else:
                    out.append(Cell(fmt, q, encoder=enc_field))
        return out


@dataclass(frozen=True)
class Cell:
    """One grid cell: a format, a quality (None for lossless) and maybe one option value."""

    format: str
    quality: int | None
    option_name: str | None = None
    option_value: Any = None
    encoder: str | None = None  # JPEG only: mozjpeg or jpegli (None = turbo)

    @property
    def encoder_name(self) -> str:
        """The encoder by its facts name: ``jpeg:turbo``, ``jpeg:mozjpeg``, ``webp``, ..."""
        return f"jpeg:{self.encoder or 'turbo'}" if self.format == "jpeg" else self.format

    def options(self) -> dict[str, Any] | None:
        """The ``encode_variant`` options for this cell."""
        out: dict[str, Any] = {}
        if self.encoder is not None:
            out = split_encoder(self.encoder_name)[1] or {}
        if self.option_name is not None:
            _fmt, section, field, _allowed = OPTIONS[self.option_name]
            out[section] = {**out.get(section, {}), field: self.option_value}
        return out or None

    def label(self) -> str:
        """A short unique name, e.g. ``webp-q80-method4`` or ``jpeg-mozjpeg-q80`` (also in object keys)."""
        parts = [self.format, *([self.encoder] if self.encoder else []),
                 "lossless" if self.quality is None else f"q{self.quality}"]
        if self.option_name is not None:
            v = str(self.option_value).replace(":", "")
            parts.append(f"{self.option_name.split('.')[1]}{v}")
        return "-".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "quality": self.quality, "option_name": self.option_name,
                "option_value": self.option_value, "encoder": self.encoder_name}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        enc = str(d.get("encoder") or "").partition(":")[2] or None
        return cls(d["format"], d.get("quality"), d.get("option_name"), d.get("option_value"),
                   None if enc == "turbo" else enc)


def parse_grid(raw: Any) -> Grid:
    """Validate a grid dict; ``InvalidRecipe`` naming the field when it is wrong or too large."""
    if not isinstance(raw, dict):
        raise _bad("grid", "must be an object with formats and qualities")
    unknown = set(raw) - {"formats", "qualities", "option", "metrics"}
    if unknown:
        raise _bad("grid", f"unknown keys {sorted(unknown)}")
    formats = raw.get("formats")
    if not isinstance(formats, list) or not formats or not all(isinstance(f, str) for f in formats):
        raise _bad("grid.formats", "a non-empty list of format names")
    formats = [f.lower() for f in formats]
    for f in formats:
        if f not in SWEEP_FORMATS:
            raise _bad("grid.formats", f"{f!r} is not one of {list(SWEEP_FORMATS)}")
    if len({canonical_encoder(f) for f in formats}) != len(formats):
        raise _bad("grid.formats", "duplicate format (jpeg is jpeg:turbo)")
    if len(formats) > MAX_FORMATS:
        raise _bad("grid.formats", f"at most {MAX_FORMATS} formats")
    qualities = raw.get("qualities")
    if (not isinstance(qualities, list) or not qualities
            or not all(isinstance(q, int) and not isinstance(q, bool) for q in qualities)):
        raise _bad("grid.qualities", "a non-empty list of integers 1–100")
    if any(not 1 <= q <= 100 for q in qualities):
        raise _bad("grid.qualities", "every quality must be within 1–100")
    if len(set(qualities)) != len(qualities):
        raise _bad("grid.qualities", "duplicate quality")
    if len(qualities) > MAX_QUALITIES:
        raise _bad("grid.qualities", f"at most {MAX_QUALITIES} qualities")
    name, values = None, ()
    opt = raw.get("option")
    if opt is not None:
        if not isinstance(opt, dict) or set(opt) != {"name", "values"}:
            raise _bad("grid.option", 'must be {"name": ..., "values": [...]}')
        name = opt["name"]
        if name not in OPTIONS:
            raise _bad("grid.option.name", f"{name!r} is not one of {sorted(OPTIONS)}")
        fmt, _section, _field, allowed = OPTIONS[name]
        takers = [f for f in formats if f.partition(":")[0] == fmt
                  and (f.partition(":")[2] or "turbo") not in OPTION_SKIPS.get(name, frozenset())]
        if not takers:
            raise _bad("grid.option.name", f"{name} needs {fmt} among the formats (an encoder it applies to)")
        vals = opt["values"]
        if not isinstance(vals, list) or not vals:
            raise _bad("grid.option.values", "a non-empty list")
        for v in vals:
            if type(v) not in {type(a) for a in allowed} or v not in allowed:
                raise _bad("grid.option.values", f"{v!r} is not one of {list(allowed)}")
        if len(set(vals)) != len(vals):
            raise _bad("grid.option.values", "duplicate value")
        for f in takers:
            refused = [v for v in vals if v in OPTION_UNSUPPORTED.get((name, f.partition(":")[2]), ())]
            if refused:
                raise _bad("grid.option.values", f"{f} cannot encode {name} {refused[0]!r}")
        if len(vals) > MAX_OPTION_VALUES:
            raise _bad("grid.option.values", f"at most {MAX_OPTION_VALUES} values")
        values = tuple(vals)
    grid = Grid(tuple(formats), tuple(sorted(qualities)), name, values, _parse_metrics(raw.get("metrics")))
    n = len(grid.cells())
    if n > MAX_CELLS:
        raise _bad("grid", f"{n} cells; at most {MAX_CELLS}")
    return grid


def _parse_metrics(raw: Any) -> tuple[str, ...]:
    """``grid.metrics``: names from ``METRIC_NAMES``; SSIM and PSNR are always included."""
    if raw is None:
        return DEFAULT_METRICS
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        raise _bad("grid.metrics", f"a list of metric names from {list(METRIC_NAMES)}")
    for m in raw:
        if m not in METRIC_NAMES:
            raise _bad("grid.metrics", f"{m!r} is not one of {list(METRIC_NAMES)}")
    if len(set(raw)) != len(raw):
        raise _bad("grid.metrics", "duplicate metric")
    return tuple(m for m in METRIC_NAMES if m in DEFAULT_METRICS or m in raw)


def plan_parts(grid: Grid, max_cells: int | None = None) -> list[list[Cell]]:
    """The grid cut into fan-out parts: one per format, chunked to ``PART_CELLS[format]`` cells
    (``PART_CELLS_SSIMULACRA2`` when the grid measures SSIMULACRA2; or ``max_cells`` for every
    format when given). Deterministic: the service re-plans a stored grid to find a part."""
    parts: list[list[Cell]] = []
    all_cells = grid.cells()
    sizes = PART_CELLS_SSIMULACRA2 if "ssimulacra2" in grid.metrics else PART_CELLS
    for entry in grid.formats:
        size = max_cells or sizes.get(entry, MAX_PART_CELLS)
        cells = [c for c in all_cells if c.encoder_name == canonical_encoder(entry)]
        for i in range(0, len(cells), size):
            parts.append(cells[i:i + size])
    return parts


def sweep_recipe(resize: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recipe a sweep prepares with: the resize, metadata stripped, sRGB (defaults).

    ``best`` names no single output format: ``prepare`` reduces 16-bit input to 8-bit as for any
    non-PNG output and leaves the format's side limit to each cell's own encode.
    """
    return {"resize": resize, "format": "best"}


def run_cell(prepared: Prepared, cell: Cell, ref: Reference | None = None,
             metrics: Sequence[str] = DEFAULT_METRICS,
             seen: dict[bytes, dict[str, Any]] | None = None,
             budget: Budget | None = None) -> tuple[dict[str, Any], bytes]:
    """Encode + measure one cell: ``(point, encoded bytes)``. ``ref`` is the metrics reference of
    ``prepared`` (made when not given); ``seen`` maps the digests of already measured encodings
    to their scores. Under a ``budget`` the cell's own setting must fit the time left (a sweep
    measures settings, so it never adapts them): ``OverBudget`` otherwise."""
    q = 100 if cell.quality is None else cell.quality
    if budget is None:
        data, facts = encode_variant(prepared, cell.format, q, cell.options())
    else:
        mp = prepared.image.width * prepared.image.height / 1e6
        extra = mp * (METRICS_MS_PER_MP + (200.0 if "ssimulacra2" in metrics else 0.0))
        data, facts, _plan = encode_within(prepared, budget, cell.format, q, cell.options(), extra_ms=extra,
                                           adapt=False)
    t = time.perf_counter()
    digest = hashlib.blake2b(data, digest_size=20).digest()
    m = seen.get(digest) if seen is not None else None
    if m is None:
        m = measure(prepared, data, ref, metrics)
        if seen is not None:
            seen[digest] = m
    measure_ms = round((time.perf_counter() - t) * 1000.0, 3)
    w, h = facts["width"], facts["height"]
    point = {
        **cell.to_dict(),
        "encoder": facts["encoder"],
        "label": cell.label(),
        "bytes": len(data),
        "bpp": round(len(data) * 8 / max(1, w * h), 5),
        **{name: m[name] for name in metrics},
        "encode_ms": facts["encode_ms"],
        "measure_ms": measure_ms,
        "width": w,
        "height": h,
        "content_type": facts["content_type"],
        "extension": facts["extension"],
    }
    return point, data


def run_cells(prepared: Prepared, cells: Sequence[Cell],
              on_variant: Callable[[dict[str, Any], bytes], None] | None = None,
              metrics: Sequence[str] = DEFAULT_METRICS, budget: Budget | None = None,
              skipped: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Measure ``cells`` on one prepared image (one metrics reference for all of them);
    ``on_variant(point, data)`` sees each encoding (e.g. to store it). Returns the points in
    cell order. Under a ``budget``, a cell that cannot fit the time left is not encoded: it is
    appended to ``skipped`` as ``{format, quality, option…, label, skipped: reason}``."""
    ref = reference(prepared)
    seen: dict[bytes, dict[str, Any]] = {}
    points = []
    for cell in cells:
        try:
            point, data = run_cell(prepared, cell, ref, metrics, seen, budget)
        except OverBudget as exc:
            if skipped is None:
                raise
            skipped.append({**cell.to_dict(), "label": cell.label(), "skipped": exc.message,
                            "code": exc.code})
            continue
        if on_variant is not None:
            on_variant(point, data)
        points.append(point)
    return points


def sweep(source_bytes: bytes, grid: Grid | dict[str, Any], resize: dict[str, Any] | None = None,
          limits: Limits | None = None, cells: Sequence[Cell] | None = None) -> dict[str, Any]:
    """Run a grid (or only ``cells`` of it) on one image in-process.

    Returns ``{"grid", "points", "source": {width, height}, "timings_ms": {prepare, cells, total}}``.
    """
    t0 = time.perf_counter()
    g = grid if isinstance(grid, Grid) else parse_grid(grid)
    prepared = prepare(source_bytes, sweep_recipe(resize), limits)
    t_prep = round((time.perf_counter() - t0) * 1000.0, 3)
    t1 = time.perf_counter()
    points = run_cells(prepared, g.cells() if cells is None else cells, metrics=g.metrics)
    return {
        "grid": g.to_dict(),
        "points": points,
        "output_size": list(prepared.image.size),
        "input": prepared.input_facts,
        "timings_ms": {"prepare": t_prep, "cells": round((time.perf_counter() - t1) * 1000.0, 3),
                       "total": round((time.perf_counter() - t0) * 1000.0, 3)},
    }
