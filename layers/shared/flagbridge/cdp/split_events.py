"""Map one mParticle event to Split (Harness FME) events and enforce Split's constraints.

The mapping follows Split's documented mParticle event output, made explicit where Split's docs are
silent.

Which events, and ``eventTypeId``
---------------------------------
=================================== ==========================================================
mParticle event                     Split ``eventTypeId``
=================================== ==========================================================
custom_event                        the ``event_name``
screen_view, session_start,         the event type (``screen_view``, ``session_start``,
session_end                         ``session_end``)
commerce_event with product_action  ``commerce_<action>`` (e.g. ``commerce_purchase``); with the
                                    option ``commerce_event_type: event_type``, ``commerce_event``.
                                    **One Split event per product** (one event when there is no
                                    product)
anything else                       not sent: ``split.unsupported_event_type`` (this includes
                                    commerce events with promotion actions or impressions)
=================================== ==========================================================

``eventTypeId`` must match Split's strict documented regex ``^[a-zA-Z0-9][-_.a-zA-Z0-9]{0,62}$``.
With ``event_type_policy: sanitize`` (default) a non-conforming name is rewritten deterministically:
every character outside ``[-_.a-zA-Z0-9]`` becomes ``_``; if the result does not start with a letter
or digit, ``e`` is prefixed; the result is cut to 63 characters (``"Add To Cart!"`` ->
``"Add_To_Cart_"``, ``"#promo"`` -> ``"e_promo"``). An empty name, or any non-conforming name under
``event_type_policy: reject``, is refused with ``split.invalid_event_type_id``.

``trafficTypeName`` and ``key``
-------------------------------
From the destination's ``identity_mapping`` (``[{identity_type, traffic_type}, ...]``): one Split
event per mapped identity the batch carries (two identities mapped to the same traffic type give two
events, as in Split's integration; a repeated ``(traffic type, key)`` pair is sent once). Traffic types
are lowercased. No mapped identity: ``split.no_mapped_identity``. A blank key: ``split.invalid_key``;
a key over 250 characters: ``split.key_too_long`` (only that identity's event is refused).

``timestamp`` and ``value``
---------------------------
``timestamp`` is the event's ``timestamp_unixtime_ms``, else the batch's receive time
``timestamp_unixtime_ms``, else ``now_ms``. An event older than ``max_age_hours`` (default 24, Split's
limit for mParticle data) relative to the injected ``now_ms`` is refused: ``split.too_old``.
``value`` comes from the optional ``value_field`` path, relative to the event ``data``:
``product_action.total_amount``, ``custom_attributes.amount`` (everything after
``custom_attributes.`` is one attribute name, dots included), or ``product.price`` (the current
product of a commerce event). Numbers and numeric strings are used; anything else gives ``null``.

``properties`` (flat)
---------------------
1. the event's custom attributes, names unchanged;
2. then bridge fields, which win on a name clash:
   ``mp.event_type``, ``mp.message_id`` (the stable id used for deduplication), and when present
   ``mp.source_message_id``, ``mp.event_id`` (as a string: int64 ids lose precision as JSON numbers),
   ``mp.session_id``, ``mp.session_uuid``, ``mp.custom_event_type``, ``mp.screen_name``,
   ``mp.session_duration_ms``, ``mp.location.latitude`` / ``.longitude`` / ``.accuracy``;
   commerce: ``commerce.action``, ``commerce.transaction_id``, ``commerce.total_amount``,
   ``commerce.tax_amount``, ``commerce.shipping_amount``, ``commerce.coupon_code``,
   ``commerce.affiliation``, ``commerce.checkout_step``, ``commerce.currency_code``,
   ``commerce.product_count``; per product: ``product.index``, ``product.id``, ``product.name``,
   ``product.brand``, ``product.category``, ``product.variant``, ``product.position``,
   ``product.price``, ``product.quantity``, ``product.coupon_code``, ``product.total_product_amount``
   and the product's custom attributes as ``product.attributes.<name>``.

Values are kept when they are strings, numbers, booleans or null; lists and objects are JSON-encoded
(compact, sorted keys) into a string; non-finite numbers become null. String values longer than 256
characters are **truncated** to 256 (the names of truncated properties are reported on the
:class:`SplitEvent`). More than 300 properties: ``split.too_many_properties``. A properties size over
32768 by the SDK rule, counted conservatively as ``1024 + sum(len(name) + len(str(value)))`` over
non-null values: ``split.properties_too_large``. Those two refuse the whole Split event (nothing is
silently trimmed).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

from pydantic import Field, field_validator

from flagbridge.cdp.batch import Batch, Event
from flagbridge.rules import IdentityType, StrictModel
from flagbridge.values import compact_json, to_number

EVENT_TYPE_ID_RE = re.compile(r"^[a-zA-Z0-9][-_.a-zA-Z0-9]{0,62}$")
MAX_KEY_LENGTH = 250
MAX_PROPERTIES = 300
MAX_STRING_LENGTH = 256
MAX_PROPERTIES_BYTES = 32768
PROPERTIES_BASE_BYTES = 1024
SANITIZE_PREFIX = "e"
SUPPORTED_EVENT_TYPES = frozenset({"custom_event", "screen_view", "session_start", "session_end", "commerce_event"})
_ALLOWED_CHARS = frozenset("-_.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

_COMMERCE_FIELDS = (
    ("transaction_id", "commerce.transaction_id"),
    ("total_amount", "commerce.total_amount"),
    ("tax_amount", "commerce.tax_amount"),
    ("shipping_amount", "commerce.shipping_amount"),
    ("coupon_code", "commerce.coupon_code"),
    ("affiliation", "commerce.affiliation"),
    ("checkout_step", "commerce.checkout_step"),
)
_PRODUCT_FIELDS = (
    "id",
    "name",
    "brand",
    "category",
    "variant",
    "position",
    "price",
    "quantity",
    "coupon_code",
    "total_product_amount",
)
_PRODUCT_TARGETS = tuple((name, f"product.{name}") for name in _PRODUCT_FIELDS)
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
"""Exact types :func:`_flat` returns unchanged (checked inline on the hot path)."""


class IdentityTrafficType(StrictModel):
    """One mParticle identity type whose values are keys of one Split traffic type."""

    identity_type: IdentityType
    traffic_type: str = Field(min_length=1, max_length=100)

    @field_validator("traffic_type")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        return value.lower()


class SplitOptions(StrictModel):
    """Options of a ``type: split`` destination."""

    events_url: str = Field(default="https://events.split.io/api", pattern=r"^https?://\S+$")
    sdk_key_secret: str = Field(
        min_length=1,
        max_length=512,
        pattern=r"^[A-Za-z0-9/_+=.@:-]+$",
        description="Secrets Manager secret name or ARN holding the server-side SDK key (never the key itself)",
    )
    identity_mapping: list[IdentityTrafficType] = Field(min_length=1)
    value_field: str | None = Field(default=None, min_length=1)
    event_type_policy: Literal["sanitize", "reject"] = "sanitize"
    commerce_event_type: Literal["per_action", "event_type"] = "per_action"
    max_age_hours: int = Field(default=24, ge=1, le=24)
    max_events_per_request: int = Field(default=5000, ge=1, le=5000)
    max_request_bytes: int = Field(default=1_000_000, ge=4096, le=1_000_000)


class SplitEvent(NamedTuple):
    """A Split event ready to send, with where it came from."""

    body: dict[str, Any]
    """``{eventTypeId, trafficTypeName, key, timestamp, value, properties}`` as sent to ``/events/bulk``."""
    event_index: int
    message_id: str
    product_index: int | None
    dedup_id: str
    """Stable across redeliveries: hash of (message id, product index, traffic type, key)."""
    truncated: tuple[str, ...] = ()


class SplitRejection(NamedTuple):
    """A Split event (or a whole mParticle event) that will not be sent, and why."""

    event_index: int
    message_id: str
    reason: str
    detail: str
    product_index: int | None = None
    traffic_type: str | None = None
    body: dict[str, Any] | None = None


class SplitMapResult(NamedTuple):
    """The outcome of mapping one mParticle event."""

    events: list[SplitEvent]
    rejections: list[SplitRejection]


def sanitize_event_type_id(name: str) -> str | None:
    """Rewrite ``name`` deterministically so it matches Split's ``eventTypeId`` regex.

    Parameters
    ----------
    name
        The candidate event type id.

    Returns
    -------
    str or None
        ``name`` itself when already valid; otherwise every character outside ``[-_.a-zA-Z0-9]``
        replaced by ``_``, prefixed with ``e`` when it does not start with a letter or digit, and cut
        to 63 characters. None for an empty name.

    Examples
    --------
    >>> sanitize_event_type_id("Add To Cart!")
    'Add_To_Cart_'
    >>> sanitize_event_type_id("#promo")
    'e_promo'
    """
    if not name:
        return None
    if EVENT_TYPE_ID_RE.match(name):
        return name
    text = "".join(c if c in _ALLOWED_CHARS else "_" for c in name)
    if text[0] not in _ALNUM:
        text = SANITIZE_PREFIX + text
    return text[:63]


def _flat(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return compact_json(value)


_new_tuple = tuple.__new__
"""Builds a named tuple from all its fields without the Python-level ``__new__`` (a call per Split event)."""
_Checked = tuple[str | None, str, tuple[str, ...]]
"""What :meth:`SplitMapper._check_properties` returns: (rejection reason, detail, truncated names)."""
_Variant = tuple[int | None, dict[str, Any], dict[str, Any] | None, _Checked | None]
"""One Split event's (product index, properties, product, the check's result when already known)."""
_FITS: tuple[None, str, tuple[str, ...]] = (None, "", ())
_TYPE_IDS_LIMIT = 1024
_FLOAT_TEXT_MAX = 24
"""The longest ``str()`` of a float: 17 significant digits, sign, point and exponent (``-1.2345678901234567e-308``)."""
_INDEX_NAME_SIZE = len("product.index")
_SIZE_OUT = 1 << 40
"""Subtracted from a count to mark it "count again": larger than any size a product's fields add."""


