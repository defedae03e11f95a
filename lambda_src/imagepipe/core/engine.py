"""``process()``: bytes in, bytes + facts out, entirely in memory.

``process(source_bytes, recipe, limits=None) -> Result`` runs the whole job on the pieces in
``core/prepare.py`` (decode + transform once, then encode and measure) and ``core/auto.py``
(auto quality and best format).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from imagepipe.core.budget import METRICS_MS_PER_MP, Budget, encode_within
from imagepipe.core.limits import Limits
from imagepipe.core.metrics import MAX_METRIC_OUTPUT_PIXELS
from imagepipe.core.prepare import _ms, encode_variant, measure, prepare
from imagepipe.core.recipe import Recipe


@dataclass
class Result:
    """The encoded output and its JSON-safe facts (see docs/architecture.md)."""

    data: bytes
    facts: dict[str, Any]

    @property
    def content_type(self) -> str:
        return str(self.facts["output"]["content_type"])

    @property
    def extension(self) -> str:
        return str(self.facts["output"]["extension"])



def process(source_bytes: bytes, recipe: Recipe | dict[str, Any] | None = None, limits: Limits | None = None,
            *, compute_metrics: bool = True, budget: Budget | None = None) -> Result:
    """Run ``recipe`` on ``source_bytes``: decode, transform, encode, measure.

    Raises only ``imagepipe.errors.ImageError`` subclasses for bad input or recipes; with a
    ``budget`` (core/budget.py) also ``OverTimeBudget``, ``OverMemoryBudget`` and ``JobTimeout``.
    """
    t0 = time.perf_counter()
    prepared = prepare(source_bytes, recipe, limits)
    r = prepared.recipe
    search: dict[str, Any] | None = None
    t_enc = time.perf_counter()
    budget_facts: dict[str, Any] | None = None
    if r.quality == "auto" or prepared.format == "best":
        from imagepipe.core.auto import choose  # the search code loads only for the jobs that need it

        data, out, search = choose(prepared, budget)
    elif budget is not None:
        px = prepared.image.width * prepared.image.height
        extra = METRICS_MS_PER_MP * px / 1e6 if compute_metrics and px <= MAX_METRIC_OUTPUT_PIXELS else 0.0
        data, out, plan = encode_within(prepared, budget, extra_ms=extra)
        budget_facts = plan.facts()
    else:
        data, out = encode_variant(prepared)
    t_encode = _ms(t_enc)
    t_m = time.perf_counter()
    metrics: dict[str, float | str | None] = {"ssim": None, "psnr": None}
    if search is not None and search.get("metrics"):
        metrics = dict(search.pop("metrics"))
    elif compute_metrics and out["width"] * out["height"] > MAX_METRIC_OUTPUT_PIXELS:
        # decoding a huge output again (Pillow's WebP loader holds ~3 copies) could exhaust the
        # Lambda's memory: say so instead of measuring
        metrics = {"ssim": None, "psnr": None,
                   "skipped": f"output is {out['width']}x{out['height']}, above the "
                              f"{MAX_METRIC_OUTPUT_PIXELS:,}-pixel metrics cap"}
    elif compute_metrics:
        metrics = dict(measure(prepared, data))
    t_metrics = _ms(t_m)
    out.pop("encode_ms", None)
    facts: dict[str, Any] = {
        "input": prepared.input_facts,
        "output": out,
        "compression_ratio": round(prepared.input_facts["bytes"] / max(1, len(data)), 4),
        "bits_per_pixel": round(len(data) * 8 / max(1, out["width"] * out["height"] * out["frames"]), 4),
        "metrics": metrics,
        "timings_ms": {**prepared.timings_ms, "encode": t_encode, "metrics": t_metrics, "total": _ms(t0)},
        "recipe_hash": r.recipe_hash(),
        "fast_paths": prepared.fast_paths,
    }
    if search is not None:
        facts["search"] = search
    if budget_facts is not None:
        facts["budget"] = budget_facts
    elif search is not None and search.get("budget"):
        facts["budget"] = search.pop("budget")
    return Result(data=data, facts=facts)
