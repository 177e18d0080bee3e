"""A generic fast-path JSON-Schema compiler: each schema compiled once to checks, with mParticle's coercions.

See :mod:`flagbridge.cdp.dataplan` for what is coerced and how violations are reported."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fastjsonschema

from flagbridge.cdp.dataplan.model import ACTUAL_MAX, PlanDocumentError, ViolationType
from flagbridge.values import canonical, compact_json, escape_pointer_token, to_bool, to_number

_NATIVE_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}
_CERTAIN_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
    "number": (int, float),
    "integer": (int,),
}
"""Exact Python types whose values certainly pass a native ``type`` check (after coercion)."""
_ANNOTATIONS = frozenset({"description", "title", "$comment", "examples", "default", "$schema", "$id"})


class _Leaf:
    """A schema checked as a whole (after type-directed coercion and canonical enum comparison)."""

    __slots__ = (
        "enum_message",
        "enum_raw",
        "enum_text",
        "native",
        "ok",
        "schema_rest",
        "type_message",
        "types",
        "validator",
        "want_bool",
        "want_num",
        "want_str",
    )

    def __init__(self, schema: Mapping[str, Any], cache: dict[str, Any]) -> None:
        schema = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
        raw_type = schema.get("type")
        types = frozenset([raw_type] if isinstance(raw_type, str) else raw_type or [])
        self.types = types
        self.want_num = bool(types & {"number", "integer"})
        self.want_bool = "boolean" in types
        self.want_str = "string" in types
        enum = schema.pop("enum", None)
        self.enum_raw: list[Any] | None = list(enum) if isinstance(enum, list) else None
        self.enum_text = (
            frozenset(text for text in (canonical(item) for item in enum) if text is not None)
            if isinstance(enum, list)
            else frozenset()
        )
        self.native: list[Any] | None = None
        self.validator: Any = None
        # what check() reports, worded once: the ok() path must not pay for it
        self.enum_message = f"enum: {compact_json(self.enum_raw)}" if self.enum_raw is not None else ""
        shown = sorted(types) if len(types) > 1 else next(iter(types), None)
        self.type_message = f"type: {compact_json(shown)}"
        rest = set(schema) - {"type"}
        self.schema_rest = {key: schema[key] for key in rest}
        if not rest and types and types <= set(_NATIVE_TYPES):
            checks = [_NATIVE_TYPES[name] for name in sorted(types)]
            self.native = checks
        elif schema:
            key = compact_json(schema)
            validator = cache.get(key)
            if validator is None:
                try:
                    validator = fastjsonschema.compile(schema)
                except Exception as exc:  # fastjsonschema raises several exception types on bad schemas
                    raise PlanDocumentError(f"invalid JSON schema {key[:200]}: {exc}") from exc
                cache[key] = validator
            self.validator = validator
        self.ok: Callable[[Any], bool] = self._build_ok()
        """Whether :meth:`check` finds nothing (what :func:`walk_schema` would report no finding for)."""

    def _build_ok(self) -> Callable[[Any], bool]:
        certain: frozenset[type] = frozenset()
        members: frozenset[str] = frozenset()
        if self.validator is None and self.enum_raw is None and self.native is not None:
            # values of these exact types are left alone by coerce() and pass the native test
            certain = frozenset(kind for name in self.types for kind in _CERTAIN_TYPES[name])
        elif self.validator is None and self.enum_raw is not None and (self.native is None or self.want_str):
            # strings that are their own canonical form and enum members: coerce() keeps them, they pass
            members = frozenset(item for item in self.enum_raw if type(item) is str and canonical(item) == item)
        remembering = _remembering_ok(self.check, certain, members)
        bounds = self._numeric_bounds()
        return remembering if bounds is None else _bounded_ok(remembering, *bounds)

    def _numeric_bounds(self) -> tuple[frozenset[type], float, float] | None:
        """The exact numeric types and the inclusive range of a ``number``/``integer`` schema with only
        ``minimum``/``maximum`` besides its type (the plans' usual numeric rule), else None."""
        if self.validator is None or self.enum_raw is not None or not self.types <= {"number", "integer"}:
            return None
        schema = self.schema_rest
        if not schema or not set(schema) <= {"minimum", "maximum"}:
            return None
        if any(type(bound) not in (int, float) for bound in schema.values()):
            return None
        kinds = frozenset({int, float} if "number" in self.types else {int})
        return kinds, schema.get("minimum", -math.inf), schema.get("maximum", math.inf)

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str):
            if self.want_str:
                return value
            if self.want_num:
                number = to_number(value)
                if number is not None:
                    return number
            if self.want_bool:
                flag = to_bool(value)
                if flag is not None:
                    return flag
            return value
        if isinstance(value, bool):
            if self.want_str and not self.want_bool:
                return "true" if value else "false"
            return value
        if isinstance(value, (int, float)) and self.want_str and not self.want_num:
            return canonical(value) or value
        return value

    def check(self, value: Any) -> str | None:
        """Return None when valid, else a description of what was expected."""
        value = self.coerce(value)
        native = self.native
        if native is not None:
            for test in native:
                if test(value):
                    break
            else:
                return self.type_message
        elif self.validator is not None:
            try:
                self.validator(value)
            except fastjsonschema.JsonSchemaValueException as exc:
                return f"{exc.rule}: {compact_json(exc.rule_definition)}"
        enum_raw = self.enum_raw
        if enum_raw is not None:
            text = canonical(value)
            if (text is None and value not in enum_raw) or (text is not None and text not in self.enum_text):
                return self.enum_message
        return None


