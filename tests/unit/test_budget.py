"""The encode-time estimator, the adaptation to a faster setting, the refusal, the stoppable
encode (core/budget.py) and the killed-attempt rule (service/jobs.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from imagepipe.core import process
from imagepipe.core.budget import (
    SAFETY,
    Budget,
    encoder_of,
    estimate_ms,
    plan_encode,
    run_stoppable,
)
from imagepipe.core.prepare import prepare
from imagepipe.core.recipe import parse_recipe
from imagepipe.core.sweep import Cell, run_cells
from imagepipe.errors import CorruptImage, InternalError, JobTimeout, OverTimeBudget
from imagepipe.service.jobs import killed_attempt
from imagepipe.service.records import ISO_FORMAT
from tests.unit.imagegen import photo_bytes

#: a small hand-made table, so the tests do not depend on the calibrated figures
COSTS = {
    "avif": {6: (0.0, 1000.0), 8: (0.0, 300.0), 10: (0.0, 100.0)},
    "webp": {0: (0.0, 20.0), 4: (0.0, 80.0), 6: (0.0, 200.0)},
    "jpeg:turbo": {0: (0.0, 10.0), 1: (0.0, 15.0)},
    "png": {6: (0.0, 200.0)},
}


def budget_of(left_ms: float, total_ms: float = 60_000) -> Budget:
    return Budget(deadline=time.monotonic() + left_ms / 1000.0, total_ms=total_ms, reserve_ms=0.0)


def test_estimate_scales_with_pixels_frames_and_setting():
    assert estimate_ms("avif", 6, 4_000_000, costs=COSTS) == pytest.approx(4000.0)
    assert estimate_ms("avif", 6, 4_000_000, frames=3, costs=COSTS) == pytest.approx(12000.0)
    assert estimate_ms("avif", 10, 4_000_000, costs=COSTS) == pytest.approx(400.0)
    # a setting between two rows is interpolated; outside the table, or an unknown encoder: unknown
    assert estimate_ms("avif", 7, 1_000_000, costs=COSTS) == pytest.approx(650.0)
    assert estimate_ms("avif", 3, 1_000_000, costs=COSTS) is None
    assert estimate_ms("jxl", 7, 1_000_000, costs=COSTS) is None


def test_cost_scale_from_the_environment(monkeypatch):
    monkeypatch.setenv("IMAGEPIPE_ENCODE_COST_SCALE", "2.5")
    assert estimate_ms("webp", 4, 1_000_000, costs=COSTS) == pytest.approx(200.0)
    monkeypatch.setenv("IMAGEPIPE_ENCODE_COST_SCALE", "fast")
    with pytest.raises(InternalError, match="IMAGEPIPE_ENCODE_COST_SCALE"):
        estimate_ms("webp", 4, 1_000_000, costs=COSTS)


def test_encoder_names_and_settings_from_the_recipe():
    r = parse_recipe({"avif": {"speed": 4}, "webp": {"method": 2, "lossless": True},
                      "jpeg": {"progressive": False, "optimize": False}, "png": {"compress_level": 9}})
    assert encoder_of("avif", r) == ("avif", 4)
    assert encoder_of("webp", r) == ("webp:lossless", 2)
    assert encoder_of("jpeg", r) == ("jpeg:turbo", 0)
    assert encoder_of("png", r) == ("png", 9)
    assert encoder_of("gif", r) == ("gif", 0)
    assert encoder_of("jxl", parse_recipe({"jxl": {"effort": 5}})) == ("jxl", 5)
    assert encoder_of("jxl", parse_recipe({"jxl": {"lossless": True}})) == ("jxl:lossless", 7)
    for name in ("mozjpeg", "jpegli"):
        assert encoder_of("jpeg", parse_recipe({"jpeg": {"encoder": name}})) == (f"jpeg:{name}", 1)


def test_the_calibrated_table_covers_every_lossy_encoder_of_the_lab():
    from imagepipe.core.budget import ENCODE_COSTS

    for encoder, setting in (("jpeg:mozjpeg", 1), ("jpeg:jpegli", 1), ("jxl", 7), ("jxl", 9), ("jxl", 1)):
        est = estimate_ms(encoder, setting, 1_000_000)
        assert est is not None and est > 0, (encoder, setting)
    # slower settings cost more: JPEG XL effort, mozjpeg vs turbo
    jxl = [estimate_ms("jxl", e, 4_000_000) for e in sorted(ENCODE_COSTS["jxl"])]
    assert jxl == sorted(jxl)
    assert estimate_ms("jpeg:mozjpeg", 1, 4_000_000) > estimate_ms("jpeg:turbo", 1, 4_000_000)


def test_jxl_adapts_its_effort_down_when_it_cannot_fit():
    costs = {"jxl": {5: (0.0, 100.0), 7: (0.0, 500.0), 9: (0.0, 5000.0)}}
    plan = plan_encode("jxl", parse_recipe({"jxl": {"effort": 9}}), 2000, 2000, budget=budget_of(4000),
                       costs=costs)
    assert plan.options == {"jxl": {"effort": 7}} and plan.adapted["field"] == "jxl.effort"


def test_a_plan_that_fits_keeps_the_recipe_setting():
    plan = plan_encode("avif", parse_recipe({}), 1000, 1000, budget=budget_of(10_000), costs=COSTS)
    assert (plan.setting, plan.options, plan.adapted) == (6, None, None)
    assert plan.estimate_ms == pytest.approx(1000.0) and plan.stoppable  # ≥ 1 s: in a child


def test_without_a_budget_only_the_estimate():
    plan = plan_encode("avif", parse_recipe({}), 4000, 4000, costs=COSTS)
    assert plan.adapted is None and not plan.stoppable and plan.estimate_ms == pytest.approx(16000.0)


def test_adapts_to_the_nearest_faster_setting_that_fits():
    # 4 MP: speed 6 needs 4 s (6 s with the margin), speed 8 1.2 s (1.8 s): 3 s left -> speed 8
    plan = plan_encode("avif", parse_recipe({"avif": {"speed": 6}}), 2000, 2000, budget=budget_of(3000),
                       costs=COSTS)
    assert plan.setting == 8 and plan.options == {"avif": {"speed": 8}}
    assert plan.adapted["field"] == "avif.speed" and (plan.adapted["from"], plan.adapted["to"]) == (6, 8)
    assert plan.adapted["estimate_ms"]["asked"] == pytest.approx(4000.0)
    # WebP adapts downwards (lower method = faster)
    plan = plan_encode("webp", parse_recipe({"webp": {"method": 6}}), 2000, 2000, budget=budget_of(600),
                       costs=COSTS)
    assert plan.options == {"webp": {"method": 4}} or plan.options == {"webp": {"method": 0}}
    assert plan.estimate_ms * SAFETY <= 600


def test_extra_work_after_the_encode_counts():
    fits = plan_encode("avif", parse_recipe({}), 1000, 1000, budget=budget_of(2000), costs=COSTS)
    assert fits.setting == 6
    tight = plan_encode("avif", parse_recipe({}), 1000, 1000, budget=budget_of(2000), extra_ms=1000,
                        costs=COSTS)
    assert tight.setting == 7  # interpolated between the 6 and 8 rows: 650 ms × 1.5 + 1000 ≤ 2000


def test_refuses_at_once_when_nothing_fits_naming_the_limit_and_what_to_change():
    t0 = time.perf_counter()
    with pytest.raises(OverTimeBudget) as info:
        plan_encode("avif", parse_recipe({}), 8000, 6000, budget=budget_of(3000, total_ms=6000), costs=COSTS)
    assert time.perf_counter() - t0 < 0.5
    err = info.value
    assert err.code == "over_time_budget" and err.permanent
    assert "8000x6000" in err.message and "6.0 s processor timeout" in err.message
    assert "resize to at most" in err.message and "jpeg" in err.message
    adv = err.details["advice"]
    assert adv["fastest_setting"] == {"field": "avif.speed", "value": 10, "fits": False}
    # the suggested size fits at the fastest setting
    assert estimate_ms("avif", 10, adv["max_width"] * adv["max_height"], costs=COSTS) * SAFETY <= 3000
    assert "jpeg" in adv["formats_that_fit"]
    assert err.details["limit_ms"] == 6000 and [t["setting"] for t in err.details["tried"]][:2] == [6, 7]


def test_no_adaptation_when_asked_not_to():
    with pytest.raises(OverTimeBudget):
        plan_encode("avif", parse_recipe({}), 2000, 2000, budget=budget_of(3000), adapt=False, costs=COSTS)


def test_an_unknown_cost_runs_where_it_can_be_stopped():
    plan = plan_encode("avif", parse_recipe({"avif": {"speed": 0}}), 100, 100, budget=budget_of(3000),
                       costs=COSTS)
    assert plan.estimate_ms is None and plan.stoppable


def test_run_stoppable_returns_the_childs_result_and_its_typed_errors():
    big = bytes(range(256)) * 40_000  # 10 MB through the pipe
    assert run_stoppable(lambda: big, 10_000, lambda ms: JobTimeout("late")) == big

    def bad() -> None:
        raise CorruptImage("the avif encoder failed: boom")

    with pytest.raises(CorruptImage, match="boom"):
        run_stoppable(bad, 10_000, lambda ms: JobTimeout("late"))
    with pytest.raises(InternalError, match="ZeroDivisionError"):
        run_stoppable(lambda: 1 / 0, 10_000, lambda ms: JobTimeout("late"))


def test_run_stoppable_kills_the_child_at_the_deadline():
    t0 = time.perf_counter()
    with pytest.raises(JobTimeout) as info:
        run_stoppable(lambda: time.sleep(30), 300, lambda ms: JobTimeout(f"stopped after {ms:.0f} ms"))
    elapsed = time.perf_counter() - t0
    assert elapsed < 5  # not the 30 s the child wanted
    assert info.value.code == "timeout" and info.value.permanent


def test_process_adapts_and_records_it_in_the_facts(monkeypatch):
    import imagepipe.core.budget as b

    # a table under which AVIF speed 6 cannot fit 2 s but speed 10 can, for a 0.25 MP image
    monkeypatch.setattr(b, "ENCODE_COSTS", {"avif": {6: (0.0, 40_000.0), 10: (0.0, 10.0)}})
    data = photo_bytes(500, 500)
    result = process(data, {"format": "avif"}, budget=budget_of(2000))
    facts = result.facts["budget"]
    assert facts["adapted"]["field"] == "avif.speed" and facts["adapted"]["to"] > 6
    assert facts["setting"] == facts["adapted"]["to"]
    assert result.data[4:12] == b"ftypavif"
    # without a budget nothing is planned and the facts have no budget section
    assert "budget" not in process(data, {"format": "avif"}).facts


def test_process_refuses_when_nothing_fits(monkeypatch):
    import imagepipe.core.budget as b

    monkeypatch.setattr(b, "ENCODE_COSTS", {"avif": {s: (0.0, 40_000.0) for s in range(11)}})
    with pytest.raises(OverTimeBudget, match="even at its fastest setting"):
        process(photo_bytes(500, 500), {"format": "avif"}, budget=budget_of(2000))


def test_best_format_skips_a_candidate_that_cannot_fit(monkeypatch):
    import imagepipe.core.budget as b

    costs = {"avif": {s: (0.0, 40_000.0) for s in range(11)}, "webp": {4: (0.0, 50.0)},
             "jpeg:turbo": {1: (0.0, 20.0)}}
    monkeypatch.setattr(b, "ENCODE_COSTS", costs)
    result = process(photo_bytes(300, 200), {"format": "best", "quality": 70}, budget=budget_of(1000))
    per = result.facts["search"]["per_format"]
    assert "avif" in per and "needs" in per["avif"]["skipped"]
    assert result.facts["output"]["format"] in ("jpeg", "webp")
    assert result.facts["budget"]["skipped"] == ["avif"]


def test_sweep_cells_that_cannot_fit_are_skipped_with_the_reason(monkeypatch):
    import imagepipe.core.budget as b

    monkeypatch.setattr(b, "ENCODE_COSTS", {"avif": {s: (0.0, 40_000.0) for s in range(11)},
                                            "jpeg:turbo": {1: (0.0, 20.0)}})
    prepared = prepare(photo_bytes(300, 200), {"format": "best"})
    skipped: list[dict] = []
    points = run_cells(prepared, [Cell("jpeg", 60), Cell("avif", 60)], budget=budget_of(1000),
                       skipped=skipped)
    assert [p["format"] for p in points] == ["jpeg"]
    assert [s["format"] for s in skipped] == ["avif"] and "needs" in skipped[0]["skipped"]


def _iso(dt: datetime) -> str:
    return dt.strftime(ISO_FORMAT)


def test_a_killed_attempt_is_recognised_only_after_its_deadline():
    now = datetime.now(UTC)
    prev = {"attempt": 1, "started_at": _iso(now - timedelta(seconds=70)),
            "deadline_at": _iso(now - timedelta(seconds=10))}
    err = killed_attempt({"previous_attempt": prev}, now)
    assert err is not None and err.code == "attempt_killed" and err.permanent
    assert "60 s" in err.message and "resize" in err.message
    # its deadline is still ahead: it may still be running (a duplicate delivery): run as usual
    alive = {**prev, "deadline_at": _iso(now + timedelta(seconds=5))}
    assert killed_attempt({"previous_attempt": alive}, now) is None
    assert killed_attempt({}, now) is None


def test_an_encode_that_needs_more_memory_than_is_free_is_refused():
    from imagepipe.core.budget import (
        ENCODE_MEMORY_BPP,
        ENCODE_MEMORY_FIXED_MB,
        MEMORY_SAFETY,
        check_memory,
        memory_mb,
        own_rss_mb,
    )
    from imagepipe.errors import OverMemoryBudget

    need = memory_mb("avif", 8000 * 6000)
    assert need == pytest.approx(MEMORY_SAFETY * (ENCODE_MEMORY_FIXED_MB.get("avif", 0.0)
                                                  + ENCODE_MEMORY_BPP["avif"] * 48e6 / 1048576))
    budget = budget_of(60_000)
    budget.memory_mb = own_rss_mb() + 64 + 300  # ≈ 300 MB free
    with pytest.raises(OverMemoryBudget) as info:
        plan_encode("avif", parse_recipe({}), 8000, 6000, budget=budget, costs=COSTS)
    err = info.value
    assert err.code == "over_memory_budget" and err.permanent
    assert "8000x6000" in err.message and "processor memory" in err.message
    adv = err.details["advice"]
    assert memory_mb("avif", adv["max_width"] * adv["max_height"]) <= err.details["free_mb"]
    free = err.details["free_mb"]
    assert adv["formats_that_fit"] == [f for f, enc in (("jpeg", "jpeg:turbo"), ("webp", "webp"))
                                       if memory_mb(enc, 48_000_000) <= free]
    assert "jpeg" in adv["formats_that_fit"]  # libjpeg streams
    check_memory("jpeg", "jpeg:turbo", 8000, 6000, 1, budget)  # libjpeg streams: fits
    budget.memory_mb = None  # unknown size: not checked
    check_memory("avif", "avif", 8000, 6000, 1, budget)


def test_cpu_contention_slows_the_estimate_and_can_force_an_adaptation():
    calm = plan_encode("avif", parse_recipe({}), 1000, 1000, budget=budget_of(2000), costs=COSTS)
    assert calm.setting == 6
    busy = budget_of(2000)
    busy.slowdown = 3.0  # e.g. a load average of 6 on 2 CPUs
    plan = plan_encode("avif", parse_recipe({}), 1000, 1000, budget=busy, costs=COSTS)
    assert plan.setting == 8 and plan.estimate_ms == pytest.approx(900.0)  # 300 ms × 3; 7 would need 1950


def test_cpu_slowdown_from_the_environment_or_the_load(monkeypatch):
    import os

    from imagepipe.core.budget import contention

    monkeypatch.setenv("IMAGEPIPE_CPU_SLOWDOWN", "2.5")
    assert contention() == 2.5 and Budget.from_remaining(1000).slowdown == 2.5
    monkeypatch.setenv("IMAGEPIPE_CPU_SLOWDOWN", "0.5")
    with pytest.raises(InternalError, match="at least 1"):
        contention()
    monkeypatch.setenv("IMAGEPIPE_CPU_SLOWDOWN", "auto")
    expected = max(1.0, round(os.getloadavg()[0] / (os.cpu_count() or 1), 2))
    assert abs(contention() - expected) < 1.0  # the load average moves between the two reads


def test_libvips_encoders_are_never_forked():
    # libvips' worker threads do not survive a fork: a forked mozjpeg encode never returns
    r = parse_recipe({"format": "jpeg", "jpeg": {"encoder": "mozjpeg"}})
    plan = plan_encode("jpeg", r, 4000, 3000, budget=budget_of(10_000), costs=COSTS)
    assert plan.encoder == "jpeg:mozjpeg" and plan.estimate_ms is None and not plan.stoppable
    jpegli = plan_encode("jpeg", parse_recipe({"jpeg": {"encoder": "jpegli"}}), 4000, 3000,
                         budget=budget_of(10_000), costs=COSTS)
    assert jpegli.stoppable  # unknown cost, forkable


def test_a_mozjpeg_encode_under_a_budget_completes():
    data = photo_bytes(600, 400)
    result = process(data, {"format": "jpeg", "jpeg": {"encoder": "mozjpeg"}}, budget=budget_of(20_000))
    assert result.data[:2] == b"\xff\xd8" and result.facts["budget"]["stoppable"] is False


def test_every_encoder_has_a_memory_row_and_jxl_effort_picks_its_own():
    from imagepipe.core.budget import ENCODE_MEMORY_BPP, memory_mb, memory_row
    from imagepipe.core.encode import ENCODERS

    for encoder in (*ENCODERS, "webp:lossless", "jxl:lossless"):
        assert memory_row(encoder) in ENCODE_MEMORY_BPP, encoder
    assert memory_row("jxl", 7) == "jxl" and memory_row("jxl", 8) == memory_row("jxl", 9) == "jxl:e8"
    assert memory_row("jxl:lossless", 9) == "jxl:lossless:e8" and memory_row("avif", 9) == "avif"
    assert {"jxl:e8", "jxl:lossless:e8"} <= set(ENCODE_MEMORY_BPP)
    # libjxl's effort 8 and 9 need an order of magnitude more than effort 7 (measured: ≈ 275 vs 18 B/px)
    assert memory_mb("jxl", 12_000_000, setting=8) > 5 * memory_mb("jxl", 12_000_000, setting=7)


def test_a_heavy_jxl_effort_is_refused_with_a_lighter_one_offered():
    from imagepipe.core.budget import check_memory, memory_mb, own_rss_mb
    from imagepipe.errors import OverMemoryBudget

    budget = budget_of(60_000)
    budget.memory_mb = own_rss_mb() + 64 + 1500  # a 1792 MB processor: ≈ 1.5 GB free
    w, h = 4000, 3000
    assert memory_mb("jxl", w * h, setting=7) <= 1500 < memory_mb("jxl", w * h, setting=9)
    check_memory("jxl", "jxl", w, h, 1, budget, setting=7)  # fits
    with pytest.raises(OverMemoryBudget) as info:
        plan_encode("jxl", parse_recipe({"format": "jxl", "jxl": {"effort": 9}}), w, h, budget=budget,
                    costs=COSTS)
    err = info.value
    assert err.details["advice"]["max_effort"] == 7 and "jxl.effort 7 or lower" in err.message
    assert memory_mb("jxl", err.details["advice"]["max_width"] * err.details["advice"]["max_height"],
                     setting=9) <= err.details["free_mb"]
