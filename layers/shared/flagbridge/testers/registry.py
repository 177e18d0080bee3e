"""Registered testers: who is a tester until when, why, and who said so.

A registration names a Split traffic type and key (``user#qa-7``), an expiry and a reason. Until it expires
the user is a tester in both directions: the CDP router treats every identity that maps to that traffic type
and key as a tester, and the impressions processor marks the profile (with the same expiry). Expired
registrations are ignored on read: DynamoDB's TTL deletes them, but only within days.

Every change (register, remove) is written together with an audit entry (who, when, why) in the same
transaction; logs only ever carry a hash of the user id (:func:`user_hash`) and counts.

The store is a small interface (:class:`TesterStore`) with a DynamoDB adapter
(:class:`flagbridge.testers.store.DynamoDBTesterStore`) and an in-memory twin (:class:`InMemoryTesterStore`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from flagbridge.errors import FlagbridgeError

REGISTRY_RULE = "tester-registry"  # the rule name decisions and profile marks carry for a registered tester
MAX_REGISTRATION_SECONDS = 30 * 24 * 3600
AUDIT_RETENTION_SECONDS = 400 * 24 * 3600
MAX_KEY_CHARS = 250  # Split's limit for a key
MAX_REASON_CHARS = 200
MAX_ACTOR_CHARS = 256
MAX_EXPIRY_TEXT = 64
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50
MAX_CURSOR_CHARS = 2048

_TRAFFIC_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
_PAGE_SIZE = re.compile(r"[0-9]{1,3}")  # ASCII digits only: str.isdigit() also takes other scripts' digits
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# Control characters (C0, DEL, C1), line/paragraph separators and lone surrogates: never part of a key or reason.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

Action = Literal["register", "remove", "segment_add", "segment_remove"]
SegmentState = Literal["pending", "synced"]


class InvalidTesterError(FlagbridgeError):
    """A registration request the registry refuses; ``code`` is machine-readable, the message names the field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RegistryUnavailableError(FlagbridgeError):
    """The registry's store could not be read or written (after retries)."""


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered tester. ``expires_at`` is epoch seconds (the table's TTL), ``registered_at`` epoch ms."""

    traffic_type: str
    key: str
    expires_at: int
    reason: str
    registered_by: str
    registered_at: int
    segment: SegmentState | None = None  # with a Split segment configured: is the key in it yet (pending, synced)

    @property
    def user_id(self) -> str:
        return user_id(self.traffic_type, self.key)

    def active(self, now_seconds: float) -> bool:
        return self.expires_at > now_seconds

    def document(self) -> dict[str, Any]:
        """The JSON shape of the testers API (``segment`` only when a Split segment follows the registry)."""
        document: dict[str, Any] = {
            "trafficType": self.traffic_type,
            "key": self.key,
            "expiresAt": iso(self.expires_at),
            "expiresAtEpoch": self.expires_at,
            "reason": self.reason,
            "registeredBy": self.registered_by,
            "registeredAt": iso(self.registered_at / 1000),
        }
        if self.segment is not None:
            document["segment"] = self.segment
        return document


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A change to the registry: what happened to which tester, who did it, when (epoch ms) and why."""

    traffic_type: str
    key: str
    action: Action
    actor: str
    at: int
    reason: str
    expires_at: int | None = None  # the registration's expiry (register only)
    detail: str | None = None  # segment changes: "<environment>/<segment>"

    @property
    def user_id(self) -> str:
        return user_id(self.traffic_type, self.key)

    def document(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "actor": self.actor,
            "at": iso(self.at / 1000),
            "reason": self.reason,
            "expiresAt": None if self.expires_at is None else iso(self.expires_at),
            **({"segment": self.detail} if self.detail is not None else {}),
        }


class SegmentHook(Protocol):
    """What the registry tells a Split segment after a change is stored (:mod:`flagbridge.testers.segment`).

    ``registering`` says what state new registrations are stored with (``pending`` while a segment follows
    their traffic type); ``registered`` and ``removed`` run after the store write and never raise: a failed
    segment update leaves the registration ``pending`` for the reconcile.
    """

    def registering(self, traffic_type: str) -> SegmentState | None: ...

    def registered(self, registrations: Sequence[Registration]) -> None: ...

    def removed(self, audit: AuditEntry) -> None: ...


RegistryLookup = Callable[[Iterable[str]], Mapping[str, Registration]]
"""What the router and the processor are given: :meth:`TesterRegistry.active` (user ids -> active registrations)."""


@dataclass(frozen=True, slots=True)
class Page:
    """Active registrations in user id order, and the cursor of the next page (None on the last)."""

    registrations: list[Registration]
    cursor: str | None


def user_id(traffic_type: str, key: str) -> str:
    """The id the profiles table uses too: ``{traffic_type}#{key}``."""
    return f"{traffic_type}#{key}"


def user_hash(user: str) -> str:
    """A user id as logs may show it: 16 hex digits of its SHA-256 (never the key itself)."""
    return hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def iso(epoch_seconds: float) -> str:
    """Epoch seconds as ISO-8601 UTC with a ``Z`` (milliseconds when there are any)."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


# ---- validation ----------------------------------------------------------------------------------------


def check_traffic_type(value: Any) -> str:
    if not isinstance(value, str) or not _TRAFFIC_TYPE.fullmatch(value):
        raise InvalidTesterError(
            "invalid_traffic_type",
            "trafficType must be 1-80 letters, digits, '_', '-' or '.', starting with a letter or digit",
        )
    return value


def check_key(value: Any) -> str:
    """A tester key exactly as Split will see it, refused when it could display as another key (docs/testers.md).

    Refused: control characters and surrounding whitespace; lone surrogates (no bytes were ever sent for them);
    invisible and bidirectional characters (:func:`hidden_character`); a key not in Unicode NFC (``e`` and a
    combining acute display as ``é``). Refusing rather than normalising keeps every key byte for byte what the
    client sent: a normalised key would register someone the client never named.
    """
    if not isinstance(value, str) or not value or not value.strip():
        raise InvalidTesterError("invalid_key", "key must be a non-empty string")
    if len(value) > MAX_KEY_CHARS:
        raise InvalidTesterError("invalid_key", f"key must be at most {MAX_KEY_CHARS} characters (Split's limit)")
    if value != value.strip() or _UNPRINTABLE.search(value):
        raise InvalidTesterError("invalid_key", "key must not hold control characters or surrounding whitespace")
    hidden = next((char for char in value if hidden_character(char)), None)
    if hidden is not None:
        raise InvalidTesterError(
            "invalid_key",
            f"key must not hold invisible or bidirectional characters (U+{ord(hidden):04X} "
            f"{unicodedata.name(hidden, 'unnamed')}): it would display as another key",
        )
    if not unicodedata.is_normalized("NFC", value):
        raise InvalidTesterError(
            "invalid_key", "key must be in Unicode NFC (composed) form: it would display as another key"
        )
    return value


# Invisible or text-reordering characters outside the format/separator/unassigned classes: combining grapheme
# joiner, Hangul fillers, Khmer inherent vowels, Mongolian vowel separator, braille blank, variation selectors.
_HIDDEN_EXTRA = frozenset({0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x2800, 0x3164, 0xFFA0})
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def hidden_character(char: str) -> bool:
    """A character that shows nothing or changes how the text around it shows (the key rule of docs/testers.md).

    Unicode's Format (Cf: U+200B-U+200F, U+202A-U+202E, U+2060-U+2069, U+FEFF, tags...), Control, Surrogate,
    Private Use and Unassigned classes, every separator (Zs, Zl, Zp) except the plain space U+0020, variation
    selectors, and :data:`_HIDDEN_EXTRA`.
    """
    code = ord(char)
    if code < 0x7F:
        return code < 0x20
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF or code in _HIDDEN_EXTRA:
        return True
    return unicodedata.category(char) in _HIDDEN_CATEGORIES


def check_reason(value: Any) -> str:
    if value is None:
        raise InvalidTesterError("missing_reason", "reason is required: say why this user is a tester")
    if not isinstance(value, str) or not value.strip():
        raise InvalidTesterError("invalid_reason", "reason must be a non-empty string")
    text = value.strip()
    if len(text) > MAX_REASON_CHARS or _UNPRINTABLE.search(text):
        raise InvalidTesterError(
            "invalid_reason", f"reason must be at most {MAX_REASON_CHARS} characters, without control characters"
        )
    return text


def check_actor(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ACTOR_CHARS or _UNPRINTABLE.search(value):
        raise InvalidTesterError("invalid_actor", "the caller's identity must be 1-256 printable characters")
    return value.strip()


def parse_expiry(value: Any, now_seconds: float, max_seconds: int = MAX_REGISTRATION_SECONDS) -> int:
    """``expiresAt`` as epoch seconds: an ISO-8601 time with a zone, or epoch seconds (number or digits).

    It must be in the future and at most ``max_seconds`` ahead. Fractions of a second are rounded up.
    """
    seconds = _expiry_seconds(value)
    if seconds <= now_seconds:
        raise InvalidTesterError("expired", "expiresAt must be in the future")
    if seconds > now_seconds + max_seconds:
        raise InvalidTesterError(
            "expiry_too_far",
            f"expiresAt must be at most {max_seconds // 86400} days ahead"
            + (" (it reads as epoch seconds: milliseconds are too large)" if seconds > 1e11 else ""),
        )
    return math.ceil(seconds)


def _expiry_seconds(value: Any) -> float:
    bad = InvalidTesterError(
        "invalid_expiry", "expiresAt must be an ISO-8601 time with a zone (2026-12-01T10:00:00Z) or epoch seconds"
    )
    if isinstance(value, bool) or value is None:
        raise bad
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float (JSON allows 10**400)
            raise bad from None
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > MAX_EXPIRY_TEXT:
            raise bad
        if _NUMBER.fullmatch(text):
            number = float(text)
        else:
            try:
                moment = datetime.fromisoformat(text.replace("z", "Z"))
            except ValueError:
                raise bad from None
            if moment.tzinfo is None:
                raise InvalidTesterError("invalid_expiry", "expiresAt needs a time zone, e.g. 'Z' for UTC") from None
            number = moment.timestamp()
    else:
        raise bad
    if not math.isfinite(number):
        raise bad
    return number


def registration_of(
    traffic_type: Any, key: Any, body: Mapping[str, Any], actor: str, now_seconds: float
) -> Registration:
    """A validated registration from an API body ``{"expiresAt": ..., "reason": ...}`` (other fields refused)."""
    unknown = sorted(str(name) for name in body if name not in ("expiresAt", "reason"))
    if unknown:
        raise InvalidTesterError("unknown_field", f"unknown field(s): {', '.join(unknown)[:200]}")
    if "expiresAt" not in body:
        raise InvalidTesterError("missing_expiry", "expiresAt is required (ISO-8601 with a zone, or epoch seconds)")
    return Registration(
        traffic_type=check_traffic_type(traffic_type),
        key=check_key(key),
        expires_at=parse_expiry(body["expiresAt"], now_seconds),
        reason=check_reason(body.get("reason")),
        registered_by=check_actor(actor),
        registered_at=int(now_seconds * 1000),
    )


def encode_cursor(after_user_id: str) -> str:
    raw = json.dumps({"after": after_user_id}, separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The user id a page starts after; InvalidTesterError for anything :func:`encode_cursor` did not make."""
    bad = InvalidTesterError("invalid_cursor", "cursor is not one this API returned")
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if not raw.startswith(b'{"after":"'):  # what encode_cursor writes; nothing else reaches the JSON parser
            raise bad
        document = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):
        raise bad from None
    after = document.get("after") if isinstance(document, dict) else None
    if not isinstance(after, str) or "#" not in after:
        raise bad
    traffic_type, _, key = after.partition("#")
    try:
        check_traffic_type(traffic_type)
        check_key(key)
    except InvalidTesterError:
        raise bad from None
    return after


