"""``quality: "auto"`` and ``format: "best"``: searches over ``encode_variant`` + ``measure``.

- quality "auto" with ``target`` (SSIM ≥ min): the lowest quality meeting the target (binary
  search over 1–100, assuming SSIM grows with quality), then ``max_bytes`` is checked;
- quality "auto" with only ``max_bytes``: the highest quality whose output fits;
- format "best": every candidate format (JPEG/WebP/AVIF, or PNG/WebP/AVIF when the image has
  alpha, GIF/WebP for kept animations) goes through the above (or is encoded at the fixed
  quality); with an SSIM target (or a fixed quality) the smallest output that meets the
  constraints wins, with only ``max_bytes`` the highest-SSIM output under the size wins.

The search facts record the whole trace (every format/quality tried with its bytes and SSIM)
and each candidate format's outcome, so a caller can see why a format won.
Lossless encodes (PNG, GIF, lossless WebP) are encoded once. Nothing meets the goal →
``TargetUnreachable`` listing what was tried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imagepipe.core.encode import MAX_SIDE
from imagepipe.core.transform import has_alpha
from imagepipe.errors import InvalidRecipe, OutputTooLarge, TargetUnreachable

if TYPE_CHECKING:
    from imagepipe.core.engine import Prepared

LOSSY = ("jpeg", "webp", "avif")


def candidates(prepared: Prepared) -> list[str]:
    """Formats ``best`` chooses from for this image: those whose side limit holds it (when none
    does, the first one, whose encode then explains the limit as an ``InvalidRecipe``)."""
    if prepared.frames is not None:
        fmts = ["gif", "webp"]
    elif has_alpha(prepared.image):
        fmts = ["png", "webp", "avif"]
    else:
        fmts = ["jpeg", "webp", "avif"]
    side = max(prepared.image.size)
    return [f for f in fmts if side <= MAX_SIDE[f]] or fmts[:1]


def _is_lossless(prepared: Prepared, fmt: str) -> bool:
    return fmt not in LOSSY or (fmt == "webp" and prepared.recipe.webp.lossless)


def _try(prepared: Prepared, fmt: str, q: int) -> tuple[bytes, dict[str, Any], dict[str, float]] | None:
    """Encode and measure (every trace entry carries its score); None above the output cap."""
    from imagepipe.core.engine import encode_variant, measure

    try:
        data, facts = encode_variant(prepared, fmt, q)
    except OutputTooLarge:
        return None
    return data, facts, measure(prepared, data)


def _ok(res: Any, min_ssim: float | None, max_bytes: int | None) -> bool:
    if res is None:
        return False
    data, _facts, m = res
    if max_bytes is not None and len(data) > max_bytes:
        return False
    return not (min_ssim is not None and (m is None or m["ssim"] < min_ssim))


def _search(prepared: Prepared, fmt: str, tried: list[dict[str, Any]]) -> Any:
    r = prepared.recipe
    min_ssim = r.target.min if r.target is not None else None
    max_bytes = r.max_bytes

    def attempt(q: int) -> Any:
        res = _try(prepared, fmt, q)
        tried.append({"format": fmt, "quality": q, "bytes": len(res[0]) if res else None,
                      "ssim": (res[2] or {}).get("ssim") if res else None})
        return res

    if r.quality != "auto":
        res = attempt(int(r.quality))
        return res if _ok(res, min_ssim, max_bytes) else None
    if _is_lossless(prepared, fmt):
        res = attempt(100)
        return res if _ok(res, min_ssim, max_bytes) else None
    lo, hi = 1, 100
    best = None
    if min_ssim is not None:  # lowest quality whose SSIM reaches the target
        while lo <= hi:
            mid = (lo + hi) // 2
            res = attempt(mid)
            if res is not None and res[2]["ssim"] >= min_ssim:
                best, hi = res, mid - 1
            else:
                lo = mid + 1
        return best if _ok(best, min_ssim, max_bytes) else None
    while lo <= hi:  # only max_bytes: highest quality that fits
        mid = (lo + hi) // 2
        res = attempt(mid)
        if _ok(res, None, max_bytes):
            best, lo = res, mid + 1
        else:
            hi = mid - 1
    return best


def choose(prepared: Prepared) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """Pick format and/or quality. Returns (bytes, output facts, search facts)."""
    r = prepared.recipe
    if r.target is not None and r.target.metric != "ssim":
        raise InvalidRecipe(f"target metric {r.target.metric} is not available in this engine (use ssim)",
                            details=[{"field": "target.metric", "message": "only ssim is implemented"}])
    fmts = candidates(prepared) if prepared.format == "best" else [prepared.format]
    tried: list[dict[str, Any]] = []
    winners = [list(res) for fmt in fmts if (res := _search(prepared, fmt, tried)) is not None]
    if not winners:
        goal = {"target": r.target.model_dump() if r.target else None, "max_bytes": r.max_bytes}
        raise TargetUnreachable(f"no {'/'.join(fmts)} encoding meets {goal}",
                                details={"goal": goal, "tried": tried})
    if r.quality == "auto" and r.target is None and len(winners) > 1:
        # only a size cap: the best-looking output under it wins (ties: the smaller)
        data, facts, metrics = max(winners, key=lambda w: (w[2]["ssim"], -len(w[0])))
    else:
        data, facts, metrics = min(winners, key=lambda w: len(w[0]))
    per_format = {w[1]["format"]: {"quality": w[1]["quality"], "bytes": len(w[0]),
                                   "ssim": (w[2] or {}).get("ssim")} for w in winners}
    for fmt in fmts:
        per_format.setdefault(fmt, {"quality": None, "bytes": None, "ssim": None, "unreachable": True})
    search: dict[str, Any] = {"candidates": fmts, "encodes": len(tried), "chosen": {
        "format": facts["format"], "quality": facts["quality"]}, "per_format": per_format, "trace": tried}
    if metrics is not None:
        search["metrics"] = metrics
    return data, facts, search
