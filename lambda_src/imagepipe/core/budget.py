"""Time budgets for encodes: estimate, adapt, refuse, and stop at the deadline (no boto3).

An invocation has a fixed time (the Lambda timeout). Before an encode starts, its time is
estimated from the output's pixels, the encoder and its effort setting (``ENCODE_COSTS``,
fitted by ``python -m pipeline.bench --encode-costs``, see docs/engine.md "Time budget") and
compared with the time the invocation has left (``Budget.left_ms``):

- it fits: encode as asked;
- it does not fit: **adapt** to the nearest faster setting of the same encoder that fits
  (``avif.speed`` up, ``webp.method`` / ``png.compress_level`` down); the adaptation is
  recorded in the job's facts (``facts["budget"]["adapted"]``);
- nothing fits: refuse at once with ``OverTimeBudget``, naming the limit and what to change.

A long (or unknown-cost) encode runs in a forked child process (``run_stoppable``): libaom
cannot be interrupted in its thread, a child process can be killed. At the deadline the child
is killed and ``JobTimeout`` (``timeout``) is raised; short encodes run in-thread (no fork cost).
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import select
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imagepipe.errors import (
    ImagePipeError,
    InternalError,
    JobTimeout,
    OverMemoryBudget,
    OverTimeBudget,
    from_code,
)

# --- the cost table ---------------------------------------------------------------------------

#: encoder -> effort setting -> (fixed ms, ms per megapixel) of one still encode.
#: Fitted by ``python -m pipeline.bench --encode-costs --write`` (least squares over the corpus
#: photos at ~1 and ~4 MP, the slowest image per setting kept); the figures are from the machine
#: that ran it: ``IMAGEPIPE_ENCODE_COST_SCALE`` scales them for a slower CPU (a 1024 MB Lambda
#: has ≈ 0.6 vCPU). Settings: avif ``speed`` (0–10, higher = faster), webp ``method`` (0–6, lower
#: = faster), png ``compress_level`` (0–9, lower = faster), jxl ``effort`` (1–9, lower = faster;
#: lossless JPEG XL has no row: it runs where the deadline can stop it), jpeg (turbo, mozjpeg,
#: jpegli) 0 = baseline, 1 = optimized or progressive (jpegli writes baseline either way); gif has one.
# BEGIN ENCODE_COSTS (generated)
ENCODE_COSTS: dict[str, dict[int, tuple[float, float]]] = {
    "avif": {
        5: (229.6, 4540.3), 6: (87.5, 694.3), 7: (2.6, 454.3), 8: (14.1, 288.7),
        9: (3.4, 72.7), 10: (3.1, 72.2),
    },
    "webp": {
        0: (0.3, 26.5), 1: (0.1, 32.9), 2: (0.0, 42.5), 3: (0.3, 86.7),
        4: (1.4, 86.3), 5: (1.6, 103.3), 6: (4.8, 268.7),
    },
    "webp:lossless": {
        0: (0.0, 684.8), 2: (0.0, 1122.8), 4: (0.0, 871.2), 6: (70.8, 565.5),
    },
    "jpeg:turbo": {
        0: (0.2, 2.3), 1: (0.0, 16.3),
    },
    "png": {
        1: (7.4, 63.9), 3: (4.2, 95.3), 6: (21.2, 285.8), 9: (0.0, 881.4),
    },
    "gif": {
        0: (0.2, 15.0),
    },
    "jpeg:mozjpeg": {
        0: (0.0, 71.1), 1: (5.6, 89.0),
    },
    "jpeg:jpegli": {
        0: (0.0, 4.2), 1: (0.0, 4.4),
    },
    "jxl": {
        1: (0.9, 35.1), 3: (0.0, 38.9), 5: (0.0, 170.5), 7: (0.0, 313.0),
        8: (0.0, 1359.3), 9: (0.0, 2083.9),
    },
}
# END ENCODE_COSTS
#: memory row -> peak memory of one encode beyond the image handed to it: a fixed part (MiB)
#: plus bytes per output pixel, the line that lies above every measurement
#: (``pipeline.bench.encode_costs``: the growth of the peak RSS over one encode, the peak reset
#: just before it, at 3 and 12 MP on two photos). libavif/libaom ≈ 22–25 B/px, libwebp lossy
#: 2–7, lossless ≈ 23–26; libjpeg-turbo and zlib ≈ 1–3; JPEG XL at effort ≤ 7 ≈ 110 MiB +
#: 18 B/px, but at effort 8 and 9 ≈ 275 B/px (12 MP: 3.2 GB). A 48 MP AVIF needs ≈ 1.35 GB:
#: more than a 1024 MB processor has, whatever the speed. See :func:`memory_row`.
# BEGIN ENCODE_MEMORY_BPP (generated)
ENCODE_MEMORY_BPP: dict[str, float] = {
    "avif": 25.4, "webp": 7.5, "webp:lossless": 25.8, "jpeg:turbo": 3.6, "png": 1.8,
    "gif": 13.4, "jpeg:mozjpeg": 10.8, "jpeg:jpegli": 5.7, "jxl": 17.9, "jxl:e8": 274.7,
    "jxl:lossless": 18.7, "jxl:lossless:e8": 18.0,
}
ENCODE_MEMORY_FIXED_MB: dict[str, float] = {
    "webp:lossless": 1.4, "jxl": 111.8, "jxl:e8": 16.6, "jxl:lossless": 78.0, "jxl:lossless:e8": 89.4,
}
# END ENCODE_MEMORY_BPP
#: memory kept free beside the encode (the output buffer, the interpreter's own growth)
MEMORY_MARGIN_MB = 64.0
#: the memory estimate × this must fit: the table is the line above two detailed photos at 3
#: and 12 MP; other content and sizes move it a little (AVIF at 48 MP on forest-path: 24.1 B/px
#: measured, 25.4 in the table)
MEMORY_SAFETY = 1.1
#: the estimate is multiplied by this before it is compared with the time left: photos differ
#: in how hard they are to encode (the same 48 MP took 9 s smooth and 14 s detailed, AVIF speed 6)
SAFETY = 1.5
#: encodes estimated above this run in a child process that can be killed at the deadline
STOPPABLE_FROM_MS = 1000.0
#: encoders that must run in-thread: they call libvips, whose worker threads do not survive a
#: fork (measured: a forked mozjpeg encode never returns). They are fast, so they are not stopped.
IN_THREAD_ONLY: frozenset[str] = frozenset({"jpeg:mozjpeg"})
#: metrics after the encode (SSIM + PSNR + decoding the output), per output megapixel
METRICS_MS_PER_MP = 60.0

#: encoder -> (recipe section, field, direction of faster settings, every valid setting)
EFFORT: dict[str, tuple[str, str, int, tuple[int, ...]]] = {
    "avif": ("avif", "speed", +1, tuple(range(11))),
    "webp": ("webp", "method", -1, tuple(range(7))),
    "webp:lossless": ("webp", "method", -1, tuple(range(7))),
    "png": ("png", "compress_level", -1, tuple(range(10))),
    "jxl": ("jxl", "effort", -1, tuple(range(1, 10))),
}


def cost_scale() -> float:
    """``IMAGEPIPE_ENCODE_COST_SCALE`` (default 1.0): how much slower than the calibration machine."""
    raw = os.environ.get("IMAGEPIPE_ENCODE_COST_SCALE", "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise InternalError(f"IMAGEPIPE_ENCODE_COST_SCALE must be a number, not {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InternalError(f"IMAGEPIPE_ENCODE_COST_SCALE must be positive, not {raw!r}")
    return value


def encoder_of(fmt: str, recipe: Any) -> tuple[str, int | None]:
    """The cost-table encoder name and effort setting the recipe asks of ``fmt``."""
    if fmt == "avif":
        return "avif", int(recipe.avif.speed)
    if fmt == "webp":
        return ("webp:lossless" if recipe.webp.lossless else "webp"), int(recipe.webp.method)
    if fmt == "png":
        return "png", int(recipe.png.compress_level)
    if fmt == "jpeg":
        name = getattr(recipe.jpeg, "encoder", None) or "turbo"
        return f"jpeg:{name}", int(bool(recipe.jpeg.progressive or recipe.jpeg.optimize))
    if fmt == "gif":
        return "gif", 0
    if fmt == "jxl":
        return ("jxl:lossless" if recipe.jxl.lossless else "jxl"), int(recipe.jxl.effort)
    return fmt, None


def _interpolate(table: dict[int, tuple[float, float]], setting: int) -> tuple[float, float] | None:
    """The row for ``setting``, or a linear blend of its two neighbours; None outside the table."""
    if setting in table:
        return table[setting]
    below = [s for s in table if s < setting]
    above = [s for s in table if s > setting]
    if not below or not above:
        return None
    lo, hi = max(below), min(above)
    f = (setting - lo) / (hi - lo)
    (a0, b0), (a1, b1) = table[lo], table[hi]
    return a0 + f * (a1 - a0), b0 + f * (b1 - b0)


def estimate_ms(encoder: str, setting: int | None, pixels: int, frames: int = 1,
                costs: dict[str, dict[int, tuple[float, float]]] | None = None) -> float | None:
    """Estimated encode time (ms) of ``pixels`` × ``frames``; None when the table cannot say."""
    table = (ENCODE_COSTS if costs is None else costs).get(encoder)
    if not table or setting is None:
        return None
    row = _interpolate(table, setting)
    if row is None:
        return None
    fixed, per_mp = row
    return (fixed + per_mp * pixels / 1e6) * max(1, frames) * cost_scale()


# --- the budget ------------------------------------------------------------------------------


@dataclass
class Budget:
    """The time one invocation has for the engine: a monotonic deadline, minus ``reserve_ms``
    kept for what follows the engine (storing the output, the final record write)."""

    deadline: float  # time.monotonic() seconds when the invocation ends
    total_ms: float  # the invocation's whole time when it started (the function timeout, about)
    reserve_ms: float = 0.0
    memory_mb: float | None = None  # the function's memory size (None: not checked)
    slowdown: float = 1.0  # CPU contention: estimates (CPU time) × this = expected wall time

    @classmethod
    def from_remaining(cls, remaining_ms: float, *, total_ms: float | None = None,
                       reserve_ms: float | None = None, memory_mb: float | None = None,
                       slowdown: float | None = None) -> Budget:
        """A budget ending ``remaining_ms`` from now. ``reserve_ms`` defaults to 10 % of it,
        at least 0.5 s and at most 5 s; ``slowdown`` to the machine's :func:`contention`."""
        if reserve_ms is None:
            reserve_ms = min(5000.0, max(500.0, 0.1 * remaining_ms))
        return cls(deadline=time.monotonic() + remaining_ms / 1000.0,
                   total_ms=float(total_ms if total_ms is not None else remaining_ms), reserve_ms=reserve_ms,
                   memory_mb=memory_mb, slowdown=contention() if slowdown is None else slowdown)

    def left_ms(self) -> float:
        """Milliseconds the engine may still use (never negative)."""
        return max(0.0, (self.deadline - time.monotonic()) * 1000.0 - self.reserve_ms)

    def free_mb(self) -> float | None:
        """Memory the next encode may use: the function's size minus this process's RSS now
        and a margin (None when the size is unknown)."""
        if self.memory_mb is None:
            return None
        return self.memory_mb - own_rss_mb() - MEMORY_MARGIN_MB