_KNOWN_LIMIT = 256


def _bounded_ok(
    otherwise: Callable[[Any], bool], kinds: frozenset[type], low: float, high: float
) -> Callable[[Any], bool]:
    """``otherwise(value)``, answered at once for numbers of the exact ``kinds`` within ``[low, high]``.

    Such a number is left alone by coercion and passes the compiled ``type`` and ``minimum``/``maximum`` checks,
    so the validator is called only for the other values (NaN compares false here: it is checked).
    """

    def ok(value: Any) -> bool:
        if type(value) in kinds and low <= value <= high:
            return True
        return otherwise(value)

    return ok


def _remembering_ok(
    check: Callable[[Any], str | None], certain: frozenset[type], members: frozenset[str]
) -> Callable[[Any], bool]:
    """``check(value) is None``, answered at once for values of the ``certain`` types, the ``members`` and the
    strings it already passed.

    :meth:`_Leaf.check` of a string depends on the string alone (coercion and validators are pure), so a string
    it passed once passes again: "3" for an integer or "true" for a boolean is coerced and checked once per leaf,
    not once per event. The strings come from the batches: a bounded few are kept.
    """
    known: set[str] = set(members)

    def ok(value: Any) -> bool:
        kind = type(value)
        if kind in certain or (kind is str and value in known):
            return True
        if check(value) is not None:
            return False
        if kind is str and len(known) < _KNOWN_LIMIT:
            known.add(value)
        return True

    return ok


class _Obj:
    """An object schema with ``properties``: walked key by key so every violation is classified."""

    __slots__ = ("absent_children", "additional", "ok", "props", "required", "residual", "walk_props")

    def __init__(
        self,
        props: dict[str, SchemaNode],
        required: tuple[str, ...],
        additional: bool | SchemaNode,
        residual: _Leaf | None,
    ) -> None:
        self.props = props
        self.required = required
        self.additional = additional
        self.residual = residual
        self.walk_props = tuple((name, child) for name, child in props.items() if child is not None)
        self.absent_children = tuple(
            (name, child) for name, child in props.items() if isinstance(child, _Obj) and _has_required(child)
        )
        self.ok = _object_ok(self)
        """Whether :func:`walk_schema` would report no finding for a value (allocation-free)."""


