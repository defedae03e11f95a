"""Real browser: drop images into the dashboard's uploader, process them on the local stack,
see the before/after view and the facts, visit every page; full-page screenshots in test-artifacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import alpha_png, photo_jpeg

pytestmark = [pytest.mark.browser, pytest.mark.integration]

RESULT_TIMEOUT_MS = 120_000


def _no_exceptions(page: Any) -> None:
    errors = page.get_by_test_id("stException")
    assert errors.count() == 0, errors.all_inner_texts()


def _settle(page: Any) -> None:
    """Wait until Streamlit has finished the current run (no running indicator)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=60_000,
    )
    page.wait_for_timeout(400)


_HEIGHT_JS = (
    "() => Math.max(document.body.scrollHeight, ...Array.from(document.querySelectorAll("
    '\'[data-testid="stMain"], [data-testid="stMainBlockContainer"], '
    '[data-testid="stAppViewContainer"], [data-testid="stSidebar"]\''
    ")).map(e => e.scrollHeight))"
)


def _shot(page: Any, path: Path) -> None:
    """A screenshot of the whole app: Streamlit scrolls inside its main container, so the
    viewport is grown to the content's height first (``full_page`` alone would cut it off)."""
    size = page.viewport_size
    height = 0
    for _ in range(4):  # grow until the height is stable (late-rendering tables, charts)
        new = int(page.evaluate(_HEIGHT_JS)) + 40
        if new <= height:
            break
        height = min(new, 16000)
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)


def test_process_compare_history_system(page: Any, dashboard_url: str, artifacts_dir: Path) -> None:
    page.goto(dashboard_url)
    page.get_by_role("heading", name="Process images").wait_for()
    _settle(page)
    _shot(page, artifacts_dir / "01-process-empty.png")

    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Drop images here")
    uploader.locator("input[type=file]").set_input_files(
        [
            {"name": "meadow.jpg", "mimeType": "image/jpeg", "buffer": photo_jpeg(2400, 1600, seed=3)},
            {"name": "badge.png", "mimeType": "image/png", "buffer": alpha_png(320)},
        ]
    )
    button = page.get_by_role("button", name="Process 2 image(s)")
    button.wait_for()
    _settle(page)
    button.click()
    # best effort: what the page shows while the batch runs (may already be done on a fast machine)
    page.get_by_text("3. Results").wait_for()
    page.screenshot(path=str(artifacts_dir / "02a-process-progress.png"))

    # results arrive while the page polls: two facts panels and two download buttons
    page.get_by_text("Bits per pixel").nth(1).wait_for(timeout=RESULT_TIMEOUT_MS)
    page.get_by_test_id("stDownloadButton").nth(1).wait_for()
    _settle(page)
    _no_exceptions(page)
    assert page.get_by_text("Original (resized to the output's size)").count() == 2
    assert page.get_by_text("Transparent areas are shown on a checkerboard.").count() == 1
    _shot(page, artifacts_dir / "02-process-results.png")

    page.get_by_role("tab", name="Wipe").first.click()
    page.get_by_text("Wipe position").first.wait_for()
    _settle(page)
    page.get_by_role("tab", name="Wipe").first.scroll_into_view_if_needed()
    _shot(page, artifacts_dir / "03-process-wipe.png")

    page.get_by_role("tab", name="Zoom 1:1").first.click()
    page.get_by_text("Region size (px)").first.wait_for()
    _settle(page)
    _shot(page, artifacts_dir / "04-process-zoom.png")
    _no_exceptions(page)

    page.get_by_role("link", name="History & analytics").click()
    page.get_by_role("heading", name="History & analytics").wait_for()
    page.get_by_text("Estimated AWS cost per 1,000 images").wait_for()
    page.locator("[data-testid='stVegaLiteChart']").first.wait_for()
    _settle(page)
    _no_exceptions(page)
    succeeded = page.get_by_test_id("stMetric").filter(has_text="Succeeded").get_by_test_id("stMetricValue")
    assert int(succeeded.inner_text().replace(",", "")) >= 2
    _shot(page, artifacts_dir / "05-history.png")

    page.get_by_role("link", name="System").click()
    page.get_by_role("heading", name="System").wait_for()
    page.get_by_text("All components healthy").wait_for()
    _settle(page)
    _no_exceptions(page)
    _shot(page, artifacts_dir / "06-system.png")


def test_embedded_stack_with_sample_images(
    page: Any, embedded_dashboard_url: str, artifacts_dir: Path
) -> None:
    """``make run``'s path: no API URL configured, the dashboard starts the local stack itself.

    The first request of this fresh server is a deep link (/system): Streamlit would run that
    page alone in its legacy pages/ mode; the app must still show it through the router.
    """
    page.goto(f"{embedded_dashboard_url}/system")
    page.get_by_role("heading", name="System").wait_for()
    page.get_by_text("Embedded local stack").wait_for(timeout=60_000)
    page.get_by_text("All components healthy").wait_for()
    _settle(page)
    _no_exceptions(page)
    assert page.get_by_role("link", name="History & analytics").count() == 1  # the router's navigation
    _shot(page, artifacts_dir / "08-embedded-system.png")

    page.get_by_role("link", name="Process").click()
    page.get_by_role("heading", name="Process images").wait_for()
    _settle(page)
    page.get_by_test_id("stCheckbox").filter(has_text="Use sample images").click()
    _settle(page)
    # a text watermark through the advanced panel
    page.get_by_text("Advanced recipe").click()
    page.get_by_role("tab", name="Watermark").click()
    page.get_by_test_id("stRadio").filter(has_text="Watermark").get_by_text("text", exact=True).click()
    _settle(page)
    text = page.get_by_label("Text", exact=True)
    text.fill("ImagePipe demo")
    text.press("Enter")
    _settle(page)
    page.get_by_role("button", name="▦ tiled").click()
    _settle(page)
    page.mouse.move(0, 0)
    _shot(page, artifacts_dir / "07a-embedded-advanced-watermark.png")
    page.get_by_role("tab", name="Format & quality").click()
    _settle(page)
    _shot(page, artifacts_dir / "07b-embedded-advanced-format.png")
    button = page.get_by_role("button", name="Process 4 image(s)")
    button.wait_for()
    _settle(page)
    button.click()
    page.get_by_text("Bits per pixel").nth(3).wait_for(timeout=RESULT_TIMEOUT_MS)
    _settle(page)
    _no_exceptions(page)
    assert page.get_by_text("Transparent areas are shown on a checkerboard.").count() >= 1  # logo.png
    assert page.get_by_text("Recipe: Web 1600 WebP (modified)").count() == 1
    _shot(page, artifacts_dir / "07-embedded-samples.png")
