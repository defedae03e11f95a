"""``quality: "auto"`` and ``format: "best"``: searches over ``encode_variant`` + ``measure``.

- quality "auto" with ``target`` (``metric`` ≥ min, metric ``ssim`` or ``ssimulacra2``; higher
  is better for both): the lowest quality meeting the target (binary search over 1–100, assuming
  the score grows with quality), then ``max_bytes`` is checked;
- quality "auto" with only ``max_bytes``: the highest quality whose output fits;
- format "best": every candidate (the recipe's ``candidates``, else JPEG/WebP/AVIF, PNG/WebP/AVIF
  when the image has alpha, GIF/WebP for kept animations; a candidate is a format or a JPEG
  encoder such as ``jpeg:mozjpeg``, and ``jpeg`` means the recipe's ``jpeg.encoder``) goes
  through the above (or is encoded at the fixed quality); with a target (or a fixed quality)
  the smallest output that meets the constraints wins, with only ``max_bytes`` the
  highest-SSIM output under the size wins.
- chroma: when no candidate reaches a score target with 4:2:0 chroma, the candidates that can
  encode 4:4:4 (JPEG through turbo or mozjpeg, AVIF) are searched again at 4:4:4 before
  ``TargetUnreachable`` (SSIMULACRA2, unlike luma SSIM, sees what 4:2:0 loses). With
  ``jpeg.subsampling: auto`` a JPEG candidate (turbo, mozjpeg), with ``avif.subsampling: auto``
  an AVIF one, is searched at 4:2:0 *and* at 4:4:4 and the answer with fewer bytes is kept (the
  4:4:4 pass looks only below the 4:2:0 answer's quality and stops as soon as a probe that
  misses the target is already as large as the 4:2:0 answer).
- quant table: with ``jpeg.quant_table: auto`` a mozjpeg candidate is searched once per table
  of ``QUANT_TABLE_CANDIDATES`` (each with both chroma layouts under ``subsampling: auto``) and
  the answer with the fewest bytes is kept: the same *variant* loop as the chroma, every pass
  after the first pruned by the answer found so far. Under a time budget a pass after the first
  is optional: it starts only when a whole bisection of it fits (``budget.probes_short_of``),
  and a probe that no longer fits ends the search with the answer found (``variants_stopped``
  in the facts) rather than dropping the candidate.
- fractional quality: JPEG XL's answer is refined between the integer answer ``q`` and ``q − 1``
  to 0.1 (libjxl's quality is a continuous distance; ≤ 4 more probes).

Every probe is measured against one :class:`imagepipe.core.metrics.Reference` of the prepared
image (its reference side is computed once per search, not once per probe).

The search facts record the whole trace (every format/quality tried with its bytes, SSIM and,
for an SSIMULACRA2 target, its SSIMULACRA2)
and each candidate format's outcome, so a caller can see why a format won.
Lossless encodes (PNG, GIF, lossless WebP) are encoded once. Nothing meets the goal →
``TargetUnreachable`` listing what was tried.
"""

from __future__ import annotations

from typing import Any

from imagepipe.core.budget import METRICS_MS_PER_MP, Budget, encode_within, probes_short_of
from imagepipe.core.encode import ANIMATABLE, MAX_SIDE, split_encoder
from imagepipe.core.metrics import DEFAULT_METRICS
from imagepipe.core.prepare import Prepared, encode_variant, measure, reference
from imagepipe.core.transform import has_alpha
from imagepipe.errors import (
    InvalidRecipe,
    OutputTooLarge,
    OverBudget,
    OverMemoryBudget,
    OverTimeBudget,
    TargetUnreachable,
)

LOSSY = ("jpeg", "webp", "avif", "jxl")
#: the tables ``jpeg.quant_table: auto`` searches (mozjpeg): 2 (MS-SSIM tuned; the best single
#: table on the corpus, searched first: its answer prunes the later pass and is what a tight
#: budget keeps) and 3 (mozjpeg's default), so that when both passes run the answer is never
#: larger than the default table's. {2, 5} measured 0.0003 better on the median, but 5 was
#: picked on the same photos it was scored on and can lose to the default: docs/benchmarks-lab.md
#: "Quant table auto" (every table per photo, and each candidate set's bytes and search cost)
QUANT_TABLE_CANDIDATES: tuple[int, ...] = (2, 3)
#: the default ``best`` candidates (JPEG XL is opt-in through ``candidates``)
DEFAULT_CANDIDATES: tuple[str, ...] = ("jpeg", "webp", "avif")


