"""AppTest: History on a seeded stack — headline figures equal to the API's rollups and to a full
scan, the job table paginated server-side, a filter applied server-side, the CSV export's
progress and download link."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from imagepipe.service import rollups
from pipeline.client import Client
from pipeline.rollups_cli import table_for
from pipeline.seed import seed
from tests.app.conftest import APP

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded(local_stack: Any) -> Any:
    table = table_for(local_stack.endpoint_url, local_stack.env["IMAGEPIPE_TABLE"])
    seed(table, 1500, days=90, seed=23)
    return table


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_history_on_a_seeded_stack(app_env: Any, seeded: Any) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("pages/history.py").run()
    assert not at.exception, [e.value for e in at.exception]
    today = datetime.now(UTC).date()
    window = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
    with Client(app_env.api_url, app_env.api_key) as client:
        stats = client.stats(**window)
    assert stats["totals"]["jobs"] > 300  # a month of 1,500 jobs over 90 days
    assert int(_metric(at, "Jobs").replace(",", "")) == stats["totals"]["jobs"]
    assert int(_metric(at, "Failed").replace(",", "")) == stats["totals"]["failed"]
    assert rollups.check(seeded)["ok"]  # and the rollups equal a full scan of the job records

    table = at.dataframe[0].value
    assert len(table) == 50
    first_page = list(table["job_id"])
    at.button(key="hist.next").click().run()
    second = list(at.dataframe[0].value["job_id"])
    assert len(second) == 50 and not set(second) & set(first_page)
    assert max(at.dataframe[0].value["created_at"]) <= min(table["created_at"])
    at.button(key="hist.prev").click().run()
    assert list(at.dataframe[0].value["job_id"]) == first_page

    at.multiselect(key="hist.status").set_value(["failed"]).run()
    assert not at.exception
    failed = at.dataframe[0].value
    assert len(failed) == min(50, stats["totals"]["failed"]) and set(failed["status"]) == {"failed"}
    assert int(_metric(at, "Jobs").replace(",", "")) == stats["totals"]["failed"]

    at.button(key="hist.export").click().run()
    deadline = time.monotonic() + 60
    while "hist.export_done" not in at.session_state:
        assert time.monotonic() < deadline
        time.sleep(0.3)
        at.run()  # stands in for the progress fragment's timer
    assert at.session_state["hist.export_done"]["rows"] == stats["totals"]["failed"]
    assert not at.exception
    links = at.get("link_button")
    assert len(links) == 1 and "Download CSV" in str(links[0].proto)
    assert "_exports/" in links[0].proto.url
