"""The batch CLI as users run it against a pyvips script doing the same files, whole commands.

For every output format, three commands run over one folder, interleaved, ``repeat`` times each:

- ``engine``: ``python -m pipeline process DIR -o OUT --width 1024 --height 1024 --format F
  --quality Q -j 1 -q`` (default recipe otherwise, metrics on), ``IMAGEPIPE_ENGINE=vips``;
- ``engine_pillow``: the same command with ``IMAGEPIPE_ENGINE=pillow``;
- ``pyvips``: ``python -m pipeline.bench.vips_batch DIR OUT --format F --quality Q``.

CPU = user + system seconds of the command and every process it waited for (``os.wait4``), so
interpreter start-up and imports count, as they do for a user; peak RSS = the largest resident
set of any of its processes (``ru_maxrss`` through a small launcher, see ``_LAUNCHER``; the
CLI's parent and its one worker are separate processes). Medians of the repeats.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import PROJECT_ROOT
from pipeline.bench.approaches import QUALITY
from pipeline.bench.corpus import list_images

COMMANDS = ("engine", "engine_pillow", "pyvips")
#: JPEG only: the engine with baseline, non-optimized JPEG (what pyvips writes by default), to
#: show how much of the gap is the default recipe's progressive + optimized encoding
JPEG_EXTRA = "engine_baseline_jpeg"
#: JPEG only, a labelled reference row (not the issue's yardstick, which is pyvips' defaults):
#: pyvips writing what the engine's default recipe writes (progressive, optimized Huffman tables)
PYVIPS_PROGRESSIVE = "pyvips_progressive"
CPU_TARGET = 1.0
RSS_TARGET = 1.2


#: with ``--baseline-root``: the ``engine`` command run from another checkout (e.g. ``main``), for
#: an A/B of a change in the same interleaved run
BASELINE = "engine_baseline_checkout"


def _command(name: str, src: Path, out: Path, fmt: str) -> tuple[list[str], dict[str, str]]:
    q = str(QUALITY[fmt])
    if name in ("pyvips", PYVIPS_PROGRESSIVE):
        extra = ["--progressive"] if name == PYVIPS_PROGRESSIVE else []
        return [sys.executable, "-m", "pipeline.bench.vips_batch", str(src), str(out), "--format", fmt,
                "--quality", q, *extra], {}
    extra = ["--no-progressive", "--no-optimize"] if name == JPEG_EXTRA else []
    return ([sys.executable, "-m", "pipeline", "process", str(src), "-o", str(out), "--width", "1024",
             "--height", "1024", "--format", fmt, "--quality", q, "-j", "1", "-q", *extra],
            {"IMAGEPIPE_ENGINE": "pillow" if name == "engine_pillow" else "vips"})


#: a small launcher between the benchmark and the command: Linux carries the RSS high-water mark
#: of the mm a process had before ``exec`` into its ``ru_maxrss``, so a command started straight
#: from the (large) benchmark process would report at least the benchmark's own RSS. The launcher
#: (a bare interpreter) forks, execs the command, and reports its ``wait4`` usage as JSON.
_LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execve(sys.argv[1], sys.argv[1:], os.environ)
_, status, ru = os.wait4(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "cpu": ru.ru_utime + ru.ru_stime,
                  "rss": ru.ru_maxrss / 1024}))
"""


def _run(cmd: list[str], env: dict[str, str], cwd: Path = PROJECT_ROOT) -> dict[str, float]:
    full = {**os.environ, **env}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, *cmd], env=full, cwd=cwd,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    try:
        got = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        got = {"code": -1}
    if got.get("code") != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {proc.stderr[-400:]}")
    return {"cpu": got["cpu"], "rss": got["rss"], "wall": wall}


