"""pipeline.bench.quant_tables: a set of tables' answer per photo = its smallest single-table answer."""

from __future__ import annotations

from typing import Any

from pipeline.bench.encoders import _recipe, table_set
from pipeline.bench.quant_tables import derive, measured, row_name


def _run() -> dict[str, Any]:
    sizes = {"a": {2: 80, 3: 90, 5: 70}, "b": {2: 50, 3: 40, 5: 60}, "c": {2: 100, 3: 100, 5: None}}
    rows = []
    for image, by_table in sizes.items():
        by: dict[str, Any] = {"jpeg:turbo": {"bytes": 100}}
        for t, b in by_table.items():
            by[row_name(t)] = ({"bytes": b, "encodes": 10, "ratio_at_score": b / 100 + 0.01} if b
                               else {"unreachable": True, "encodes": 0})
        rows.append({"image": image, "by": by})
    summary = {row_name(3): {"total_encodes": 30, "total_search_s": 3.0},
               f"{row_name(3)}/qtauto-25": {"median_ratio": 0.6, "median_ratio_at_score": 0.61,
                                             "total_encodes": 54, "total_search_s": 5.1}}
    return {"rows": rows, "summary": summary}


def test_derive_keeps_the_smallest_table_per_photo() -> None:
    d = derive(_run(), (2, 5))
    assert d is not None
    assert d["median_ratio"] == 0.7  # a: 70 (t5), b: 50 (t2), c: 100 (t2; t5 unreachable)
    assert d["wins"] == {2: 2, 5: 1} and d["reached"] == 3
    assert d["median_ratio_at_score"] == 0.71
    assert d["probe_bound"] == 50 / 30  # 10 + 10 + 10 + 10 + 10 + 0 over table 3's 30
    assert derive(_run(), (2, 7)) is None  # table 7 was not run


def test_measured_reads_the_real_row() -> None:
    m = measured(_run(), (2, 5))
    assert m is not None and m["encodes"] == 54 / 30 and m["search_s"] == 5.1 / 3.0
    assert measured(_run(), (2, 3)) is None


def test_bench_variant_names() -> None:
    assert table_set("jpeg:mozjpeg/auto-chroma/qtauto-257") == (2, 5, 7)
    assert table_set("jpeg:mozjpeg/auto-chroma/qt2") is None and table_set("jpeg:mozjpeg") is None
    r = _recipe("jpeg:mozjpeg/auto-chroma/qtauto-23", None)
    assert r["jpeg"] == {"encoder": "mozjpeg", "subsampling": "auto", "quant_table": "auto"}
    assert _recipe("jpeg:mozjpeg/auto-chroma/qt5", None)["jpeg"]["quant_table"] == 5
