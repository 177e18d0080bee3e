"""Split's impression object as the webhook sends it, and the messages we queue for the processor.

Split's schema (wire-formats §1.2): key, split, environmentId, environmentName, treatment, time (epoch
ms), bucketingKey, label, machineName, machineIp, splitVersionNumber, sdk, sdkVersion, properties (a
JSON-encoded string or null). Unknown extra fields are tolerated and ignored.

The impressions queue's messages (:class:`ImpressionMessage`) come in two versions, both read by the
processor (see :mod:`flagbridge.impressions.records`): version 2, which the webhook writes, names the
fields once in the envelope (``"fields": [...]``, :data:`~flagbridge.impressions.records.FIELDS`) and
holds each :class:`QueuedImpression` as a JSON array of its 12 values in that order; version 1 (before)
held each one as a JSON object.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring as _quote
from typing import Annotated, Any, NotRequired

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from typing_extensions import TypedDict

from flagbridge.impressions.records import FIELD_LIST, FIELDS, MESSAGE_VERSION

# Epoch-millisecond sanity bounds: a seconds value (~1.7e9) would land in 1970 and is rejected.
MIN_TIME_MS = 946_684_800_000  # 2000-01-01
MAX_TIME_MS = 4_102_444_800_000  # 2100-01-01
# UTF-8 sizes that keep the profile's DynamoDB partition and sort keys within their limits.
KEY_MAX_BYTES = 1024
SPLIT_MAX_BYTES = 512


def exceeds_utf8_bytes(value: str, limit: int) -> bool:
    """Whether ``value`` takes more than ``limit`` bytes in UTF-8.

    The profile's keys are "{traffic_type}#{key}" (DynamoDB: <= 2048 bytes) and "FLAG#{split}" (<= 1024
    bytes): the UTF-8 size is limited, not only the characters, or the processor could never store it.
    """
    # A string of n characters has at most 4n UTF-8 bytes: only long strings need encoding.
    return len(value) > limit // 4 and len(value.encode("utf-8")) > limit


def describe_validation_error(exc: ValidationError, whole: str = "item") -> str:
    """A short reason naming the fields, e.g. ``time: Input should be a valid integer``.

    ``whole`` names an error of the value as a whole. Never the input values: they may be personal data.
    """
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        location = ".".join(str(part) for part in error["loc"]) or whole
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def is_json_object_string(value: str) -> bool:
    """Whether ``properties`` holds what Split puts there: a JSON-encoded object (or ``null``)."""
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError):
        return False
    return decoded is None or isinstance(decoded, dict)


# The per-field constraints of Split's impression, shared by the model and the fast path's TypedDict.
_Key = Annotated[StrictStr, Field(min_length=1, max_length=1024)]
_Split = Annotated[StrictStr, Field(min_length=1, max_length=512)]
_EnvironmentId = Annotated[StrictStr, Field(max_length=256)]
_EnvironmentName = Annotated[StrictStr, Field(min_length=1, max_length=256)]
_Treatment = Annotated[StrictStr, Field(min_length=1, max_length=512)]
_Time = Annotated[StrictInt, Field(ge=MIN_TIME_MS, le=MAX_TIME_MS, description="evaluation time, epoch ms")]
_OptionalText = Annotated[StrictStr | None, Field(max_length=1024)]
_Version = Annotated[StrictInt | None, Field(ge=0)]
_Properties = Annotated[StrictStr | None, Field(max_length=32_768)]


class SplitImpression(BaseModel):
    """One impression from Split's outgoing impressions webhook, fully validated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: _Key
    split: _Split
    environmentId: _EnvironmentId = ""
    environmentName: _EnvironmentName
    treatment: _Treatment
    time: _Time
    bucketingKey: _OptionalText = None
    label: _OptionalText = None
    machineName: StrictStr | None = None
    machineIp: StrictStr | None = None
    splitVersionNumber: _Version = None
    sdk: StrictStr | None = None
    sdkVersion: StrictStr | None = None
    properties: _Properties = None

    @field_validator("key", "split")
    @classmethod
    def _fits_a_dynamodb_key(cls, value: str, info: ValidationInfo) -> str:
        limit = KEY_MAX_BYTES if info.field_name == "key" else SPLIT_MAX_BYTES
        if exceeds_utf8_bytes(value, limit):
            raise ValueError(f"must be at most {limit} bytes in UTF-8")
        return value

    @field_validator("properties")
    @classmethod
    def _properties_is_json_object(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not is_json_object_string(value):
            raise ValueError("properties must be a JSON-encoded object string")
        return value


class WireImpression(TypedDict):
    """Split's impression as read straight from a body's JSON bytes, on the webhook's fast path.

    The same fields and per-field constraints as :class:`SplitImpression`, checked inside pydantic-core,
    into a plain dict (building 10,000 model instances costs more than the validation). The two
    cross-cutting checks of :class:`SplitImpression` (key sizes in UTF-8, ``properties`` holding a JSON
    object) are left to the caller, :func:`differs_from_model`, because calling back into Python twice per item
    costs more than the rest of the validation. Optional fields may be absent (the model's defaults apply).
    Unknown fields are kept so that non-finite numbers, which ``json.loads`` refuses, can be detected in
    them (see :func:`flagbridge.impressions.ingest.ingest_valid_body`).
    """

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    key: _Key
    split: _Split
    environmentId: NotRequired[_EnvironmentId]
    environmentName: _EnvironmentName
    treatment: _Treatment
    time: _Time
    bucketingKey: NotRequired[_OptionalText]
    label: NotRequired[_OptionalText]
    machineName: NotRequired[StrictStr | None]
    machineIp: NotRequired[StrictStr | None]
    splitVersionNumber: NotRequired[_Version]
    sdk: NotRequired[StrictStr | None]
    sdkVersion: NotRequired[StrictStr | None]
    properties: NotRequired[_Properties]


WIRE_FIELDS = frozenset(WireImpression.__annotations__)


class UsualWireImpression(TypedDict):
    """The usual impression, read straight from a body's JSON bytes: :class:`WireImpression` narrowed so that
    pydantic-core alone checks what the caller checks of a :class:`WireImpression` item by item.

    A key of at most ``KEY_MAX_BYTES // 4`` characters (a split of at most ``SPLIT_MAX_BYTES // 4``) cannot
    exceed its UTF-8 limit (:func:`differs_from_model`). Unknown fields are skipped, not kept: that costs
    less, but only a body without them may be read this way, which the caller makes sure of (see
    :func:`flagbridge.impressions.ingest.ingest_valid_body`). It reads any other body as :class:`WireImpression`
    items.
    """

    __pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[misc]

    key: Annotated[StrictStr, Field(min_length=1, max_length=KEY_MAX_BYTES // 4)]
    split: Annotated[StrictStr, Field(min_length=1, max_length=SPLIT_MAX_BYTES // 4)]
    environmentId: NotRequired[_EnvironmentId]
    environmentName: _EnvironmentName
    treatment: _Treatment
    time: _Time
    bucketingKey: NotRequired[_OptionalText]
    label: NotRequired[_OptionalText]
    machineName: NotRequired[StrictStr | None]
    machineIp: NotRequired[StrictStr | None]
    splitVersionNumber: NotRequired[_Version]
    sdk: NotRequired[StrictStr | None]
    sdkVersion: NotRequired[StrictStr | None]
    properties: NotRequired[_Properties]


# What SplitImpression reads for each optional field an impression lacks.
WIRE_DEFAULTS: dict[str, Any] = {
    name: field.default for name, field in SplitImpression.model_fields.items() if not field.is_required()
}


def differs_from_model(impression: WireImpression) -> bool:
    """Whether :class:`SplitImpression` would refuse ``impression`` or read it differently."""
    if exceeds_utf8_bytes(impression["key"], KEY_MAX_BYTES) or exceeds_utf8_bytes(impression["split"], SPLIT_MAX_BYTES):
        return True
    properties = impression.get("properties")
    # SplitImpression reads "" as None and refuses anything but a JSON object
    return properties is not None and (properties == "" or not is_json_object_string(properties))


class QueuedImpression(BaseModel):
    """What the webhook enqueues per valid impression: mapped to a traffic type, minus host details.

    The fields are :data:`~flagbridge.impressions.records.FIELDS`, in that order: a version 2 record is the
    JSON array of their values (:func:`queued_record_json`), a version 1 record was the JSON object.

    ``machineName``/``machineIp`` are dropped on purpose: the profile does not need them and they are
    personal data (the original item is only ever kept in the encrypted quarantine).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str
    flag: str
    treatment: str
    time: int
    label: str | None = None
    version: int | None = None
    environment: str
    environment_id: str = ""
    bucketing_key: str | None = None
    properties: str | None = None
    traffic_type: str
    identity_type: str

    @property
    def user_id(self) -> str:
        """The profile's partition key: traffic type and key."""
        return f"{self.traffic_type}#{self.key}"


def queued_record_json(
    key: str,
    flag: str,
    treatment: str,
    time: int,
    label: str | None,
    version: int | None,
    environment: str,
    environment_id: str,
    bucketing_key: str | None,
    properties: str | None,
    traffic_type: str,
    identity_type: str,
) -> str:
    """The version 2 record of a mapped impression: the JSON array of its :class:`QueuedImpression` values.

    ``json.dumps([key, flag, ..., identity_type], separators=(",", ":"), ensure_ascii=False)``, character for
    character, assembled directly with the json module's own string quoting: the generic encoder's per-call
    set-up costs more than the encoding of such a small, flat array (this runs 10,000s of times).
    """
    return (
        f"[{_quote(key)},{_quote(flag)},{_quote(treatment)},{time!r},"
        f"{'null' if label is None else _quote(label)},{'null' if version is None else repr(version)},"
        f"{_quote(environment)},{_quote(environment_id)},"
        f"{'null' if bucketing_key is None else _quote(bucketing_key)},"
        f"{'null' if properties is None else _quote(properties)},{_quote(traffic_type)},{_quote(identity_type)}]"
    )


def _json_kind(value: Any) -> str:
    """What a JSON value is, for a reason: "an object", "a string", "null", "a boolean", "a number"."""
    if value is None:
        return "null"
    kinds = {dict: "an object", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), f"a {type(value).__name__}")


class ImpressionMessage(BaseModel):
    """The body of one SQS message on the impressions queue, version 1 or 2 (see the module docstring).

    Version 2: ``fields`` must be exactly :data:`~flagbridge.impressions.records.FIELDS` and every record an
    array of that many values, read as the :class:`QueuedImpression` with those fields (so a refused value
    is reported as ``impressions.<index>.<field>``). Version 1: the records are objects and ``fields`` is
    ignored, as any unknown key. Any other version is refused.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = 1
    source: str = "split-webhook"
    request_id: str
    chunk: int = 0
    received_at: int
    fields: tuple[str, ...] | None = Field(default=None, validate_default=True)
    impressions: list[QueuedImpression]

    @field_validator("v")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in (1, MESSAGE_VERSION):
            raise ValueError(f"unknown message version {value}: the processor reads versions 1 and {MESSAGE_VERSION}")
        return value

    @field_validator("fields", mode="before")
    @classmethod
    def _fields_of_version_2(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("v") != MESSAGE_VERSION:
            return None  # version 1 has no fields: ignored, as any unknown key
        if value is None:
            raise ValueError(f"required in version {MESSAGE_VERSION} messages, and must be {FIELD_LIST}")
        if not isinstance(value, list | tuple) or list(value) != FIELD_LIST:
            raise ValueError(f"must be {FIELD_LIST} (the values of a version {MESSAGE_VERSION} record, in order)")
        return value

    @field_validator("impressions", mode="before")
    @classmethod
    def _version_2_records(cls, value: Any, info: ValidationInfo) -> Any:
        """Version 2 records as objects of the fields, for :class:`QueuedImpression` (version 1: unchanged)."""
        if info.data.get("v") != MESSAGE_VERSION or not isinstance(value, list):
            return value  # version 1 records are objects; not a list is refused as such
        if "fields" not in info.data:
            return []  # the message is refused for its fields already: its records cannot be read without them
        records: list[dict[str, Any]] = []
        problems: list[str] = []
        for index, record in enumerate(value):
            if not isinstance(record, list):
                problems.append(f"record {index} is {_json_kind(record)}")
            elif len(record) != len(FIELDS):
                problems.append(f"record {index} holds {len(record)} values")
            else:
                records.append(dict(zip(FIELDS, record, strict=True)))
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise ValueError(
                f"a version {MESSAGE_VERSION} record is an array of the {len(FIELDS)} values named by fields: "
                + "; ".join(problems[:3])
                + more
            )
        return records