def precompile(root: Path) -> None:
    """Write ``root``'s bytecode caches (``__pycache__``, git-ignored) before anything is timed.

    A user's copy has them after its first run. Under ``PYTHONDONTWRITEBYTECODE`` (set in some
    shells and CI) caches left stale by a change are never rewritten, and every timed command
    would compile the changed modules from source again: up to ~16 ms of CPU per command here
    (all of ``pipeline/`` and ``lambda_src/`` without caches, a one-image command), charged to
    the engine and not to the pyvips script (which has no project modules to compile)."""
    import compileall

    for sub in ("pipeline", "lambda_src"):
        compileall.compile_dir(root / sub, quiet=1)


def measure(sets: dict[str, Path], formats: list[str], repeat: int,
            log: Callable[[str], None], baseline_root: Path | None = None) -> dict[str, Any]:
    """``{set: {format: {command: {cpu, rss, wall, runs}}}}`` plus the image counts;
    ``baseline_root``: also the ``engine`` command from that checkout (``BASELINE``)."""
    out: dict[str, Any] = {"sets": {}, "repeat": repeat,
                           "baseline_root": str(baseline_root) if baseline_root else None}
    for root in (PROJECT_ROOT, baseline_root):
        if root is not None:
            precompile(root)
    with tempfile.TemporaryDirectory(prefix="imagepipe-cli-bench-") as tmp:
        for label, folder in sets.items():
            n = len(list_images(folder))
            per_fmt: dict[str, Any] = {}
            for fmt in formats:
                names = COMMANDS + ((JPEG_EXTRA, PYVIPS_PROGRESSIVE) if fmt == "jpeg" else ())
                names += (BASELINE,) if baseline_root else ()
                runs: dict[str, list[dict[str, float]]] = {c: [] for c in names}
                for i in range(repeat):
                    order = names[i % len(names):] + names[:i % len(names)]
                    for name in order:
                        dest = Path(tmp) / f"{label}-{fmt}-{name}"
                        shutil.rmtree(dest, ignore_errors=True)
                        cmd, env = _command("engine" if name == BASELINE else name, folder, dest, fmt)
                        cwd = baseline_root if name == BASELINE and baseline_root else PROJECT_ROOT
                        runs[name].append(_run(cmd, env, cwd))
                per_fmt[fmt] = {name: {"cpu": statistics.median(r["cpu"] for r in rs),
                                       "rss": statistics.median(r["rss"] for r in rs),
                                       "wall": statistics.median(r["wall"] for r in rs),
                                       "cpu_runs": [round(r["cpu"], 3) for r in rs]}
                                for name, rs in runs.items()}
                e, v = per_fmt[fmt]["engine"], per_fmt[fmt]["pyvips"]
                log(f"cli {label} {fmt}: engine {e['cpu']:.2f} s CPU {e['rss']:.0f} MiB, "
                    f"pyvips {v['cpu']:.2f} s {v['rss']:.0f} MiB -> {v['cpu'] / e['cpu']:.2f}x")
            out["sets"][label] = {"images": n, "folder": str(folder), "formats": per_fmt}
    return out


