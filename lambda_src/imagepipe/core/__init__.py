"""The image engine: pure functions on bytes (no boto3).

``process(source_bytes, recipe, limits=None) -> Result`` runs a whole job; ``prepare`` +
``encode_variant`` + ``measure`` let sweeps decode and resize once and encode many times.
See docs/engine.md.
"""

from imagepipe.core.engine import Result, process
from imagepipe.core.limits import Limits
from imagepipe.core.prepare import Prepared, encode_variant, measure, prepare
from imagepipe.core.recipe import Recipe, parse_recipe

__all__ = ["Limits", "Prepared", "Recipe", "Result", "encode_variant", "measure", "parse_recipe", "prepare",
           "process"]
