"""Memoizations for moto's server, applied in the emulator process only.

moto spends most of a small request on work that does not depend on the request:

- ``backends.list_of_moto_modules()`` lists and stats moto's package directory on every
  request (≈ 57 ``stat`` calls) to route it; the result never changes in a running process.
- ``method_names_from_class()`` runs ``inspect.getmembers`` over the response class on every
  request; a class's methods do not change either.
- ``UpdateExpressionParser.make()`` tokenizes and parses the same few update expressions
  twice per ``UpdateItem``; the parsed tree is only read (``find_clauses``) or deep-copied
  by moto's validator before anything changes it, so it is parsed once per distinct string.
- ``camelcase_to_underscores()`` is a pure function of its argument that every SQS request
  calls about 30 times (``Queue.attributes`` converts each attribute name, every time).
- DynamoDB responses go through moto's generic, shape-driven serializer, which costs about
  0.1 ms per attribute *inside* every item: a job record with its recipe, result and engine
  facts (≈ 100 nested attributes) took 14 ms to return from a ``GetItem``. moto's items are
  already in wire format (``item.to_json()``), so an ``AttributeValue`` made only of JSON
  types is passed through as it is; anything else (binary ``B``/``BS``, an unexpected
  type) still goes through moto's serializer. ``tests/unit/test_moto_speedups.py`` checks
  that the bytes on the wire are identical to moto's own for every attribute type.

All of them are pure speed-ups: same responses, no state. ``install()`` is idempotent and
raises :class:`SpeedupUnavailable` (the emulator then refuses to start) when moto's
internals moved, so an upgrade that breaks them is noticed instead of silently slow.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any

_INSTALLED = False
_SERVICES = ("s3", "dynamodb", "sqs")  # what the local stack emulates
_SCALAR = {"S": str, "N": str, "BOOL": bool, "NULL": bool}


class SpeedupUnavailable(RuntimeError):
    """moto's internals are not where this module expects them."""


def plain_attribute_value(value: Any, depth: int = 0) -> bool:
    """True when ``value`` is an ``AttributeValue`` that JSON carries as is (no binary)."""
    if depth > 64 or not isinstance(value, dict) or len(value) != 1:
        return False
    ((tag, inner),) = value.items()
    scalar = _SCALAR.get(tag)
    if scalar is not None:
        return type(inner) is scalar
    if tag in ("SS", "NS"):
        return isinstance(inner, list) and all(type(v) is str for v in inner)
    if tag == "M":
        return isinstance(inner, dict) and all(
            type(k) is str and plain_attribute_value(v, depth + 1) for k, v in inner.items()
        )
    if tag == "L":
        return isinstance(inner, list) and all(plain_attribute_value(v, depth + 1) for v in inner)
    return False  # B, BS or something unknown: moto's serializer handles it


def install() -> None:
    """Apply the speed-ups to the imported moto (once per process)."""
    global _INSTALLED
    if _INSTALLED:
        return
    try:
        from moto import backends
        from moto.core import responses, serialize
        from moto.core import utils as core_utils
        from moto.dynamodb.parsing import expressions
    except ImportError as exc:  # pragma: no cover - moto is a hard dependency of the stack
        raise SpeedupUnavailable(f"moto is not importable: {exc}") from exc
    missing = [
        name
        for owner, name in (
            (backends, "list_of_moto_modules"),
            (responses, "method_names_from_class"),
            (core_utils, "camelcase_to_underscores"),
            (expressions.UpdateExpressionParser, "make"),
            (serialize.BaseJSONSerializer, "_serialize_type_structure"),
            (serialize.BaseJSONSerializer, "_default_serialize"),
        )
        if not hasattr(owner, name)
    ]
    if missing:
        raise SpeedupUnavailable(
            f"this moto has no {', '.join(missing)}; update pipeline/stack/moto_speedups.py"
        )

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]

    responses.method_names_from_class = functools.lru_cache(maxsize=None)(  # type: ignore[assignment]
        core_utils.method_names_from_class
    )

    parser = expressions.UpdateExpressionParser
    parser.make = staticmethod(functools.lru_cache(maxsize=1024)(parser.make))  # type: ignore[method-assign]

    original = core_utils.camelcase_to_underscores
    cached = functools.lru_cache(maxsize=4096)(original)
    for service in _SERVICES:  # moto imports its services lazily: import ours before patching
        importlib.import_module(f"moto.{service}.models")
        importlib.import_module(f"moto.{service}.responses")
    for name, module in list(sys.modules.items()):  # every moto module that imported it by name
        if name.startswith("moto") and getattr(module, "camelcase_to_underscores", None) is original:
            module.camelcase_to_underscores = cached  # type: ignore[attr-defined]

    generic = serialize.BaseJSONSerializer._serialize_type_structure

    def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and plain_attribute_value(value):
            self._default_serialize(serialized, value, shape, key)
            return
        generic(self, serialized, value, shape, key)

    serialize.BaseJSONSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]
    _INSTALLED = True


def installed() -> bool:
    """Whether :func:`install` ran in this process."""
    return _INSTALLED