def _properties_fit(props: dict[str, Any]) -> bool:
    """Whether :meth:`SplitMapper._check_properties_exactly` certainly finds nothing to truncate or refuse.

    It counts ``len(str(value))`` of every non-null value that is not a string; a float's is at most
    ``_FLOAT_TEXT_MAX``, so that bound stands for it (formatting floats is the dear part of the exact count).
    False means "count exactly", not "refuse".
    """
    size = _bounded_size(props)
    return 0 <= size <= MAX_PROPERTIES_BYTES - PROPERTIES_BASE_BYTES


def _bounded_size(props: dict[str, Any]) -> int:
    """The size :func:`_properties_fit` bounds, without the base bytes; -1 when a string is too long.

    Additive over properties: a commerce event's shared properties are counted once for all its products.
    """
    size = sum(map(len, props))
    for value in props.values():
        kind = type(value)
        if kind is str:
            length = len(value)
            if length > MAX_STRING_LENGTH:
                return -1
            size += length
        elif kind is float:
            size += _FLOAT_TEXT_MAX
        elif value is not None:
            size += len(str(value))
    return size


_BLANK_DIGEST = hashlib.blake2b(digest_size=16)
"""Copied per digest: a copy skips the parameter parsing and set-up of a new ``blake2b`` (a third cheaper)."""


