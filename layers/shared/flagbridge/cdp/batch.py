"""Normalise an mParticle batch to one internal shape and validate its structure.

Accepted input shapes
---------------------
- **Events API inbound** (``POST /v2/events``): ``user_identities`` is an object
  ``{identity_type: value}``. The official Python SDK (``mparticle`` 0.16.1) serialises the customer
  id as ``"customerid"``; it is accepted and renamed to ``customer_id``.
- **Outbound webhook / raw feed** (what mParticle sends to webhook, SQS, Kinesis... outputs):
  ``user_identities`` is an array of ``{identity_type, identity, timestamp_unixtime_ms}``, with
  ``batch_id`` on the batch and ``message_id`` on events.

The internal shape is :class:`Batch`: the top-level document as received (only ``customerid`` is
renamed) plus typed accessors (environment, identities as ``(type, value)`` pairs, user attributes,
data plan tag, dedup key) and one :class:`Event` per event, which remembers its position in the
received batch (``index``) and a stable ``message_id``. Nothing is deep-copied and the input is never
mutated; :meth:`Batch.to_dict` rebuilds a document (in the received identity shape) with a chosen
subset of events, for fan-out to non-Split destinations.

Structural rules (violations raise :class:`BatchFormatError` listing every problem with a
JSON-pointer path, e.g. ``/events/2/data/event_name: required``)
--------------------------------------------------------------------------------------------------
- the batch is an object; ``environment`` is ``"production"`` or ``"development"`` (missing means
  ``production``, the JSON reference's default);
- ``events`` (optional) is an array of ``{"event_type": <known type>, "data": {...}}``;
- ``custom_event`` needs a non-empty ``event_name`` and a ``custom_event_type`` from mParticle's list;
  ``screen_view`` needs a string ``screen_name``; ``commerce_event`` carries at most one of
  ``product_action`` (with a known ``action`` and an optional ``products`` array of objects),
  ``promotion_action`` and ``product_impressions``;
- ``timestamp_unixtime_ms`` (batch and event) is an integer; ``custom_attributes`` is an object;
  ``source_message_id``/``message_id`` are strings;
- identities are strings (integers are accepted and converted; ``null`` identities are ignored);
  ``user_attributes`` is an object; ``context.data_plan.plan_id`` is a string and ``plan_version`` an
  integer (a numeric string is accepted).

Deduplication keys
------------------
:func:`batch_dedup_key` is ``srid:<source_request_id>``, else ``bid:<batch_id>``, else ``sha:<hash>``
of the batch content. :func:`event_message_id` is the event's ``source_message_id``, else its
``message_id``, else ``h:<hash>`` of (batch key, index, event content): stable across redeliveries of
the same batch, so Split sends can be deduplicated on it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Literal

from flagbridge.errors import FlagbridgeError
from flagbridge.values import compact_json, escape_pointer_token

Environment = Literal["production", "development"]
SourceFormat = Literal["events_api", "webhook"]

EVENT_TYPES: frozenset[str] = frozenset(
    {
        "custom_event",
        "commerce_event",
        "session_start",
        "session_end",
        "screen_view",
        "uninstall",
        "crash_report",
        "opt_out",
        "push_registration",
        "application_state_transition",
        "push_message",
        "network_performance",
        "breadcrumb",
        "first_run",
        "pre_attribution",
        "profile",
        "push_reaction",
        "user_attribute_change",
        "user_identity_change",
    }
)
"""Every ``event_type`` mParticle documents (JSON reference plus the schema/OAS additions)."""

CUSTOM_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "navigation",
        "location",
        "search",
        "transaction",
        "user_content",
        "user_preference",
        "social",
        "media",
        "attribution",
        "other",
        "unknown",
    }
)
"""Allowed ``custom_event_type`` values (the docs' list plus the Python SDK's ``unknown``)."""

PRODUCT_ACTIONS: frozenset[str] = frozenset(
    {
        "add_to_cart",
        "remove_from_cart",
        "checkout",
        "checkout_option",
        "click",
        "view_detail",
        "purchase",
        "refund",
        "add_to_wishlist",
        "remove_from_wish_list",
    }
)

_NAME_FIELDS = {"custom_event": "event_name", "screen_view": "screen_name"}


def event_name_of(event_type: str, data: Mapping[str, Any]) -> Any:
    """The name destination filters match an event by: ``event_name`` of a custom event, ``screen_name`` of a
    screen view, else the event type itself. As the event holds it: a normalised event's is always a string, a
    hand-built one's may not be, and each caller decides what that means."""
    name_field = _NAME_FIELDS.get(event_type)
    return event_type if name_field is None else data.get(name_field, "")


