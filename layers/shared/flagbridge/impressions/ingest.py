"""Ingest of one Split impressions webhook request: validate each item, map it, enqueue, quarantine.

Every item ends up in exactly one place: enqueued for the profile processor, or in the quarantine with
its reason. Nothing is acknowledged (200) before both are durable; if either fails the caller replies
5xx so that Split retries (it retries once, 300 ms later; duplicates are harmless downstream).

The queued messages are version 2 (:mod:`flagbridge.impressions.records` describes both versions): an
envelope naming the record fields once, ``{"v":2,"source":"split-webhook","request_id":…,"received_at":…,
"fields":["key","flag",…,"identity_type"],"impressions":[…]}``, and each record the JSON array of its 12
values in that order (:func:`~flagbridge.impressions.models.queued_record_json`), packed into messages
within SQS's size limit.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from json.encoder import encode_basestring as _quote
from operator import itemgetter, methodcaller
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from flagbridge.body import parse_json
from flagbridge.config import BridgeConfig, SplitEnvironmentMapping
from flagbridge.errors import RequestError
from flagbridge.impressions.models import (
    KEY_MAX_BYTES,
    SPLIT_MAX_BYTES,
    WIRE_DEFAULTS,
    WIRE_FIELDS,
    SplitImpression,
    UsualWireImpression,
    WireImpression,
    describe_validation_error,
    differs_from_model,
    is_json_object_string,
    queued_record_json,
)
from flagbridge.impressions.records import FIELD_LIST, MESSAGE_VERSION
from flagbridge.quarantine import Quarantine, QuarantineSource
from flagbridge.queues import MessageSender, envelope_parts, pack_records


@dataclass
class IngestResult:
    """What happened to a request's items (the webhook's JSON reply)."""

    request_id: str
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    messages: int = 0
    quarantine_key: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "requestId": self.request_id,
            "received": self.received,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
        }
        if self.reasons:
            body["quarantineReasons"] = self.reasons
        return body


def ingest_impressions(
    document: Any,
    *,
    request_id: str,
    config: BridgeConfig,
    sender: MessageSender,
    quarantine: Quarantine,
    now_ms: int | None = None,
) -> IngestResult:
    """Validate, map and durably store every impression of a decoded webhook body.

    Raises RequestError (400/413) for a body that is not an impression array, and EnqueueError or
    StoreError when durability could not be reached.
    """
    if not isinstance(document, list):
        raise RequestError(
            400, "not_an_array", f"the body must be a JSON array of impressions, got {type(document).__name__}"
        )
    limit = config.limits.max_impressions_per_request
    if len(document) > limit:
        raise RequestError(413, "too_many_impressions", f"{len(document)} impressions exceed the limit of {limit}")
    received_at = int(time.time() * 1000) if now_ms is None else now_ms
    result = IngestResult(request_id=request_id, received=len(document))
    mapping = config.identity_mapping
    records: list[str] = []
    rejected: list[dict[str, Any]] = []
    validated = _validate_all(document)
    resolve = _memoized(mapping.resolve)
    for index, item in enumerate(document):
        if validated is not None:
            impression = validated[index]
        elif not isinstance(item, dict):
            rejected.append(_rejection(index, "not_an_object", f"item is a {type(item).__name__}", item))
            continue
        else:
            try:
                impression = SplitImpression.model_validate(item)
            except ValidationError as exc:
                rejected.append(_rejection(index, "invalid_impression", describe_validation_error(exc), item))
                continue
        target = resolve(impression.environmentName, impression.environmentId, impression.key)
        if target is None:
            detail = f"no identity_mapping entry for environment {impression.environmentName!r}"
            rejected.append(_rejection(index, "unmapped_environment", detail, item))
            continue
        records.append(
            _sqs_safe(
                queued_record_json(
                    impression.key,
                    impression.split,
                    impression.treatment,
                    impression.time,
                    impression.label,
                    impression.splitVersionNumber,
                    impression.environmentName,
                    impression.environmentId,
                    impression.bucketingKey,
                    impression.properties,
                    target.traffic_type,
                    target.identity_type,
                )
            )
        )

    return _store(result, records, rejected, received_at, sender, quarantine)


def ingest_valid_body(
    data: bytes,
    *,
    request_id: str,
    config: BridgeConfig,
    sender: MessageSender,
    quarantine: Quarantine,
    now_ms: int | None = None,
) -> IngestResult | None:
    """The usual body, validated in one pass straight from its JSON bytes; None for any other body.

    When the body is a JSON array of valid impressions of mapped environments (within the size limit), this
    is ``ingest_impressions(parse_json(data), ...)`` without building the intermediate Python objects. For
    anything else (malformed JSON, an invalid or unmapped item, a number ``json.loads`` would refuse) it
    returns None without side effects: call :func:`ingest_impressions` on the parsed body, whose outcome,
    errors and quarantine documents are the reference.
    """
    impressions = _validate_json(data)
    if impressions is None or len(impressions) > config.limits.max_impressions_per_request:
        return None
    received_at = int(time.time() * 1000) if now_ms is None else now_ms
    records = _wire_records(impressions, config.identity_mapping.resolve)
    if records is None:
        return None  # an unmapped item: the quarantine keeps it as received, so take the general path
    result = IngestResult(request_id=request_id, received=len(impressions))
    return _store(result, records, [], received_at, sender, quarantine)


def ingest_body(
    data: bytes, *, request_id: str, config: BridgeConfig, sender: MessageSender, quarantine: Quarantine
) -> IngestResult:
    """A decoded webhook body (bytes, not yet parsed): the usual body validated straight from its bytes
    (:func:`ingest_valid_body`), any other parsed and taken item by item (:func:`ingest_impressions`), which
    quarantines what it cannot use with the reasons."""
    result = ingest_valid_body(data, request_id=request_id, config=config, sender=sender, quarantine=quarantine)
    if result is None:
        result = ingest_impressions(
            parse_json(data), request_id=request_id, config=config, sender=sender, quarantine=quarantine
        )
    return result


def _wire_records(
    impressions: list[WireImpression], resolve: Callable[[str, str, str], SplitEnvironmentMapping | None]
) -> list[str] | None:
    """The version 2 records of validated impressions (:func:`queued_record_json` of each, inline), None when one
    is unmapped. Every impression has all the fields of a record (:func:`_validate_json` fills in defaults)."""
    # key -> its environment and id, and the record's quoted key, environment and mapping (for that environment)
    parts: dict[str, tuple[str, str, str, str, str]] = {}
    # (split, treatment, label, version) -> their part of the record, before and after the time: few per request
    middles: dict[tuple[str, str, str | None, int | None], tuple[str, str]] = {}
    records: list[str] = []
    append = records.append
    for key, name, environment_id, split, treatment, time_ms, label, version, bucketing_key, properties in map(
        _RECORD_VALUES, impressions
    ):
        known = parts.get(key)
        if known is None or known[0] != name or known[1] != environment_id:
            target = resolve(name, environment_id, key)
            if target is None:
                return None
            known = parts[key] = _record_ends(target, key, name, environment_id)
        try:
            before, after = middles[split, treatment, label, version]
        except KeyError:
            before, after = middles[split, treatment, label, version] = (
                f"{_quote(split)},{_quote(treatment)},",
                f"{'null' if label is None else _quote(label)},{'null' if version is None else repr(version)},",
            )
        append(
            f"{known[2]}{before}{time_ms!r},{after}{known[3]}"
            f"{'null' if bucketing_key is None else _quote(bucketing_key)},"
            f"{'null' if properties is None else _quote(properties)},{known[4]}"
        )
    if not all(map(str.isascii, records)):
        records = list(map(_sqs_safe, records))
    return records


def _record_ends(
    target: SplitEnvironmentMapping, key: str, name: str, environment_id: str
) -> tuple[str, str, str, str, str]:
    """The environment and id of ``key``'s impressions, and their record's quoted key (with the opening bracket),
    environment and mapping (with the closing bracket)."""
    return (
        name,
        environment_id,
        f"[{_quote(key)},",
        f"{_quote(name)},{_quote(environment_id)},",
        f"{_quote(target.traffic_type)},{_quote(target.identity_type)}]",
    )


def _sqs_safe(record: str) -> str:
    if not record.isascii() and ("\ufffe" in record or "\uffff" in record):
        # SQS refuses these two characters raw; escaped is the same JSON
        record = record.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")
    return record


def _store(
    result: IngestResult,
    records: list[str],
    rejected: list[dict[str, Any]],
    received_at: int,
    sender: MessageSender,
    quarantine: Quarantine,
) -> IngestResult:
    """Enqueue the records and quarantine the rejections (both durable before returning)."""
    request_id = result.request_id
    if records:
        header = {
            "v": MESSAGE_VERSION,
            "source": "split-webhook",
            "request_id": request_id,
            "received_at": received_at,
            "fields": FIELD_LIST,
        }
        prefix, suffix = envelope_parts(header, "impressions")
        bodies = pack_records(records, prefix, suffix)
        sender.send_bodies(bodies)
        result.messages = len(bodies)
        result.accepted = len(records)
    if rejected:
        for rejection in rejected:
            result.reasons[rejection["reason"]] = result.reasons.get(rejection["reason"], 0) + 1
        result.quarantine_key = quarantine.put(
            QuarantineSource.SPLIT_IMPRESSIONS,
            request_id,
            {
                "source": QuarantineSource.SPLIT_IMPRESSIONS,
                "request_id": request_id,
                "received_at": received_at,
                "items": rejected,
            },
        )
        result.quarantined = len(rejected)
    return result


_WIRE_LIST: TypeAdapter[list[WireImpression]] = TypeAdapter(list[WireImpression])
_USUAL_LIST: TypeAdapter[list[UsualWireImpression]] = TypeAdapter(list[UsualWireImpression])
_PLAIN_EXTRA_TYPES = (str, bool, type(None))
_KEY, _SPLIT, _OPTIONAL_PROPERTIES = itemgetter("key"), itemgetter("split"), methodcaller("get", "properties")
# The values of a record, in one call per impression: key, environment, environment id, split, treatment, time,
# label, version, bucketing key, properties.
_RECORD_VALUES = itemgetter(
    "key",
    "environmentName",
    "environmentId",
    "split",
    "treatment",
    "time",
    "label",
    "splitVersionNumber",
    "bucketingKey",
    "properties",
)


def _validate_json(data: bytes) -> list[WireImpression] | None:
    """The impressions of a body that is a JSON array of impressions :class:`SplitImpression` accepts, else None.

    None as well when an unknown field holds something ``json.loads`` (with :func:`parse_json`'s checks)
    might refuse or read differently: a non-finite or huge number, or a nested value. Every impression
    returned has all of Split's optional fields (absent ones hold the model's default).
    """
    impressions = _usual_impressions(data)
    if impressions is not None:
        return impressions
    impressions = _unrepeated(data, _wire_impressions(data))
    return None if impressions is None else _completed(impressions)


def _usual_impressions(data: bytes) -> list[WireImpression] | None:
    """The impressions of the usual body (keys and splits of usual lengths, no unknown field), else None.

    pydantic-core checks all but the properties (:class:`UsualWireImpression`), skipping unknown fields:
    :func:`_only_fields_read` tells that there were none.
    """
    try:
        impressions: list[Any] = _USUAL_LIST.validate_json(data)
    except ValidationError:
        return None
    fields_read = sum(map(len, impressions))
    properties = Counter(map(_OPTIONAL_PROPERTIES, impressions))
    if not _usual_properties(properties) or not _only_fields_read(data, fields_read, properties, impressions):
        return None
    return impressions if fields_read == len(WIRE_FIELDS) * len(impressions) else _completed(impressions)


def _only_fields_read(data: bytes, fields_read: int, properties: Counter[Any], impressions: list[Any]) -> bool:
    """Whether the objects of ``data`` (valid JSON) have no key but the ``fields_read`` of ``impressions`` (no
    unknown field, none repeated), told by counting the body's backslashes and colons.

    Every escape in a JSON string takes at least one backslash, and a quote in a string takes an escape: if
    the body has no more backslashes than the quotes in the values read, its only escapes are those quotes',
    so no colon is escaped. Then a colon is either a key's (each key has one) or in a string, as written: if
    the body has no more colons than the fields read plus the colons in their values, it has no other key.
    The usual body has such characters only in its properties, counted first; then every value read is.
    """
    in_properties = _quotes_and_colons(properties)
    expected = (_backslashes(data, in_properties[0]), data.count(b":") - fields_read)
    if in_properties == expected:
        return True
    return _quotes_and_colons(Counter(chain.from_iterable(map(dict.values, impressions)))) == expected


def _backslashes(data: bytes, expected: int) -> int:
    """``data.count(b"\\")``, counted only around the backslashes ``bytes.find`` (a ``memchr``, several times faster
    than a count) finds, while there are at most ``expected`` and those are sparse: the usual body's are its
    properties' escaped quotes, a few close together in each."""
    if expected > len(data) >> 8:
        return data.count(b"\\")
    find, count, found = data.find, data.count, 0
    at = find(b"\\")
    while at >= 0:
        found += count(b"\\", at, at + _BACKSLASH_WINDOW)
        if found > expected:
            return data.count(b"\\")
        at = find(b"\\", at + _BACKSLASH_WINDOW)
    return found


