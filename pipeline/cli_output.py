"""What the batch CLI shows and writes: progress bar, summary table, facts report."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO


class Progress:
    """A one-line plain-text progress bar on a TTY; silent otherwise."""

    def __init__(self, total: int, *, stream: TextIO | None = None, enabled: bool | None = None,
                 width: int = 28) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.width = total, width
        self.done = self.failed = 0
        self.started = time.monotonic()
        self._last_draw = 0.0

    def advance(self, ok: bool, name: str = "") -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        now = time.monotonic()
        if self.enabled and (now - self._last_draw >= 0.1 or self.done == self.total):
            self._last_draw = now
            self.stream.write("\r" + self.line(now - self.started, name) + "\x1b[K")
            self.stream.flush()

    def line(self, elapsed: float, name: str = "") -> str:
        """The bar's text for ``elapsed`` seconds (no ANSI codes)."""
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * self.width)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        text = (f"[{bar}] {self.done}/{self.total} {frac:4.0%}  failed {self.failed}  "
                f"{rate:.1f} img/s  eta {int(eta) // 60}:{int(eta) % 60:02d}")
        return f"{text}  {name[-30:]}" if name else text

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()


def _kib(n: Any) -> str:
    return f"{n / 1024:.1f}" if isinstance(n, int | float) else "—"


def summary_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One row per file: input, status, sizes, dims, ratio, SSIM, time, output name or error message."""
    rows = []
    for rec in records:
        facts = rec.get("facts") or {}
        inp, out = facts.get("input") or {}, facts.get("output") or {}
        metrics = facts.get("metrics") or {}
        if rec["status"] == "ok":
            ratio = facts.get("compression_ratio")
            ssim = metrics.get("ssim")
            rows.append([
                rec["input"], "ok", _kib(inp.get("bytes")), _kib(out.get("bytes")),
                f"{inp.get('width')}×{inp.get('height')} → {out.get('width')}×{out.get('height')}",
                f"{ratio:.2f}" if isinstance(ratio, int | float) else "—",
                f"{ssim:.4f}" if isinstance(ssim, int | float) else "—",
                f"{rec.get('elapsed_ms', 0):.0f}", Path(rec["output"]).name if rec.get("output") else "",
            ])
        else:
            err = rec.get("error") or {}
            rows.append([rec["input"], f"FAILED {err.get('code')}", "", "", "", "", "",
                         f"{rec.get('elapsed_ms', 0):.0f}", err.get("message", "")])
    return rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=False)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows]
    return "\n".join(lines)


SUMMARY_HEADER = ["input", "status", "in KiB", "out KiB", "size", "ratio", "SSIM", "ms", "output / error"]


def totals(records: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Counts, bytes in/out and throughput for the batch."""
    ok = [r for r in records if r["status"] == "ok"]
    bytes_in = sum(r["facts"]["input"].get("bytes", 0) for r in ok)
    bytes_out = sum(r["facts"]["output"].get("bytes", 0) for r in ok)
    return {
        "files": len(records), "ok": len(ok), "failed": len(records) - len(ok),
        "bytes_in": bytes_in, "bytes_out": bytes_out,
        "saved_pct": round(100 * (1 - bytes_out / bytes_in), 1) if bytes_in else None,
        "wall_s": round(wall_s, 3),
        "images_per_s": round(len(records) / wall_s, 2) if wall_s > 0 else None,
    }


def totals_line(t: dict[str, Any]) -> str:
    saved = f", {t['saved_pct']}% smaller" if t["saved_pct"] is not None else ""
    return (f"{t['ok']}/{t['files']} ok, {t['failed']} failed; {t['bytes_in'] / 1024:.1f} KiB → "
            f"{t['bytes_out'] / 1024:.1f} KiB{saved}; {t['wall_s']:.2f} s"
            + (f" ({t['images_per_s']} img/s)" if t["images_per_s"] else ""))


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def csv_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Records flattened to dotted columns (``facts.`` prefix dropped), stable column order."""
    rows: list[dict[str, Any]] = []
    for rec in records:
        flat: dict[str, Any] = {"input": rec["input"], "output": rec.get("output") or "",
                                "status": rec["status"],
                                "error_code": (rec.get("error") or {}).get("code", ""),
                                "error_message": (rec.get("error") or {}).get("message", ""),
                                "elapsed_ms": rec.get("elapsed_ms")}
        _flatten("", rec.get("facts") or {}, flat)
        rows.append(flat)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns, rows


def write_report(path: Path, records: list[dict[str, Any]], summary: dict[str, Any],
                 recipe: dict[str, Any]) -> None:
    """Facts of every file as JSON (``{summary, recipe, files}``) or CSV, by ``path``'s suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        body = {"summary": summary, "recipe": recipe, "files": records}
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        return
    columns, rows = csv_rows(records)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
