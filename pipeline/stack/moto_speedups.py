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

DynamoDB's item model does the same work many times over on a job record (≈ 130 nested
attributes); ``UpdateItem`` walks it about ten times. These are replaced by exact equivalents
(same values, same exceptions, moto's own code still runs for anything unexpected):

- ``Item``/``DynamoType.__deepcopy__`` (two deep copies per ``UpdateItem``, one per ``Query``
  result) become one recursive clone with the same memo semantics, without
  ``copy.deepcopy``'s per-node dispatch.
- ``DynamoType.size()`` re-wrapped every map child in a new ``DynamoType`` (allocating the
  subtree again at every level) and ``LimitedSizeDict.__setitem__`` recomputes the whole item's
  size on every attribute set; both now walk the tree once without allocating, giving the same
  number, so ``ItemSizeTooLarge`` triggers at exactly the same size.
- ``DynamoType.to_regular_json()`` deep-copied its value at every nesting level (O(n·depth));
  it now builds the same fresh structure in one pass.
- the update validator deep-copies the (cached) expression AST with the generic, reduce-based
  ``copy.deepcopy``: AST nodes get a clone that does what that protocol does for a plain
  object, and ``DepthFirstTraverser`` looks up which node types it processes once per walk
  instead of once per node (each processor's ``_processing_map`` has fixed keys).

S3 form uploads (the presigned POST of every upload) were parsed twice: once by
``post_policy`` to check the policy, once by moto's Flask request, each time compiling the
boundary's regexes and spooling a file part over 500 KB to a temporary file on disk. The
policy middleware now parses a multipart body once, with the limits moto's request applies,
into memory, and leaves it in the environ (``post_policy.SharedForm``); moto's request takes
that ``(stream, form, files)`` instead of parsing, but only when it is for this very body and
content type and its own limits are the same (anything else: moto parses, as before).

All of them are pure speed-ups: same responses, no state. ``install()`` is idempotent and
raises :class:`SpeedupUnavailable` (the emulator then refuses to start) when moto's
internals moved, so an upgrade that breaks them is noticed instead of silently slow.
"""

from __future__ import annotations

import base64
import copy
import copyreg
import functools
import importlib
import sys
from typing import Any

_INSTALLED = False
_SERVICES = ("s3", "dynamodb", "sqs")  # what the local stack emulates
_SCALAR = {"S": str, "N": str, "BOOL": bool, "NULL": bool}
_SETS = ("SS", "NS", "BS")
_ATOMIC = (str, bytes, bool, int, float, type(None))  # what copy.deepcopy returns as is
_NIL = object()


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


class _Irregular(Exception):
    """A DynamoType tree holds something other than DynamoType nodes: use moto's own code."""


def _literal_number_size(value: str) -> int:
    """moto ≤ 5.2.5's size of a number: its literal's length."""
    return len(value)


def _size_walker(dt: type, bytesize: Any, number_size: Any = _literal_number_size) -> Any:
    """``DynamoType.size()`` for a tree made only of DynamoType nodes (else ``_Irregular``):
    moto's branches in moto's order, with ``bytesize`` inlined for ``str``. ``number_size`` is
    moto's (5.2.6 sizes a number as DynamoDB stores it, ``utilities.number_size``; before, by its
    literal's length)."""

    def walk(node: Any) -> int:
        kind = node.type
        value = node.value
        if kind == "N":
            return number_size(str(value))
        if kind in _SETS:
            if kind == "NS":
                return sum(number_size(str(v)) for v in value)
            return sum(1 if isinstance(v, bool) else bytesize(v) for v in value)
        if kind == "M":
            total = 0
            for k, v in value.items():
                if type(v) is not dt:
                    raise _Irregular
                total += (len(k.encode("utf-8")) if type(k) is str else bytesize(k)) + walk(v)
            return total
        if kind == "L":
            total = 0
            for v in value:
                if type(v) is not dt:
                    raise _Irregular
                total += walk(v)
            return total
        if type(value) is str:
            return len(value.encode("utf-8"))
        if isinstance(value, bool):
            return 1
        return bytesize(value)

    return walk


def _regular_walker(dt: type) -> Any:
    """``DynamoType.to_regular_json()`` built in one pass for a tree of DynamoType nodes whose
    leaves ``copy.deepcopy`` returns as they are (else ``_Irregular``)."""

    def walk(node: Any) -> dict[str, Any]:
        value = node.value
        kind = type(value)
        out: Any
        if kind is dict:
            out = {}
            for k, v in value.items():
                if type(v) is not dt:
                    raise _Irregular
                out[k] = walk(v)
        elif kind is list:
            if all(type(v) is dt for v in value):
                out = [walk(v) for v in value]
            elif all(type(v) is str or type(v) is bytes for v in value):
                out = list(value)
            else:
                raise _Irregular
        elif kind in _ATOMIC:
            out = value
        else:
            raise _Irregular
        if node.type == "B" and isinstance(out, str):
            out = base64.b64decode(out)
        return {node.type: out}

    return walk


class _DynamoModel:
    """Exact, faster equivalents of moto's DynamoDB item-model methods (see the module doc)."""

    def __init__(self, dynamo_type: Any, utilities: Any, bytesize: Any) -> None:
        self.dynamo_type = dynamo_type.DynamoType
        self.item_cls = dynamo_type.Item
        self.limited = dynamo_type.LimitedSizeDict
        self.module = dynamo_type  # ItemSizeTooLarge is looked up there at raise time, like moto
        self.bytesize = bytesize
        self.orig_size = self.dynamo_type.size
        self.orig_regular_json = self.dynamo_type.to_regular_json
        self.orig_to_dict = utilities.dynamo_to_dict
        self.utilities = utilities
        self.responses = importlib.import_module("moto.dynamodb.responses")
        self.walk_size = _size_walker(self.dynamo_type, bytesize,
                                      getattr(utilities, "number_size", _literal_number_size))
        self.walk_regular = _regular_walker(self.dynamo_type)

    # --- deep copies ------------------------------------------------------------------

    def clone(self, src: Any, memo: dict[int, Any]) -> Any:
        """``DynamoType.__deepcopy__`` for a DynamoType not yet in ``memo``."""
        dt = self.dynamo_type
        result = dt.__new__(dt)
        memo[id(src)] = result
        result.type = kind = src.type
        value = src.value
        if kind == "L":
            result.value = [self.child(v, memo) for v in value]
        elif kind == "M":
            result.value = {k: self.child(v, memo) for k, v in value.items()}
        elif kind in _SETS:
            result.value = list(value)
        else:
            result.value = value
        return result

    def child(self, value: Any, memo: dict[int, Any]) -> Any:
        """``copy.deepcopy(value, memo)``, short-cut for DynamoType children."""
        if type(value) is self.dynamo_type:
            done = memo.get(id(value), _NIL)
            return self.clone(value, memo) if done is _NIL else done
        return copy.deepcopy(value, memo)

    def dynamo_deepcopy(self, src: Any, memo: dict[int, Any]) -> Any:
        if id(src) in memo:
            return memo[id(src)]
        if type(src) is not self.dynamo_type:  # pragma: no cover - moto has no subclass
            raise TypeError(f"unexpected DynamoType subclass {type(src)!r}")
        return self.clone(src, memo)

    def item_deepcopy(self, src: Any, memo: dict[int, Any]) -> Any:
        """``Item.__deepcopy__``: hash key, range key and attributes, no size validation."""
        if id(src) in memo:
            return memo[id(src)]
        cls = src.__class__
        result = cls.__new__(cls)
        memo[id(src)] = result
        result.hash_key = self.child(src.hash_key, memo)
        result.range_key = self.child(src.range_key, memo)
        attrs = self.limited.__new__(self.limited)
        dict.__init__(attrs)
        child = self.child
        dict.update(attrs, {k: child(v, memo) for k, v in src.attrs.items()})
        result.attrs = attrs
        return result

    # --- sizes ------------------------------------------------------------------------

    def size(self, node: Any) -> int:
        """``DynamoType.size``: the same number, without re-wrapping every map child."""
        try:
            return self.walk_size(node)
        except _Irregular:
            return self.orig_size(node)

    def limited_setitem(self, attrs: Any, key: str, value: Any) -> None:
        """``LimitedSizeDict.__setitem__``: the same 405000-byte check, one walk per value."""
        dt, bytesize, size = self.dynamo_type, self.bytesize, self.size
        current = 0
        for k in attrs:
            current += size(k) if type(k) is dt else bytesize(str(k))
        for v in attrs.values():
            current += size(v) if type(v) is dt else bytesize(str(v))
        new = bytesize(key) + (size(value) if type(value) is dt else bytesize(str(value)))
        if (current + new) > 405000:
            raise self.module.ItemSizeTooLarge
        dict.__setitem__(attrs, key, value)

    # --- JSON -------------------------------------------------------------------------

    def regular_json(self, node: Any) -> dict[str, Any]:
        try:
            return self.walk_regular(node)
        except _Irregular:
            return self.orig_regular_json(node)

    def to_dict(self, obj: Any) -> Any:
        """``utilities.dynamo_to_dict``: plain containers and scalars are handled here (they
        have no ``to_json`` and are no ``datetime``), anything else by moto's function."""
        kind = type(obj)
        if kind in _ATOMIC:
            return obj
        if kind is dict:
            to_dict = self.to_dict
            return {k: to_dict(v) for k, v in obj.items()}
        if kind is list:
            to_dict = self.to_dict
            return [to_dict(v) for v in obj]
        return self.orig_to_dict(obj)

    def install(self) -> None:
        model = self
        dt = self.dynamo_type
        dt.__deepcopy__ = lambda self, memo: model.dynamo_deepcopy(self, memo)
        dt.size = lambda self: model.size(self)
        dt.to_regular_json = lambda self: model.regular_json(self)
        self.item_cls.__deepcopy__ = lambda self, memo: model.item_deepcopy(self, memo)
        self.limited.__setitem__ = lambda self, key, value: model.limited_setitem(self, key, value)
        self.utilities.dynamo_to_dict = self.to_dict  # its own recursion looks the name up here
        self.responses.dynamo_to_dict = self.to_dict  # DynamoResult imported it by name


@functools.cache
def _plain_class(cls: type) -> bool:
    """Whether ``copy.deepcopy`` would copy instances of ``cls`` as ``__new__`` + its ``__dict__``."""
    return (
        cls not in copyreg.dispatch_table
        and cls.__reduce_ex__ is object.__reduce_ex__  # type: ignore[comparison-overlap]
        and cls.__reduce__ is object.__reduce__  # type: ignore[comparison-overlap]
        and cls.__getstate__ is object.__getstate__  # type: ignore[attr-defined]
        and not hasattr(cls, "__setstate__")
        and not any("__slots__" in vars(base) for base in cls.__mro__)
    )


def _node_deepcopy(node: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy`` of an AST node, as the reduce protocol does it, minus its dispatch."""
    cls = type(node)
    if not _plain_class(cls):
        reductor = copyreg.dispatch_table.get(cls)
        reduced = reductor(node) if reductor is not None else node.__reduce_ex__(4)
        return copy._reconstruct(node, memo, *reduced)  # type: ignore[attr-defined]
    result = cls.__new__(cls)
    memo[id(node)] = result
    state = node.__dict__
    if state:
        result.__dict__.update({k: _deep(v, memo) for k, v in state.items()})
    return result


def _deep(value: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy(value, memo)`` with AST nodes and lists done here."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    done = memo.get(id(value), _NIL)
    if done is not _NIL:
        return done
    if kind is list:
        out: list[Any] = []
        memo[id(value)] = out
        out.extend(_deep(v, memo) for v in value)
        return out
    if getattr(kind, "__deepcopy__", None) is _node_deepcopy:
        return _node_deepcopy(value, memo)
    return copy.deepcopy(value, memo)


def _traverse(self: Any, node: Any, child_id: int = -1) -> Any:
    """``DepthFirstTraverser.traverse_node_recursively`` with its type tests done once per
    node class and walk (moto rebuilds ``_processing_map()`` for every node it visits)."""
    from moto.dynamodb.parsing.ast_nodes import Node

    targets = self.nodes_to_be_processed()
    kinds: dict[type, tuple[bool, bool]] = {}
    pre = self.pre_processing_of_child
    process = self.process

    def walk(node: Any, child_id: int) -> Any:
        kind = type(node)
        tests = kinds.get(kind)
        if tests is None:
            tests = kinds[kind] = (isinstance(node, Node), isinstance(node, targets))
        if tests[0]:
            parent_node = node.parent
            if node.children is not None:
                for i, child_node in enumerate(node.children):
                    pre(node, i)
                    walk(child_node, i)
            if tests[1]:
                node = process(node)
                node.parent = parent_node
                if parent_node:
                    parent_node.children[child_id] = node
        return node

    return walk(node, child_id)


def _find_clauses_for(node_module: Any) -> Any:
    """``Node.find_clauses`` with its two (ABC) ``isinstance`` tests answered once per class;
    moto registers no virtual subclasses, so the answer is fixed by the class."""

    @functools.cache
    def descends(kind: type) -> bool:
        return issubclass(kind, (node_module.Expression, node_module.UpdateExpressionFunction))

    def find_clauses(self: Any, clause_types: Any) -> list[Any]:
        clauses: list[Any] = []
        for child in self.children or []:
            kind = type(child)
            if kind in clause_types:
                clauses.append(child)
            elif descends(kind):
                clauses.extend(child.find_clauses(clause_types))
        return clauses

    return find_clauses


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _install_dynamodb_models() -> None:
    from moto.dynamodb.models import dynamo_type, utilities
    from moto.dynamodb.parsing import ast_nodes, validators  # noqa: F401 - defines the traversers

    traverser = ast_nodes.DepthFirstTraverser
    missing = [
        name
        for owner, name in (
            (dynamo_type.DynamoType, "__deepcopy__"),
            (dynamo_type.DynamoType, "size"),
            (dynamo_type.DynamoType, "to_regular_json"),
            (dynamo_type.Item, "__deepcopy__"),
            (dynamo_type.LimitedSizeDict, "__setitem__"),
            (dynamo_type, "ItemSizeTooLarge"),
            (dynamo_type, "bytesize"),
            (ast_nodes, "Node"),
            (ast_nodes, "Expression"),
            (ast_nodes, "UpdateExpressionFunction"),
            (ast_nodes.Node, "find_clauses"),
            (traverser, "traverse_node_recursively"),
            (traverser, "nodes_to_be_processed"),
            (copy, "_reconstruct"),
        )
        if not hasattr(owner, name)
    ]
    overridden = [
        f"{sub.__name__}.{name}"
        for sub in _subclasses(traverser)
        for name in ("traverse_node_recursively", "nodes_to_be_processed", "traverse")
        if name in vars(sub)
    ] + [
        f"{sub.__name__}.{name}"
        for sub in _subclasses(ast_nodes.Node)
        for name in ("__deepcopy__", "find_clauses")
        if name in vars(sub)
    ]
    if missing or overridden or dynamo_type.bytesize is not utilities.bytesize:
        raise SpeedupUnavailable(
            f"moto's DynamoDB model changed ({', '.join(missing + overridden) or 'bytesize'}); "
            "update pipeline/stack/moto_speedups.py"
        )
    _DynamoModel(dynamo_type, utilities, dynamo_type.bytesize).install()
    ast_nodes.Node.__deepcopy__ = _node_deepcopy  # type: ignore[attr-defined]
    traverser.traverse_node_recursively = _traverse  # type: ignore[method-assign]
    ast_nodes.Node.find_clauses = _find_clauses_for(ast_nodes)  # type: ignore[method-assign]


def _install_shared_form() -> None:
    """Let moto's server request take the form ``post_policy`` parsed (see the module doc)."""
    from moto.moto_server.werkzeug_app import BackendRequest
    from werkzeug.formparser import FormDataParser

    from pipeline.stack.post_policy import SHARED_FORM, SharedForm

    if "_load_form_data" in vars(BackendRequest) or not hasattr(BackendRequest, "_load_form_data"):
        raise SpeedupUnavailable("moto's BackendRequest changed; update pipeline/stack/moto_speedups.py")
    parse = BackendRequest._load_form_data  # Flask's, then werkzeug's

    def _load_form_data(self: Any) -> None:
        shared = self.environ.pop(SHARED_FORM, None)
        limits = (self.max_form_memory_size, self.max_content_length, self.max_form_parts)
        if (
            "form" not in self.__dict__
            and type(shared) is SharedForm
            and self.environ.get("imagepipe.body") is shared.body
            and self.environ.get("CONTENT_TYPE") == shared.content_type
            and self.mimetype == "multipart/form-data"
            and self.content_length == len(shared.body)
            and self.form_data_parser_class is FormDataParser
            and shared.limits == (*limits, self.parameter_storage_class)
        ):
            d = self.__dict__
            d["stream"], d["form"], d["files"] = shared.data
            return
        parse(self)

    BackendRequest._load_form_data = _load_form_data  # type: ignore[method-assign]


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
    _install_dynamodb_models()
    _install_shared_form()
    _INSTALLED = True


def installed() -> bool:
    """Whether :func:`install` ran in this process."""
    return _INSTALLED