_IDENTITY_ALIASES = {"customerid": "customer_id"}


def _alias(kind: str) -> str:
    return _IDENTITY_ALIASES.get(kind, kind)


_ENVIRONMENTS = ("production", "development")
_INT_OR_ABSENT = (int, type(None))
_DICT_OR_ABSENT = (dict, type(None))
_STR_OR_ABSENT = (str, type(None))


class BatchFormatError(FlagbridgeError, ValueError):
    """The batch is structurally malformed; ``errors`` lists every problem as ``<path>: <message>``."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        shown = "; ".join(self.errors[:10])
        more = f" (+{len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"malformed mParticle batch: {shown}{more}")


@dataclass(slots=True)
class Event:
    """One event of a batch.

    Attributes
    ----------
    index
        Position in the batch as received (stable through plan blocking and filtering).
    event_type
        The envelope's ``event_type``.
    data
        The envelope's ``data`` object (not copied; treat as read-only).
    envelope
        The ``{"event_type", "data"}`` object as it will be forwarded.
    message_id
        See :func:`event_message_id`; computed on first access (hashing is only paid when an id is
        needed), from the event as received.
    """

    index: int
    event_type: str
    data: dict[str, Any]
    envelope: dict[str, Any]
    _message_id: str | None = field(default=None, repr=False)
    _batch: Batch | None = field(default=None, repr=False, compare=False)

    @property
    def message_id(self) -> str:
        """The event's stable id (see :func:`event_message_id`)."""
        mid = self._message_id
        if mid is None:
            if self._batch is None:
                raise ValueError("event without a batch has no message id")
            mid = event_message_id(self._batch, self.envelope, self.index)
            self._message_id = mid
        return mid

    @property
    def name(self) -> str:
        """The event's name as a string (:func:`event_name_of`)."""
        return str(event_name_of(self.event_type, self.data))

    @property
    def custom_attributes(self) -> Mapping[str, Any]:
        """The event's ``custom_attributes`` (empty when absent)."""
        attributes = self.data.get("custom_attributes")
        return attributes if isinstance(attributes, dict) else _EMPTY

    @property
    def event_id(self) -> str:
        """mParticle's ``event_id`` when present (read-only server field), else :attr:`message_id`."""
        event_id = self.data.get("event_id")
        return str(event_id) if event_id is not None else self.message_id


_EMPTY: Mapping[str, Any] = {}
_ENVELOPE = attrgetter("envelope")


