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
Modules
-------
:mod:`.model` (the vocabulary: actions, violations, the enforcement policy), :mod:`.schema` (a generic fast-path
JSON-Schema compiler), :mod:`.plan` (a compiled plan version and its data-point matching), :mod:`.validator`
(validation of a batch and the actions applied, :class:`PlanOutcome`). The names below are the package's API.
"""

from flagbridge.cdp.dataplan.model import (
    MATCH_TYPES,
    NO_DATA_PLAN,
    ActivatedEnvironment,
    PlanAction,
    PlanDocumentError,
    PlanEnforcement,
    Violation,
    ViolationType,
)
from flagbridge.cdp.dataplan.plan import CompiledPlan
from flagbridge.cdp.dataplan.validator import PlanOutcome, PlanValidator, load_plan_document

__all__ = [
    "MATCH_TYPES",
    "NO_DATA_PLAN",
    "ActivatedEnvironment",
    "CompiledPlan",
    "PlanAction",
    "PlanDocumentError",
    "PlanEnforcement",
    "PlanOutcome",
    "PlanValidator",
    "Violation",
    "ViolationType",
    "load_plan_document",
]
