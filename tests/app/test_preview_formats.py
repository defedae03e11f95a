"""The dashboard previews formats browsers may not display (JPEG XL, HEIC) by decoding them."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imagepipe.core import process
from pages.ui import imaging
from tests.unit import imagegen as g


@pytest.mark.parametrize("fmt", ["jxl", "heif"])
def test_jxl_and_heic_preview_as_png(fmt: str) -> None:
    src = g.photo_like(120, 80)
    data = g.encode(src, fmt, quality=90)
    img = imaging.open_first_frame(data)
    assert img.size == (120, 80) and img.mode == "RGB"
    png = imaging.to_png(imaging.fit_within(img, 60))
    shown = Image.open(io.BytesIO(png))
    assert shown.format == "PNG" and shown.size == (60, 40)


def test_jxl_output_pair_compares_with_the_heic_original() -> None:
    original = g.encode(g.photo_like(96, 64), "heif", quality=90)
    output = process(original, {"format": "jxl", "quality": 70}).data
    pair = imaging.make_pair(original, output)
    assert pair.before.size == pair.after.size == (96, 64)
