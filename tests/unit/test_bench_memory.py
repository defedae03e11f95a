"""The memory table's line (pipeline/bench/encode_costs.py ``memory_line``) and its rendering
into core/budget.py's generated block."""

from __future__ import annotations

import pytest

from pipeline.bench.encode_costs import memory_line, render_memory

MIB = 1048576


@pytest.mark.parametrize("points", [
    [(3e6, 110 * MIB + 18 * 3e6), (12e6, 110 * MIB + 18 * 12e6)],  # fixed part + slope (JPEG XL ≤ 7)
    [(3e6, 0.0), (12e6, 32e6), (3e6, 1e6), (12e6, 30e6)],  # streams at 3 MP, grows at 12 (turbo)
    [(3e6, 3e6 * 24), (12e6, 12e6 * 22)],  # per-pixel, a little less at the larger size (AVIF)
])
def test_the_line_lies_above_every_measurement(points):
    fixed, bpp = memory_line(points)
    assert fixed >= 0 and bpp >= 0.5
    for pixels, growth in points:
        assert fixed * MIB + bpp * pixels >= growth * (1 - 1e-9)


def test_a_pure_slope_gets_no_fixed_part_and_the_block_renders():
    fixed, bpp = memory_line([(3e6, 3e6 * 9.5), (12e6, 12e6 * 9.5)])
    assert fixed == 0.0 and bpp == pytest.approx(9.5, abs=0.1)
    block = render_memory({"jpeg:mozjpeg": (0.0, 9.6), "jxl": (110.2, 18.1)})
    scope: dict = {}
    exec(block, scope)  # noqa: S102 - our own generated code
    assert scope["ENCODE_MEMORY_BPP"] == {"jpeg:mozjpeg": 9.6, "jxl": 18.1}
    assert scope["ENCODE_MEMORY_FIXED_MB"] == {"jxl": 110.2}
