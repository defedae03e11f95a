"""Sweeps end to end through the running local stack: ``POST /sweeps`` fans out one queue
message per part, the processor workers run them, ``GET /sweeps/{id}`` returns every point with
a download URL for its stored variant; bad grids are typed errors; the client's wait works."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from imagepipe.errors import Conflict, InvalidRecipe, NotFound
from pipeline.client import Client
from tests.unit.imagegen import photo_bytes

GRID = {"formats": ["jpeg", "webp", "avif"], "qualities": [30, 60, 90],
        "option": {"name": "webp.method", "values": [2, 6]}}


@pytest.fixture(scope="module")
def client(local_stack: Any) -> Any:
    with Client(local_stack.api_url, local_stack.api_key, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def image_id(client: Client) -> str:
    return str(client.upload(photo_bytes(400, 260, "jpeg", seed=21, quality=95), "sweep.jpg")["image_id"])


def test_sweep_end_to_end(client: Client, image_id: str) -> None:
    started = client.sweep(image_id, GRID, resize={"width": 200})
    assert started["status"] == "queued" and started["parts"] == 3 and started["cells"] == 3 + 6 + 3
    sweep = client.wait_sweep(started["sweep_id"], timeout=90)
    assert sweep["status"] == "succeeded", sweep.get("errors")
    assert sweep["progress"] == {"parts_total": 3, "parts_done": 3, "parts_failed": 0, "fraction": 1.0,
                                 "points": 12, "cells_total": 12}
    pts = sweep["points"]
    assert [(p["format"], p["quality"], p["option_value"]) for p in pts] == (
        [("jpeg", q, None) for q in (30, 60, 90)]
        + [("webp", q, m) for q in (30, 60, 90) for m in (2, 6)]
        + [("avif", q, None) for q in (30, 60, 90)])
    for p in pts:
        assert p["width"] == 200 and p["bytes"] > 0 and 0 < p["ssim"] <= 1 and p["psnr"] > 0
        assert p["key"].startswith(f"outputs/{image_id}/sweeps/{started['sweep_id']}/")
    # a stored variant is exactly the measured encoding
    p = pts[4]
    data = client.download(p["download_url"])
    assert len(data) == p["bytes"]
    im = Image.open(io.BytesIO(data))
    assert im.format == "WEBP" and im.size == (200, 130)
    # listed, newest first, without points
    listed = client.list_sweeps(image_id=image_id)["items"]
    assert started["sweep_id"] in {s["sweep_id"] for s in listed}
    assert all("points" not in s for s in listed)


@pytest.mark.parametrize("grid,field", [
    ({"formats": ["bmp"], "qualities": [50]}, "grid.formats"),
    ({"formats": ["jpeg"], "qualities": list(range(1, 22))}, "grid.qualities"),
    ({"formats": ["jpeg"], "qualities": [50], "option": {"name": "webp.method", "values": [1]}},
     "grid.option.name"),
])
def test_bad_grid_is_422_invalid_recipe(client: Client, image_id: str, grid: dict[str, Any],
                                        field: str) -> None:
    with pytest.raises(InvalidRecipe) as ei:
        client.sweep(image_id, grid)
    assert ei.value.details[0]["field"] == field
    assert ei.value.status_code == 422  # type: ignore[attr-defined]


def test_unknown_image_and_sweep_are_404_and_unuploaded_is_409(client: Client, local_stack: Any) -> None:
    with pytest.raises(NotFound):
        client.sweep("0" * 32, {"formats": ["jpeg"], "qualities": [50]})
    with pytest.raises(NotFound):
        client.get_sweep("0" * 32 + "-sw" + "0" * 14)
    with pytest.raises(NotFound):
        client.get_sweep("not-a-sweep")
    pending = client.request("POST", "/uploads", json={"filename": "x.jpg", "content_type": "image/jpeg",
                                                       "size": 10}, ok=(201,))
    with pytest.raises(Conflict):
        client.sweep(pending["image_id"], {"formats": ["jpeg"], "qualities": [50]})


def test_undecodable_original_fails_the_sweep_with_its_code(client: Client) -> None:
    up = client.upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "broken.png", content_type="image/png")
    started = client.sweep(up["image_id"], {"formats": ["jpeg", "webp"], "qualities": [50]})
    sweep = client.wait_sweep(started["sweep_id"], timeout=60)
    assert sweep["status"] == "failed" and sweep["points"] == []
    assert sweep["progress"]["parts_failed"] == 2
    assert {e["code"] for e in sweep["errors"]} <= {"corrupt_image", "unsupported_format"}
    # the stack keeps serving
    assert client.health()["status"] == "ok"
