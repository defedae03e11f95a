"""Fixtures for the dashboard's AppTest tests: the app pointed at the session's local stack."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"


@pytest.fixture
def app_env(local_stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """IMAGEPIPE_API_URL/KEY set to the running local stack, so the dashboard uses it."""
    monkeypatch.setenv("IMAGEPIPE_API_URL", local_stack.api_url)
    monkeypatch.setenv("IMAGEPIPE_API_KEY", local_stack.api_key)
    yield local_stack


def photo_jpeg(w: int = 640, h: int = 400, seed: int = 1) -> bytes:
    """A photo-like JPEG: smooth gradients plus a little noise, so compression has work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 37.0) * np.cos(y / 23.0)], axis=-1)
    img = np.clip(base * 220 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def alpha_png(size: int = 200) -> bytes:
    """A PNG with a transparent background and a translucent disc."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    from PIL import ImageDraw

    ImageDraw.Draw(img).ellipse((20, 20, size - 20, size - 20), fill=(230, 57, 70, 200))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
