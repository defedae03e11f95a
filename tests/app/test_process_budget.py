"""AppTest through the running local stack: a job that cannot finish in the processor's time
shows its elapsed time against its budget while it runs, then the typed failure and what to
change (issue 18)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP, photo_jpeg

pytestmark = pytest.mark.integration


def test_a_job_stopped_for_time_shows_its_budget_then_what_to_change(app_env: Any) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    at.selectbox(key="rp.format").set_value("avif").run()
    at.slider(key="rp.avif.speed").set_value(0).run()  # not in the cost table: runs stoppable
    at.checkbox(key="rp.resize.on").uncheck().run()  # full size: ≈ 5 s/MP at speed 0, far past 20 s
    slow = [("slow.jpg", photo_jpeg(2400, 1800, seed=5), "image/jpeg")]
    at.file_uploader(key="process.files").set_value(slow).run()
    at.button(key="process.go").click().run()
    assert not at.exception

    budget_texts: list[str] = []
    deadline = time.monotonic() + 120
    while True:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        budget_texts += [p.proto.text for p in at.get("progress") if "time budget" in p.proto.text]
        batch = at.session_state["process.batch"]
        if batch.done:
            at.run()
            break
        assert time.monotonic() < deadline, batch.counts()
        time.sleep(0.3)

    # while it ran: "slow.jpg — running, 3.2 s of its 20 s time budget"
    assert budget_texts and "running" in budget_texts[0], budget_texts
    task = batch.tasks[0]
    assert (task.stage, task.error_code) == ("failed", "timeout"), (task.error_code, task.error_message)
    errors = [e.value for e in at.error]
    assert any("timeout" in e and "processor timeout" in e for e in errors), errors
    assert any("not retried" in c.value for c in at.caption), [c.value for c in at.caption]