class _Arr:
    """An array schema whose ``items`` is an object schema: each item is walked."""

    __slots__ = ("items", "ok", "residual")

    def __init__(self, items: SchemaNode, residual: _Leaf | None) -> None:
        self.items = items
        self.residual = residual
        self.ok = _array_ok(self)
        """Whether :func:`walk_schema` would report no finding for a value (allocation-free)."""


SchemaNode = _Obj | _Arr | _Leaf | None


def _has_required(node: _Obj) -> bool:
    return bool(node.required) or any(_has_required(child) for _, child in node.absent_children)


def _always_ok(value: Any) -> bool:
    return True


def _node_ok(node: SchemaNode) -> Callable[[Any], bool]:
    return _always_ok if node is None else node.ok


def _object_ok(node: _Obj) -> Callable[[Any], bool]:  # noqa: C901 (hot path: the compiled object check, flattened (make bench))
    """Build ``node``'s no-finding predicate: the checks of :func:`walk_schema` without paths or findings."""
    residual_ok = node.residual.ok if node.residual is not None else None
    required = node.required
    # absent children all have required keys: walking ``{}`` for them always reports something
    absent = frozenset(name for name, _ in node.absent_children)
    additional = node.additional
    if additional is True:
        declared = tuple((name, child.ok) for name, child in node.walk_props if child is not None)

        def ok(value: Any) -> bool:
            if not isinstance(value, dict):
                return False
            if residual_ok is not None and not residual_ok(value):
                return False
            for name in required:
                if name not in value:
                    return False
            for name, child_ok in declared:
                if name in value and not child_ok(value[name]):
                    return False
            return not absent or value.keys() >= absent

        return ok

    props = {name: (child.ok if child is not None else None) for name, child in node.props.items()}
    closed = additional is False
    additional_ok = None if isinstance(additional, bool) else _node_ok(additional)

    def ok_closed(value: Any) -> bool:
        if not isinstance(value, dict):
            return False
        if residual_ok is not None and not residual_ok(value):
            return False
        for name in required:
            if name not in value:
                return False
        for name, child_value in value.items():
            if name in props:
                child_ok = props[name]
                if child_ok is not None and not child_ok(child_value):
                    return False
            elif closed or (additional_ok is not None and not additional_ok(child_value)):
                return False
        return not absent or value.keys() >= absent

    return ok_closed


def _array_ok(node: _Arr) -> Callable[[Any], bool]:
    """Build ``node``'s no-finding predicate (see :func:`_object_ok`)."""
    residual_ok = node.residual.ok if node.residual is not None else None
    item_ok = None if node.items is None else node.items.ok

    def ok(value: Any) -> bool:
        if not isinstance(value, list):
            return False
        if residual_ok is not None and not residual_ok(value):
            return False
        if item_ok is not None:
            for item in value:
                if not item_ok(item):
                    return False
        return True

    return ok


def compile_schema(schema: Any, cache: dict[str, Any], where: str) -> SchemaNode:
    if schema is True or schema is None or schema == {}:
        return None
    if schema is False:
        return _Leaf({"not": {}}, cache)
    if not isinstance(schema, dict):
        raise PlanDocumentError(f"{where}: a JSON schema must be an object, got {type(schema).__name__}")
    types = _declared_types(schema)
    properties = schema.get("properties")
    if isinstance(properties, dict) and (not types or types == {"object"}):
        return _compile_object(schema, properties, cache, where)
    items = schema.get("items")
    if isinstance(items, dict) and types == {"array"} and isinstance(items.get("properties"), dict):
        residual = _residual("array", schema, ("items", "type"), cache)
        return _Arr(compile_schema(items, cache, f"{where}/items"), residual)
    if schema.get("additionalProperties") is False and types == {"object"}:
        return _Obj({}, (), False, _residual("object", schema, ("additionalProperties", "type"), cache))
    return _Leaf(schema, cache)


