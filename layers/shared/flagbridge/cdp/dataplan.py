"""mParticle-compatible data plan validation and blocking.

Documents
---------
A plan version is mParticle's ``version_document``: ``{"data_points": [...]}`` (the wrapper
``{"version_document": {...}}`` is accepted too). Each data point is
``{description?, match: {type, criteria}, validator?: {type: "json_schema", definition}}``, with
``match.type`` one of:

==================== ======================================== ==========================================
match.type           criteria                                 matches
==================== ======================================== ==========================================
custom_event         event_name, custom_event_type (optional) custom events with that name (and type)
screen_view          screen_name                              screen views with that screen name
product_action       action                                   commerce events whose product_action.action
promotion_action     action                                   commerce events whose promotion_action.action
product_impression   (none)                                   commerce events with product_impressions
user_attributes      (none)                                   the batch's ``user_attributes`` object
user_identities      (none)                                   the batch's identities as ``{type: value}``
==================== ======================================== ==========================================

Event definitions apply to the event envelope (so attributes live under
``properties.data.properties.custom_attributes``); user definitions apply to the object itself.
Every JSON Schema is compiled once, at configuration load (``fastjsonschema``; identical leaf schemas
are compiled once and shared).

Validation
----------
A batch is validated only when it carries ``context.data_plan.plan_id`` and a configured version of
that plan is active in the batch's environment (``production`` activation also covers
``development``). ``plan_version`` picks a version; without it the highest active version is used.
Other batches pass unvalidated, unless ``require_plan`` is set: then they are dropped with reason
``plan.no_data_plan``.

Like mParticle, ``"42"`` and ``42`` and ``"true"`` and ``true`` are equal: before a value is checked it
is coerced towards the schema's ``type`` (numeric string -> number, ``"true"``/``"false"`` ->
boolean, number/boolean -> string) and ``enum`` members are compared by canonical form.

Only custom, screen-view and commerce events can be planned; other event types are never validated.
An object that is absent is validated as an empty object, so its ``required`` keys are reported.

Violations (``validation_error_type``)
--------------------------------------
- ``unplanned``: an event that no data point matches (pointer ``#``); a key not allowed by
  ``additionalProperties: false`` (e.g. ``#/data/custom_attributes/debug``); an unplanned user
  attribute (``#/user_attributes/x``) or identity (``#/user_identities/other``).
- ``missing_required``: a ``required`` key is absent.
- ``invalid_value``: the value fails its schema (type, enum, pattern, minimum, format...).

Each carries ``key``, ``error_pointer``, ``expected``, ``actual`` (JSON text, truncated to 256 chars)
and the ``action`` applied.

Actions (``plan_enforcement``)
------------------------------
``on_unplanned``, ``on_missing_required`` and ``on_invalid_value`` each take ``allow`` (keep the data,
record the violation), ``drop_attribute``, ``drop_event`` or ``drop_batch``; ``on_unplanned_event``
optionally overrides ``on_unplanned`` for whole unplanned events. The defaults (``allow``) match
mParticle, which never blocks until a plan says so. Resolution rules:

- ``drop_attribute`` removes the offending key when it is a custom attribute (of the event or of a
  product), a user attribute or a user identity; anywhere else (e.g. ``screen_name``, or a whole
  unplanned event) it escalates to ``drop_event``;
- ``drop_attribute`` is refused for ``on_missing_required`` at load (there is nothing to remove);
- ``drop_event`` on batch-level data (user attributes/identities) removes that attribute/identity;
- ``drop_batch`` drops the whole batch (every event).

The outcome carries the modified batch (copy-on-write; the input is never mutated), the violations and,
when anything was removed, ``block_metadata`` in mParticle's quarantine shape::

    {"dto_version": 1, "blocked_event_ids": [...], "blocked_event_attributes":
     [{"event_id": ..., "event_attributes": ["./data/custom_attributes/x"]}],
     "blocked_user_attributes": [...], "blocked_user_identities": [...], "blocked_device_identities": []}

where ``event_id`` is mParticle's ``event_id`` when present, else the event's message id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import fastjsonschema
from pydantic import BaseModel, ConfigDict, model_validator

from flagbridge.cdp._values import canonical, compact_json, escape_pointer_token, to_bool, to_number
from flagbridge.cdp.batch import Batch, Event
from flagbridge.errors import FlagbridgeError

ViolationType = Literal["unplanned", "missing_required", "invalid_value"]
PlanAction = Literal["allow", "drop_attribute", "drop_event", "drop_batch"]
ActivatedEnvironment = Literal["none", "development", "production"]

MATCH_TYPES = frozenset(
    {
        "custom_event",
        "screen_view",
        "product_action",
        "promotion_action",
        "product_impression",
        "user_attributes",
        "user_identities",
    }
)
NO_DATA_PLAN = "plan.no_data_plan"
_ACTUAL_MAX = 256


class PlanDocumentError(FlagbridgeError, ValueError):
    """A data plan document cannot be compiled; the message names the data point and the problem."""


class PlanEnforcement(BaseModel):
    """What to do with batches and violations (the ``plan_enforcement`` config section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require_plan: bool = False
    on_unplanned: PlanAction = "allow"
    on_unplanned_event: PlanAction | None = None
    on_missing_required: PlanAction = "allow"
    on_invalid_value: PlanAction = "allow"

    @model_validator(mode="after")
    def _no_drop_missing(self) -> PlanEnforcement:
        if self.on_missing_required == "drop_attribute":
            raise ValueError("on_missing_required cannot be drop_attribute: a missing attribute cannot be removed")
        return self


class Violation(NamedTuple):
    """One data plan violation, in the shape of mParticle's validation results."""

    validation_error_type: ViolationType
    key: str
    error_pointer: str
    expected: str | None
    actual: str | None
    action: PlanAction
    event_index: int | None = None
    """Index of the event in the received batch; None for user attributes/identities."""
    event_id: str | None = None
    data_point: str | None = None
    """The matched (or, for unplanned events, sought) data point, e.g. ``custom_event:add_to_plan``."""

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "validation_error_type": self.validation_error_type,
            "key": self.key,
            "error_pointer": self.error_pointer,
            "expected": self.expected,
            "actual": self.actual,
            "action": self.action,
            "event_index": self.event_index,
            "event_id": self.event_id,
            "data_point": self.data_point,
        }


