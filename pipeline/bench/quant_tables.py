"""Which quant tables should ``jpeg.quant_table: auto`` search? Derived from one
``pipeline.bench.encoders --json`` run that has every single-table row.

    python -m pipeline.bench.quant_tables RUN.json [--sets 23,25,234,012345678] [--all-sizes 2,3]

The run must hold ``jpeg:turbo``, ``jpeg:mozjpeg/auto-chroma`` (table 3) and
``jpeg:mozjpeg/auto-chroma/qt<N>`` for the other tables. For a set of tables the search's answer
is, per photo, the smallest of the single-table answers (the search keeps the fewest bytes; its
pruning never drops the winner), so its ratios follow without running it; its cost is bounded
by the sum of the single tables' probes (the real search prunes the later passes: the
``…/qtauto-<digits>`` rows of the same run measure it). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

SINGLE = "jpeg:mozjpeg/auto-chroma"


def row_name(table: int) -> str:
    return SINGLE if table == 3 else f"{SINGLE}/qt{table}"


def derive(eq: dict[str, Any], tables: tuple[int, ...]) -> dict[str, Any] | None:
    """Median ratios (auto vs auto, at own score) and the probe bound of searching ``tables``."""
    ratios, own, probes, single_probes, wins = [], [], 0, 0, dict.fromkeys(tables, 0)
    for row in eq["rows"]:
        by = row["by"]
        if any(row_name(t) not in by for t in tables):
            return None
        found = [(by[row_name(t)]["bytes"], t) for t in tables if by[row_name(t)].get("bytes")]
        probes += sum(by[row_name(t)].get("encodes", 0) for t in tables)
        single_probes += by[SINGLE].get("encodes", 0)
        if not found:
            continue
        size, table = min(found)
        wins[table] += 1
        ratios.append(size / by["jpeg:turbo"]["bytes"])
        if by[row_name(table)].get("ratio_at_score"):
            own.append(by[row_name(table)]["ratio_at_score"])
    return {"tables": tables, "median_ratio": statistics.median(ratios),
            "median_ratio_at_score": statistics.median(own) if own else None,
            "probe_bound": probes / single_probes, "wins": wins, "reached": len(ratios)}


def measured(eq: dict[str, Any], tables: tuple[int, ...]) -> dict[str, Any] | None:
    """The same run's real ``…/qtauto-<digits>`` row for ``tables`` (None when not run)."""
    name = f"{SINGLE}/qtauto-{''.join(map(str, tables))}"
    s = eq["summary"].get(name)
    if s is None:
        return None
    single = eq["summary"][SINGLE]
    return {"median_ratio": s["median_ratio"], "median_ratio_at_score": s.get("median_ratio_at_score"),
            "encodes": s["total_encodes"] / single["total_encodes"],
            "search_s": s["total_search_s"] / single["total_search_s"]}


def _set(tables: tuple[int, ...]) -> str:
    return "{" + ",".join(map(str, tables)) + "}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench.quant_tables", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--sets", default="2,3,23,25,234,012345678")
    p.add_argument("--all-sizes", default="2", help="also rank every set of these sizes (best 5 each)")
    args = p.parse_args(argv)
    eq = json.loads(args.run.read_text())["equal"]
    sets = [tuple(int(c) for c in s) for s in args.sets.split(",")]
    print("| tables | median ratio (auto vs auto) | at own score | wins per table | probes ≤ (× one table) "
          "| measured: ratio / at own score / probes / search time (× one table) |")
    print("|---|---:|---:|---|---:|---|")
    for tables in sets:
        d = derive(eq, tables)
        if d is None:
            continue
        m = measured(eq, tables)
        real = (f"{m['median_ratio']:.4f} / {m['median_ratio_at_score']:.3f} / {m['encodes']:.2f}× / "
                f"{m['search_s']:.2f}×" if m else "–")
        print(f"| {_set(tables)} | {d['median_ratio']:.4f} | {d['median_ratio_at_score']:.3f} | "
              f"{', '.join(f'{t}: {n}' for t, n in d['wins'].items())} | {d['probe_bound']:.2f}× | {real} |")
    for size in (int(x) for x in args.all_sizes.split(",") if x):
        ranked = sorted((d for d in (derive(eq, c) for c in itertools.combinations(range(9), size)) if d),
                        key=lambda d: d["median_ratio"])
        print(f"\nbest sets of {size}: " + "; ".join(
            f"{_set(d['tables'])} {d['median_ratio']:.4f} / {d['median_ratio_at_score']:.3f}"
            for d in ranked[:5]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