def contention() -> float:
    """How much slower than one free core the encode will run: ``IMAGEPIPE_CPU_SLOWDOWN`` when
    set to a number (≥ 1), else (``auto``, the default) the 1-minute load average per CPU, at
    least 1 (an idle machine, or a Lambda sandbox with its own vCPU share)."""
    raw = os.environ.get("IMAGEPIPE_CPU_SLOWDOWN", "auto").strip().lower()
    if raw not in ("", "auto"):
        try:
            value = float(raw)
        except ValueError:
            raise InternalError(f"IMAGEPIPE_CPU_SLOWDOWN must be auto or a number, not {raw!r}") from None
        if not math.isfinite(value) or value < 1:
            raise InternalError(f"IMAGEPIPE_CPU_SLOWDOWN must be at least 1, not {raw!r}")
        return value
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1.0
    return max(1.0, round(load / max(1, os.cpu_count() or 1), 2))


def own_rss_mb() -> float:
    """This process's resident set size (MiB) from /proc (0.0 where there is no /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


#: JPEG XL efforts from which libjxl's memory grows tenfold (their own rows, ``{encoder}:e8``)
JXL_HEAVY_EFFORT = 8


def memory_row(encoder: str, setting: int | None = None) -> str:
    """The memory table's row for an encoder at a setting (JPEG XL's effort changes its memory;
    no other encoder's setting was seen to)."""
    if encoder.startswith("jxl") and setting is not None and setting >= JXL_HEAVY_EFFORT:
        return f"{encoder}:e{JXL_HEAVY_EFFORT}"
    return encoder


