"""Named recipe presets for the dashboard and the CLIs, read from the service's one source:
``lambda_src/imagepipe/presets.json`` with the ``IMAGEPIPE_PRESETS`` override applied
(``imagepipe.service.presets``; docs/api.md#presets-and-drop-rules). Nothing is copied here.

Against a deployed stack whose presets were overridden, ``Client.presets()`` (``GET /presets``)
is what the service resolves names to; the System page shows that list.
"""

from __future__ import annotations

import copy
from typing import Any

import pipeline  # noqa: F401  (puts lambda_src on sys.path)
from imagepipe.core.recipe import Recipe
from imagepipe.service.presets import get_catalog

_CATALOG = get_catalog()

#: name -> canonical recipe dict, in display order
PRESETS: dict[str, dict[str, Any]] = {name: p.recipe for name, p in _CATALOG.presets.items()}

#: the preset the dashboard selects first
DEFAULT_PRESET: str = _CATALOG.default_preset or next(iter(PRESETS))


def preset_names() -> list[str]:
    """The preset names, in display order."""
    return list(PRESETS)


def get_preset(name: str) -> dict[str, Any]:
    """A fresh copy of the preset's recipe, by name or slug id (callers may mutate it).
    KeyError if unknown."""
    found = _CATALOG.find(name)
    if found is None:
        raise KeyError(name)
    return copy.deepcopy(found.recipe)


def recipe_hash(recipe: dict[str, Any]) -> str:
    """The engine's recipe hash of ``recipe`` (validated by ``imagepipe.core.recipe.Recipe``)."""
    return Recipe.model_validate(recipe).recipe_hash()


def preset_hashes() -> dict[str, str]:
    """recipe hash -> preset name, for labelling stored jobs by the preset that made them."""
    return {p.recipe_hash: name for name, p in _CATALOG.presets.items()}