# --------------------------------------------------------------------------------------------------
# Schema compilation
# --------------------------------------------------------------------------------------------------

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

    __slots__ = ("enum_raw", "enum_text", "native", "ok", "types", "validator", "want_bool", "want_num", "want_str")

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
        rest = set(schema) - {"type"}
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
        """Whether :meth:`check` finds nothing (what :func:`_walk` would report no finding for)."""

    def _build_ok(self) -> Callable[[Any], bool]:
        check = self.check
        if self.validator is None and self.enum_raw is None and self.native is not None:
            # values of these exact types are left alone by coerce() and pass the native test
            certain = frozenset(kind for name in self.types for kind in _CERTAIN_TYPES[name])
            return lambda value: type(value) in certain or check(value) is None
        if self.validator is None and self.enum_raw is not None and (self.native is None or self.want_str):
            # strings that are their own canonical form and enum members: coerce() keeps them, they pass
            members = frozenset(item for item in self.enum_raw if type(item) is str and canonical(item) == item)
            return lambda value: (type(value) is str and value in members) or check(value) is None
        return lambda value: check(value) is None

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
                shown = sorted(self.types) if len(self.types) > 1 else next(iter(self.types))
                return f"type: {compact_json(shown)}"
        elif self.validator is not None:
            try:
                self.validator(value)
            except fastjsonschema.JsonSchemaValueException as exc:
                return f"{exc.rule}: {compact_json(exc.rule_definition)}"
        enum_raw = self.enum_raw
        if enum_raw is not None:
            text = canonical(value)
            if (text is None and value not in enum_raw) or (text is not None and text not in self.enum_text):
                return f"enum: {compact_json(enum_raw)}"
        return None