def memory_mb(encoder: str, pixels: int, frames: int = 1, setting: int | None = None) -> float | None:
    """Estimated peak memory (MiB) of encoding ``pixels`` × ``frames``; None when unknown."""
    row = memory_row(encoder, setting)
    bpp = ENCODE_MEMORY_BPP.get(row)
    if bpp is None:
        return None
    return MEMORY_SAFETY * (ENCODE_MEMORY_FIXED_MB.get(row, 0.0) + bpp * pixels * max(1, frames) / 1048576.0)


def check_memory(fmt: str, encoder: str, width: int, height: int, frames: int, budget: Budget | None,
                 setting: int | None = None) -> None:
    """Raise ``OverMemoryBudget`` when the encode would not fit the memory the budget has free."""
    free = budget.free_mb() if budget is not None else None
    need = memory_mb(encoder, width * height, frames, setting)
    if free is None or need is None or need <= free:
        return
    assert budget is not None and budget.memory_mb is not None
    row = memory_row(encoder, setting)
    bpp = MEMORY_SAFETY * ENCODE_MEMORY_BPP[row] * max(1, frames)
    room = max(0.0, free - MEMORY_SAFETY * ENCODE_MEMORY_FIXED_MB.get(row, 0.0))
    max_px = room * 1048576.0 / bpp
    scale = math.sqrt(max_px / (width * height))
    fits = [f for f, enc in (("jpeg", "jpeg:turbo"), ("webp", "webp")) if f != fmt
            and (memory_mb(enc, width * height, frames) or 0.0) <= free]
    alt = f", choose {' or '.join(fits)}" if fits else ""
    lighter = JXL_HEAVY_EFFORT - 1 if row != encoder and (
        memory_mb(encoder, width * height, frames, JXL_HEAVY_EFFORT - 1) or 0.0) <= free else None
    effort = f"use jxl.effort {lighter} or lower, " if lighter is not None else ""
    msg = (f"{fmt} encoding of {width}x{height} ({width * height / 1e6:.1f} MP) needs ≈ {need:,.0f} MB of "
           f"memory; the processor has {budget.memory_mb:,.0f} MB, {max(0.0, free):,.0f} MB of it free: "
           f"{effort}resize to at most {int(width * scale)}x{int(height * scale)} (resize.width/height)"
           f"{alt}, or raise the processor memory")
    advice: dict[str, Any] = {"max_width": int(width * scale), "max_height": int(height * scale),
                              "formats_that_fit": fits}
    if lighter is not None:
        advice["max_effort"] = lighter
    raise OverMemoryBudget(msg, details={
        "limit_mb": budget.memory_mb, "free_mb": round(free, 1), "need_mb": round(need, 1),
        "encoder": encoder, "width": width, "height": height, "frames": frames, "advice": advice,
    })


