"""How much of an invocation is left for one more queue record.

A batch of up to ten records runs one record after another in one invocation. If the batch
outlasts the function timeout, the whole invocation fails and *every* unfinished record's receive
count goes up, so healthy records at the back of slow batches would reach the redrive limit
without ever being tried. The processor therefore starts a record only while the time left
exceeds ``factor`` × the longest record seen so far in this invocation (and a fixed margin);
otherwise it hands the record back to the queue as a fresh message (receive count 0).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class TimeBudget:
    """Tracks the longest record of one invocation against the time the invocation has left."""

    def __init__(self, remaining_ms: Callable[[], int], *, margin_ms: int = 2000, factor: float = 1.5):
        self._remaining_ms = remaining_ms
        self.margin_ms = margin_ms
        self.factor = factor
        self.longest_ms = 0.0
        self.started = 0

    @classmethod
    def for_context(cls, context: Any) -> TimeBudget | None:
        """The budget of a Lambda context, or None when there is no context to ask."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return cls(remaining) if callable(remaining) else None

    def allows_next(self) -> bool:
        """True for the first record, then while the time left covers the longest record so far."""
        if self.started == 0:
            return True
        needed = max(self.margin_ms, self.factor * self.longest_ms)
        return self._remaining_ms() > needed

    def run(self, work: Callable[[], Any]) -> Any:
        """Run one record's work, remembering how long it took (also when it raised)."""
        self.started += 1
        t0 = time.perf_counter()
        try:
            return work()
        finally:
            self.longest_ms = max(self.longest_ms, (time.perf_counter() - t0) * 1000.0)