_BACKSLASH_WINDOW = 64


def _quotes_and_colons(values: Counter[Any]) -> tuple[int, int]:
    """The quotes and the colons in the strings among ``values`` (as many times as each is counted)."""
    quotes = colons = 0
    for value, times in values.items():
        if isinstance(value, str):
            quotes += value.count('"') * times
            colons += value.count(":") * times
    return quotes, colons


def _completed(impressions: list[Any]) -> list[WireImpression]:
    """``impressions`` with the model's default in each optional field one lacks."""
    completed: list[Any] = [{**WIRE_DEFAULTS, **impression} for impression in impressions]
    return completed


def _usual_properties(properties: Iterable[str | None]) -> bool:
    """Whether each of ``properties`` is what :class:`SplitImpression` reads unchanged: null or a JSON object
    string (the model reads "" as None and refuses anything else)."""
    return not any(value is not None and (value == "" or not is_json_object_string(value)) for value in properties)


def _wire_impressions(data: bytes) -> list[WireImpression] | None:
    """The impressions of a body that is a JSON array of impressions :class:`SplitImpression` accepts (some may
    lack optional fields), else None: the reading of any body :func:`_usual_impressions` declines."""
    try:
        impressions = _WIRE_LIST.validate_json(data)
    except ValidationError:
        return None
    # differs_from_model() and the unknown fields, checked column by column: the usual body passes each check
    # in one pass of C loops, and only a column that might fail is looked at item by item.
    if impressions and (
        max(map(len, map(_KEY, impressions))) > KEY_MAX_BYTES // 4
        or max(map(len, map(_SPLIT, impressions))) > SPLIT_MAX_BYTES // 4
    ):
        return None if any(map(differs_from_model, impressions)) else _unknown_fields_checked(impressions)
    if not _usual_properties(set(map(_OPTIONAL_PROPERTIES, impressions))):
        return None
    return _unknown_fields_checked(impressions)


