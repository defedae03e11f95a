"""TimeBudget: when a batch may start one more record."""

import pytest

from imagepipe.service.budget import TimeBudget


def test_first_record_always_starts_even_with_no_time_left():
    assert TimeBudget(lambda: 0).allows_next() is True


def test_needs_the_margin_and_one_and_a_half_times_the_longest_record():
    left = {"ms": 10_000}
    budget = TimeBudget(lambda: left["ms"], margin_ms=2000, factor=1.5)
    budget.run(lambda: None)
    budget.longest_ms = 4000.0  # pretend the first record took 4 s
    left["ms"] = 6001
    assert budget.allows_next() is True
    left["ms"] = 6000
    assert budget.allows_next() is False
    budget.longest_ms = 100.0
    left["ms"] = 2001
    assert budget.allows_next() is True
    left["ms"] = 1999
    assert budget.allows_next() is False


def test_run_records_the_duration_even_when_the_work_raises():
    budget = TimeBudget(lambda: 10_000)
    with pytest.raises(ZeroDivisionError):
        budget.run(lambda: 1 / 0)
    assert budget.started == 1
    assert budget.longest_ms >= 0.0


def test_for_context_without_a_clock_is_none():
    assert TimeBudget.for_context(None) is None
    assert TimeBudget.for_context(object()) is None