def candidates(prepared: Prepared) -> list[str]:
    """What ``best`` chooses from for this image: the recipe's ``candidates`` (those that can hold
    a kept animation, when it is one) or the defaults, less those whose side limit is too short
    (when none fits, the first one, whose encode then explains the limit as an ``InvalidRecipe``)."""
    r = prepared.recipe
    if r.candidates is not None:
        names = list(r.candidates)
        if prepared.frames is not None:
            names = [n for n in names if n in ANIMATABLE]
            if not names:
                msg = f"none of the candidates {list(r.candidates)} can hold an animation (animation.keep)"
                raise InvalidRecipe(msg, details=[{"field": "candidates", "message": msg}])
    elif prepared.frames is not None:
        names = ["gif", "webp"]
    elif has_alpha(prepared.image):
        names = ["png", "webp", "avif"]
    else:
        names = list(DEFAULT_CANDIDATES)
    side = max(prepared.image.size)
    return [n for n in names if side <= MAX_SIDE[n.partition(":")[0]]] or names[:1]


def resolve(prepared: Prepared, name: str) -> tuple[str, dict[str, Any] | None, str]:
    """A candidate name -> (format, ``encode_variant`` options, encoder name)."""
    if name == "jpeg":
        name = f"jpeg:{prepared.recipe.jpeg.encoder}"
    fmt, options = split_encoder(name)
    return fmt, options, name


def _is_lossless(prepared: Prepared, fmt: str) -> bool:
    r = prepared.recipe
    return fmt not in LOSSY or (fmt == "webp" and r.webp.lossless) or (fmt == "jxl" and r.jxl.lossless)


def _can_444(prepared: Prepared, name: str) -> bool:
    """Whether a second search at 4:4:4 chroma can differ from the 4:2:0 one for this candidate."""
    fmt, _options, enc = resolve(prepared, name)
    r = prepared.recipe
    if fmt == "jpeg":  # (``auto`` searched 4:4:4 already)
        return (enc != "jpeg:jpegli" and r.jpeg.subsampling not in ("4:4:4", "auto")
                and prepared.image.mode != "L")
    return fmt == "avif" and r.avif.subsampling not in ("4:4:4", "auto") and prepared.image.mode != "L"


class _Search:
    """What one ``choose`` call shares between its probes: the goal and the metrics reference."""

    def __init__(self, prepared: Prepared, budget: Budget | None = None) -> None:
        r = prepared.recipe
        self.prepared = prepared
        self.budget = budget
        self.adapted: dict[str, dict[str, Any]] = {}
        self.metric = r.target.metric if r.target is not None else "ssim"
        self.min_score = r.target.min if r.target is not None else None
        self.max_bytes = r.max_bytes
        self.names = DEFAULT_METRICS + (() if self.metric in DEFAULT_METRICS else (self.metric,))

        self.ref = reference(prepared)
        self.tried: list[dict[str, Any]] = []
        self.chroma: str | None = None  # "4:4:4" during the second pass
        #: candidate -> the variant its answer was written with when the search chose it
        #: (``{"subsampling": ..., "quant_table": ...}``: ``jpeg.subsampling`` / ``quant_table: auto``)
        self.variant_of: dict[str, dict[str, Any]] = {}
        #: candidate -> why its fractional refinement stopped (the budget)
        self.unrefined: dict[str, str] = {}
        #: candidate -> why its optional variant passes stopped (the budget)
        self.variants_stopped: dict[str, str] = {}
        mp = prepared.image.width * prepared.image.height / 1e6
        #: measuring one probe, for the budget: SSIM + PSNR, and SSIMULACRA2 (≈ 0.2 s/MP) when asked
        self.probe_extra_ms = mp * (METRICS_MS_PER_MP + (200.0 if self.metric == "ssimulacra2" else 0.0))

    def _encode(self, fmt: str, q: int | float, options: dict[str, Any] | None,
                name: str) -> tuple[bytes, dict[str, Any]]:
        """One probe's encode; under a budget, planned (``OverBudget`` when it cannot fit)."""
        if self.budget is None:
            return encode_variant(self.prepared, fmt, q, options)
        data, facts, plan = encode_within(self.prepared, self.budget, fmt, q, options,
                                          extra_ms=self.probe_extra_ms)
        if plan.adapted is not None:
            self.adapted[name] = plan.adapted
        return data, facts

    def options(self, name: str, variant: dict[str, Any]) -> dict[str, Any] | None:
        """``encode_variant`` options of candidate ``name`` with ``variant`` over its format section."""
        fmt, options, _enc = resolve(self.prepared, name)
        if not variant:
            return options
        return {**(options or {}), fmt: {**(options or {}).get(fmt, {}), **variant}}

    def attempt(self, name: str, q: int | float, variant: dict[str, Any] | None = None) -> Any:
        """Encode and measure (every trace entry carries its score); None above the output cap.
        ``variant`` overrides the candidate's format section (``subsampling``, ``quant_table``);
        the pass's ``self.chroma`` applies when it names no subsampling."""
        fmt, _options, enc = resolve(self.prepared, name)
        variant = dict(variant or {})
        if self.chroma is not None:
            variant.setdefault("subsampling", self.chroma)
        chroma, table = variant.get("subsampling"), variant.get("quant_table")
        options = self.options(name, variant)
        try:
            data, facts = self._encode(fmt, q, options, name)
            res: Any = (data, facts, measure(self.prepared, data, self.ref, self.names))
        except OutputTooLarge:
            res = None
        entry: dict[str, Any] = {"format": fmt, "quality": q, "bytes": len(res[0]) if res else None,
                                 "ssim": res[2].get("ssim") if res else None}
        if enc != fmt:
            entry["encoder"] = enc
        if chroma is not None:
            entry["subsampling"] = chroma
        if table is not None:
            entry["quant_table"] = table
        if self.metric != "ssim":
            entry[self.metric] = res[2].get(self.metric) if res else None
        self.tried.append(entry)
        return res

    def meets(self, res: Any, with_target: bool = True) -> bool:
        if res is None:
            return False
        data, _facts, m = res
        if self.max_bytes is not None and len(data) > self.max_bytes:
            return False
        if not with_target or self.min_score is None:
            return True
        score = (m or {}).get(self.metric)
        return score is not None and score >= self.min_score


