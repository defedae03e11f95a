"""Named recipe presets: the choices the dashboard (and the CLI) offer before the advanced panel.

Each preset is a plain recipe dict in the JSON shape of ``imagepipe.core.recipe.Recipe``
(see docs/architecture.md). Fields a preset leaves out take the recipe defaults.
"""

from __future__ import annotations

import copy
from typing import Any

#: name -> recipe dict. Order is the order the dashboard lists them in.
PRESETS: dict[str, dict[str, Any]] = {
    "Web 1600 WebP": {
        "resize": {"width": 1600, "height": 1600, "fit": "inside", "upscale": False, "filter": "lanczos"},
        "format": "webp",
        "quality": 80,
        "webp": {"method": 4, "lossless": False},
        "metadata": "strip",
        "color": "srgb",
    },
    "Thumbnail 320 JPEG": {
        "resize": {"width": 320, "height": 320, "fit": "cover", "upscale": False, "filter": "lanczos"},
        "format": "jpeg",
        "quality": 75,
        "jpeg": {"progressive": True, "optimize": True, "subsampling": "4:2:0"},
        "metadata": "strip",
        "color": "srgb",
        "ops": {"grayscale": False, "sharpen": 0.3, "blur": 0.0},
    },
    "Social 1200 JPEG": {
        "resize": {"width": 1200, "height": 630, "fit": "cover", "upscale": False, "filter": "lanczos"},
        "format": "jpeg",
        "quality": 82,
        "jpeg": {"progressive": True, "optimize": True, "subsampling": "4:2:0"},
        "metadata": "strip",
        "color": "srgb",
    },
    "AVIF 2048": {
        "resize": {"width": 2048, "height": 2048, "fit": "inside", "upscale": False, "filter": "lanczos"},
        "format": "avif",
        "quality": 60,
        "avif": {"speed": 6},
        "metadata": "strip",
        "color": "srgb",
    },
    "Archive PNG": {
        "resize": None,
        "format": "png",
        "png": {"compress_level": 9, "palette": False, "colors": 256},
        "metadata": "keep_copyright_icc",
        "color": "keep",
    },
    "Strip metadata only": {},
}

#: the preset the dashboard selects first
DEFAULT_PRESET = "Web 1600 WebP"


def preset_names() -> list[str]:
    """The preset names, in display order."""
    return list(PRESETS)


def get_preset(name: str) -> dict[str, Any]:
    """A fresh copy of the named preset's recipe (callers may mutate it). KeyError if unknown."""
    return copy.deepcopy(PRESETS[name])


def recipe_hash(recipe: dict[str, Any]) -> str:
    """The engine's recipe hash of ``recipe`` (validated by ``imagepipe.core.recipe.Recipe``)."""
    import pipeline  # noqa: F401  (puts lambda_src on sys.path)
    from imagepipe.core.recipe import Recipe

    return Recipe.model_validate(recipe).recipe_hash()


def preset_hashes() -> dict[str, str]:
    """recipe hash -> preset name, for labelling stored jobs by the preset that made them."""
    return {recipe_hash(recipe): name for name, recipe in PRESETS.items()}