class _Obj:
    """An object schema with ``properties``: walked key by key so every violation is classified."""

    __slots__ = ("absent_children", "additional", "ok", "props", "required", "residual", "walk_props")

    def __init__(
        self,
        props: dict[str, _Node],
        required: tuple[str, ...],
        additional: bool | _Node,
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
        """Whether :func:`_walk` would report no finding for a value (allocation-free)."""


class _Arr:
    """An array schema whose ``items`` is an object schema: each item is walked."""

    __slots__ = ("items", "ok", "residual")

    def __init__(self, items: _Node, residual: _Leaf | None) -> None:
        self.items = items
        self.residual = residual
        self.ok = _array_ok(self)
        """Whether :func:`_walk` would report no finding for a value (allocation-free)."""


_Node = _Obj | _Arr | _Leaf | None


def _has_required(node: _Obj) -> bool:
    return bool(node.required) or any(_has_required(child) for _, child in node.absent_children)


def _always_ok(value: Any) -> bool:
    return True


def _node_ok(node: _Node) -> Callable[[Any], bool]:
    return _always_ok if node is None else node.ok


def _object_ok(node: _Obj) -> Callable[[Any], bool]:
    """Build ``node``'s no-finding predicate: the checks of :func:`_walk` without paths or findings."""
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


def _compile_schema(schema: Any, cache: dict[str, Any], where: str) -> _Node:
    if schema is True or schema is None or schema == {}:
        return None
    if schema is False:
        return _Leaf({"not": {}}, cache)
    if not isinstance(schema, dict):
        raise PlanDocumentError(f"{where}: a JSON schema must be an object, got {type(schema).__name__}")
    raw_type = schema.get("type")
    types = {raw_type} if isinstance(raw_type, str) else set(raw_type or [])
    properties = schema.get("properties")
    if isinstance(properties, dict) and (not types or types == {"object"}):
        props = {name: _compile_schema(sub, cache, f"{where}/properties/{name}") for name, sub in properties.items()}
        required_raw = schema.get("required") or []
        if not isinstance(required_raw, list) or not all(isinstance(n, str) for n in required_raw):
            raise PlanDocumentError(f"{where}/required: must be an array of strings")
        additional_raw = schema.get("additionalProperties", True)
        additional: bool | _Node
        if isinstance(additional_raw, bool):
            additional = additional_raw
        else:
            additional = _compile_schema(additional_raw, cache, f"{where}/additionalProperties")
            if additional is None:
                additional = True
        rest = {
            k: v
            for k, v in schema.items()
            if k not in ("properties", "required", "additionalProperties", "type") and k not in _ANNOTATIONS
        }
        residual = _Leaf({"type": "object", **rest}, cache) if rest else None
        return _Obj(props, tuple(required_raw), additional, residual)
    items = schema.get("items")
    if isinstance(items, dict) and types == {"array"} and isinstance(items.get("properties"), dict):
        rest = {k: v for k, v in schema.items() if k not in ("items", "type") and k not in _ANNOTATIONS}
        residual = _Leaf({"type": "array", **rest}, cache) if rest else None
        return _Arr(_compile_schema(items, cache, f"{where}/items"), residual)
    if schema.get("additionalProperties") is False and types == {"object"}:
        rest = {k: v for k, v in schema.items() if k not in ("additionalProperties", "type") and k not in _ANNOTATIONS}
        return _Obj({}, (), False, _Leaf({"type": "object", **rest}, cache) if rest else None)
    return _Leaf(schema, cache)


# A raw finding: (type, path, expected, actual value)
_Finding = tuple[ViolationType, tuple[str | int, ...], str | None, Any]


def _walk(node: _Node, value: Any, path: tuple[str | int, ...], out: list[_Finding]) -> None:
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
            _walk(node.items, item, (*path, position), out)
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
                _walk(child, value[name], (*path, name), out)
    else:
        for name, child_value in value.items():
            if name in props:
                declared = props[name]
                if declared is not None:
                    _walk(declared, child_value, (*path, name), out)
            elif additional is False:
                out.append(("unplanned", (*path, name), "additionalProperties: false", child_value))
            else:
                _walk(additional, child_value, (*path, name), out)
    for name, absent in node.absent_children:
        if name not in value:
            _walk(absent, {}, (*path, name), out)


def _pointer(path: Sequence[str | int]) -> str:
    return "#/" + "/".join(escape_pointer_token(str(part)) for part in path) if path else "#"


def _actual(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else compact_json(value)
    return text if len(text) <= _ACTUAL_MAX else text[: _ACTUAL_MAX - 3] + "..."


# --------------------------------------------------------------------------------------------------
# Compiled plans
# --------------------------------------------------------------------------------------------------

_UNMATCHED = object()
_NOT_PLANNABLE = object()


@dataclass(slots=True)
class CompiledPlan:
    """One plan version with every data point compiled and indexed for O(1) matching."""

    plan_id: str
    version: int
    activated_environment: ActivatedEnvironment
    custom_events: dict[tuple[str, str | None], _Node] = field(default_factory=dict)
    screen_views: dict[str, _Node] = field(default_factory=dict)
    product_actions: dict[str, _Node] = field(default_factory=dict)
    promotion_actions: dict[str, _Node] = field(default_factory=dict)
    product_impression: Any = _UNMATCHED
    user_attributes: Any = _UNMATCHED
    user_identities: Any = _UNMATCHED

    @classmethod
    def compile(
        cls,
        plan_id: str,
        version: int,
        document: Mapping[str, Any],
        activated_environment: ActivatedEnvironment,
        schema_cache: dict[str, Any] | None = None,
    ) -> CompiledPlan:
        """Compile a plan version document.

        Parameters
        ----------
        plan_id, version, activated_environment
            The plan's identity and where it is active.
        document
            ``{"data_points": [...]}`` or ``{"version_document": {"data_points": [...]}}``.
        schema_cache
            Shared cache of compiled leaf validators (pass one dict across plans to share them).

        Raises
        ------
        PlanDocumentError
            On an unknown match type, missing criteria, duplicate data point or invalid schema.
        """
        cache: dict[str, Any] = {} if schema_cache is None else schema_cache
        inner = document.get("version_document", document)
        if not isinstance(inner, Mapping):
            raise PlanDocumentError("version_document must be an object")
        points = inner.get("data_points")
        if not isinstance(points, list):
            raise PlanDocumentError("the document needs a data_points array")
        plan = cls(plan_id, version, activated_environment)
        seen: set[str] = set()
        for position, point in enumerate(points):
            where = f"data_points/{position}"
            if not isinstance(point, Mapping):
                raise PlanDocumentError(f"{where}: must be an object")
            match = point.get("match")
            if not isinstance(match, Mapping) or match.get("type") not in MATCH_TYPES:
                raise PlanDocumentError(f"{where}/match/type: must be one of {sorted(MATCH_TYPES)}")
            criteria = match.get("criteria") or {}
            if not isinstance(criteria, Mapping):
                raise PlanDocumentError(f"{where}/match/criteria: must be an object")
            validator = point.get("validator")
            definition: Any = None
            if validator is not None:
                if not isinstance(validator, Mapping) or validator.get("type", "json_schema") != "json_schema":
                    raise PlanDocumentError(f"{where}/validator: only type json_schema is supported")
                definition = validator.get("definition")
            node = _compile_schema(definition, cache, f"{where}/validator/definition")
            label = plan._register(str(match["type"]), criteria, node, where)
            if label in seen:
                raise PlanDocumentError(f"{where}: duplicate data point {label}")
            seen.add(label)
        return plan

    def _register(self, kind: str, criteria: Mapping[str, Any], node: _Node, where: str) -> str:
        def need(name: str) -> str:
            value = criteria.get(name)
            if not isinstance(value, str) or not value:
                raise PlanDocumentError(f"{where}/match/criteria/{name}: required for {kind}")
            return value

        if kind == "custom_event":
            name = need("event_name")
            custom_type = criteria.get("custom_event_type")
            if custom_type is not None and not isinstance(custom_type, str):
                raise PlanDocumentError(f"{where}/match/criteria/custom_event_type: must be a string")
            self.custom_events[(name, custom_type)] = node
            return f"custom_event:{name}:{custom_type or '*'}"
        if kind == "screen_view":
            name = need("screen_name")
            self.screen_views[name] = node
            return f"screen_view:{name}"
        if kind == "product_action":
            name = need("action")
            self.product_actions[name] = node
            return f"product_action:{name}"
        if kind == "promotion_action":
            name = need("action")
            self.promotion_actions[name] = node
            return f"promotion_action:{name}"
        if kind == "product_impression":
            self.product_impression = node
        elif kind == "user_attributes":
            self.user_attributes = node
        else:
            self.user_identities = node
        return kind

    def active_in(self, environment: str) -> bool:
        """Return whether the version validates data of ``environment``."""
        if self.activated_environment == "production":
            return True
        return self.activated_environment == "development" and environment == "development"

    def match_node(self, event: Event) -> Any:
        """Return the node of :meth:`match_event` without building the label (``_NOT_PLANNABLE`` for None)."""
        data = event.data
        kind = event.event_type
        if kind == "custom_event":
            name = data.get("event_name")
            custom_type = data.get("custom_event_type")
            node = self.custom_events.get((name, custom_type), _UNMATCHED)  # type: ignore[arg-type]
            if node is _UNMATCHED:
                node = self.custom_events.get((name, None), _UNMATCHED)  # type: ignore[arg-type]
            return node
        if kind == "screen_view":
            return self.screen_views.get(data.get("screen_name"), _UNMATCHED)  # type: ignore[arg-type]
        if kind == "commerce_event":
            action = data.get("product_action")
            if isinstance(action, dict):
                return self.product_actions.get(action.get("action"), _UNMATCHED)  # type: ignore[arg-type]
            promotion = data.get("promotion_action")
            if isinstance(promotion, dict):
                return self.promotion_actions.get(promotion.get("action"), _UNMATCHED)  # type: ignore[arg-type]
            if data.get("product_impressions"):
                return self.product_impression
        return _NOT_PLANNABLE

    def match_event(self, event: Event) -> tuple[str, Any] | None:
        """Return ``(data point label, node)`` for a plannable event (node is ``_UNMATCHED`` when unplanned).

        Returns None for event types that cannot be planned (they are never validated).
        """
        data = event.data
        kind = event.event_type
        if kind == "custom_event":
            name = data.get("event_name")
            custom_type = data.get("custom_event_type")
            node = self.custom_events.get((name, custom_type), _UNMATCHED)  # type: ignore[arg-type]
            if node is _UNMATCHED:
                node = self.custom_events.get((name, None), _UNMATCHED)  # type: ignore[arg-type]
            return f"custom_event:{name}:{custom_type}", node
        if kind == "screen_view":
            name = data.get("screen_name")
            return f"screen_view:{name}", self.screen_views.get(name, _UNMATCHED)  # type: ignore[arg-type]
        if kind == "commerce_event":
            action = data.get("product_action")
            if isinstance(action, dict):
                name = action.get("action")
                return f"product_action:{name}", self.product_actions.get(name, _UNMATCHED)  # type: ignore[arg-type]
            promotion = data.get("promotion_action")
            if isinstance(promotion, dict):
                name = promotion.get("action")
                return f"promotion_action:{name}", self.promotion_actions.get(name, _UNMATCHED)  # type: ignore[arg-type]
            if data.get("product_impressions"):
                return "product_impression", self.product_impression
            return None
        return None


# --------------------------------------------------------------------------------------------------
# Outcome
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class PlanOutcome:
    """The result of validating one batch against its data plan.

    Attributes
    ----------
    batch
        The batch to forward (attributes removed, blocked events left out); None when the whole batch
        was dropped.
    original
        The batch as received (for quarantine).
    plan
        ``(plan_id, version)`` that validated the batch, or None when it was not validated.
    violations
        Every violation found, with the action applied.
    dropped_events
        ``{event index: reason}`` for events removed by the plan (reason ``plan.<violation type>``).
    batch_drop_reason
        ``plan.no_data_plan`` or ``plan.<violation type>`` when the whole batch was dropped.
    block_metadata
        mParticle's quarantine ``block_metadata`` when anything was removed, else None.
    """

    batch: Batch | None
    original: Batch
    plan: tuple[str, int] | None = None
    violations: list[Violation] = field(default_factory=list)
    dropped_events: dict[int, str] = field(default_factory=dict)
    batch_drop_reason: str | None = None
    block_metadata: dict[str, Any] | None = None

    def quarantine_document(self) -> dict[str, Any] | None:
        """Return the original batch with ``context.data_plan.block_metadata``, or None if nothing was blocked."""
        if self.block_metadata is None and self.batch_drop_reason is None:
            return None
        doc = dict(self.original.doc)
        context = dict(doc.get("context") or {})
        data_plan = dict(context.get("data_plan") or {})
        data_plan["block_metadata"] = self.block_metadata or _empty_block_metadata()
        context["data_plan"] = data_plan
        doc["context"] = context
        return doc


def _empty_block_metadata() -> dict[str, Any]:
    return {
        "dto_version": 1,
        "blocked_event_ids": [],
        "blocked_event_attributes": [],
        "blocked_user_attributes": [],
        "blocked_user_identities": [],
        "blocked_device_identities": [],
    }


def _is_removable(path: tuple[str | int, ...]) -> bool:
    return len(path) >= 2 and path[-2] == "custom_attributes"


def _remove_paths(root: dict[str, Any], paths: Sequence[tuple[str | int, ...]]) -> dict[str, Any]:
    """Return a copy of ``root`` without the members at ``paths`` (copies only along the paths, once)."""
    new_root = dict(root)
    copied: dict[tuple[str | int, ...], Any] = {(): new_root}
    for path in paths:
        container: Any = new_root
        for depth in range(1, len(path)):
            prefix = path[:depth]
            existing = copied.get(prefix)
            if existing is None:
                child = container[path[depth - 1]]
                existing = list(child) if isinstance(child, list) else dict(child)
                container[path[depth - 1]] = existing
                copied[prefix] = existing
            container = existing
        if isinstance(container, dict):
            container.pop(path[-1], None)
    return new_root


class PlanValidator:
    """Validates batches against compiled plans and applies the enforcement actions."""

    def __init__(self, plans: Sequence[CompiledPlan], enforcement: PlanEnforcement) -> None:
        self.enforcement = enforcement
        self._plans: dict[str, list[CompiledPlan]] = {}
        for plan in plans:
            self._plans.setdefault(plan.plan_id, []).append(plan)
        for versions in self._plans.values():
            versions.sort(key=lambda p: p.version, reverse=True)

    def select(self, batch: Batch) -> CompiledPlan | None:
        """Return the plan version that applies to ``batch``, or None (batch not validated)."""
        if batch.plan_id is None:
            return None
        for plan in self._plans.get(batch.plan_id, ()):
            if batch.plan_version is not None and plan.version != batch.plan_version:
                continue
            if plan.active_in(batch.environment):
                return plan
        return None

    def _action(self, kind: ViolationType, level: Literal["event", "attribute", "user"], removable: bool) -> PlanAction:
        e = self.enforcement
        if kind == "unplanned":
            action = (e.on_unplanned_event or e.on_unplanned) if level == "event" else e.on_unplanned
        elif kind == "missing_required":
            action = e.on_missing_required
        else:
            action = e.on_invalid_value
        if level == "user":
            return "drop_attribute" if action == "drop_event" else action
        if action == "drop_attribute" and (level == "event" or not removable):
            return "drop_event"
        return action

    def validate(self, batch: Batch) -> PlanOutcome:
        """Validate ``batch`` and apply the configured actions.

        Parameters
        ----------
        batch
            A normalised batch.

        Returns
        -------
        PlanOutcome
            The batch to forward (or None when dropped), violations and block metadata.
        """
        plan = self.select(batch)
        if plan is None:
            if self.enforcement.require_plan:
                return PlanOutcome(batch=None, original=batch, batch_drop_reason=NO_DATA_PLAN)
            return PlanOutcome(batch=batch, original=batch)

        # First pass, allocation-free for valid data: which events (and user sections) have findings.
        flagged: list[tuple[Event, Any]] | None = None
        match_node = plan.match_node
        for event in batch.events:
            node = match_node(event)
            if node is None or node is _NOT_PLANNABLE:
                continue
            if node is _UNMATCHED or not node.ok(event.envelope):
                if flagged is None:
                    flagged = []
                flagged.append((event, node))
        user_node = plan.user_attributes
        user_ok = user_node is _UNMATCHED or user_node is None or user_node.ok(batch.user_attributes)
        identities_node = plan.user_identities
        identities_ok = identities_node is _UNMATCHED or identities_node is None
        if flagged is None and user_ok and identities_ok:
            return PlanOutcome(batch=batch, original=batch, plan=(plan.plan_id, plan.version))

        violations: list[Violation] = []
        drop_batch: str | None = None
        dropped: dict[int, str] = {}
        removals: dict[int, list[tuple[str | int, ...]]] = {}
        findings: list[_Finding] = []
        for event, node in flagged or ():
            matched = plan.match_event(event)
            assert matched is not None
            label = matched[0]
            if node is _UNMATCHED:
                action = self._action("unplanned", "event", False)
                violations.append(
                    Violation(
                        "unplanned", event.name, "#", f"a data point for {label}", event.event_type, action,
                        event.index, event.event_id, label,
                    )
                )  # fmt: skip
                drop_batch, _ = self._apply(action, "unplanned", event.index, (), dropped, removals, drop_batch)
                continue
            findings.clear()
            _walk(node, event.envelope, (), findings)
            for kind, path, expected, actual in findings:
                action = self._action(kind, "attribute", _is_removable(path))
                key = str(path[-1]) if path else event.name
                violations.append(
                    Violation(
                        kind, key, _pointer(path), expected, _actual(actual), action, event.index, event.event_id, label
                    )
                )
                drop_batch, _ = self._apply(action, kind, event.index, path, dropped, removals, drop_batch)

        user_removals: dict[str, list[str]] = {"user_attributes": [], "user_identities": []}
        for section in ("user_attributes", "user_identities"):
            node = plan.user_attributes if section == "user_attributes" else plan.user_identities
            if node is _UNMATCHED or node is None or (section == "user_attributes" and user_ok):
                continue
            value: Any = (
                batch.user_attributes
                if section == "user_attributes"
                else {k: v for k, v in batch.identities if k != "mpid"}
            )
            if node.ok(value):
                continue
            findings.clear()
            _walk(node, value, (), findings)
            for kind, path, expected, actual in findings:
                action = self._action(kind, "user", True)
                violations.append(
                    Violation(
                        kind, str(path[0]) if path else section, _pointer((section, *path)), expected, _actual(actual),
                        action, None, None, section,
                    )
                )  # fmt: skip
                if action == "drop_batch" and drop_batch is None:
                    drop_batch = f"plan.{kind}"
                elif action == "drop_attribute" and path:
                    user_removals[section].append(str(path[0]))

        if drop_batch is not None:
            metadata = _empty_block_metadata()
            metadata["blocked_event_ids"] = [event.event_id for event in batch.events]
            return PlanOutcome(
                batch=None,
                original=batch,
                plan=(plan.plan_id, plan.version),
                violations=violations,
                dropped_events={event.index: drop_batch for event in batch.events},
                batch_drop_reason=drop_batch,
                block_metadata=metadata,
            )
        if (
            not dropped
            and not removals
            and not user_removals["user_attributes"]
            and not user_removals["user_identities"]
        ):
            return PlanOutcome(batch=batch, original=batch, plan=(plan.plan_id, plan.version), violations=violations)
        return self._build(batch, plan, violations, dropped, removals, user_removals)

    @staticmethod
    def _apply(
        action: PlanAction,
        kind: ViolationType,
        index: int,
        path: tuple[str | int, ...],
        dropped: dict[int, str],
        removals: dict[int, list[tuple[str | int, ...]]],
        drop_batch: str | None,
    ) -> tuple[str | None, None]:
        if action == "drop_batch":
            return drop_batch or f"plan.{kind}", None
        if action == "drop_event":
            dropped.setdefault(index, f"plan.{kind}")
        elif action == "drop_attribute":
            removals.setdefault(index, []).append(path)
        return drop_batch, None

    @staticmethod
    def _build(
        batch: Batch,
        plan: CompiledPlan,
        violations: list[Violation],
        dropped: dict[int, str],
        removals: dict[int, list[tuple[str | int, ...]]],
        user_removals: dict[str, list[str]],
    ) -> PlanOutcome:
        metadata = _empty_block_metadata()
        events: list[Event] = []
        for event in batch.events:
            if event.index in dropped:
                metadata["blocked_event_ids"].append(event.event_id)
                continue
            paths = removals.get(event.index)
            if not paths:
                events.append(event)
                continue
            envelope = _remove_paths(event.envelope, paths)
            metadata["blocked_event_attributes"].append(
                {
                    "event_id": event.event_id,
                    "event_attributes": ["./" + "/".join(str(p) for p in path) for path in paths],
                }
            )
            events.append(Event(event.index, event.event_type, envelope["data"], envelope, event.message_id, batch))
        doc = batch.doc
        user_attributes = batch.user_attributes
        identities = batch.identities
        blocked_attributes = sorted(set(user_removals["user_attributes"]))
        blocked_identities = sorted(set(user_removals["user_identities"]))
        if blocked_attributes:
            user_attributes = {k: v for k, v in user_attributes.items() if k not in blocked_attributes}
            doc = {**doc, "user_attributes": user_attributes}
        if blocked_identities:
            identities = tuple(pair for pair in identities if pair[0] not in blocked_identities)
            raw = doc.get("user_identities")
            if isinstance(raw, dict):
                doc = {**doc, "user_identities": {k: v for k, v in raw.items() if k not in blocked_identities}}
            elif isinstance(raw, list):
                kept = [item for item in raw if item.get("identity_type") not in blocked_identities]
                doc = {**doc, "user_identities": kept}
            if "mpid" in blocked_identities:
                doc = {k: v for k, v in doc.items() if k != "mpid"}
        metadata["blocked_user_attributes"] = blocked_attributes
        metadata["blocked_user_identities"] = blocked_identities
        new_batch = Batch(
            doc=doc,
            events=events,
            environment=batch.environment,
            identities=identities,
            user_attributes=user_attributes,
            plan_id=batch.plan_id,
            plan_version=batch.plan_version,
            source_format=batch.source_format,
            _dedup_key=batch.dedup_key,  # the key of the batch as received, not of the modified copy
            _event_digests=batch._event_digests,  # shared, as dataclasses.replace() would
        )
        return PlanOutcome(
            batch=new_batch,
            original=batch,
            plan=(plan.plan_id, plan.version),
            violations=violations,
            dropped_events=dropped,
            block_metadata=metadata,
        )


def load_plan_document(text: str) -> dict[str, Any]:
    """Parse a plan version document from JSON text (as exported by mParticle's Data Planning API)."""
    document = json.loads(text)
    if not isinstance(document, dict):
        raise PlanDocumentError("a plan document must be a JSON object")
    return document