def _auto_table(prepared: Prepared, name: str) -> bool:
    """Whether the search picks mozjpeg's quant table itself (``jpeg.quant_table: auto``)."""
    fmt, _options, enc = resolve(prepared, name)
    return fmt == "jpeg" and enc == "jpeg:mozjpeg" and prepared.recipe.jpeg.quant_table == "auto"


def variants(s: _Search, name: str) -> list[dict[str, Any]]:
    """The passes one candidate's target search makes (``[{}]``: one pass, the recipe as it is):
    both chroma layouts when the search picks the chroma (not during the 4:4:4 retry, which
    imposes it), each quant table of ``QUANT_TABLE_CANDIDATES`` when it picks the table."""
    chromas: tuple[str | None, ...] = ("4:2:0", "4:4:4") \
        if s.chroma is None and _auto_chroma(s.prepared, name) else (None,)
    tables: tuple[int | None, ...] = QUANT_TABLE_CANDIDATES if _auto_table(s.prepared, name) else (None,)
    return [{k: v for k, v in (("subsampling", c), ("quant_table", t)) if v is not None}
            for t in tables for c in chromas]


def _auto_chroma(prepared: Prepared, name: str) -> bool:
    """Whether the search picks the chroma itself (``jpeg.subsampling: auto`` for turbo/mozjpeg,
    ``avif.subsampling: auto``)."""
    fmt, _options, enc = resolve(prepared, name)
    if prepared.image.mode == "L":
        return False
    if fmt == "jpeg":
        return prepared.recipe.jpeg.subsampling == "auto" and enc != "jpeg:jpegli"
    return fmt == "avif" and prepared.recipe.avif.subsampling == "auto"


def _lowest(s: _Search, name: str, variant: dict[str, Any] | None = None, stop_at: int | None = None,
            hi: int = 100) -> Any:
    """The lowest integer quality ≤ ``hi`` whose score reaches the target (bisection from 1).

    ``stop_at``: the bytes of an answer found already; a probe below the target that is at
    least this large ends the search (every higher quality is larger still: it cannot win)."""
    lo = 1
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        res = s.attempt(name, mid, variant)
        score = res[2].get(s.metric) if res is not None else None
        if score is not None and score >= s.min_score:
            best, hi = res, mid - 1
        else:
            if stop_at is not None and res is not None and len(res[0]) >= stop_at:
                return best
            lo = mid + 1
    return best


#: formats whose encoder takes a fractional quality: auto quality refines their answer to 0.1
FRACTIONAL = ("jxl",)


