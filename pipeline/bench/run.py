"""``python -m pipeline.bench``: run the side-by-side benchmark and write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline import PROJECT_ROOT
from pipeline.bench import corpus
from pipeline.bench.approaches import APPROACHES, DEFAULT_APPROACHES, ONLY_FOR, QUALITY
from pipeline.bench.quality import Reference

CHILD_TIMEOUT_S = 600


@dataclass
class ImageInfo:
    name: str
    path: str
    format: str
    width: int
    height: int
    mode: str
    bytes: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


@dataclass
class Measurement:
    image: str
    format: str
    approach: str
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    peak_mib: float = 0.0
    out_bytes: int = 0
    out_size: tuple[int, int] = (0, 0)
    ssim: float = float("nan")
    stage_ms: dict[str, float] = field(default_factory=dict)
    metrics_off: bool | None = None
    fast_paths: list[str] | None = None
    error: str | None = None

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_s) if self.wall_s else float("nan")

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_s) if self.cpu_s else float("nan")


def image_info(path: Path) -> ImageInfo:
    with Image.open(path) as im:
        return ImageInfo(path.name, str(path), im.format or "?", im.width, im.height, im.mode,
                         path.stat().st_size)


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; errors come back as ``{"error": ...}``."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.bench.child", json.dumps(spec)],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT_S}s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"child exited {proc.returncode}: {proc.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


def _median_stages(extras: list[dict[str, Any]]) -> dict[str, float]:
    stages: dict[str, list[float]] = {}
    for extra in extras:
        for key, value in (extra.get("timings_ms") or {}).items():
            if isinstance(value, int | float):
                stages.setdefault(key, []).append(float(value))
    return {k: statistics.median(v) for k, v in stages.items()}


def measure_all(images: list[ImageInfo], formats: list[str], approaches: list[str], repeat: int,
                work: Path, log: Any) -> tuple[list[Measurement], dict[str, float]]:
    """Every (image, format, approach), interleaved per image, each in a fresh child."""
    idle: dict[str, float] = {}
    for approach in approaches:
        res = run_child({"approach": approach, "format": formats[0], "input": images[0].path,
                         "repeat": 0, "out": str(work / f"idle-{approach}")})
        idle[approach] = res.get("rss_before_kib", 0) / 1024
    results: list[Measurement] = []
    warmups = {info.format: corpus.warmup_image(work, info.format) for info in images}
    for i, info in enumerate(images):
        ref = Reference(Path(info.path).read_bytes())
        for fmt in formats:
            order = approaches[i % len(approaches):] + approaches[: i % len(approaches)]
            for approach in order:
                if fmt not in ONLY_FOR.get(approach, {fmt}):
                    continue
                out = work / f"{Path(info.name).stem}.{approach}.{fmt}"
                spec = {"approach": approach, "format": fmt, "input": info.path, "repeat": repeat,
                        "warmup": str(warmups[info.format]), "out": str(out)}
                res = run_child(spec)
                m = Measurement(info.name, fmt, approach)
                if "error" in res:
                    m.error = res["error"]
                else:
                    m.wall_s, m.cpu_s = res["wall_s"], res["cpu_s"]
                    m.peak_mib = res["peak_delta_kib"] / 1024
                    m.out_bytes = res["out_bytes"]
                    m.stage_ms = _median_stages(res["extras"])
                    first = res["extras"][0] if res["extras"] else {}
                    m.metrics_off = first.get("metrics_off")
                    m.fast_paths = first.get("fast_paths")
                    m.ssim, m.out_size = ref.score(out.read_bytes())
                results.append(m)
                log(f"{info.name:24} {fmt:4} {approach:6} "
                    + (f"ERROR {m.error}" if m.error else
                       f"{m.wall * 1000:8.1f} ms  peak {m.peak_mib:7.1f} MiB  "
                       f"{m.out_bytes:>8} B  ssim {m.ssim:.4f}"))
        del ref
    return results, idle


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__)
    p.add_argument("--corpus", type=Path, help="folder of images (default ../shared/corpus, else generated)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per (image, format, approach)")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "benchmarks.md")
    p.add_argument("--json", type=Path, help="also write the raw measurements here")
    p.add_argument("--formats", default="jpeg,webp,avif")
    p.add_argument("--approaches", default=",".join(DEFAULT_APPROACHES))
    p.add_argument("--cli-repeat", type=int, default=3, help="runs per command in the CLI comparison")
    p.add_argument("--no-cli", action="store_true", help="skip the CLI-vs-pyvips comparison")
    p.add_argument("--cli-baseline-root", type=Path, metavar="DIR",
                   help="also run the CLI command from this checkout (e.g. an export of main), side by side")
    p.add_argument("--only", help="comma-separated image names to include")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end local-stack benchmark")
    p.add_argument("--e2e-only", action="store_true", help="only the end-to-end benchmark")
    p.add_argument("--e2e-runs", type=int, default=20, help="sequential latency runs per trigger")
    p.add_argument("--e2e-batch", type=int, default=50, help="images in the 1-vs-2-worker batch")
    p.add_argument("--no-experiments", action="store_true", help="skip the fast-path experiments")
    p.add_argument("--lab", action="store_true",
                   help="only the compression-lab benchmark (bench/lab.py -> docs/benchmarks-lab.md)")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="no measuring: re-render --out from a --json file of an earlier run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success (targets missed are reported, not an error)."""
    from pipeline.bench import report

    args = parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    approaches = [a for a in args.approaches.split(",") if a]
    bad = [f for f in formats if f not in QUALITY] + [a for a in approaches if a not in APPROACHES]
    if bad or args.repeat < 1:
        print(f"unknown format/approach or bad --repeat: {bad}", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.render is not None:
        return _render_saved(args)
    if args.lab:
        from pipeline.bench import lab

        return lab.main(["--corpus", str(args.corpus)] if args.corpus else [])

    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="imagepipe-bench-") as tmp:
        work = Path(tmp)
        folder = args.corpus or corpus.default_corpus(PROJECT_ROOT)
        generated = folder is None
        paths = corpus.generate(work / "corpus") if generated else corpus.list_images(folder)
        if args.only:
            keep = set(args.only.split(","))
            paths = [p for p in paths if p.name in keep]
        if not paths:
            print(f"no images in {folder}", file=sys.stderr)
            return 2
        images = [image_info(p) for p in paths]
        corpus_label = "generated stand-in set" if generated else str(folder)
        log(f"corpus: {corpus_label} ({len(images)} images), repeat={args.repeat}")
        results: list[Measurement] = []
        idle: dict[str, float] = {}
        if not args.e2e_only:
            results, idle = measure_all(images, formats, approaches, args.repeat, work, log)
        cli = None
        if not args.e2e_only and not args.no_cli:
            from pipeline.bench import cli_bench

            sets = {"corpus": Path(paths[0]).parent}
            if not generated:
                sets["photos (JPEG)"] = cli_bench.photo_set(Path(folder), work / "photos")
            if args.only:
                sets = {"selection": corpus.link_set(paths, work / "selection")}
            log("CLI vs pyvips ...")
            cli = cli_bench.measure(sets, formats, args.cli_repeat, log, args.cli_baseline_root)
        experiments_md = ""
        if not args.e2e_only and not args.no_experiments and not generated:
            from pipeline.bench import experiments

            log("fast-path experiments ...")
            experiments_md = experiments.render(Path(folder))
        e2e = None
        if not args.no_e2e or args.e2e_only:
            from pipeline.bench import e2e as e2e_mod

            try:
                e2e = e2e_mod.run(log=log, n=args.e2e_runs, batch_size=args.e2e_batch)
            except Exception as exc:  # the stack failing must not lose the engine figures; reported
                log(f"end-to-end benchmark failed: {type(exc).__name__}: {exc}")
                e2e = {"error": f"{type(exc).__name__}: {exc}"}
    command = "python -m pipeline.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    measured_at = f"{report.utc_now()} (load average {load_before} before, {_load()} after)"
    text = report.render(images=images, results=results, idle=idle, formats=formats,
                         approaches=approaches, repeat=args.repeat, corpus=corpus_label,
                         command=command.strip(), e2e=e2e, measured_at=measured_at,
                         experiments=experiments_md, cli=cli)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    if args.json:
        meta = {"command": command.strip(), "corpus": corpus_label, "repeat": args.repeat,
                "formats": formats, "approaches": approaches, "measured_at": measured_at,
                "experiments": experiments_md, "cli": cli}
        args.json.write_text(json.dumps({"images": [asdict(i) for i in images],
                                         "results": [asdict(r) for r in results], "idle_mib": idle,
                                         "e2e": e2e, "meta": meta}, indent=1, default=str))
    log(f"wrote {args.out}")
    return 0


def _load() -> str:
    """1-minute load average: how busy the shared machine was (noise indicator)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def _render_saved(args: argparse.Namespace) -> int:
    """Re-render the markdown from a saved ``--json`` (e.g. after editing notes.md)."""
    from pipeline.bench import report

    saved = json.loads(args.render.read_text())
    images = [ImageInfo(**i) for i in saved["images"]]
    results = []
    for r in saved["results"]:
        r["out_size"] = tuple(r["out_size"])
        results.append(Measurement(**r))
    meta = saved["meta"]
    text = report.render(images=images, results=results, idle=saved["idle_mib"], formats=meta["formats"],
                         approaches=meta["approaches"], repeat=meta["repeat"], corpus=meta["corpus"],
                         command=meta["command"], e2e=saved.get("e2e"), measured_at=meta.get("measured_at"),
                         experiments=meta.get("experiments", ""), cli=meta.get("cli"))
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} from {args.render}", file=sys.stderr)
    return 0