def _declared_types(schema: dict[str, Any]) -> set[Any]:
    raw_type = schema.get("type")
    return {raw_type} if isinstance(raw_type, str) else set(raw_type or [])


def _residual(kind: str, schema: dict[str, Any], walked: tuple[str, ...], cache: dict[str, Any]) -> _Leaf | None:
    """The keywords of ``schema`` its node does not walk, checked on the whole value (None when there are none)."""
    rest = {k: v for k, v in schema.items() if k not in walked and k not in _ANNOTATIONS}
    return _Leaf({"type": kind, **rest}, cache) if rest else None


def _compile_object(schema: dict[str, Any], properties: dict[str, Any], cache: dict[str, Any], where: str) -> _Obj:
    props = {name: compile_schema(sub, cache, f"{where}/properties/{name}") for name, sub in properties.items()}
    required_raw = schema.get("required") or []
    if not isinstance(required_raw, list) or not all(isinstance(n, str) for n in required_raw):
        raise PlanDocumentError(f"{where}/required: must be an array of strings")
    additional = _additional_properties(schema, cache, where)
    residual = _residual("object", schema, ("properties", "required", "additionalProperties", "type"), cache)
    return _Obj(props, tuple(required_raw), additional, residual)


def _additional_properties(schema: dict[str, Any], cache: dict[str, Any], where: str) -> bool | SchemaNode:
    additional_raw = schema.get("additionalProperties", True)
    if isinstance(additional_raw, bool):
        return additional_raw
    additional = compile_schema(additional_raw, cache, f"{where}/additionalProperties")
    return True if additional is None else additional


# A raw finding: (type, path, expected, actual value)
Finding = tuple[ViolationType, tuple[str | int, ...], str | None, Any]


def walk_schema(node: SchemaNode, value: Any, path: tuple[str | int, ...], out: list[Finding]) -> None:  # noqa: C901 (one branch per JSON-Schema keyword; runs only on violations)
    if node is None:
        return
    if isinstance(node, _Leaf):
        expected = node.check(value)
        if expected is not None:
            out.append(("invalid_value", path, expected, value))
        return
    if isinstance(node, _Arr):
        if not isinstance(value, list):
            out.append(("invalid_value", path, 'type: "array"', value))
            return
        if node.residual is not None:
            expected = node.residual.check(value)
            if expected is not None:
                out.append(("invalid_value", path, expected, value))
        for position, item in enumerate(value):
            walk_schema(node.items, item, (*path, position), out)
        return
    if not isinstance(value, dict):
        out.append(("invalid_value", path, 'type: "object"', value))
        return
    if node.residual is not None:
        expected = node.residual.check(value)
        if expected is not None:
            out.append(("invalid_value", path, expected, value))
    for name in node.required:
        if name not in value:
            out.append(("missing_required", (*path, name), "required", None))
    props = node.props
    additional = node.additional
    if additional is True:
        # only declared members can be wrong: look them up instead of scanning the whole object
        for name, child in node.walk_props:
            if name in value:
                walk_schema(child, value[name], (*path, name), out)
    else:
        for name, child_value in value.items():
            if name in props:
                declared = props[name]
                if declared is not None:
                    walk_schema(declared, child_value, (*path, name), out)
            elif additional is False:
                out.append(("unplanned", (*path, name), "additionalProperties: false", child_value))
            else:
                walk_schema(additional, child_value, (*path, name), out)
    for name, absent in node.absent_children:
        if name not in value:
            walk_schema(absent, {}, (*path, name), out)


def json_pointer(path: Sequence[str | int]) -> str:
    if not path:
        return "#"
    text = "/".join(map(str, path))
    if "~" in text or text.count("/") != len(path) - 1:  # a token to escape (RFC 6901)
        return "#/" + "/".join([escape_pointer_token(str(part)) for part in path])
    return "#/" + text


def actual_text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else compact_json(value)
    return text if len(text) <= ACTUAL_MAX else text[: ACTUAL_MAX - 3] + "..."
