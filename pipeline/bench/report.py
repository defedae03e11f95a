"""Render the benchmark's measurements as docs/benchmarks.md (tables + targets + notes)."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import re
import statistics
from pathlib import Path
from typing import Any

NOTES = Path(__file__).with_name("notes.md")
MEMORY_TARGET = 1.2  # engine peak <= 1.2x pyvips on the big WebP / PNGs (issue 14)


def utc_now() -> str:
    """The report's timestamp format."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fmt(v: float, spec: str = ".2f") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine_info() -> list[tuple[str, str]]:
    """CPU, cores, memory, kernel and library versions, for the report header."""
    cpu = platform.processor() or "?"
    try:
        m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = m.group(1).strip() if m else cpu
        mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_s = f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?"
    except OSError:
        mem_s = "?"
    import numpy
    import PIL

    info = [("CPU", cpu), ("cores (os.cpu_count)", str(os.cpu_count())), ("memory", mem_s),
            ("kernel", platform.release()), ("Python", platform.python_version()),
            ("Pillow", PIL.__version__), ("numpy", numpy.__version__)]
    try:
        import pyvips

        info.append(("pyvips / libvips", f"{pyvips.__version__} / "
                     f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"))
    except Exception as exc:  # reported, the reference column will show errors
        info.append(("pyvips", f"unavailable: {exc}"))
    return info


def applicable(approaches: list[str], fmt: str) -> list[str]:
    """The approaches that run for output format ``fmt``."""
    from pipeline.bench.approaches import ONLY_FOR

    return [a for a in approaches if fmt in ONLY_FOR.get(a, {fmt})]


def _ok(results: list[Any], fmt: str, approaches: list[str]) -> dict[str, dict[str, Any]]:
    """image -> approach -> measurement, for images where every approach succeeded."""
    by: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.format == fmt:
            by.setdefault(r.image, {})[r.approach] = r
    return {img: d for img, d in by.items()
            if all(a in d and d[a].error is None for a in approaches)}


def _engine_minus_metrics(m: Any) -> float:
    """Engine wall time without its metrics stage (when the engine could not switch it off)."""
    if m.metrics_off or "metrics" not in m.stage_ms:
        return m.wall
    return max(0.0, m.wall - m.stage_ms["metrics"] / 1000)


def aggregate(images: list[Any], results: list[Any], fmt: str,
              approaches: list[str]) -> dict[str, dict[str, float]]:
    """Per approach: MP/s, ratio vs naive, CPU, peaks, bytes, SSIM, over the common images."""
    mp = {i.name: i.megapixels for i in images}
    approaches = applicable(approaches, fmt)
    ok = _ok(results, fmt, approaches)
    if not ok:
        return {}
    total_mp = sum(mp[img] for img in ok)
    agg: dict[str, dict[str, float]] = {}
    variants = list(approaches)
    engine_metrics_on = "engine" in approaches and any(
        not d["engine"].metrics_off and "metrics" in d["engine"].stage_ms for d in ok.values())
    if engine_metrics_on:
        variants.append("engine − metrics")
    for a in variants:
        if a == "engine − metrics":
            walls = {img: _engine_minus_metrics(d["engine"]) for img, d in ok.items()}
            src = "engine"
        else:
            walls = {img: d[a].wall for img, d in ok.items()}
            src = a
        ms = [d[src] for d in ok.values()]
        agg[a] = {
            "wall": sum(walls.values()),
            "mps": total_mp / sum(walls.values()),
            "cpu": sum(m.cpu for m in ms),
            "mp_per_cpu_s": total_mp / sum(m.cpu for m in ms),
            "peak_max": max(m.peak_mib for m in ms),
            "bytes": sum(m.out_bytes for m in ms),
            "ssim_mean": statistics.fmean(m.ssim for m in ms),
            "ssim_min": min(m.ssim for m in ms),
        }
        if "naive" in approaches:
            agg[a]["speedup_geo"] = math.exp(statistics.fmean(
                math.log(ok[img]["naive"].wall / walls[img]) for img in ok))
    if "naive" in agg:
        for a in agg:
            agg[a]["vs_naive"] = agg["naive"]["wall"] / agg[a]["wall"]
            agg[a]["bytes_vs_naive"] = agg[a]["bytes"] / agg["naive"]["bytes"]
    agg["_meta"] = {"images": len(ok), "mp": total_mp}
    return agg


def _target_images(images: list[Any]) -> list[Any]:
    return [i for i in images if (i.format == "WEBP" and (i.width, i.height) == (4096, 4096))
            or (i.format == "PNG" and (i.width, i.height) == (5120, 2880))]


def targets(images: list[Any], results: list[Any], formats: list[str],
            aggs: dict[str, dict[str, dict[str, float]]]) -> list[list[str]]:
    """Rows of the targets table: CPU vs pyvips (per-image work, no start-up), memory vs pyvips on
    the big images."""
    rows: list[list[str]] = []
    for fmt in formats:
        agg = aggs.get(fmt, {})
        if "vips" not in agg:
            continue
        for variant in ("engine_metrics", "engine", "engine_pillow_metrics"):
            if variant in agg:
                r = agg["vips"]["cpu"] / agg[variant]["cpu"]
                rows.append([f"CPU {fmt.upper()}: {variant} ≥ pyvips (Σ CPU over the corpus)",
                             f"{agg[variant]['cpu']:.2f} vs {agg['vips']['cpu']:.2f} s ({r:.2f}×)",
                             "met" if r >= 1 else "NOT met"])
    by = {(r.image, r.format, r.approach): r for r in results}
    for info in _target_images(images):
        for fmt in formats:
            for name in ("engine_metrics", "engine_pillow_metrics"):
                e, v = by.get((info.name, fmt, name)), by.get((info.name, fmt, "vips"))
                if not e or not v or e.error or v.error or v.peak_mib <= 0:
                    continue
                r = e.peak_mib / v.peak_mib
                rows.append([f"peak memory {info.name} → {fmt.upper()}: {name} ≤ {MEMORY_TARGET}× pyvips",
                             f"{e.peak_mib:.0f} vs {v.peak_mib:.0f} MiB ({r:.2f}×)",
                             "met" if r <= MEMORY_TARGET else "NOT met"])
    return rows


def render(*, images: list[Any], results: list[Any], idle: dict[str, float], formats: list[str],
           approaches: list[str], repeat: int, corpus: str, command: str,
           e2e: dict[str, Any] | None, measured_at: str | None = None, experiments: str = "",
           cli: dict[str, Any] | None = None) -> str:
    """The whole markdown document."""
    now = measured_at or utc_now()
    out: list[str] = ["# ImagePipe benchmarks", "",
                      f"Generated by `{command}` (`make bench`) on {now}. Corpus: {corpus} "
                      f"({len(images)} images, {sum(i.megapixels for i in images):.1f} MP), "
                      f"{repeat} timed repeats per measurement.", ""]
    if NOTES.exists():
        out += ["The summary, the findings for the engine and the libvips decision are in "
                "[Analysis and decision](#analysis-and-decision) at the end.", ""]
    out += ["## Machine", "", _table(["", ""], [[k, v] for k, v in machine_info()]), ""]
    if cli:
        from pipeline.bench import cli_bench

        out += [cli_bench.render(cli), ""]
    if results:
        out += ["## Method", "",
                "Work: fit inside 1024×1024 (never upscale), save JPEG q85 / WebP q80 / AVIF q60, "
                "metadata not kept.",
                "",
                "- **naive**: `Image.open` → `.convert()` when the mode needs it → "
                "`resize(..., LANCZOS)` (full decode, no `draft`, no `reduce`) → `save`.",
                "- **engine**: `imagepipe.core.process(data, recipe)` with "
                "`{resize: {width: 1024, height: 1024, fit: inside}, format, quality}`; the other "
                "recipe fields at their defaults (so JPEG is progressive + optimized, WebP method 4, "
                "AVIF speed 6, metadata stripped, sRGB), on the default engine (`IMAGEPIPE_ENGINE=vips`: "
                "libvips decodes + resizes, Pillow does the rest), `compute_metrics=False`.",
                "- **engine_metrics**: the same with the SSIM/PSNR stage on, as every job and the CLI "
                "run it (its cost is in the engine-stages table below).",
                "- **engine_pillow** / **engine_pillow_metrics**: the same two on the all-Pillow path "
                "(`IMAGEPIPE_ENGINE=pillow`).",
                "- **vips**: `pyvips.Image.thumbnail_buffer(data, 1024, height=1024, size='down')` + "
                "`jpegsave_buffer(Q=85)` / `webpsave_buffer(Q=80)` / `heifsave_buffer(Q=60, "
                "compression='av1', effort=3)` (`keep='none'`; effort 3 = aom cpu-used 6, the engine's "
                "AVIF speed), operation cache off, libvips' default thread pool (the CPU column counts "
                "every thread). Same code as `pipeline/bench/vips_batch.py`.",
                "- **vips_moz** (JPEG only, `--approaches`): the same with mozjpeg's size tools on.",
                "",
                "Each (image, format, approach) runs in a **fresh child process** (`python -m "
                "pipeline.bench.child`): imports, one untimed warm-up on a 64×64 image of the same "
                "format, then the timed repeats. Time = median wall time of the repeats. Peak "
                "memory = the child's VmHWM during the timed runs (reset with "
                "`/proc/self/clear_refs` after imports and reading the input) minus its RSS "
                "just before them, i.e. what the work itself added. Approaches are interleaved "
                "per image (rotating order) so they share the machine's noise. Quality = SSIM "
                "(luma, 7×7 windows) of each output against one reference: the original decoded "
                "by Pillow, alpha over white, LANCZOS-resized to the output's size.",
                "",
                "Idle child RSS after imports (MiB): "
                + ", ".join(f"{a} {v:.0f}" for a, v in idle.items()) + ".", ""]
        aggs = {fmt: aggregate(images, results, fmt, approaches) for fmt in formats}
        out += ["## Targets: per-image work (issue 14)", "",
                _table(["target", "measured", "verdict"], targets(images, results, formats, aggs)), ""]
        out += ["## Aggregate", ""]
        for fmt in formats:
            agg = aggs[fmt]
            if not agg:
                continue
            meta = agg.pop("_meta")
            out += [f"### {fmt.upper()} output — {int(meta['images'])} images, {meta['mp']:.1f} MP", ""]
            rows = []
            for a, s in agg.items():
                rows.append([a, f"{s['wall']:.2f}", f"{s['mps']:.1f}", _fmt(s.get("vs_naive")),
                             _fmt(s.get("speedup_geo")), f"{s['cpu']:.2f}", f"{s['mp_per_cpu_s']:.1f}",
                             f"{s['peak_max']:.0f}",
                             f"{s['bytes'] / 1024:.0f}", _fmt(s.get("bytes_vs_naive")),
                             f"{s['ssim_mean']:.4f}", f"{s['ssim_min']:.4f}"])
            out += [_table(["approach", "Σ median wall s", "MP/s", "× naive (Σ time)",
                            "× naive (geo-mean per image)", "Σ CPU s", "MP per CPU s", "max peak MiB",
                            "Σ output KiB", "bytes vs naive", "mean SSIM", "min SSIM"], rows), ""]
        out += ["## Per image", ""]
        by = {(r.image, r.format, r.approach): r for r in results}
        for fmt in formats:
            out += [f"### {fmt.upper()} output", ""]
            rows = []
            for info in images:
                naive = by.get((info.name, fmt, "naive"))
                for a in approaches:
                    m = by.get((info.name, fmt, a))
                    if m is None:
                        continue
                    if m.error:
                        rows.append([info.name, a, f"ERROR: {m.error[:80]}"] + [""] * 7)
                        continue
                    ratio = (naive.wall / m.wall) if naive and not naive.error else float("nan")
                    rows.append([
                        f"{info.name} ({info.format} {info.width}×{info.height} {info.mode})", a,
                        f"{m.wall * 1000:.0f}", f"{info.megapixels / m.wall:.1f}", _fmt(ratio),
                        f"{m.cpu * 1000:.0f}", f"{m.peak_mib:.1f}", f"{m.out_bytes / 1024:.1f}",
                        f"{m.out_size[0]}×{m.out_size[1]}", f"{m.ssim:.4f}"])
            out += [_table(["image", "approach", "median ms", "MP/s", "× naive", "CPU ms",
                            "peak MiB", "output KiB", "output size", "SSIM"], rows), ""]
        source = "engine_metrics" if any(r.approach == "engine_metrics" for r in results) else "engine"
        eng = [r for r in results if r.approach == source and not r.error and r.stage_ms]
        if eng:
            keys = ["decode", "transform", "encode", "metrics", "total"]
            out += [f"## Engine stages (`{source}`: its own `timings_ms`, medians)", "",
                    "`fast paths` is what the engine reports in `facts.fast_paths` (e.g. JPEG draft).", ""]
            rows = []
            for r in eng:
                out_mp = r.out_size[0] * r.out_size[1] / 1e6
                rows.append([r.image, r.format] + [_fmt(r.stage_ms.get(k), ".1f") for k in keys]
                            + [_fmt(r.stage_ms.get("metrics", float("nan")) / out_mp, ".1f"),
                               ", ".join(r.fast_paths or []) or "—"])
            out += [_table(["image", "format"] + [f"{k} ms" for k in keys]
                           + ["metrics ms / output MP", "fast paths"], rows), ""]
            total_metrics = sum(r.stage_ms.get("metrics", 0.0) for r in eng)
            total_ms = sum(r.stage_ms.get("total", 0.0) for r in eng)
            out_mp = sum(r.out_size[0] * r.out_size[1] / 1e6 for r in eng)
            if total_metrics and total_ms:
                out += [f"Metrics stage over the corpus: {total_metrics:.0f} ms of {total_ms:.0f} ms engine "
                        f"time ({100 * total_metrics / total_ms:.0f}%), {total_metrics / out_mp:.1f} ms per "
                        f"output megapixel.", ""]
    if experiments:
        out += [experiments.strip(), ""]
    if e2e:
        from pipeline.bench import e2e as e2e_mod

        out += [e2e_mod.render(e2e), ""]
    if NOTES.exists():
        out += ["## Analysis and decision", "", NOTES.read_text(encoding="utf-8").strip(), ""]
    return "\n".join(out) + "\n"
