"""One (approach, image, format) measurement in a fresh process.

``python -m pipeline.bench.child '<json spec>'`` prints one JSON line: wall and CPU time of
each repeat, the peak RSS the work added on top of the process's state before it (VmHWM reset
via ``/proc/self/clear_refs``; falls back to VmHWM minus the RSS before the work), and the
output's size. The output bytes go to ``spec["out"]`` so the parent can score their quality.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.bench import memory
from pipeline.bench.approaches import PREPARE


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the spec's approach ``repeat`` times on its input and return the figures."""
    rss_imports_before = memory.rss_kib()
    run = PREPARE[spec["approach"]]()
    rss_after_imports = memory.rss_kib()
    fmt = spec["format"]
    if spec.get("warmup"):
        run(Path(spec["warmup"]).read_bytes(), fmt)  # first-call costs (plugin init, lazy imports)
    data = Path(spec["input"]).read_bytes()
    reset_ok = memory.reset_peak()
    rss_before = memory.rss_kib()
    walls: list[float] = []
    cpus: list[float] = []
    out = b""
    extras: list[dict[str, Any]] = []
    for _ in range(int(spec["repeat"])):
        out = b""
        cpu0, t0 = _cpu_s(), time.perf_counter()
        out, extra = run(data, fmt)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu_s() - cpu0)
        extras.append(extra)
    peak = memory.hwm_kib()
    Path(spec["out"]).write_bytes(out)
    return {
        "wall_s": walls,
        "cpu_s": cpus,
        "peak_kib": peak,
        "rss_before_kib": rss_before,
        "peak_delta_kib": max(0, peak - rss_before),
        "peak_reset": reset_ok,
        "imports_kib": rss_after_imports - rss_imports_before,
        "out_bytes": len(out),
        "extras": extras,
    }


def main(argv: list[str]) -> int:
    """Entry point: one JSON spec in ``argv[0]``, one JSON result line on stdout."""
    spec = json.loads(argv[0])
    try:
        result = measure(spec)
    except Exception as exc:  # reported to the parent, which records the failure
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
