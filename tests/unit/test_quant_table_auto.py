"""``jpeg.quant_table: auto``: the auto-quality search tries each candidate mozjpeg quant table
(with both chroma layouts under ``subsampling: auto``) and keeps the answer with the fewest bytes."""

from __future__ import annotations

import io
import time
from typing import Any

import imagegen as g
import pytest
from PIL import Image

from imagepipe.core import auto, process
from imagepipe.core.budget import Budget
from imagepipe.core.jpegenc import encode_mozjpeg
from imagepipe.core.recipe import JpegOptions, parse_recipe
from imagepipe.errors import InvalidRecipe, OverTimeBudget


@pytest.fixture(scope="module")
def photo() -> bytes:
    return g.photo_bytes(320, 200, "png", seed=5)


def _goal(target: float, **jpeg: Any) -> dict[str, Any]:
    return {"format": "jpeg", "quality": "auto", "jpeg": {"encoder": "mozjpeg", **jpeg},
            "target": {"metric": "ssimulacra2", "min": target}}


def _tables(data: bytes) -> dict[int, list[int]]:
    im = Image.open(io.BytesIO(data))
    return {k: list(v) for k, v in im.quantization.items()}  # type: ignore[attr-defined]


@pytest.mark.parametrize("target", [60, 70])
def test_auto_table_keeps_the_smallest_single_table_answer(photo: bytes, target: float) -> None:
    tables = auto.QUANT_TABLE_CANDIDATES
    assert len(tables) >= 2 and len(set(tables)) == len(tables)
    singles = {t: process(photo, _goal(target, quant_table=t)) for t in tables}
    r = process(photo, _goal(target, quant_table="auto"))
    s = r.facts["search"]
    winner = min(tables, key=lambda t: (len(singles[t].data), tables.index(t)))
    assert len(r.data) == len(singles[winner].data)
    assert r.data == singles[winner].data  # the winner's pass is never pruned: the same answer
    assert s["chosen"]["quant_table"] == winner == s["per_format"]["jpeg"]["quant_table"]
    assert s["chosen"]["quality"] == singles[winner].facts["search"]["chosen"]["quality"]
    assert r.facts["metrics"]["ssimulacra2"] >= target
    # every probe names its table, the passes run in the candidates' order, each pass once
    order = [t["quant_table"] for t in s["trace"]]
    assert set(order) == set(tables)
    assert order == sorted(order, key=tables.index)
    assert "subsampling" not in s["chosen"]  # the chroma was not searched (4:2:0 as asked)


@pytest.mark.parametrize("seed", [5, 11])
def test_auto_is_never_larger_than_the_default_table(seed: int) -> None:
    """The product's set holds mozjpeg's default table 3, so with every pass run ``auto`` never
    answers with more bytes than the default table (the reason the set is {2, 3}, not {2, 5})."""
    assert 3 in auto.QUANT_TABLE_CANDIDATES
    data = g.photo_bytes(320, 200, "png", seed=seed)
    for target in (60, 75):
        default = process(data, _goal(target, subsampling="auto"))
        searched = process(data, _goal(target, subsampling="auto", quant_table="auto"))
        assert len(searched.data) <= len(default.data), (seed, target)


def test_written_tables_are_the_chosen_ones(photo: bytes) -> None:
    r = process(photo, _goal(70, quant_table="auto"))
    chosen = r.facts["search"]["chosen"]
    fixed = process(photo, {"format": "jpeg", "quality": chosen["quality"],
                            "jpeg": {"encoder": "mozjpeg", "quant_table": chosen["quant_table"]}})
    assert _tables(r.data) == _tables(fixed.data)
    other = next(t for t in auto.QUANT_TABLE_CANDIDATES if t != chosen["quant_table"])
    differs = process(photo, {"format": "jpeg", "quality": chosen["quality"],
                              "jpeg": {"encoder": "mozjpeg", "quant_table": other}})
    assert _tables(r.data) != _tables(differs.data)