def _unrepeated(data: bytes, impressions: list[WireImpression] | None) -> list[WireImpression] | None:
    """``impressions`` read from ``data``, or None when a field is repeated in the body: pydantic-core keeps the last
    value, as ``json.loads`` does, but does not tell whether ``json.loads`` would refuse an earlier one (NaN)."""
    if impressions is None or _only_fields_read(data, sum(map(len, impressions)), Counter(), impressions):
        return impressions
    return None


def _unknown_fields_checked(impressions: list[WireImpression]) -> list[WireImpression] | None:
    """``impressions``, or None when an unknown field holds what ``json.loads`` might refuse or read differently."""
    if all(map(WIRE_FIELDS.issuperset, impressions)):
        return impressions  # no unknown field (the usual body)
    for impression in impressions:
        for name, value in impression.items():
            if name in WIRE_FIELDS or isinstance(value, _PLAIN_EXTRA_TYPES):
                continue
            if type(value) is int and -(2**63) <= value < 2**63:
                continue
            if type(value) is float and math.isfinite(value):
                continue
            return None
    return impressions


_IMPRESSION_LIST: TypeAdapter[list[SplitImpression]] = TypeAdapter(list[SplitImpression])


def _validate_all(document: list[Any]) -> list[SplitImpression] | None:
    """Every item validated in one call when all are valid (the usual body); None to go item by item."""
    try:
        return _IMPRESSION_LIST.validate_python(document)
    except ValidationError:
        return None


_V = TypeVar("_V")


def _memoized(resolve: Callable[[str, str, str], _V]) -> Callable[[str, str, str], _V]:
    """``resolve`` remembering its answers for one request (the same keys come back many times)."""
    answers: dict[tuple[str, str, str], _V] = {}

    def memoized(environment_name: str, environment_id: str, key: str) -> _V:
        question = (environment_name, environment_id, key)
        try:
            return answers[question]
        except KeyError:
            answer = answers[question] = resolve(environment_name, environment_id, key)
            return answer

    return memoized


def _rejection(index: int, reason: str, detail: str, item: Any) -> dict[str, Any]:
    return {"index": index, "reason": reason, "detail": detail, "item": item}
