"""Presets and drop rules: named recipes that ship with the service, and what to do with an
object dropped into the source bucket by any S3 client.

The one source is ``lambda_src/imagepipe/presets.json``; the environment variable
``IMAGEPIPE_PRESETS`` (a JSON document of the same shape, the template's ``PresetsOverride``
parameter) overrides it: its ``presets`` are merged by name (``null`` removes a shipped one),
its ``default_preset``, ``drop_rules`` and ``drop_default`` replace the file's. Everything is
validated when the catalog is loaded (a function's cold start): a bad recipe, an unknown preset
in a rule or a rule outside the upload prefix is a ``ValueError`` naming it, never ignored.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from imagepipe.core.recipe import parse_recipe
from imagepipe.errors import ImagePipeError, InvalidRecipe

PRESETS_FILE = Path(__file__).resolve().parent.parent / "presets.json"
ENV_OVERRIDE = "IMAGEPIPE_PRESETS"
#: ``drop_rule`` stored on a drop's image and job when no listed rule matched
DEFAULT_RULE = "default"


@dataclass(frozen=True)
class Preset:
    """A named recipe (canonical, validated) and its hash."""

    name: str
    recipe: dict[str, Any]
    recipe_hash: str
    description: str = ""

    @property
    def id(self) -> str:
        """The name as a URL- and shell-friendly slug: ``Web 1600 WebP`` -> ``web-1600-webp``."""
        return preset_slug(self.name)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "description": self.description, "recipe": self.recipe,
                "recipe_hash": self.recipe_hash}


def preset_slug(name: str) -> str:
    """Lower case, every run of other characters one ``-``: how a preset may be named in a URL."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class DropRule:
    """What a drop under ``prefix`` gets: a preset's recipe, its own recipe, or nothing (``skip``:
    the image is recorded, no job runs). ``prefix`` is ``None`` for the default rule."""

    prefix: str | None
    preset: str | None = None
    recipe: dict[str, Any] | None = None
    recipe_hash: str | None = None
    skip: bool = False

    @property
    def label(self) -> str:
        """What the job stores as ``drop_rule``: the prefix, or ``default``."""
        return self.prefix if self.prefix is not None else DEFAULT_RULE

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prefix": self.prefix}
        if self.skip:
            out["skip"] = True
        elif self.preset is not None:
            out["preset"] = self.preset
        else:
            out["recipe"] = self.recipe
        return out


@dataclass(frozen=True)
class Catalog:
    """Every preset (in file order), the default preset and the ordered drop rules."""

    presets: dict[str, Preset]
    default_preset: str | None
    drop_rules: tuple[DropRule, ...] = ()
    drop_default: DropRule = field(default_factory=lambda: DropRule(prefix=None, skip=True))

    def find(self, name: str) -> Preset | None:
        """The preset called ``name``, or whose slug ``name`` is (``web-1600-webp``, any case)."""
        found = self.presets.get(name)
        if found is None:
            slug = preset_slug(name)
            found = next((p for p in self.presets.values() if p.id == slug), None)
        return found

    def label(self, name: str | None) -> str | None:
        """What a job stores as its preset: the canonical name for a name or slug that resolves
        (one preset, one label in History and the rollups), else ``name`` as given."""
        found = self.find(name) if name is not None else None
        return found.name if found is not None else name

    def get(self, name: str) -> Preset:
        """The preset by name or slug; ``InvalidRecipe`` (422, field ``preset``) when there is none."""
        found = self.find(name)
        if found is None:
            raise InvalidRecipe(
                f"unknown preset {name!r}; GET /presets lists them",
                details=[{"field": "preset", "message": f"unknown preset; one of {sorted(self.presets)}"}],
            )
        return found

    def rule_for(self, key: str) -> DropRule:
        """The first rule (in order) whose prefix ``key`` starts with, else the default rule."""
        for rule in self.drop_rules:
            if rule.prefix is not None and key.startswith(rule.prefix):
                return rule
        return self.drop_default

    def recipe_of(self, rule: DropRule) -> tuple[dict[str, Any], str] | None:
        """``(recipe, recipe_hash)`` a rule runs, ``None`` for ``skip``."""
        if rule.skip:
            return None
        if rule.preset is not None:
            preset = self.get(rule.preset)
            return preset.recipe, preset.recipe_hash
        assert rule.recipe is not None and rule.recipe_hash is not None
        return rule.recipe, rule.recipe_hash

    def public(self) -> dict[str, Any]:
        """``GET /presets``."""
        return {
            "items": [p.public() for p in self.presets.values()],
            "default": self.default_preset,
            "drop_rules": [r.public() for r in self.drop_rules],
            "drop_default": self.drop_default.public(),
        }


def _canonical(raw: Any, where: str) -> tuple[dict[str, Any], str]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a recipe must be a JSON object")
    try:
        recipe = parse_recipe(raw)
    except ImagePipeError as exc:
        raise ValueError(f"{where}: invalid recipe: {exc.message} {exc.details or ''}".strip()) from None
    return recipe.model_dump(mode="json"), recipe.recipe_hash()