def _refine(s: _Search, name: str, best: Any) -> Any:
    """Between the integer answer ``q`` (reaches the target) and ``q − 1`` (does not), bisect in
    0.1 steps for the lowest quality that still reaches it (≤ 4 more probes) and keep the
    smallest output among the probes that reach it (libjxl's bytes are not strictly monotone in
    quality at this scale: a lower quality was seen 1% larger on a small image). libjxl's
    quality is a continuous distance, and a whole step overshoots the target by ≈ 0.4
    SSIMULACRA2 points on the median photo (docs/lab.md "Encoder targets")."""
    q = best[1]["quality"]
    if q <= 1:
        return best
    lo, hi = 1, 9  # tenths above q - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        try:
            res = s.attempt(name, round(q - 1 + mid / 10, 1))
        except OverBudget as exc:  # the integer answer stands; the facts say why it is not finer
            s.unrefined[name] = exc.message
            return best
        score = res[2].get(s.metric) if res is not None else None
        if score is not None and score >= s.min_score:
            hi = mid - 1
            if len(res[0]) <= len(best[0]):
                best = res
        else:
            lo = mid + 1
    return best


def _over_variants(s: _Search, name: str, fmt: str) -> Any:
    """The lowest-quality answer of each pass of :func:`variants`; the fewest bytes win
    (SSIMULACRA2 punishes 4:2:0's chroma blur, so a 4:4:4 answer at a lower quality is often the
    smaller one; which quant table is smallest depends on the photo). Every pass after the
    first stops as soon as a probe that misses the target is already as large as the answer
    found, and a 4:4:4 pass looks only below its table's 4:2:0 answer (larger at or above it)."""
    passes = variants(s, name)
    best = None
    q420: dict[Any, int] = {}  # quant table -> its 4:2:0 answer's quality
    for i, v in enumerate(passes):
        hi = 100
        if v.get("subsampling") == "4:4:4" and v.get("quant_table") in q420:
            hi = q420[v.get("quant_table")] - 1
        if i and best is not None:  # optional from here: only when a whole pass fits the budget
            short = probes_short_of(s.prepared, s.budget, fmt, s.options(name, v), extra_ms=s.probe_extra_ms)
            if short is not None:
                s.variants_stopped[name] = short
                break
        try:
            res = _lowest(s, name, v, stop_at=None if best is None else len(best[0]), hi=hi)
        except OverBudget as exc:  # a later pass ran out of time: the answer found stands
            if best is None:
                raise
            s.variants_stopped[name] = exc.message
            break
        if res is not None and v.get("subsampling") == "4:2:0":
            q420[v.get("quant_table")] = int(res[1]["quality"])
        if res is not None and (best is None or len(res[0]) < len(best[0])):
            best = res
            if v:
                s.variant_of[name] = v
    return best


def _search(s: _Search, name: str) -> Any:
    prepared, r = s.prepared, s.prepared.recipe
    fmt = resolve(prepared, name)[0]
    if r.quality != "auto":
        res = s.attempt(name, int(r.quality))
        return res if s.meets(res) else None
    if _is_lossless(prepared, fmt):
        res = s.attempt(name, 100)
        return res if s.meets(res) else None
    lo, hi = 1, 100
    best = None
    if s.min_score is not None:  # lowest quality whose score reaches the target
        best = _over_variants(s, name, fmt)
        if best is not None and fmt in FRACTIONAL and best[1]["quality"] == int(best[1]["quality"]):
            best = _refine(s, name, best)
        return best if s.meets(best) else None
    while lo <= hi:  # only max_bytes: highest quality that fits
        mid = (lo + hi) // 2
        res = s.attempt(name, mid)
        if s.meets(res, with_target=False):
            best, lo = res, mid + 1
        else:
            hi = mid - 1
    return best


def _chosen_variant(s: _Search, name: str) -> dict[str, Any]:
    """The subsampling and quant table a candidate's answer was written with, where the search
    chose them (or the 4:4:4 retry imposed the chroma)."""
    out = dict(s.variant_of.get(name, {}))
    if s.chroma is not None:
        out["subsampling"] = s.chroma
    return {k: out[k] for k in ("subsampling", "quant_table") if k in out}