@dataclass
class EncodePlan:
    """How one encode will run: the encoder and setting, its estimate, recipe overrides
    (``options`` for ``encode_variant``), the adaptation made (if any) and whether it runs
    where it can be stopped."""

    fmt: str
    encoder: str
    setting: int | None
    estimate_ms: float | None
    left_ms: float | None
    options: dict[str, Any] | None = None
    adapted: dict[str, Any] | None = None
    stoppable: bool = False
    slowdown: float = 1.0  # the budget's CPU contention, already in ``estimate_ms``

    def facts(self) -> dict[str, Any]:
        """JSON-safe facts for ``facts["budget"]``."""
        out: dict[str, Any] = {
            "encoder": self.encoder, "setting": self.setting,
            "estimate_ms": None if self.estimate_ms is None else round(self.estimate_ms, 1),
            "left_ms": None if self.left_ms is None else round(self.left_ms, 1),
            "stoppable": self.stoppable,
        }
        if self.slowdown != 1.0:
            out["slowdown"] = self.slowdown
        if self.adapted is not None:
            out["adapted"] = self.adapted
        return out


def _fits(est: float | None, extra_ms: float, left: float) -> bool:
    return est is not None and est * SAFETY + extra_ms <= left


def _fmt_s(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms < 10_000 else f"{ms / 1000:.0f} s"


def advice(fmt: str, encoder: str, width: int, height: int, frames: int, left_ms: float,
           costs: dict[str, dict[int, tuple[float, float]]] | None = None) -> dict[str, Any]:
    """What would fit in ``left_ms``: the encoder's fastest setting (and whether it fits at this
    size), the largest size that fits at that setting, and the other formats that fit."""
    out: dict[str, Any] = {"formats_that_fit": []}
    eff = EFFORT.get(encoder)
    table = (ENCODE_COSTS if costs is None else costs).get(encoder) or {}
    if eff is not None and table:
        fastest = max(table) if eff[2] > 0 else min(table)
        est = estimate_ms(encoder, fastest, width * height, frames, costs)
        out["fastest_setting"] = {"field": f"{eff[0]}.{eff[1]}", "value": fastest,
                                  "fits": _fits(est, 0.0, left_ms)}
        fixed, per_mp = table[fastest]
        per_mp *= cost_scale() * max(1, frames)
        budget_mp = (left_ms / SAFETY - fixed) / per_mp if per_mp > 0 else 0.0
        mp = width * height / 1e6
        if 0 < budget_mp < mp:
            scale = math.sqrt(budget_mp / mp)
            out["max_width"] = max(1, int(width * scale))
            out["max_height"] = max(1, int(height * scale))
    for other in ("jpeg", "webp"):
        if other == fmt:
            continue
        enc = "jpeg:turbo" if other == "jpeg" else "webp"
        est = estimate_ms(enc, 1 if other == "jpeg" else 4, width * height, frames, costs)
        if _fits(est, 0.0, left_ms):
            out["formats_that_fit"].append(other)
    return out


def _advice_text(adv: dict[str, Any]) -> str:
    parts = []
    fastest = adv.get("fastest_setting")
    if fastest and fastest["fits"]:
        parts.append(f"use {fastest['field']} {fastest['value']}")
    if "max_width" in adv:
        where = f" at {fastest['field']} {fastest['value']}" if fastest else ""
        parts.append(f"resize to at most {adv['max_width']}x{adv['max_height']} (resize.width/height){where}")
    if adv.get("formats_that_fit"):
        parts.append(f"choose {' or '.join(adv['formats_that_fit'])}")
    parts.append("raise the processor timeout")
    return ", ".join(parts[:-1]) + (", or " if len(parts) > 1 else "") + parts[-1]


def plan_encode(fmt: str, recipe: Any, width: int, height: int, frames: int = 1,
                budget: Budget | None = None, *, extra_ms: float = 0.0, adapt: bool = True,
                costs: dict[str, dict[int, tuple[float, float]]] | None = None) -> EncodePlan:
    """Plan one encode of ``width``×``height`` (× ``frames``) as ``fmt`` under ``budget``.

    ``extra_ms`` is work that must also fit after the encode (metrics). Without a budget the
    plan only carries the estimate. Raises ``OverMemoryBudget`` when the encode needs more memory
    than is free, ``OverTimeBudget`` when no setting fits the time (with ``adapt=False``: when
    the recipe's own setting does not fit)."""
    encoder, setting = encoder_of(fmt, recipe)
    pixels = width * height
    slow = budget.slowdown if budget is not None else 1.0

    def estimate(setting: int | None) -> float | None:
        e = estimate_ms(encoder, setting, pixels, frames, costs)
        return None if e is None else e * slow

    est = estimate(setting)
    if budget is None:
        return EncodePlan(fmt, encoder, setting, est, None)
    check_memory(fmt, encoder, width, height, frames, budget, setting)  # JPEG XL's effort changes it
    left = budget.left_ms()
    forkable = encoder not in IN_THREAD_ONLY
    if est is None:  # unknown cost: run it where the deadline can stop it
        return EncodePlan(fmt, encoder, setting, None, left, stoppable=forkable)
    if _fits(est, extra_ms, left):
        return EncodePlan(fmt, encoder, setting, est, left, stoppable=forkable and est >= STOPPABLE_FROM_MS)
    eff = EFFORT.get(encoder)
    tried: list[dict[str, Any]] = [{"setting": setting, "estimate_ms": round(est, 1)}]
    if adapt and eff is not None and setting is not None:
        section, name, direction, valid = eff
        faster = sorted((s for s in valid if (s - setting) * direction > 0), key=lambda s: abs(s - setting))
        for s in faster:
            e = estimate(s)
            if e is None:
                continue
            tried.append({"setting": s, "estimate_ms": round(e, 1)})
            if _fits(e, extra_ms, left):
                adapted = {
                    "field": f"{section}.{name}", "from": setting, "to": s,
                    "estimate_ms": {"asked": round(est, 1), "adapted": round(e, 1)},
                    "left_ms": round(left, 1),
                    "reason": f"{fmt} at {section}.{name} {setting} needs ≈ {_fmt_s(est * SAFETY)} "
                              f"(with margin) for {width}x{height}; {_fmt_s(left)} were left",
                }
                return EncodePlan(fmt, encoder, s, e, left, options={section: {name: s}}, adapted=adapted,
                                  stoppable=forkable and e >= STOPPABLE_FROM_MS)
    adv = advice(fmt, encoder, width, height, frames, left / slow, costs)
    best = min(t["estimate_ms"] for t in tried)
    setting_txt = "" if len(tried) == 1 else " even at its fastest setting"
    msg = (f"{fmt} encoding of {width}x{height} ({pixels / 1e6:.1f} MP) needs ≈ {_fmt_s(best * SAFETY)}"
           f"{setting_txt}; the invocation has {_fmt_s(left)} left of its {_fmt_s(budget.total_ms)} "
           f"processor timeout: {_advice_text(adv)}")
    raise OverTimeBudget(msg, details={
        "limit_ms": round(budget.total_ms), "left_ms": round(left, 1), "encoder": encoder,
        "width": width, "height": height, "frames": frames, "tried": tried, "advice": adv,
    })


# --- stoppable execution ---------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this (child) process when its parent dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child(fn: Callable[[], Any], w: int, parent: int) -> None:
    code = 0
    try:
        _die_with_parent(parent)
        try:
            payload = pickle.dumps(("ok", fn()), protocol=pickle.HIGHEST_PROTOCOL)
        except ImagePipeError as exc:
            payload = pickle.dumps(("err", (exc.code, exc.message, exc.details)))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, typed there
            payload = pickle.dumps(("crash", f"{type(exc).__name__}: {exc}"))
        view = memoryview(payload)
        while view:
            n = os.write(w, view)
            view = view[n:]
    except BaseException:  # noqa: BLE001 - never return into the parent's code in the child
        code = 1
    finally:
        os._exit(code)


def run_stoppable(fn: Callable[[], Any], limit_ms: float,
                  on_timeout: Callable[[float], ImagePipeError]) -> Any:
    """``fn()`` in a forked child, killed after ``limit_ms``: then ``on_timeout(elapsed_ms)``
    is raised. ``fn`` reads the parent's memory as it was at the fork (copy-on-write) and must
    return something picklable. Errors raised in the child are raised again here, typed."""
    r, w = os.pipe()
    parent = os.getpid()
    t0 = time.monotonic()
    with warnings.catch_warnings():  # "multi-threaded process, fork() may deadlock": the child only
        warnings.simplefilter("ignore", DeprecationWarning)  # runs the encoder and writes a pipe
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (coverage cannot see it)
        os.close(r)
        _child(fn, w, parent)
    os.close(w)
    chunks: list[bytes] = []
    killed = False
    try:
        deadline = t0 + limit_ms / 1000.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                chunk = os.read(r, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    elapsed_ms = (time.monotonic() - t0) * 1000.0
    if killed:
        raise on_timeout(elapsed_ms)
    if not chunks:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        raise InternalError(f"the encoder process died ({'signal ' + str(sig) if sig else 'no result'})")
    kind, value = pickle.loads(b"".join(chunks))  # noqa: S301 - our own forked child wrote it
    if kind == "ok":
        return value
    if kind == "err":
        code, message, details = value
        raise from_code(code, message, details)
    raise InternalError(f"the encoder failed unexpectedly: {value}")


def timeout_error(plan: EncodePlan, width: int, height: int, budget: Budget) -> Callable[[float], JobTimeout]:
    """The ``JobTimeout`` for a stopped encode, saying what to change."""

    def make(elapsed_ms: float) -> JobTimeout:
        adv = advice(plan.fmt, plan.encoder, width, height, 1, max(1.0, elapsed_ms / budget.slowdown))
        est = "unknown" if plan.estimate_ms is None else f"≈ {_fmt_s(plan.estimate_ms)}"
        msg = (f"the {plan.fmt} encode of {width}x{height} was stopped after {_fmt_s(elapsed_ms)} at the "
               f"invocation's deadline ({_fmt_s(budget.total_ms)} processor timeout; estimated {est}): "
               f"{_advice_text(adv)}")
        return JobTimeout(msg, details={"limit_ms": round(budget.total_ms),
                                        "elapsed_ms": round(elapsed_ms, 1), "encoder": plan.encoder,
                                        "setting": plan.setting, "advice": adv})

    return make


def run_planned(plan: EncodePlan, budget: Budget | None, fn: Callable[[], Any], width: int,
                height: int) -> Any:
    """Run ``fn`` (the encode of ``plan``): in-thread, or in a child stopped at the deadline."""
    if budget is None or not plan.stoppable:
        return fn()
    return run_stoppable(fn, budget.left_ms(), timeout_error(plan, width, height, budget))


# --- the engine's hook -----------------------------------------------------------------------

#: probes of one auto-quality bisection over qualities 1–100 (core/auto.py ``_lowest``)
BISECTION_PROBES = 7


def _plan_for(prepared: Any, fmt: str, options: dict[str, Any] | None, budget: Budget | None = None,
              **kw: Any) -> tuple[EncodePlan, int, int]:
    """:func:`plan_encode` for ``prepared``'s image and frames, its recipe with ``options`` over
    it; also returns the image's width and height."""
    from imagepipe.core.prepare import _deep_update
    from imagepipe.core.recipe import parse_recipe

    recipe = prepared.recipe
    if options:
        recipe = parse_recipe(_deep_update(recipe.model_dump(mode="json"), options))
    w, h = prepared.image.size
    frames = len(prepared.frames.images) if prepared.frames is not None else 1
    return plan_encode(fmt, recipe, w, h, frames, budget, **kw), w, h


def probes_short_of(prepared: Any, budget: Budget | None, fmt: str, options: dict[str, Any] | None,
                    probes: int = BISECTION_PROBES, *, extra_ms: float = 0.0) -> str | None:
    """Why ``probes`` encodes of ``fmt`` (with ``options``), each followed by ``extra_ms`` of
    measuring, do not fit in the time ``budget`` has left (estimates × slowdown × ``SAFETY``);
    None when they fit, without a budget, or when the encode's cost is unknown (each probe is
    still planned on its own). The auto-quality search asks this before an *optional* pass (a
    second chroma layout or quant table: ``jpeg.subsampling`` / ``jpeg.quant_table: auto``),
    so that it keeps the answer it has instead of starting a pass it cannot finish."""
    if budget is None:
        return None
    plan, w, h = _plan_for(prepared, fmt, options)
    if plan.estimate_ms is None:
        return None
    need = probes * (plan.estimate_ms * budget.slowdown * SAFETY + extra_ms)
    left = budget.left_ms()
    if need <= left:
        return None
    return (f"{probes} more {plan.encoder} probes of {w}x{h} need ≈ {_fmt_s(need)} (with margin and "
            f"measuring); {_fmt_s(left)} were left")


def encode_within(prepared: Any, budget: Budget | None, fmt: str | None = None, quality: int | None = None,
                  options: dict[str, Any] | None = None, *, extra_ms: float = 0.0,
                  adapt: bool = True) -> tuple[bytes, dict[str, Any], EncodePlan]:
    """``encode_variant`` under ``budget``: planned (adapted, or refused with ``OverTimeBudget``)
    and, when long, run where the deadline can stop it (``JobTimeout``).
    Returns ``(bytes, output facts, plan)``."""
    from imagepipe.core.encode import resolve_format
    from imagepipe.core.prepare import _deep_update, encode_variant

    fmt = resolve_format(fmt or prepared.format, prepared.input_facts["format"])
    plan, w, h = _plan_for(prepared, fmt, options, budget, extra_ms=extra_ms, adapt=adapt)
    if budget is not None:
        plan.slowdown = budget.slowdown
    opts = options
    if plan.options:
        opts = _deep_update(options or {}, plan.options)
    data, out = run_planned(plan, budget, lambda: encode_variant(prepared, fmt, quality, opts), w, h)
    return data, out, plan
