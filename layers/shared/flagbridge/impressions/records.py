"""The processor's view of a queued impression: a plain tuple, decoded from our own queue without pydantic.

The impressions queue carries what :mod:`flagbridge.impressions.ingest` enqueued, in one of two versions:

* **version 2** (what the webhook writes): ``{"v":2,"source":…,"request_id":…,"received_at":…,
  "fields":["key","flag",…,"identity_type"],"impressions":[[…],[…],…]}``. ``fields`` is exactly
  :data:`FIELDS`, and every record is a JSON array of the 12 values of those fields, in that order
  (``["u-1","flag_a","on",1767225600000,"default rule",3,"Production","env-1",null,null,"user","customer_id"]``).
* **version 1** (written before; messages still in flight during a deploy, or redriven from a DLQ):
  ``{"v":1,…,"impressions":[{…},…]}`` without ``fields``, every record a flat object with exactly the keys of
  :class:`~flagbridge.impressions.models.QueuedImpression` (a missing ``v`` means 1).

In both, every value is a string, an integer or null (:data:`Row` gives the types field by field), and
``chunk`` (an integer, 0 when absent) is read but not written. Version 1 must stay readable while such
messages can exist: the impressions DLQ keeps them for up to 14 days, and ``flagbridge quarantine replay``
re-enqueues quarantined processor messages as they were. Any other version is refused (quarantined).

:func:`decode_message` reads such a message with ``json.loads`` and a tight check of the envelope, of every
record's shape (keys or length) and of the value types column by column, giving one :data:`Row` per record.
Anything else (a message we did not write, one a person edited, another version) makes it return None, and
the caller validates the body with :class:`~flagbridge.impressions.models.ImpressionMessage`, which reads
both versions: the outcome for every body (what is accepted, the values, what is quarantined and why) is
that of the pydantic model.

This module imports no pydantic, so the processor loads the models only for such a message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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

# The version of the messages the webhook writes (see the module docstring), and its ``fields``.
MESSAGE_VERSION = 2
FIELD_LIST = list(FIELDS)

_values = itemgetter(*FIELDS)
_STR, _INT = frozenset((str,)), frozenset((int,))
_STR_OR_NULL, _INT_OR_NULL = frozenset((str, type(None))), frozenset((int, type(None)))
# The value types of a record the webhook writes, field by field (in the order of FIELDS).
_COLUMN_TYPES = (_STR, _STR, _STR, _INT, _STR_OR_NULL, _INT_OR_NULL, _STR, _STR, _STR_OR_NULL, _STR_OR_NULL, _STR, _STR)
_V1_KEYS = frozenset(("v", "source", "request_id", "chunk", "received_at", "impressions"))
_V2_KEYS = _V1_KEYS | {"fields"}
_RECORD_SIZE = len(FIELDS)
_STR_COLUMNS = tuple(index for index, allowed in enumerate(_COLUMN_TYPES) if allowed is _STR)
_OTHER_COLUMNS = tuple(index for index, allowed in enumerate(_COLUMN_TYPES) if allowed is not _STR)
_LIST = frozenset((list,))


def decode_message(body: str) -> list[Row] | None:  # noqa: C901 (hot path: fast decoder, equivalence-tested against the models)
    """The rows of a well-formed impressions message (version 1 or 2), or None when it needs the full validation.

    None is returned for anything :class:`~flagbridge.impressions.models.ImpressionMessage` might read
    differently from ``json.loads``: a body that is not JSON, escaped or unpaired surrogates (the pydantic
    parser refuses lone ones), unknown keys (which may nest deeper than its parser allows), a missing
    optional key (its default), a version other than the integers 1 and 2, version 2 ``fields`` other than
    :data:`FIELDS`, a record of another shape (an object in version 2, an array in version 1, another
    length or other keys), and any value of another type (a float, a boolean, a numeric string, a nested
    value), which the model may coerce or refuse.
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
    if type(message) is not dict:
        return None
    version = message.get("v", 1)
    if type(version) is not int:
        return None
    impressions = message.get("impressions")
    if (
        type(impressions) is not list
        or type(message.get("request_id")) is not str
        or type(message.get("received_at")) is not int
        or type(message.get("source", "")) is not str
        or type(message.get("chunk", 0)) is not int
    ):
        return None
    if version == MESSAGE_VERSION:
        if not message.keys() <= _V2_KEYS or type(message.get("fields")) is not list or message["fields"] != FIELD_LIST:
            return None
        if not impressions:
            return []
        if not _LIST.issuperset(map(type, impressions)):  # every record is an array...
            return None
        try:
            columns = list(zip(*impressions, strict=True))
        except ValueError:  # ...of the same length...
            return None
        if len(columns) != _RECORD_SIZE:  # ...which is 12
            return None
        return list(map(tuple, impressions)) if _typed(columns) else None
    if version == 1:
        if not message.keys() <= _V1_KEYS:
            return None
        try:
            rows: list[Row] = [_values(record) for record in impressions]
        except (KeyError, TypeError, IndexError):  # a record is not an object, or lacks a key
            return None
        if not rows:
            return rows
        if max(map(len, impressions)) != _RECORD_SIZE:  # every record has the 12 keys: no more than those
            return None
        return rows if _typed(list(zip(*rows, strict=True))) else None
    return None


def _typed(columns: Sequence[tuple[Any, ...]]) -> bool:
    """Whether every value of the 12 ``columns`` has a type of its field in the records the webhook writes."""
    try:
        for index in _STR_COLUMNS:
            "".join(columns[index])  # refuses anything but strings (json.loads makes no str subclass), in C
    except TypeError:
        return False
    return all(_COLUMN_TYPES[index].issuperset(map(type, columns[index])) for index in _OTHER_COLUMNS)


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
