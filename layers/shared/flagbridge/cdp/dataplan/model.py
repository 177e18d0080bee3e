"""The vocabulary of data plans: action and violation types, the enforcement policy, a violation."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, model_validator

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
ACTUAL_MAX = 256


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
        """Return a JSON-ready dict (every field, by name, in order)."""
        return dict(zip(self._fields, self, strict=True))
