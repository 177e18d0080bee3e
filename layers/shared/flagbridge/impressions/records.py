"""The processor's view of a queued impression: a plain tuple, decoded from our own queue without pydantic.

The impressions queue carries what :func:`flagbridge.impressions.ingest` enqueued: messages whose records
are flat objects with exactly the keys of :class:`~flagbridge.impressions.models.QueuedImpression`, every
value a string, an integer or null. :func:`decode_message` reads such a message with ``json.loads`` and a
tight check of every record's keys and value types, giving one :data:`Row` per record. Anything else (a
message we did not write, or one a person edited) makes it return None, and the caller validates the body
with :class:`~flagbridge.impressions.models.ImpressionMessage` as before: the outcome for every body (what
is accepted, the values, what is quarantined and why) is that of the pydantic model.

This module imports no pydantic, so the processor loads the models only for such a message.
"""

from __future__ import annotations

import json
from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flagbridge.impressions.models import QueuedImpression

# key, flag, treatment, time, label, version, environment, environment_id, bucketing_key, properties,
# traffic_type, identity_type: the fields of QueuedImpression, in this order.
Row = tuple[str, str, str, int, str | None, int | None, str, str, str | None, str | None, str, str]

FIELDS = (
    "key",
    "flag",
    "treatment",
    "time",
    "label",
    "version",
    "environment",
    "environment_id",
    "bucketing_key",
    "properties",
    "traffic_type",
    "identity_type",
)
KEY, FLAG, TREATMENT, TIME, LABEL, VERSION, ENVIRONMENT, ENVIRONMENT_ID, BUCKETING_KEY = range(9)
PROPERTIES, TRAFFIC_TYPE, IDENTITY_TYPE = range(9, 12)

_values = itemgetter(*FIELDS)
_STR, _INT = frozenset((str,)), frozenset((int,))
_STR_OR_NULL, _INT_OR_NULL = frozenset((str, type(None))), frozenset((int, type(None)))
# The value types of a record the webhook writes, field by field (in the order of FIELDS).
_COLUMN_TYPES = (_STR, _STR, _STR, _INT, _STR_OR_NULL, _INT_OR_NULL, _STR, _STR, _STR_OR_NULL, _STR_OR_NULL, _STR, _STR)
_MESSAGE_KEYS = frozenset(("v", "source", "request_id", "chunk", "received_at", "impressions"))
_RECORD_SIZE = len(FIELDS)


def decode_message(body: str) -> list[Row] | None:
    """The rows of a well-formed impressions message, or None when the body needs the full validation.

    None is returned for anything :class:`~flagbridge.impressions.models.ImpressionMessage` might read
    differently from ``json.loads``: a body that is not JSON, escaped or unpaired surrogates (the pydantic
    parser refuses lone ones), unknown keys (which may nest deeper than its parser allows), a missing
    optional key (its default), and any value of another type (a float, a boolean, a numeric string), which
    the model may coerce or refuse.
    """
    if "\\u" in body and ("\\ud" in body or "\\uD" in body):  # rare in our records
        return None
    if not body.isascii():
        try:
            body.encode()
        except UnicodeEncodeError:
            return None
    try:
        message: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if type(message) is not dict or not message.keys() <= _MESSAGE_KEYS:
        return None
    impressions = message.get("impressions")
    if (
        type(impressions) is not list
        or type(message.get("request_id")) is not str
        or type(message.get("received_at")) is not int
        or type(message.get("v", 1)) is not int
        or type(message.get("source", "")) is not str
        or type(message.get("chunk", 0)) is not int
    ):
        return None
    try:
        rows: list[Row] = [_values(record) for record in impressions]
    except (KeyError, TypeError, IndexError):  # a record is not an object, or lacks a key
        return None
    if rows:
        if max(map(len, impressions)) != _RECORD_SIZE:  # every record has the 12 keys: no more than those
            return None
        for column, allowed in zip(zip(*rows, strict=True), _COLUMN_TYPES, strict=True):
            if not allowed.issuperset(map(type, column)):
                return None
    return rows


def row_of(impression: QueuedImpression) -> Row:
    """The row of a validated :class:`~flagbridge.impressions.models.QueuedImpression`."""
    return (
        impression.key,
        impression.flag,
        impression.treatment,
        impression.time,
        impression.label,
        impression.version,
        impression.environment,
        impression.environment_id,
        impression.bucketing_key,
        impression.properties,
        impression.traffic_type,
        impression.identity_type,
    )