def photo_set(corpus: Path, dest: Path) -> Path:
    """The corpus's camera photos (its JPEGs), linked into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in list_images(corpus):
        if p.suffix.lower() in (".jpg", ".jpeg"):
            target = dest / p.name
            if not target.exists():
                target.symlink_to(p)
    return dest


def render(cli: dict[str, Any]) -> str:
    """The markdown section: CPU and peak RSS per command, ratios and verdicts."""
    lines = ["## The batch CLI as users run it vs pyvips (issue 14 targets)", "",
             "Whole commands (`pipeline/bench/cli_bench.py`): `python -m pipeline process DIR -o OUT "
             "--width 1024 --height 1024 --format F --quality Q -j 1 -q` (default recipe otherwise: "
             "progressive + optimized JPEG, WebP method 4, AVIF speed 6, metrics on) with "
             "`IMAGEPIPE_ENGINE=vips` (default) and `=pillow`, against `python -m pipeline.bench.vips_batch` "
             "(read, `thumbnail_buffer`, save, write; it imports only pyvips, as a user's script would; "
             "libvips defaults: baseline JPEG, its thread pool; "
             "AVIF at `effort=3` = the engine's aom speed). CPU = user + system of the command and its "
             "children, start-up and imports included; RSS = the largest process's peak. "
             f"Medians of {cli.get('repeat')} interleaved runs. Targets: CPU ≥ {CPU_TARGET}× pyvips "
             f"(pyvips CPU / engine CPU), peak RSS ≤ {RSS_TARGET}× pyvips.", ""]
    rows: list[list[str]] = []
    extra: list[str] = []
    for label, data in cli["sets"].items():
        for fmt, by in data["formats"].items():
            e, p, v = by["engine"], by["engine_pillow"], by["pyvips"]
            cpu_r, rss_r = v["cpu"] / e["cpu"], e["rss"] / v["rss"]
            rows.append([f"{label} ({data['images']})", fmt.upper(), f"{e['cpu']:.2f}", f"{p['cpu']:.2f}",
                         f"{v['cpu']:.2f}", f"**{cpu_r:.2f}×** {'met' if cpu_r >= CPU_TARGET else 'NOT met'}",
                         f"{v['cpu'] / p['cpu']:.2f}×", f"{e['rss']:.0f}", f"{p['rss']:.0f}",
                         f"{v['rss']:.0f}",
                         f"**{rss_r:.2f}×** {'met' if rss_r <= RSS_TARGET else 'NOT met'}"])
            if JPEG_EXTRA in by:
                b = by[JPEG_EXTRA]
                extra.append(f"- {label}, JPEG with `--no-progressive --no-optimize` (baseline, as pyvips "
                             f"writes): {b['cpu']:.2f} s CPU = **{v['cpu'] / b['cpu']:.2f}×** pyvips, "
                             f"peak {b['rss']:.0f} MiB.")
            if BASELINE in by:
                bl = by[BASELINE]
                extra.append(f"- {label}, {fmt.upper()}: the same CLI command from the baseline checkout "
                             f"(`{cli.get('baseline_root')}`): {bl['cpu']:.2f} s CPU = "
                             f"{v['cpu'] / bl['cpu']:.2f}× pyvips; this branch uses "
                             f"**{e['cpu'] / bl['cpu']:.2f}×** its CPU, peak {bl['rss']:.0f} MiB.")
            if PYVIPS_PROGRESSIVE in by:
                pp = by[PYVIPS_PROGRESSIVE]
                extra.append(f"- {label}, reference row (not the target): pyvips writing the engine's "
                             f"default JPEG (`interlace=True, optimize_coding=True`): {pp['cpu']:.2f} s CPU; "
                             f"the engine is **{pp['cpu'] / e['cpu']:.2f}×** its speed (pyvips defaults: "
                             f"{cpu_r:.2f}×).")
    lines.append("| set (images) | output | engine CPU s | engine_pillow CPU s | pyvips CPU s | engine speed "
                 "vs pyvips | engine_pillow vs pyvips | engine peak MiB | engine_pillow peak MiB | "
                 "pyvips peak MiB | engine RSS / pyvips |")
    lines.append("| " + " | ".join(["---"] * 11) + " |")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if extra:
        lines += ["", *extra]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.bench.cli_bench``: only this comparison, markdown on stdout."""
    import argparse

    from pipeline.bench.corpus import default_corpus

    p = argparse.ArgumentParser(prog="python -m pipeline.bench.cli_bench", description=__doc__)
    p.add_argument("--corpus", type=Path, default=default_corpus(PROJECT_ROOT))
    p.add_argument("--formats", default="jpeg,webp,avif")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--baseline-root", type=Path, help="also run the engine command from this checkout")
    p.add_argument("--json", type=Path, help="write the raw figures here")
    args = p.parse_args(argv)
    if args.corpus is None:
        print("no corpus (../shared/corpus)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="imagepipe-cli-sets-") as tmp:
        sets = {"corpus": args.corpus, "photos (JPEG)": photo_set(args.corpus, Path(tmp) / "photos")}
        got = measure(sets, [f for f in args.formats.split(",") if f], args.repeat,
                      lambda m: print(m, file=sys.stderr, flush=True), args.baseline_root)
    if args.json:
        args.json.write_text(json.dumps(got, indent=1))
    print(render(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