@dataclass(slots=True)
class Batch:
    """A normalised mParticle batch: the received document plus typed accessors.

    Attributes
    ----------
    doc
        Top-level document as received (``customerid`` renamed to ``customer_id``). Its ``events``
        member is the received list; :attr:`events` is authoritative.
    events
        The events (possibly a subset after plan blocking), each knowing its original index.
    environment
        ``production`` or ``development``.
    identities
        ``(identity_type, value)`` pairs, in document order; includes ``("mpid", ...)`` when the
        batch carries an ``mpid``.
    user_attributes
        The ``user_attributes`` object (empty when absent).
    plan_id, plan_version
        ``context.data_plan`` tag, if any.
    source_format
        ``webhook`` when identities came as an array or the batch has a ``batch_id``, else ``events_api``.
    dedup_key
        See :func:`batch_dedup_key`; computed on first access.
    """

    doc: dict[str, Any]
    events: list[Event]
    environment: Environment
    identities: tuple[tuple[str, str], ...]
    user_attributes: dict[str, Any]
    plan_id: str | None
    plan_version: int | None
    source_format: SourceFormat
    _dedup_key: str | None = field(default=None, repr=False)
    _event_digests: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def dedup_key(self) -> str:
        """The batch's dedup key (see :func:`batch_dedup_key`)."""
        key = self._dedup_key
        if key is None:
            key = batch_dedup_key(self)
            self._dedup_key = key
        return key

    def identity_values(self, identity_type: str) -> list[str]:
        """Return every value the batch carries for ``identity_type`` (usually zero or one)."""
        return [value for kind, value in self.identities if kind == identity_type]

    def to_dict(self, events: Iterable[Event] | None = None) -> dict[str, Any]:
        """Rebuild a JSON-ready document with ``events`` (default: :attr:`events`).

        The result is a shallow copy of :attr:`doc` (same identity shape as received) whose ``events``
        are the given events' envelopes.
        """
        chosen = self.events if events is None else events
        out = dict(self.doc)
        out["events"] = list(map(_ENVELOPE, chosen))
        return out


# --------------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _event_digest(batch: Batch, envelope: Mapping[str, Any], index: int) -> str:
    cached = batch._event_digests.get(index)
    if cached is None:
        cached = _digest(compact_json(envelope))
        batch._event_digests[index] = cached
    return cached


def batch_dedup_key(batch: Batch) -> str:
    """Return the key that identifies a batch across redeliveries.

    Parameters
    ----------
    batch
        A normalised batch.

    Returns
    -------
    str
        ``srid:<source_request_id>`` when set, else ``bid:<batch_id>`` (webhook format), else
        ``sha:<32 hex>``: a hash of the batch content (top-level fields and every event).
    """
    if batch._dedup_key is not None:
        return batch._dedup_key
    source_request_id = batch.doc.get("source_request_id")
    if isinstance(source_request_id, str) and source_request_id:
        return f"srid:{source_request_id}"
    batch_id = batch.doc.get("batch_id")
    if batch_id is not None and not isinstance(batch_id, bool):
        return f"bid:{batch_id}"
    top = {key: value for key, value in batch.doc.items() if key != "events"}
    raw_events = batch.doc.get("events") or []
    parts = [compact_json(top)]
    parts.extend(_event_digest(batch, envelope, index) for index, envelope in enumerate(raw_events))
    return "sha:" + _digest("\n".join(parts))