def _rule(raw: Any, where: str, upload_prefix: str, names: set[str], *, default: bool) -> DropRule:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a drop rule must be a JSON object")
    allowed = {"preset", "recipe", "skip"} | (set() if default else {"prefix"})
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    prefix = None
    if not default:
        prefix = raw.get("prefix")
        if not isinstance(prefix, str) or not prefix.startswith(upload_prefix):
            raise ValueError(f"{where}: prefix must be a string starting with the upload prefix "
                             f"{upload_prefix!r}, got {prefix!r}")
    actions = [k for k in ("preset", "recipe", "skip") if k in raw]
    if len(actions) != 1:
        raise ValueError(f"{where}: give exactly one of preset, recipe or skip")
    if "skip" in raw:
        if raw["skip"] is not True:
            raise ValueError(f"{where}: skip must be true")
        return DropRule(prefix=prefix, skip=True)
    if "preset" in raw:
        if raw["preset"] not in names:
            raise ValueError(f"{where}: unknown preset {raw['preset']!r}")
        return DropRule(prefix=prefix, preset=raw["preset"])
    recipe, recipe_hash = _canonical(raw["recipe"], f"{where}.recipe")
    return DropRule(prefix=prefix, recipe=recipe, recipe_hash=recipe_hash)


def build_catalog(doc: Mapping[str, Any], upload_prefix: str = "uploads/") -> Catalog:
    """Validate a presets document (the file's shape) into a :class:`Catalog`."""
    raw_presets = doc.get("presets") or {}
    if not isinstance(raw_presets, dict):
        raise ValueError("presets must be an object of name -> {recipe, description}")
    presets: dict[str, Preset] = {}
    for name, entry in raw_presets.items():
        if entry is None:
            continue  # removed by an override
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise ValueError(f"preset name {name!r} must be 1-100 characters")
        if not isinstance(entry, dict) or "recipe" not in entry:
            raise ValueError(f"preset {name!r} must be an object with a 'recipe'")
        recipe, recipe_hash = _canonical(entry["recipe"], f"preset {name!r}")
        slug = preset_slug(name)
        twin = next((p.name for p in presets.values() if p.id == slug), None)
        if twin is not None or not slug:
            raise ValueError(f"preset {name!r}: its slug {slug!r} must be non-empty and differ from "
                             f"every other preset's (same as {twin!r})")
        presets[name] = Preset(name, recipe, recipe_hash, str(entry.get("description") or ""))
    default_preset = doc.get("default_preset")
    if default_preset is not None and default_preset not in presets:
        raise ValueError(f"default_preset {default_preset!r} is not a preset")
    names = set(presets)
    rules_raw = doc.get("drop_rules") or []
    if not isinstance(rules_raw, list):
        raise ValueError("drop_rules must be a list")
    rules = tuple(_rule(r, f"drop_rules[{i}]", upload_prefix, names, default=False)
                  for i, r in enumerate(rules_raw))
    default_raw = doc.get("drop_default") or {"skip": True}
    drop_default = _rule(default_raw, "drop_default", upload_prefix, names, default=True)
    return Catalog(presets, default_preset, rules, drop_default)


def merged_document(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` applied: presets merged by name (``null`` removes one), the
    other top-level keys replaced."""
    doc = dict(base)
    unknown = set(override) - {"presets", "default_preset", "drop_rules", "drop_default", "_comment"}
    if unknown:
        raise ValueError(f"{ENV_OVERRIDE}: unknown key(s) {sorted(unknown)}")
    for key, value in override.items():
        if key == "presets":
            if not isinstance(value, dict):
                raise ValueError(f"{ENV_OVERRIDE}: presets must be an object")
            doc["presets"] = {**(base.get("presets") or {}), **value}
        else:
            doc[key] = value
    return doc


def load_catalog(env: Mapping[str, str] | None = None, path: Path = PRESETS_FILE) -> Catalog:
    """The shipped file with the ``IMAGEPIPE_PRESETS`` override applied, validated."""
    env = os.environ if env is None else env
    doc = json.loads(path.read_text(encoding="utf-8"))
    raw = (env.get(ENV_OVERRIDE) or "").strip()
    if raw:
        try:
            override = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{ENV_OVERRIDE} is not valid JSON: {exc}") from None
        if not isinstance(override, dict):
            raise ValueError(f"{ENV_OVERRIDE} must be a JSON object")
        doc = merged_document(doc, override)
    prefix = env.get("IMAGEPIPE_UPLOAD_PREFIX") or "uploads/"
    return build_catalog(doc, prefix if prefix.endswith("/") else prefix + "/")


@lru_cache(maxsize=1)
def get_catalog() -> Catalog:
    """The process-wide catalog (read on first use, then cached like the config)."""
    return load_catalog()