def choose(prepared: Prepared, budget: Budget | None = None) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """Pick format and/or quality. Returns (bytes, output facts, search facts).

    Under a ``budget`` every probe is planned (core/budget.py): a candidate format whose next
    probe cannot fit in the time left is skipped, with the reason in ``per_format``; when every
    candidate is skipped, ``OverBudget``."""
    r = prepared.recipe
    if r.target is not None and r.target.metric == "ssimulacra2" and min(prepared.image.size) < 8:
        raise InvalidRecipe(
            f"target metric ssimulacra2 needs an output of at least 8x8 pixels, not "
            f"{prepared.image.width}x{prepared.image.height}",
            details=[{"field": "target.metric", "message": "ssimulacra2 is undefined below 8x8 pixels"}])
    s = _Search(prepared, budget)
    fmts = candidates(prepared) if prepared.format == "best" else [prepared.format]
    skipped: dict[str, OverBudget] = {}

    def search_all(names: list[str]) -> list[list[Any]]:
        found = []
        for name in names:
            try:
                res = _search(s, name)
            except OverBudget as exc:  # only under a budget: this candidate cannot fit the invocation
                skipped[name] = exc
                continue
            if res is not None:
                found.append([*res, name])
        return found

    winners = search_all(fmts)
    second = [n for n in fmts if _can_444(prepared, n) and n not in skipped] \
        if r.target is not None and not winners else []
    if second:  # 4:2:0 chroma cannot reach the score: try 4:4:4 where the encoder has it
        s.chroma = "4:4:4"
        winners = search_all(second)
    if not winners:
        if skipped and len(skipped) == len(fmts):
            if len(skipped) == 1:
                raise next(iter(skipped.values()))
            reasons = "; ".join(f"{f}: {e.message}" for f, e in skipped.items())
            cls = OverTimeBudget if any(isinstance(e, OverTimeBudget) for e in skipped.values()) \
                else OverMemoryBudget
            raise cls(f"no candidate format fits this invocation: {reasons}",
                      details={"skipped": {f: e.details for f, e in skipped.items()}})
        goal = {"target": r.target.model_dump() if r.target else None, "max_bytes": r.max_bytes}
        also = f" (4:4:4 chroma tried too for {'/'.join(second)})" if second else ""
        details: dict[str, Any] = {"goal": goal, "tried": s.tried}
        if skipped:
            details["skipped"] = {f: e.message for f, e in skipped.items()}
        raise TargetUnreachable(f"no {'/'.join(fmts)} encoding meets {goal}{also}", details=details)
    if r.quality == "auto" and r.target is None and len(winners) > 1:
        # only a size cap: the best-looking output under it wins (ties: the smaller)
        data, facts, metrics, chosen_name = max(winners, key=lambda w: (w[2]["ssim"], -len(w[0])))
    else:
        data, facts, metrics, chosen_name = min(winners, key=lambda w: len(w[0]))
    per_format: dict[str, dict[str, Any]] = {}
    for w in winners:
        row = {"quality": w[1]["quality"], "bytes": len(w[0]), "ssim": (w[2] or {}).get("ssim")}
        if s.metric != "ssim":
            row[s.metric] = (w[2] or {}).get(s.metric)
        row.update(_chosen_variant(s, w[3]))
        if w[3] in s.unrefined:
            row["refine_stopped"] = s.unrefined[w[3]]
        if w[3] in s.variants_stopped:
            row["variants_stopped"] = s.variants_stopped[w[3]]
        per_format[w[3]] = row
    for fmt in fmts:
        empty: dict[str, Any] = {"quality": None, "bytes": None, "ssim": None, "unreachable": True}
        if fmt in skipped:
            empty = {"quality": None, "bytes": None, "ssim": None, "skipped": skipped[fmt].message}
        if s.metric != "ssim":
            empty[s.metric] = None
        per_format.setdefault(fmt, empty)
    for name, adapted in s.adapted.items():  # keyed by candidate name, like per_format
        if name in per_format:
            per_format[name]["adapted"] = adapted
    chosen = {"format": facts["format"], "quality": facts["quality"], "encoder": facts["encoder"]}
    chosen.update(_chosen_variant(s, chosen_name))
    search: dict[str, Any] = {"candidates": fmts, "encodes": len(s.tried), "chosen": chosen,
                              "per_format": per_format, "trace": s.tried}
    if second:
        search["chroma_444_tried"] = second
    if s.min_score is not None:
        search["metric"] = s.metric
    if metrics is not None:
        search["metrics"] = metrics
    if budget is not None:
        chosen_adapted = s.adapted.get(chosen_name)
        search["budget"] = {"left_ms": round(budget.left_ms(), 1), "skipped": sorted(skipped),
                            **({"adapted": chosen_adapted} if chosen_adapted else {})}
    return data, facts, search