def _given_message_id(data: Mapping[str, Any]) -> str | None:
    for name in ("source_message_id", "message_id"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def event_message_id(batch: Batch, event: Mapping[str, Any], index: int) -> str:
    """Return a stable id for one event, used to deduplicate Split sends.

    Parameters
    ----------
    batch
        The normalised batch the event belongs to.
    event
        The event envelope ``{"event_type", "data"}``.
    index
        The event's position in the received batch.

    Returns
    -------
    str
        ``data.source_message_id``, else ``data.message_id``, else ``h:<32 hex>``: a hash of
        (:func:`batch_dedup_key`, index, event content).
    """
    data = event.get("data")
    if isinstance(data, dict):
        given = _given_message_id(data)
        if given is not None:
            return given
    return "h:" + _digest(f"{batch.dedup_key}\n{index}\n{_event_digest(batch, event, index)}")


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_event_type(envelope: Any) -> str | None:
    """Return the event type of an envelope that certainly passes :func:`_check_event`, else None.

    Allocation-free fast path of the structural checks (exact JSON types only); None does not mean
    malformed: :func:`_check_event` then decides, and words the errors.
    """
    if type(envelope) is not dict:
        return None
    event_type = envelope.get("event_type")
    data = envelope.get("data")
    if type(event_type) is not str or type(data) is not dict or event_type not in EVENT_TYPES:
        return None
    get = data.get
    # per event: type-in-tuple tests rather than a helper call (same speed as the plain checks, fewer branches)
    if (
        type(get("timestamp_unixtime_ms")) not in _INT_OR_ABSENT
        or type(get("custom_attributes")) not in _DICT_OR_ABSENT
        or type(get("source_message_id")) not in _STR_OR_ABSENT
        or type(get("message_id")) not in _STR_OR_ABSENT
    ):
        return None
    if event_type == "custom_event":
        value = get("event_name")
        if type(value) is not str or not value:
            return None
        value = get("custom_event_type")
        if type(value) is not str or value not in CUSTOM_EVENT_TYPES:
            return None
    elif event_type == "screen_view":
        if type(get("screen_name")) is not str:
            return None
    elif event_type == "commerce_event" and not _valid_commerce(data):
        return None
    return event_type


def _valid_commerce(data: dict[str, Any]) -> bool:
    """Whether :func:`_check_commerce` certainly finds nothing (exact JSON types only)."""
    action = data.get("product_action")
    promotion = data.get("promotion_action")
    impressions = data.get("product_impressions")
    if (action and promotion) or (action and impressions) or (promotion and impressions):
        return False
    if action is not None:
        if type(action) is not dict:
            return False
        name = action.get("action")
        if type(name) is not str or name not in PRODUCT_ACTIONS:
            return False
        products = action.get("products")
        if products is not None:
            if type(products) is not list:
                return False
            for product in products:
                if type(product) is not dict:
                    return False
    if promotion is not None and type(promotion) is not dict:
        return False
    return impressions is None or type(impressions) is list


def _check_event(index: int, envelope: Any, errors: list[str]) -> tuple[str, dict[str, Any]] | None:  # noqa: C901 (hot path: one pass per event, checks inline (make bench))
    base = f"/events/{index}"
    if not isinstance(envelope, dict):
        errors.append(f"{base}: must be an object {{event_type, data}}")
        return None
    event_type = envelope.get("event_type")
    data = envelope.get("data")
    ok = True
    if not isinstance(event_type, str):
        errors.append(f"{base}/event_type: required string")
        ok = False
    elif event_type not in EVENT_TYPES:
        errors.append(f"{base}/event_type: unknown event type {event_type!r}")
        ok = False
    if not isinstance(data, dict):
        errors.append(f"{base}/data: required object")
        return None
    if not ok:
        return None
    assert isinstance(event_type, str)
    n_errors = len(errors)
    timestamp = data.get("timestamp_unixtime_ms")
    if timestamp is not None and not _is_int(timestamp):
        errors.append(f"{base}/data/timestamp_unixtime_ms: must be an integer (epoch ms)")
    attributes = data.get("custom_attributes")
    if attributes is not None and not isinstance(attributes, dict):
        errors.append(f"{base}/data/custom_attributes: must be an object")
    for name in ("source_message_id", "message_id"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            errors.append(f"{base}/data/{name}: must be a string")
    if event_type == "custom_event":
        event_name = data.get("event_name")
        if not isinstance(event_name, str) or not event_name:
            errors.append(f"{base}/data/event_name: required non-empty string for custom_event")
        custom_type = data.get("custom_event_type")
        if not isinstance(custom_type, str):
            errors.append(f"{base}/data/custom_event_type: required for custom_event")
        elif custom_type not in CUSTOM_EVENT_TYPES:
            errors.append(f"{base}/data/custom_event_type: unknown value {custom_type!r}")
    elif event_type == "screen_view":
        if not isinstance(data.get("screen_name"), str):
            errors.append(f"{base}/data/screen_name: required string for screen_view")
    elif event_type == "commerce_event":
        _check_commerce(base, data, errors)
    return (event_type, data) if len(errors) == n_errors else None


def _check_commerce(base: str, data: dict[str, Any], errors: list[str]) -> None:
    kinds = [name for name in ("product_action", "promotion_action", "product_impressions") if data.get(name)]
    if len(kinds) > 1:
        errors.append(f"{base}/data: commerce_event must carry only one of {', '.join(kinds)}")
    action = data.get("product_action")
    if action is not None:
        if not isinstance(action, dict):
            errors.append(f"{base}/data/product_action: must be an object")
            return
        name = action.get("action")
        if not isinstance(name, str) or name not in PRODUCT_ACTIONS:
            errors.append(f"{base}/data/product_action/action: must be one of {sorted(PRODUCT_ACTIONS)}")
        products = action.get("products")
        if products is not None:
            if not isinstance(products, list):
                errors.append(f"{base}/data/product_action/products: must be an array")
            else:
                for position, product in enumerate(products):
                    if not isinstance(product, dict):
                        errors.append(f"{base}/data/product_action/products/{position}: must be an object")
    promotion = data.get("promotion_action")
    if promotion is not None and not isinstance(promotion, dict):
        errors.append(f"{base}/data/promotion_action: must be an object")
    impressions = data.get("product_impressions")
    if impressions is not None and not isinstance(impressions, list):
        errors.append(f"{base}/data/product_impressions: must be an array")


def _identity_value(value: Any, path: str, errors: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if _is_int(value):
        return str(value)
    errors.append(f"{path}: identity must be a string")
    return None


def _object_identities(raw: dict[Any, Any], pairs: list[tuple[str, str]], errors: list[str]) -> dict[str, Any] | None:
    """Append the identities of the object shape to ``pairs``; return the object renamed when it has ``customerid``."""
    replacement: dict[str, Any] | None = None
    for kind, value in raw.items():
        if type(value) is str and type(kind) is str and kind not in _IDENTITY_ALIASES:  # the usual identity
            pairs.append((kind, value))
            continue
        if kind in _IDENTITY_ALIASES:
            replacement = {_alias(str(k)): v for k, v in raw.items()}
        if value is None:
            continue
        if isinstance(value, str):
            pairs.append((_alias(str(kind)), value))
        elif _is_int(value):
            pairs.append((_alias(str(kind)), str(value)))
        else:  # the error path names the identity
            _identity_value(value, f"/user_identities/{escape_pointer_token(str(kind))}", errors)
    return replacement


def _normalise_identities(
    raw: Any, doc: dict[str, Any], errors: list[str]
) -> tuple[tuple[tuple[str, str], ...], bool, dict[str, Any] | None]:
    """Return (pairs, is_array_shape, replacement object when customerid was renamed)."""
    pairs: list[tuple[str, str]] = []
    replacement: dict[str, Any] | None = None
    is_array = False
    if raw is None:
        pass
    elif isinstance(raw, dict):
        replacement = _object_identities(raw, pairs, errors)
    elif isinstance(raw, list):
        is_array = True
        for position, item in enumerate(raw):
            path = f"/user_identities/{position}"
            if not isinstance(item, dict):
                errors.append(f"{path}: must be an object {{identity_type, identity}}")
                continue
            kind = item.get("identity_type")
            if not isinstance(kind, str) or not kind:
                errors.append(f"{path}/identity_type: required string")
                continue
            text = _identity_value(item.get("identity"), f"{path}/identity", errors)
            if text is not None:
                pairs.append((_alias(str(kind)), text))
    else:
        errors.append("/user_identities: must be an object or an array")
    mpid = doc.get("mpid")
    if mpid is not None:
        text = _identity_value(mpid, "/mpid", errors)
        if text is not None:
            pairs.append(("mpid", text))
    return tuple(pairs), is_array, replacement


# ASCII digits only, and few enough for int(): str.isdigit() also takes "²" and other scripts' digits.
_PLAN_VERSION = re.compile(r"[0-9]{1,18}")


def _plan_tag(doc: dict[str, Any], errors: list[str]) -> tuple[str | None, int | None]:
    context = doc.get("context")
    if context is None:
        return None, None
    if not isinstance(context, dict):
        errors.append("/context: must be an object")
        return None, None
    plan = context.get("data_plan")
    if plan is None:
        return None, None
    if not isinstance(plan, dict):
        errors.append("/context/data_plan: must be an object")
        return None, None
    plan_id = plan.get("plan_id")
    if plan_id is not None and (not isinstance(plan_id, str) or not plan_id):
        errors.append("/context/data_plan/plan_id: must be a non-empty string")
        plan_id = None
    version = plan.get("plan_version")
    plan_version: int | None = None
    if version is not None:
        if _is_int(version):
            plan_version = version
        elif isinstance(version, str) and _PLAN_VERSION.fullmatch(version.strip()):
            plan_version = int(version)
        else:
            errors.append("/context/data_plan/plan_version: must be an integer")
    return plan_id, plan_version


def normalize_batch(document: Any) -> Batch:  # noqa: C901 (hot path: one pass over the batch, formats inline (make bench))
    """Validate an mParticle batch and return its normalised form.

    Parameters
    ----------
    document
        A parsed JSON batch in the Events API inbound format (object identities, ``customerid``
        accepted) or the outbound webhook format (array identities, ``batch_id``, ``message_id``).

    Returns
    -------
    Batch
        The normalised batch (:attr:`Batch.dedup_key` and :attr:`Event.message_id` are computed
        lazily, so batches and events that already carry ids are never hashed).

    Raises
    ------
    BatchFormatError
        When the batch is malformed; ``errors`` lists each problem with its JSON-pointer path.
    """
    if isinstance(document, Batch):
        return document
    if not isinstance(document, dict):
        raise BatchFormatError(["<root>: a batch must be a JSON object"])
    errors: list[str] = []
    environment = document.get("environment", "production")
    if environment not in _ENVIRONMENTS:
        errors.append(f"/environment: must be 'production' or 'development', got {environment!r}")
    for name in ("source_request_id",):
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            errors.append(f"/{name}: must be a string")
    batch_id = document.get("batch_id")
    if batch_id is not None and not (isinstance(batch_id, str) or _is_int(batch_id)):
        errors.append("/batch_id: must be an integer or a string")
    timestamp = document.get("timestamp_unixtime_ms")
    if timestamp is not None and not _is_int(timestamp):
        errors.append("/timestamp_unixtime_ms: must be an integer (epoch ms)")
    user_attributes = document.get("user_attributes")
    if user_attributes is None:
        user_attributes = {}
    elif not isinstance(user_attributes, dict):
        errors.append("/user_attributes: must be an object")
        user_attributes = {}
    identities, is_array, replacement = _normalise_identities(document.get("user_identities"), document, errors)
    plan_id, plan_version = _plan_tag(document, errors)

    raw_events = document.get("events")
    if raw_events is None:
        raw_events = []
    elif not isinstance(raw_events, list):
        errors.append("/events: must be an array")
        raw_events = []

    doc = document
    if replacement is not None:
        doc = dict(document)
        doc["user_identities"] = replacement
    source_format: SourceFormat = "webhook" if is_array or batch_id is not None else "events_api"
    # every field positionally: keywords and default factories cost the dataclass __init__ more than the checks
    batch = Batch(doc, [], environment, identities, user_attributes, plan_id, plan_version, source_format, None, {})
    events = batch.events
    for index, envelope in enumerate(raw_events):
        event_type = _valid_event_type(envelope)
        if event_type is not None:
            data = envelope["data"]
            # _given_message_id: both ids are strings or absent here
            message_id = data.get("source_message_id") or data.get("message_id") or None
        else:
            result = _check_event(index, envelope, errors)
            if result is None:
                continue
            event_type, data = result
            message_id = _given_message_id(data)
        events.append(Event(index, event_type, data, envelope, message_id, batch))
    if errors:
        raise BatchFormatError(errors)
    return batch
