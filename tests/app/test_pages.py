"""AppTest: every dashboard page renders against the running local stack, and the Process page
uploads through its file uploader, processes, and shows the result and its facts."""

from __future__ import annotations

import time
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP, alpha_png, photo_jpeg

pytestmark = pytest.mark.integration

PAGES = ["pages/process.py", "pages/history.py", "pages/system.py"]
RUN_TIMEOUT = 60


def _app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _run_until_batch_done(at: AppTest, timeout: float = 120) -> Any:
    """Rerun the script (as the page's polling fragment does) until every file has finished."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        _no_exception(at)
        batch = at.session_state["process.batch"]
        if batch.done:
            at.run()  # the run after the last file finished renders every result card
            _no_exception(at)
            return batch
        assert time.monotonic() < deadline, f"batch not done: {batch.counts()}"
        time.sleep(0.3)


def test_every_page_renders(app_env: Any) -> None:
    at = _app().run()
    _no_exception(at)
    assert at.title[0].value == "Process images"
    assert at.selectbox(key="rp.preset").value == "Web 1600 WebP"
    # the watermark position grid, and recipe values surviving a visit to another page
    at.radio(key="rp.wm.kind").set_value("text").run()
    at.button(key="rp.wm.pos.top-left").click().run()
    _no_exception(at)
    assert at.session_state["rp.wm.position"] == "top-left"
    assert at.button(key="rp.wm.pos.top-left").proto.type == "primary"
    at.slider(key="rp.quality").set_value(55).run()
    at.switch_page("pages/system.py").run()
    at.switch_page("pages/process.py").run()
    _no_exception(at)
    assert at.slider(key="rp.quality").value == 55
    assert at.radio(key="rp.wm.kind").value == "text"
    assert at.session_state["rp.wm.position"] == "top-left"
    for page, title in zip(PAGES[1:], ["History & analytics", "System"], strict=True):
        at.switch_page(page).run()
        _no_exception(at)
        assert at.title[0].value == title
    # the System page reached the stack's /health: every component row is ok; the workers are
    # not observable through a remote API (this app was given IMAGEPIPE_API_URL)
    health = at.dataframe[0].value.set_index("component")["status"].to_dict()
    assert health.pop("Processor workers") == "n/a"
    assert {"S3 source bucket", "SQS dead-letter queue", "DynamoDB metadata table"} <= set(health)
    assert set(health.values()) == {"ok"}, health
    assert any("All components healthy" in s.value for s in at.success)
    # ... and lists the service's presets and drop rules (GET /presets)
    frames = [df.value for df in at.dataframe]
    presets = next(f for f in frames if "recipe_hash" in f.columns)
    assert "Web 1600 WebP (default)" in set(presets["preset"])
    rules = next(f for f in frames if "prefix" in f.columns)
    assert list(rules["order"])[-1] == "default" and "uploads/thumbnails/" in set(rules["prefix"])


def test_process_page_uploads_processes_and_shows_facts(app_env: Any) -> None:
    at = _app().run()
    _no_exception(at)
    at.selectbox(key="rp.preset").set_value("Thumbnail 320 JPEG").run()
    assert at.selectbox(key="rp.format").value == "jpeg"  # the preset filled the advanced panel
    at.file_uploader(key="process.files").set_value(
        [
            ("photo.jpg", photo_jpeg(), "image/jpeg"),
            ("logo.png", alpha_png(), "image/png"),
            ("notes **bold**.txt", b"not an image at all", "text/plain"),
        ]
    ).run()
    _no_exception(at)
    go = at.button(key="process.go")
    assert go.label == "Process 3 image(s)" and not go.disabled
    go.click().run()
    _no_exception(at)
    # while the batch runs the button is disabled (a second click would start a second batch)
    assert at.button(key="process.go").disabled or at.session_state["process.batch"].done

    batch = _run_until_batch_done(at)
    stages = {t.name: t.stage for t in batch.tasks}
    assert stages == {"photo.jpg": "succeeded", "logo.png": "succeeded", "notes **bold**.txt": "failed"}, [
        (t.name, t.error_code, t.error_message) for t in batch.tasks
    ]

    # the failed file shows its code and (escaped) message; the others went on
    failed = next(t for t in batch.tasks if t.stage == "failed")
    assert any(failed.error_code in e.value for e in at.error), [e.value for e in at.error]
    assert "notes **bold**.txt" in [t.value for t in at.text]  # the filename as plain text

    # facts panel for each succeeded file
    labels = [m.label for m in at.metric]
    for label in ("Before", "After", "Ratio", "Saved", "Bits per pixel", "SSIM"):
        assert labels.count(label) == 2, labels
    photo = next(t for t in batch.tasks if t.name == "photo.jpg")
    assert photo.job["result"]["width"] <= 320 and photo.job["result"]["height"] <= 320
    before = [m.value for m in at.metric if m.label == "Before"]
    assert all(v and v != "–" for v in before)
    assert len(at.download_button) == 2

    # comparison views: side by side + wipe + zoom images exist, and the sliders work
    assert len(at.image) >= 2 * 6
    at.slider(key=f"wipe-{photo.task_id}").set_value(20).run()
    at.slider(key=f"zx-{photo.task_id}").set_value(10).run()
    _no_exception(at)

    # History shows the processed jobs
    at.switch_page("pages/history.py").run()
    _no_exception(at)
    jobs = at.dataframe[0].value
    assert photo.job_id in set(jobs["job_id"])
    row = jobs[jobs["job_id"] == photo.job_id].iloc[0]
    assert row["status"] == "succeeded" and row["output_format"] == "jpeg"
    assert row["preset"] == "Thumbnail 320 JPEG"
    assert row["arrival"] == "presigned upload"
    images = at.dataframe[1].value
    assert images[images["image_id"] == photo.job["image_id"]].iloc[0]["arrival"] == "presigned upload"
    assert any(m.label == "Total per 1,000 images" for m in at.metric)
    # filtered on another way in (GET /jobs?arrival=drop), the page's own uploads are not listed
    at.multiselect(key="hist.arrival").set_value(["drop"]).run()
    _no_exception(at)
    shown = at.dataframe[0].value if at.dataframe else None
    assert shown is None or photo.job_id not in set(shown.get("job_id", []))


def test_secrets_toml_selects_the_api_and_the_key_stays_masked(
    local_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGEPIPE_API_URL", raising=False)
    monkeypatch.delenv("IMAGEPIPE_API_KEY", raising=False)
    at = _app()
    at.secrets["api_url"] = local_stack.api_url
    at.secrets["api_key"] = local_stack.api_key
    at.run()
    at.switch_page("pages/system.py").run()
    _no_exception(at)
    assert any("secrets.toml" in m.value for m in at.markdown)
    assert any("All components healthy" in s.value for s in at.success)
    shown = [t.value for t in at.text] + [m.value for m in at.markdown]
    shown += [df.value.to_csv() for df in at.dataframe]
    assert local_stack.api_key[-4:] in " ".join(shown)
    assert not any(local_stack.api_key in s for s in shown)


def test_unreachable_api_gives_typed_errors_not_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens on the configured URL: every page says so with the client's error code."""
    import socket

    with socket.socket() as sock:  # a loopback port that is certainly closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("IMAGEPIPE_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("IMAGEPIPE_API_KEY", "whatever-key")
    at = _app().run()
    at.file_uploader(key="process.files").set_value(("a.jpg", photo_jpeg(64, 48), "image/jpeg")).run()
    at.button(key="process.go").click().run()
    batch = _run_until_batch_done(at, timeout=60)
    assert [t.error_code for t in batch.tasks] == ["transport_error"]
    assert any("transport_error" in e.value for e in at.error)
    for page in ("pages/compare.py", "pages/history.py", "pages/system.py"):
        at.switch_page(page).run()
        _no_exception(at)
        assert any("transport_error" in e.value for e in at.error), page
    # the Compare page asks for the image list once per run (picker and batch report share it)
    at.switch_page("pages/compare.py").run()
    shown = [e.value for e in at.error if "transport_error" in e.value]
    assert len(shown) == 1, shown


def test_watermark_image_and_invalid_recipe_in_the_panel() -> None:
    """The advanced panel without a backend: an image watermark lands in the recipe as base64,
    an impossible combination is refused field by field and disables Process."""
    import base64
    import json

    at = _app().run()
    at.radio(key="rp.wm.kind").set_value("image").run()
    logo = alpha_png(64)
    at.file_uploader(key="rp.wm.file").set_value(("logo.png", logo, "image/png")).run()
    _no_exception(at)
    recipe = json.loads(at.json[0].value)
    assert base64.b64decode(recipe["watermark"]["image_b64"]) == logo
    assert recipe["watermark"]["text"] is None
    # fit "cover" needs both sides: height 0 means "follow width" -> invalid
    at.checkbox(key="process.use_samples").check().run()
    at.selectbox(key="rp.resize.fit").set_value("cover").run()
    at.number_input(key="rp.resize.height").set_value(0).run()
    _no_exception(at)
    assert any("invalid_recipe" in e.value for e in at.error)
    assert at.button(key="process.go").disabled
