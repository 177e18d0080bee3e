"""A compiled data plan version: its data points matched to events, user attributes and identities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flagbridge.cdp.batch import Event
from flagbridge.cdp.dataplan.model import MATCH_TYPES, ActivatedEnvironment, PlanDocumentError
from flagbridge.cdp.dataplan.schema import SchemaNode, compile_schema

UNMATCHED = object()
NOT_PLANNABLE = object()


@dataclass(slots=True)
class CompiledPlan:
    """One plan version with every data point compiled and indexed for O(1) matching."""

    plan_id: str
    version: int
    activated_environment: ActivatedEnvironment
    custom_events: dict[tuple[str, str | None], SchemaNode] = field(default_factory=dict)
    screen_views: dict[str, SchemaNode] = field(default_factory=dict)
    product_actions: dict[str, SchemaNode] = field(default_factory=dict)
    promotion_actions: dict[str, SchemaNode] = field(default_factory=dict)
    product_impression: Any = UNMATCHED
    user_attributes: Any = UNMATCHED
    user_identities: Any = UNMATCHED

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
            node = compile_schema(definition, cache, f"{where}/validator/definition")
            label = plan._register(str(match["type"]), criteria, node, where)
            if label in seen:
                raise PlanDocumentError(f"{where}: duplicate data point {label}")
            seen.add(label)
        return plan

    def _register(self, kind: str, criteria: Mapping[str, Any], node: SchemaNode, where: str) -> str:
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
        """Return the node of :meth:`match_event` without building the label (``NOT_PLANNABLE`` for None)."""
        data = event.data
        kind = event.event_type
        if kind == "custom_event":
            name = data.get("event_name")
            custom_type = data.get("custom_event_type")
            node = self.custom_events.get((name, custom_type), UNMATCHED)  # type: ignore[arg-type]
            if node is UNMATCHED:
                node = self.custom_events.get((name, None), UNMATCHED)  # type: ignore[arg-type]
            return node
        if kind == "screen_view":
            return self.screen_views.get(data.get("screen_name"), UNMATCHED)  # type: ignore[arg-type]
        if kind == "commerce_event":
            action = data.get("product_action")
            if isinstance(action, dict):
                return self.product_actions.get(action.get("action"), UNMATCHED)  # type: ignore[arg-type]
            promotion = data.get("promotion_action")
            if isinstance(promotion, dict):
                return self.promotion_actions.get(promotion.get("action"), UNMATCHED)  # type: ignore[arg-type]
            if data.get("product_impressions"):
                return self.product_impression
        return NOT_PLANNABLE

    def match_event(self, event: Event) -> tuple[str, Any] | None:
        """Return ``(data point label, node)`` for a plannable event (node is ``UNMATCHED`` when unplanned).

        Returns None for event types that cannot be planned (they are never validated).
        """
        data = event.data
        kind = event.event_type
        if kind == "custom_event":
            name = data.get("event_name")
            custom_type = data.get("custom_event_type")
            node = self.custom_events.get((name, custom_type), UNMATCHED)  # type: ignore[arg-type]
            if node is UNMATCHED:
                node = self.custom_events.get((name, None), UNMATCHED)  # type: ignore[arg-type]
            return f"custom_event:{name}:{custom_type}", node
        if kind == "screen_view":
            name = data.get("screen_name")
            return f"screen_view:{name}", self.screen_views.get(name, UNMATCHED)  # type: ignore[arg-type]
        if kind == "commerce_event":
            action = data.get("product_action")
            if isinstance(action, dict):
                name = action.get("action")
                return f"product_action:{name}", self.product_actions.get(name, UNMATCHED)  # type: ignore[arg-type]
            promotion = data.get("promotion_action")
            if isinstance(promotion, dict):
                name = promotion.get("action")
                return f"promotion_action:{name}", self.promotion_actions.get(name, UNMATCHED)  # type: ignore[arg-type]
            if data.get("product_impressions"):
                return "product_impression", self.product_impression
            return None
        return None