def _digest(text: str) -> str:
    digest = _BLANK_DIGEST.copy()
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


class SplitMapper:
    """Maps events for one Split destination (options compiled once)."""

    def __init__(self, options: SplitOptions) -> None:
        self.options = options
        mapping: list[tuple[str, str]] = []
        for item in options.identity_mapping:
            pair = (item.identity_type, item.traffic_type)
            if pair not in mapping:
                mapping.append(pair)
        self._mapping = tuple(mapping)
        self._max_age_ms = options.max_age_hours * 3_600_000
        self._sanitize = options.event_type_policy == "sanitize"
        self._per_action = options.commerce_event_type == "per_action"
        self._type_ids: dict[str, tuple[str | None, str]] = {}
        """``eventTypeId`` by event name, as :meth:`_event_type_id` decides it (one regex match per name)."""
        self._value_path: tuple[str, ...] | None = None
        if options.value_field:
            head, _, rest = options.value_field.partition(".")
            if head in ("custom_attributes", "product") and rest.startswith("custom_attributes."):
                self._value_path = (head, "custom_attributes", rest[len("custom_attributes.") :])
            elif head == "custom_attributes" and rest:
                self._value_path = (head, rest)
            else:
                self._value_path = tuple(options.value_field.split("."))
        self._value_per_product = self._value_path is not None and self._value_path[0] == "product"

    # -- helpers --------------------------------------------------------------------------------

    def _value(self, data: dict[str, Any], product: dict[str, Any] | None) -> int | float | None:
        path = self._value_path
        if path is None:
            return None
        node: Any
        if path[0] == "product":
            if product is None:
                return None
            node, parts = product, path[1:]
        else:
            node, parts = data, path
        for part in parts:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return to_number(node)

    def _event_type_id(self, event: Event) -> tuple[str | None, str]:
        data = event.data
        if event.event_type == "custom_event":
            raw = str(data.get("event_name") or "")
        elif event.event_type == "commerce_event":
            action = data["product_action"]["action"]
            raw = f"commerce_{action}" if self._per_action else "commerce_event"
        else:
            raw = event.event_type
        known = self._type_ids.get(raw)
        if known is None:
            if EVENT_TYPE_ID_RE.match(raw):
                known = (raw, raw)
            elif not self._sanitize or not raw:
                known = (None, raw)
            else:
                known = (sanitize_event_type_id(raw), raw)
            if len(self._type_ids) < _TYPE_IDS_LIMIT:  # the names come from the batches: keep a bounded few
                self._type_ids[raw] = known
        return known

    @staticmethod
    def _base_properties(event: Event) -> dict[str, Any]:  # noqa: C901 (hot path: every Split event, fields inline (make bench))
        data = event.data
        props: dict[str, Any] = {}
        plain = _PLAIN_TYPES
        attributes = data.get("custom_attributes")
        if isinstance(attributes, dict):
            for name, value in attributes.items():
                props[name] = value if type(value) in plain else _flat(value)
        props["mp.event_type"] = event.event_type
        props["mp.message_id"] = event.message_id
        for source, target in (
            ("source_message_id", "mp.source_message_id"),
            ("session_id", "mp.session_id"),
            ("session_uuid", "mp.session_uuid"),
        ):
            value = data.get(source)
            if value is not None:
                props[target] = _flat(value) if not isinstance(value, int) else str(value)
        event_id = data.get("event_id")
        if event_id is not None:
            props["mp.event_id"] = str(event_id)
        if event.event_type == "custom_event":
            props["mp.custom_event_type"] = data.get("custom_event_type")
        elif event.event_type == "screen_view":
            props["mp.screen_name"] = data.get("screen_name")
        elif event.event_type == "session_end" and data.get("session_duration_ms") is not None:
            props["mp.session_duration_ms"] = _flat(data.get("session_duration_ms"))
        location = data.get("location")
        if isinstance(location, dict):
            for part in ("latitude", "longitude", "accuracy"):
                if location.get(part) is not None:
                    props[f"mp.location.{part}"] = _flat(location[part])
        if event.event_type == "commerce_event":
            action = data["product_action"]
            props["commerce.action"] = action.get("action")
            for source, target in _COMMERCE_FIELDS:
                value = action.get(source)
                if value is not None:
                    props[target] = value if type(value) in plain else _flat(value)
            if data.get("currency_code") is not None:
                props["commerce.currency_code"] = _flat(data["currency_code"])
            props["commerce.product_count"] = len(action.get("products") or ())
        return props

    @staticmethod
    def _product_properties(base: dict[str, Any], product: dict[str, Any], position: int) -> dict[str, Any]:
        props = dict(base)
        props.update(SplitMapper._product_part(product, position))
        return props

    @staticmethod
    def _product_part(product: dict[str, Any], position: int) -> dict[str, Any]:
        """The properties one product adds to its event's (:meth:`_product_properties` without the base)."""
        part: dict[str, Any] = {}
        plain = _PLAIN_TYPES
        attributes = product.get("custom_attributes")
        if isinstance(attributes, dict):
            for name, value in attributes.items():
                part[f"product.attributes.{name}"] = value if type(value) in plain else _flat(value)
        part["product.index"] = position
        for name, target in _PRODUCT_TARGETS:
            value = product.get(name)
            if value is not None:
                part[target] = value if type(value) in plain else _flat(value)
        return part

    @staticmethod
    def _sized_product_properties(
        base: dict[str, Any], product: dict[str, Any], position: int
    ) -> tuple[dict[str, Any], int]:
        """:meth:`_product_properties` and the :func:`_bounded_size` of :meth:`_product_part`, counted while the
        product's fields are written into a copy of ``base`` (no part built, no second pass).

        A product with custom attributes, or a field that is not a string, number or boolean, is counted by
        :func:`_bounded_size` of its part. The part's names cannot repeat (``product.index``, ``product.<field>``,
        ``product.attributes.<name>``), so the count is additive.
        """
        props = dict(base)
        if "custom_attributes" in product:
            part = SplitMapper._product_part(product, position)
            props.update(part)
            return props, _bounded_size(part)
        props["product.index"] = position
        size = _INDEX_NAME_SIZE + len(str(position))
        for name, target in _PRODUCT_TARGETS:
            value = product.get(name)
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                length = len(value)
                if length > MAX_STRING_LENGTH:
                    size = -_SIZE_OUT
                size += length
            elif kind is float:
                value = _flat(value)
                if value is not None:
                    size += _FLOAT_TEXT_MAX
            elif kind is int or kind is bool:
                size += len(str(value))
            else:
                value = _flat(value)
                size = -_SIZE_OUT  # counted by _bounded_size below
            props[target] = value
            size += len(target)
        return props, size if size >= 0 else _bounded_size(SplitMapper._product_part(product, position))

    @staticmethod
    def _product_variants(base: dict[str, Any], products: list[dict[str, Any]]) -> list[_Variant]:
        """Each product's properties, with the check's result when the bound proves they fit (None: check them).

        The base properties are counted once for all products (:func:`_bounded_size` is additive); a product
        property that replaces a base one (a custom attribute named like it) is counted twice, which only
        overcounts.
        """
        base_size = _bounded_size(base)
        room = MAX_PROPERTIES_BYTES - PROPERTIES_BASE_BYTES
        variants: list[_Variant] = []
        for position, product in enumerate(products):
            props, part_size = SplitMapper._sized_product_properties(base, product, position)
            checked = None
            if base_size >= 0 and len(props) <= MAX_PROPERTIES and 0 <= part_size <= room - base_size:
                checked = _FITS
            variants.append((position, props, product, checked))
        return variants

    @staticmethod
    def _variants(event: Event) -> list[_Variant]:
        """The Split events' properties of one event: one per product of a commerce event, else one."""
        base = SplitMapper._base_properties(event)
        if event.event_type == "commerce_event":
            variants = SplitMapper._product_variants(base, event.data["product_action"].get("products") or [])
            if variants:
                return variants
        return [(None, base, None, None)]

    @staticmethod
    def _check_properties(props: dict[str, Any]) -> tuple[str | None, str, tuple[str, ...]]:
        """Truncate long strings in place; return (rejection reason, detail, truncated names)."""
        if len(props) <= MAX_PROPERTIES and _properties_fit(props):
            return _FITS
        return SplitMapper._check_properties_exactly(props)

    @staticmethod
    def _check_properties_exactly(props: dict[str, Any]) -> tuple[str | None, str, tuple[str, ...]]:
        """:meth:`_check_properties`, value by value (the size counted exactly)."""
        if len(props) > MAX_PROPERTIES:
            return "split.too_many_properties", f"{len(props)} properties > {MAX_PROPERTIES}", ()
        truncated: list[str] | None = None
        size = PROPERTIES_BASE_BYTES + sum(map(len, props))  # the names
        for name, value in props.items():
            if isinstance(value, str):
                length = len(value)
                if length > MAX_STRING_LENGTH:
                    props[name] = value[:MAX_STRING_LENGTH]
                    if truncated is None:
                        truncated = []
                    truncated.append(name)
                    length = MAX_STRING_LENGTH
                size += length
            elif value is not None:
                size += len(str(value))
        if size > MAX_PROPERTIES_BYTES:
            return "split.properties_too_large", f"properties size {size} > {MAX_PROPERTIES_BYTES}", ()
        return None, "", () if truncated is None else tuple(truncated)

    # -- public ---------------------------------------------------------------------------------

    def targets(self, batch: Batch) -> list[tuple[str, str]]:
        """The ``(traffic type, key)`` pairs every Split event of ``batch`` goes to, in mapping order, each once."""
        targets: list[tuple[str, str]] = []
        identities = batch.identities
        for identity_type, traffic_type in self._mapping:
            for kind, key in identities:
                if kind == identity_type and (traffic_type, key) not in targets:
                    targets.append((traffic_type, key))
        return targets

    def map_event(
        self, batch: Batch, event: Event, now_ms: int, targets: list[tuple[str, str]] | None = None
    ) -> SplitMapResult:
        """Map one event of ``batch`` to Split events.

        Parameters
        ----------
        batch
            The normalised batch (identities, receive time).
        event
            One of its events.
        now_ms
            Current time in epoch milliseconds (injected, for the age limit).
        targets
            :meth:`targets` of ``batch``, when the caller maps several of its events (computed here otherwise).

        Returns
        -------
        SplitMapResult
            Sendable Split events and rejections with ``split.*`` reasons.
        """
        index, message_id = event.index, event.message_id
        data = event.data
        if event.event_type not in SUPPORTED_EVENT_TYPES or (
            event.event_type == "commerce_event" and not isinstance(data.get("product_action"), dict)
        ):
            return SplitMapResult(
                [], [SplitRejection(index, message_id, "split.unsupported_event_type", event.event_type)]
            )
        event_type_id, raw_name = self._event_type_id(event)
        if event_type_id is None:
            detail = f"eventTypeId {raw_name[:80]!r} does not match {EVENT_TYPE_ID_RE.pattern}"
            return SplitMapResult([], [SplitRejection(index, message_id, "split.invalid_event_type_id", detail)])
        timestamp = data.get("timestamp_unixtime_ms")
        if timestamp is None:
            timestamp = batch.doc.get("timestamp_unixtime_ms")
        if timestamp is None:
            timestamp = now_ms
        age = now_ms - timestamp
        if age > self._max_age_ms:
            detail = f"event is {age // 60000} min old > {self.options.max_age_hours} h"
            return SplitMapResult([], [SplitRejection(index, message_id, "split.too_old", detail)])
        if targets is None:
            targets = self.targets(batch)
        if not targets:
            detail = "the batch has none of the identity types " + ",".join(t for t, _ in self._mapping)
            return SplitMapResult([], [SplitRejection(index, message_id, "split.no_mapped_identity", detail)])

        variants = self._variants(event)
        events: list[SplitEvent] = []
        rejections: list[SplitRejection] = []
        per_product = self._value_per_product
        value = self._value(data, None)  # the same for every product, unless it is the product's
        for product_index, props, product, checked in variants:
            reason, detail, truncated = checked if checked is not None else self._check_properties(props)
            if reason is not None:
                rejections.append(SplitRejection(index, message_id, reason, detail, product_index))
                continue
            if per_product:
                value = self._value(data, product)
            for traffic_type, key in targets:
                body = {
                    "eventTypeId": event_type_id,
                    "trafficTypeName": traffic_type,
                    "key": key,
                    "timestamp": timestamp,
                    "value": value,
                    "properties": props,
                }
                if not key.strip():
                    rejections.append(
                        SplitRejection(index, message_id, "split.invalid_key", "blank key", product_index, traffic_type)
                    )
                    continue
                if len(key) > MAX_KEY_LENGTH:
                    detail = f"key of {len(key)} characters > {MAX_KEY_LENGTH}"
                    rejections.append(
                        SplitRejection(index, message_id, "split.key_too_long", detail, product_index, traffic_type)
                    )
                    continue
                dedup_id = _digest(f"{message_id}\n{product_index}\n{traffic_type}\n{key}")
                events.append(_new_tuple(SplitEvent, (body, index, message_id, product_index, dedup_id, truncated)))
        return _new_tuple(SplitMapResult, (events, rejections))

    def map_events(self, batch: Batch, events: Iterable[Event], now_ms: int) -> SplitMapResult:
        """Map several events; the results are concatenated in order."""
        out_events: list[SplitEvent] = []
        out_rejections: list[SplitRejection] = []
        for event in events:
            result = self.map_event(batch, event, now_ms)
            out_events.extend(result.events)
            out_rejections.extend(result.rejections)
        return SplitMapResult(out_events, out_rejections)


def map_event_to_split(batch: Batch, event: Event, options: SplitOptions, now_ms: int) -> SplitMapResult:
    """Map one mParticle event to Split events (convenience wrapper over :class:`SplitMapper`).

    Parameters
    ----------
    batch
        The normalised batch the event belongs to.
    event
        The event.
    options
        The Split destination's options.
    now_ms
        Current time, epoch milliseconds.

    Returns
    -------
    SplitMapResult
    """
    return SplitMapper(options).map_event(batch, event, now_ms)