def parse_page_size(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE_SIZE
    text = str(value).strip()
    if not _PAGE_SIZE.fullmatch(text) or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise InvalidTesterError("invalid_limit", f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(text)


# ---- the store interface and its in-memory twin ------------------------------------------------------------


class TesterStore(Protocol):
    """What the registry needs from storage. Reads return registrations whether expired or not."""

    def put(self, registrations: Sequence[Registration], audits: Sequence[AuditEntry]) -> None:
        """Write registrations and their audit entries (each registration with its entry, atomically)."""
        ...

    def delete(self, traffic_type: str, key: str, audit: AuditEntry) -> bool:
        """Delete a registration and write its audit entry, atomically; False (nothing written) if none."""
        ...

    def get_many(self, user_ids: Collection[str]) -> dict[str, Registration]:
        """The registrations of these user ids, in bulk (one request per 100 ids)."""
        ...

    def page(self, limit: int, after: str | None) -> tuple[list[Registration], str | None]:
        """Up to ``limit`` registrations in user id order after ``after``, and the last id read (None at the end)."""
        ...

    def history(self, traffic_type: str, key: str) -> list[AuditEntry]:
        """The audit entries of one tester, oldest first."""
        ...


@dataclass
class InMemoryTesterStore:
    """:class:`TesterStore` in memory, counting requests the way the DynamoDB adapter makes them."""

    registrations: dict[str, Registration] = field(default_factory=dict)
    audits: list[AuditEntry] = field(default_factory=list)
    read_requests: int = 0
    write_requests: int = 0

    def put(self, registrations: Sequence[Registration], audits: Sequence[AuditEntry]) -> None:
        for start in range(0, len(registrations), TRANSACTION_REGISTRATIONS):
            self.write_requests += 1
            for registration in registrations[start : start + TRANSACTION_REGISTRATIONS]:
                self.registrations[registration.user_id] = registration
        self.audits.extend(audits)

    def delete(self, traffic_type: str, key: str, audit: AuditEntry) -> bool:
        self.write_requests += 1
        if self.registrations.pop(user_id(traffic_type, key), None) is None:
            return False
        self.audits.append(audit)
        return True

    def get_many(self, user_ids: Collection[str]) -> dict[str, Registration]:
        wanted = sorted(set(user_ids))
        self.read_requests += math.ceil(len(wanted) / BATCH_GET_LIMIT)
        return {user: self.registrations[user] for user in wanted if user in self.registrations}

    def page(self, limit: int, after: str | None) -> tuple[list[Registration], str | None]:
        self.read_requests += 1
        ordered = sorted(user for user in self.registrations if after is None or user > after)
        chosen = ordered[:limit]
        last = chosen[-1] if len(ordered) > limit else None
        return [self.registrations[user] for user in chosen], last

    def history(self, traffic_type: str, key: str) -> list[AuditEntry]:
        self.read_requests += 1
        wanted = user_id(traffic_type, key)
        return sorted((a for a in self.audits if a.user_id == wanted), key=lambda a: a.at)

    def mark_segment(self, registrations: Sequence[Registration], state: SegmentState) -> int:
        """Set the segment state of registrations still as given (same ``registered_at``); how many were."""
        marked = 0
        for start in range(0, len(registrations), TRANSACTION_REGISTRATIONS * 2):
            self.write_requests += 1
            for registration in registrations[start : start + TRANSACTION_REGISTRATIONS * 2]:
                current = self.registrations.get(registration.user_id)
                if current is not None and current.registered_at == registration.registered_at:
                    self.registrations[registration.user_id] = replace(current, segment=state)
                    marked += 1
        return marked

    def write_audits(self, audits: Sequence[AuditEntry]) -> None:
        self.write_requests += math.ceil(len(audits) / AUDIT_BATCH_WRITE)
        self.audits.extend(audits)


BATCH_GET_LIMIT = 100  # keys per BatchGetItem
TRANSACTION_REGISTRATIONS = 50  # registrations per TransactWriteItems: 2 items each, 100 items at most
AUDIT_BATCH_WRITE = 25  # audit entries per BatchWriteItem


# ---- the service ------------------------------------------------------------------------------------------


class TesterRegistry:
    """Register, remove, list and look up testers; every change is audited.

    ``clock`` returns epoch seconds (default :func:`_now`, i.e. ``time.time``); tests pass their own.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self, store: TesterStore, clock: Callable[[], float] | None = None, segment: SegmentHook | None = None
    ) -> None:
        self._store = store
        self._clock = clock or (lambda: _now())
        self._segment = segment

    def _stored(self, registrations: Sequence[Registration]) -> list[Registration]:
        """Write registrations (each with its audit entry) in the segment state they start in, then tell the
        segment."""
        if self._segment is not None:
            hook = self._segment
            registrations = [replace(r, segment=hook.registering(r.traffic_type)) for r in registrations]
        self._store.put(registrations, [_audit_of(r) for r in registrations])
        if self._segment is not None:
            self._segment.registered(registrations)
        return list(registrations)

    def register(self, traffic_type: str, key: str, expires_at: Any, reason: Any, actor: str) -> Registration:
        """Register (or re-register, replacing the expiry and reason) one tester."""
        registration = registration_of(
            traffic_type, key, {"expiresAt": expires_at, "reason": reason}, actor, self._clock()
        )
        return self._stored([registration])[0]

    def register_body(self, traffic_type: str, key: str, body: Mapping[str, Any], actor: str) -> Registration:
        """:meth:`register` from the testers API's JSON body (unknown fields refused)."""
        registration = registration_of(traffic_type, key, body, actor, self._clock())
        return self._stored([registration])[0]

    def register_pool(
        self,
        traffic_type: str,
        keys: Iterable[str],
        duration_seconds: float,
        reason: str,
        actor: str,
        margin_seconds: float = 600,
    ) -> int:
        """Register every key as a tester for ``duration_seconds + margin_seconds``; return the expiry (epoch s).

        This is what a test run calls before sending its first request: it registers its tester pool for the
        run's duration plus a margin, and must refuse to start when this raises (:class:`InvalidTesterError`
        for a bad pool or duration, :class:`RegistryUnavailableError` when the store fails). Registrations
        written before a failure stay until they expire. Re-registering a key moves its expiry to the new one.
        """
        now = self._clock()
        expires_at = parse_expiry(now + duration_seconds + margin_seconds, now)
        pool = list(dict.fromkeys(keys))
        if not pool:
            raise InvalidTesterError("empty_pool", "the tester pool has no keys")
        registrations = [
            Registration(
                traffic_type=check_traffic_type(traffic_type),
                key=check_key(key),
                expires_at=expires_at,
                reason=check_reason(reason),
                registered_by=check_actor(actor),
                registered_at=int(now * 1000),
            )
            for key in pool
        ]
        try:
            self._stored(registrations)
        except RegistryUnavailableError:
            raise
        except Exception as exc:
            raise RegistryUnavailableError(f"could not register {len(pool)} tester(s): {type(exc).__name__}") from exc
        return expires_at

    def remove(self, traffic_type: str, key: str, actor: str, reason: Any = None) -> bool:
        """Remove one tester now; False when it was not registered (nothing is written then)."""
        traffic_type, key = check_traffic_type(traffic_type), check_key(key)
        why = "removed" if reason is None or (isinstance(reason, str) and not reason.strip()) else check_reason(reason)
        audit = AuditEntry(traffic_type, key, "remove", check_actor(actor), int(self._clock() * 1000), why)
        removed = self._store.delete(traffic_type, key, audit)
        if removed and self._segment is not None:
            self._segment.removed(audit)
        return removed

    def page(self, limit: int = DEFAULT_PAGE_SIZE, cursor: str | None = None) -> Page:
        """One page of the active registrations (expired ones are skipped, so a page may be short)."""
        after = decode_cursor(cursor) if cursor else None
        registrations, last = self._store.page(limit, after)
        now = self._clock()
        return Page([r for r in registrations if r.active(now)], None if last is None else encode_cursor(last))

    def active(self, user_ids: Iterable[str]) -> dict[str, Registration]:
        """The user ids among ``user_ids`` that are registered and not expired (one bulk read)."""
        wanted = set(user_ids)
        if not wanted:
            return {}
        found = self._store.get_many(wanted)
        now = self._clock()
        return {user: registration for user, registration in found.items() if registration.active(now)}

    def history(self, traffic_type: str, key: str) -> list[AuditEntry]:
        return self._store.history(check_traffic_type(traffic_type), check_key(key))


def _now() -> float:
    """The registry's clock: epoch seconds (looked up on each call, so a test can pin it)."""
    return time.time()


def _audit_of(registration: Registration) -> AuditEntry:
    return AuditEntry(
        registration.traffic_type,
        registration.key,
        "register",
        registration.registered_by,
        registration.registered_at,
        registration.reason,
        registration.expires_at,
    )