def test_a_losing_later_table_is_pruned(photo: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # measured on this image at SSIMULACRA2 60: table 3 q52 (3.3 kB) beats table 2 q61 (3.7 kB);
    # searched first, table 3's answer stops table 2's pass once a probe below the target is as large
    monkeypatch.setattr(auto, "QUANT_TABLE_CANDIDATES", (3, 2))
    r = process(photo, _goal(60, quant_table="auto"))
    s = r.facts["search"]
    assert s["chosen"]["quant_table"] == 3
    second = [t for t in s["trace"] if t["quant_table"] == 2]
    assert 1 <= len(second) < 7  # a full bisection over 1–100 makes 7
    assert second[-1]["bytes"] >= len(r.data) and second[-1]["ssimulacra2"] < 60


def test_auto_table_and_auto_chroma_search_every_pair(photo: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "QUANT_TABLE_CANDIDATES", (2, 3))
    target = 70
    singles = {(t, c): len(process(photo, _goal(target, quant_table=t, subsampling=c)).data)
               for t in (2, 3) for c in ("4:2:0", "4:4:4")}
    r = process(photo, _goal(target, quant_table="auto", subsampling="auto"))
    s = r.facts["search"]
    assert len(r.data) == min(singles.values())
    pair = (s["chosen"]["quant_table"], s["chosen"]["subsampling"])
    assert singles[pair] == len(r.data)
    passes = list(dict.fromkeys((t["quant_table"], t["subsampling"]) for t in s["trace"]))
    assert passes == [(2, "4:2:0"), (2, "4:4:4"), (3, "4:2:0"), (3, "4:4:4")]
    for table in (2, 3):  # each table's 4:4:4 pass looks only below that table's 4:2:0 answer
        q420 = [t for t in s["trace"] if t["quant_table"] == table and t["subsampling"] == "4:2:0"]
        reached = [t["quality"] for t in q420 if t["ssimulacra2"] >= target]
        if reached and len(q420) == 7:  # a full (unpruned) 4:2:0 pass
            assert all(t["quality"] < min(reached) for t in s["trace"]
                       if t["quant_table"] == table and t["subsampling"] == "4:4:4")


def test_other_encoders_ignore_auto_table(photo: bytes) -> None:
    goal = {"format": "best", "quality": "auto", "candidates": ["jpeg:turbo", "jpeg:mozjpeg"],
            "target": {"metric": "ssimulacra2", "min": 70}, "jpeg": {"quant_table": "auto"}}
    s = process(photo, goal).facts["search"]
    turbo = [t for t in s["trace"] if t["encoder"] == "jpeg:turbo"]
    moz = [t for t in s["trace"] if t["encoder"] == "jpeg:mozjpeg"]
    assert turbo and all("quant_table" not in t for t in turbo)
    assert {t["quant_table"] for t in moz} == set(auto.QUANT_TABLE_CANDIDATES)
    assert "quant_table" not in s["per_format"]["jpeg:turbo"]


@pytest.mark.parametrize("recipe", [
    {"format": "jpeg", "quality": 80, "jpeg": {"encoder": "mozjpeg", "quant_table": "auto"}},
    {"format": "jpeg", "quality": "auto", "max_bytes": 5000,
     "jpeg": {"encoder": "mozjpeg", "quant_table": "auto"}},
    {"format": "jpeg", "jpeg": {"quant_table": "auto"}},
])
def test_auto_table_without_a_score_target_is_refused(photo: bytes, recipe: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecipe) as ei:
        process(photo, recipe)
    assert [d["field"] for d in ei.value.details] == ["jpeg.quant_table"]
    assert "target" in ei.value.details[0]["message"]


def test_validation_and_hash() -> None:
    for bad in (9, -1, "2", "Auto", True, 2.0):
        with pytest.raises(InvalidRecipe) as ei:
            parse_recipe({"jpeg": {"quant_table": bad}})
        assert [d["field"] for d in ei.value.details] == ["jpeg.quant_table"]
    target = {"metric": "ssimulacra2", "min": 80}
    base = {"format": "jpeg", "quality": "auto", "target": target, "jpeg": {"encoder": "mozjpeg"}}
    # pinned with the code before quant_table "auto" existed: existing recipes keep their hash
    assert parse_recipe({}).recipe_hash() == "a41af2c27dc11db7"
    assert parse_recipe(base).recipe_hash() == "70b8ae538321401e"
    tuned = {**base, "jpeg": {"encoder": "mozjpeg", "subsampling": "auto", "quant_table": 2}}
    assert parse_recipe(tuned).recipe_hash() == "7f07a026fd7de5d8"
    assert parse_recipe({"format": "jpeg", "quality": 75, "jpeg": {"encoder": "mozjpeg", "quant_table": 3}}
                        ).recipe_hash() == "481f092dfd5c21ef"
    with_auto = parse_recipe({**base, "jpeg": {"encoder": "mozjpeg", "quant_table": "auto"}})
    assert with_auto.jpeg.quant_table == "auto"
    assert with_auto.recipe_hash() not in ("70b8ae538321401e", "7f07a026fd7de5d8")
    assert '"quant_table":"auto"' in with_auto.canonical_json()


def test_a_single_encode_never_takes_auto() -> None:
    im = Image.new("RGB", (16, 16), (200, 40, 40))
    with pytest.raises(InvalidRecipe) as ei:
        encode_mozjpeg(im, 80, JpegOptions.model_construct(quant_table="auto"))
    assert ei.value.details[0]["field"] == "jpeg.quant_table"


# --- under a time budget: the later tables are optional ----------------------------------------


def _budget(left_ms: float) -> Budget:
    return Budget(deadline=time.monotonic() + left_ms / 1000.0, total_ms=60_000, reserve_ms=0.0)


def test_a_later_table_that_cannot_finish_is_not_started(photo: bytes,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # each mozjpeg probe of 320x200 is estimated at ≈ 600 ms (the table's 11 ms × 53): one probe
    # (× 1.5 safety) fits the 4 s, a whole second pass of 7 does not
    monkeypatch.setenv("IMAGEPIPE_ENCODE_COST_SCALE", "53")
    monkeypatch.setattr(auto, "QUANT_TABLE_CANDIDATES", (2, 3))
    r = process(photo, _goal(70, quant_table="auto"), budget=_budget(4000))
    s = r.facts["search"]
    assert {t["quant_table"] for t in s["trace"]} == {2}
    assert s["chosen"]["quant_table"] == 2
    stopped = s["per_format"]["jpeg"]["variants_stopped"]
    assert "7 more jpeg:mozjpeg probes" in stopped and "were left" in stopped
    assert len(r.data) == len(process(photo, _goal(70, quant_table=2)).data)
    # costed as the candidate's encoder (mozjpeg), not the recipe's (turbo: ≈ 55 ms here, would fit)
    best = process(photo, {"format": "best", "candidates": ["jpeg:mozjpeg"], "quality": "auto",
                           "target": {"metric": "ssimulacra2", "min": 70}, "jpeg": {"quant_table": "auto"}},
                   budget=_budget(4000)).facts["search"]
    assert "7 more jpeg:mozjpeg probes" in best["per_format"]["jpeg:mozjpeg"]["variants_stopped"]
    # with time to spare every table is searched and nothing is reported stopped
    monkeypatch.delenv("IMAGEPIPE_ENCODE_COST_SCALE")
    roomy = process(photo, _goal(70, quant_table="auto"), budget=_budget(60_000)).facts["search"]
    assert {t["quant_table"] for t in roomy["trace"]} == {2, 3}
    assert "variants_stopped" not in roomy["per_format"]["jpeg"]


def test_a_later_pass_running_out_of_time_keeps_the_answer_found(
        photo: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe of a later pass refused by the budget ends the search with the earlier answer
    (before, the whole candidate was dropped); a first pass refused still drops it."""
    from imagepipe.core import budget as b

    real = b.encode_within

    def refuse(table: int) -> Any:
        def enc(prepared: Any, budget: Any, fmt: Any = None, quality: Any = None,
                options: Any = None, **kw: Any) -> Any:
            if (options or {}).get("jpeg", {}).get("quant_table") == table:
                raise OverTimeBudget("no time left for this probe (test)")
            return real(prepared, budget, fmt, quality, options, **kw)
        return enc

    monkeypatch.setattr(auto, "QUANT_TABLE_CANDIDATES", (2, 3))
    monkeypatch.setattr(auto, "encode_within", refuse(3))
    r = process(photo, _goal(70, quant_table="auto"), budget=_budget(60_000))
    s = r.facts["search"]
    assert s["chosen"]["quant_table"] == 2 and {t["quant_table"] for t in s["trace"]} == {2}
    assert s["per_format"]["jpeg"]["variants_stopped"] == "no time left for this probe (test)"
    monkeypatch.setattr(auto, "encode_within", refuse(2))
    with pytest.raises(OverTimeBudget):
        process(photo, _goal(70, quant_table="auto"), budget=_budget(60_000))


def test_the_same_rule_holds_for_the_444_pass_of_auto_chroma(photo: bytes,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The chroma passes share the loop: a 4:4:4 pass that cannot finish is not started and the
    4:2:0 answer stands (before, its first refused probe dropped the candidate)."""
    monkeypatch.setenv("IMAGEPIPE_ENCODE_COST_SCALE", "53")
    r = process(photo, _goal(70, subsampling="auto"), budget=_budget(4000))
    s = r.facts["search"]
    assert {t["subsampling"] for t in s["trace"]} == {"4:2:0"}
    assert s["chosen"]["subsampling"] == "4:2:0" and "variants_stopped" in s["per_format"]["jpeg"]
    assert len(r.data) == len(process(photo, _goal(70, subsampling="4:2:0")).data)
