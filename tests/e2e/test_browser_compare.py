"""Real browser, Compare page: pick an uploaded image, run a sweep on the local stack, see the
rate–distortion chart (a rendered Vega canvas/SVG) and the recommendation; screenshot in
test-artifacts/. (A separate file so it does not collide with the dashboard's own browser test.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.client import Client
from tests.app.conftest import photo_jpeg
from tests.e2e.test_browser import _no_exceptions, _settle, _shot

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SWEEP_TIMEOUT_MS = 120_000


def test_compare_page_runs_a_sweep_and_draws_the_chart(page: Any, dashboard_url: str, local_stack: Any,
                                                       artifacts_dir: Path) -> None:
    with Client(local_stack.api_url, local_stack.api_key) as c:
        image_id = c.upload(photo_jpeg(400, 260, seed=31), "browser-sweep.jpg")["image_id"]
    page.goto(dashboard_url)
    page.get_by_role("link", name="Compare").click()
    page.get_by_role("heading", name="Compare").wait_for()
    _settle(page)
    _no_exceptions(page)
    # the newest uploaded image is preselected in the history picker
    page.get_by_text("browser-sweep.jpg").first.wait_for()
    assert page.get_by_text(image_id[:8]).count() >= 1
    page.get_by_role("button", name="Run sweep").click()
    page.get_by_text("Recommend", exact=True).wait_for(timeout=SWEEP_TIMEOUT_MS)
    _settle(page)
    _no_exceptions(page)
    chart = page.get_by_test_id("stVegaLiteChart").first
    chart.wait_for()
    assert chart.locator("canvas, svg").count() >= 1
    assert page.get_by_text("Pareto frontier", exact=False).count() >= 1
    assert page.get_by_text("Cheapest setting meeting", exact=False).count() == 1
    # clicking a point of the chart makes it B: find a point by hovering until its tooltip shows
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    b_box = page.get_by_test_id("stSelectbox").filter(has_text="click a point")
    initial = b_box.locator("input").get_attribute("value")
    setting, spot = None, None
    for fy in [i / 40 for i in range(2, 38)]:
        for fx in [i / 60 for i in range(3, 50)]:
            spot = (box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            page.mouse.move(*spot)
            tip = page.locator("#vg-tooltip-element.visible")
            if tip.count() and tip.is_visible():
                name = tip.inner_text().split("\n")[1].strip()
                if name != initial:  # a point other than the current B, so the click must change B
                    setting = name
                    break
        if setting:
            break
    assert setting and spot, "no chart point found under the mouse"
    page.mouse.click(*spot)
    b_box.locator(f'input[value="{setting}"]').wait_for(state="attached", timeout=30_000)
    _settle(page)
    _no_exceptions(page)
    _shot(page, artifacts_dir / "compare.png")
