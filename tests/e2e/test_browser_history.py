"""Real browser, History on a seeded stack: the headline figures equal the API's rollups, the
charts render, the job table pages server-side, the CSV export shows its download link;
screenshot test-artifacts/09-history-seeded.png."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.client import Client
from pipeline.rollups_cli import table_for
from pipeline.seed import seed
from tests.e2e.test_browser import _no_exceptions, _settle, _shot

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _metric(page: Any, label: str) -> int:
    box = page.get_by_test_id("stMetric").filter(has_text=label).first.get_by_test_id("stMetricValue")
    return int(box.inner_text().replace(",", ""))


def test_history_on_a_seeded_stack(page: Any, dashboard_url: str, local_stack: Any,
                                   artifacts_dir: Path) -> None:
    seed(table_for(local_stack.endpoint_url, local_stack.env["IMAGEPIPE_TABLE"]), 2000, days=90, seed=41)
    today = datetime.now(UTC).date()
    with Client(local_stack.api_url, local_stack.api_key) as c:
        window = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
        totals = c.stats(**window)["totals"]
    page.goto(dashboard_url)
    page.get_by_role("link", name="History & analytics").click()
    page.get_by_role("heading", name="History & analytics").wait_for()
    page.get_by_text("Estimated AWS cost per 1,000 images").wait_for()
    page.locator("[data-testid='stVegaLiteChart']").first.wait_for()
    _settle(page)
    _no_exceptions(page)
    assert _metric(page, "Jobs") == totals["jobs"] > 500
    assert _metric(page, "Failed") == totals["failed"]
    assert page.locator("[data-testid='stVegaLiteChart']").count() >= 5
    page.get_by_text("Page 1 ·").wait_for()
    page.get_by_role("button", name="Next").click()
    page.get_by_text("Page 2 ·").wait_for()
    page.get_by_role("button", name="Export CSV").click()
    page.get_by_role("link", name="Download CSV").wait_for(timeout=60_000)
    _settle(page)
    _no_exceptions(page)
    _shot(page, artifacts_dir / "09-history-seeded.png")
