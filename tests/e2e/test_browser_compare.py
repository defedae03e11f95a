"""Real browser, Compare page: pick an uploaded image, run a sweep on the local stack, see the
rate–distortion chart (a rendered Vega canvas/SVG) and the recommendation; screenshot in
test-artifacts/. (A separate file so it does not collide with the dashboard's own browser test.)"""

from __future__ import annotations

import re
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


def test_compare_page_shows_a_study_and_previews_jxl(page: Any, dashboard_url: str, local_stack: Any,
                                                      artifacts_dir: Path) -> None:
    """A study started through the API (two images, turbo vs JPEG XL), reopened on the Compare
    page: its RD chart renders in Chromium and the savings table names both encoders. A sweep of
    the newest image with JPEG XL variants, reopened, shows the JXL point decoded as images."""
    with Client(local_stack.api_url, local_stack.api_key) as c:
        ids = [c.upload(photo_jpeg(240, 160, seed=s), f"browser-study-{s}.jpg")["image_id"] for s in (51, 52)]
        started = c.study(ids, {"formats": ["jpeg", "jxl"], "qualities": [50, 80]}, resize={"width": 160})
        assert c.wait_study(started["study_id"], timeout=180)["status"] == "succeeded"
        sweep = c.sweep(ids[-1], {"formats": ["jxl"], "qualities": [40, 80]}, resize={"width": 160})
        assert c.wait_sweep(sweep["sweep_id"], timeout=120)["status"] == "succeeded"
    page.goto(dashboard_url)
    page.get_by_role("link", name="Compare").click()
    page.get_by_role("heading", name="Compare").wait_for()
    _settle(page)
    _no_exceptions(page)
    # the study: reopen it (newest first) and see its chart and table
    page.get_by_text("Earlier studies").wait_for(timeout=60_000)
    page.get_by_text("Earlier sweeps of this image").wait_for(timeout=60_000)
    _settle(page)
    opens = page.get_by_role("button").filter(has_text="Open")  # not the dropdowns' icon buttons
    assert opens.count() == 2, opens.all_inner_texts()  # earlier sweeps of the image, earlier studies
    opens.nth(1).click()
    try:
        page.get_by_text(re.compile("Bytes saved against jpeg")).wait_for(timeout=60_000)
    except Exception:
        _shot(page, artifacts_dir / "compare-study-failed.png")
        raise
    _settle(page)
    _no_exceptions(page)
    chart = page.get_by_test_id("stVegaLiteChart").last
    chart.wait_for(timeout=30_000)
    chart.locator("canvas, svg").first.wait_for(timeout=30_000)
    assert page.get_by_test_id("stDataFrame").count() >= 1
    # the JXL sweep of the preselected (newest) image: reopen it; A/B views are PNG previews
    _settle(page)
    opens.first.click()
    page.get_by_text("Compare two settings", exact=False).wait_for(timeout=60_000)
    _settle(page)
    _no_exceptions(page)
    imgs = page.locator("[data-testid='stImage'] img")
    imgs.first.wait_for(timeout=30_000)
    assert imgs.count() >= 2
    assert all(imgs.nth(i).evaluate("e => e.naturalWidth > 0") for i in range(min(imgs.count(), 4)))
    assert page.get_by_text("real file", exact=False).count() >= 1  # the JXL download note
    _shot(page, artifacts_dir / "compare-study.png")
