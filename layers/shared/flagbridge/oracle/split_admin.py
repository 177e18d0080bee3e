"""Split's Admin API: the oracle's kill and the tester registry's segment, one client with one retry policy.

Kill: ``PUT {admin_url}/splits/ws/{workspace}/{flag}/environments/{environment}/kill`` (the key needs the
API_ALL_GRANTED or API_FEATURE_FLAG_EDITOR role). The effect: SDKs serve the flag's default treatment with label
``killed``; the impressions that follow are the confirmation (:mod:`flagbridge.oracle.service`).

Segment keys in an environment (the key needs API_SEGMENT_EDITOR; the segment must exist):

* add: ``PUT {admin_url}/segments/{environment}/{segment}/uploadKeys?replace=false`` with
  ``{"keys": [...], "comment": ...}``, at most :data:`MAX_SEGMENT_KEYS_PER_CALL` keys a call (Split's limit);
* remove: ``PUT {admin_url}/segments/{environment}/{segment}/removeKeys``, same body and limit;
* list: ``GET {admin_url}/segments/{environment}/{segment}/keys?offset=&limit=`` pages of
  :data:`SEGMENT_KEYS_PAGE` (``{"keys": [{"key": ...}], "offset", "limit", "count"}``).

Credentials (a Secrets Manager secret) go in the header :func:`auth_headers` builds: ``Authorization: Bearer <Admin
API key>`` (``auth: bearer``), or ``x-api-key: <token>`` for a Harness service account or personal access token
(``auth: x-api-key``; Split recommends against new integrations built on Admin API keys). The configuration's
``split_admin.auth`` chooses; the kill and the segment calls use the same one.

The calls go through :class:`flagbridge.outbound.Outbound`. Every call is retried within a time budget and
returns every attempt:

* 2xx: done. A kill of a flag already killed, or adding a key already in the segment, is also a success;
* 429: waits what Split says (``X-RateLimit-Reset-Seconds-Org``, ``-IP``, or ``Retry-After``; the longest), then
  retries, unless the wait exceeds the budget: then the outcome is ``retry`` and the caller's next turn (the next
  evaluation, the next reconcile) tries again;
* 5xx, 408 and transport errors (timeouts, refused or dropped connections): exponential backoff with full
  jitter, then ``retry``;
* any other 4xx (wrong key, unknown flag, segment or workspace): ``refused``, never retried automatically.

Names and keys Split would refuse (:func:`check_segment_name`, :func:`check_segment_keys`) raise
:class:`SegmentRequestError` before any call. Idempotency (never two kills for one FAIL) is the caller's claim in
the verdict store, not this client's.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

from flagbridge.backoff import backoff_delay
from flagbridge.errors import FlagbridgeError
from flagbridge.outbound import Outbound, Response, TransportError

Outcome = Literal["killed", "retry", "refused", "dry_run"]
CallOutcome = Literal["ok", "retry", "refused", "dry_run"]
AuthScheme = Literal["bearer", "x-api-key"]
AUTH_SCHEMES: tuple[AuthScheme, ...] = ("bearer", "x-api-key")
RETRYABLE = frozenset({408, 425, 500, 502, 503, 504})
RATE_LIMIT_HEADERS = ("x-ratelimit-reset-seconds-org", "x-ratelimit-reset-seconds-ip", "retry-after")
MAX_SEGMENT_KEYS_PER_CALL = 10_000  # Split: "each call can only include 10,000 new members at a time"
SEGMENT_KEYS_PAGE = 100  # keys per page of the segment's key list (what Split's own Python client asks for)
MAX_SEGMENT_KEY_CHARS = 250  # Split's limit for a key
MAX_SEGMENT_NAME_CHARS = 128
MAX_COMMENT_CHARS = 500
# Split's naming rule for its objects: a letter first, then letters, digits, '_' or '-'.
_SEGMENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# Control characters (C0, DEL, C1), line/paragraph separators and lone surrogates.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class SegmentRequestError(FlagbridgeError):
    """A segment name or key Split would refuse; raised before any call."""


class AdminHttp(Protocol):
    """What the kill needs of :class:`flagbridge.outbound.Outbound` (or its twin)."""

    def put(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response: ...


class SegmentHttp(AdminHttp, Protocol):
    def get(self, url: str, headers: Mapping[str, str]) -> Response: ...


def admin_http(connect_timeout: float = 3.0, read_timeout: float = 10.0) -> Outbound:
    """The outbound adapter of the Admin API calls: its timeouts, and a small pool (calls go one at a time)."""
    return Outbound(connect_timeout=connect_timeout, read_timeout=read_timeout, max_idle=2)


@dataclass
class KillResult:
    outcome: Outcome
    attempts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CallResult:
    """One Admin API call after its retries: the outcome, the last answer (if any) and every attempt."""

    outcome: CallOutcome
    answer: Response | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SegmentUpdate:
    """An add or remove of keys, in calls of at most :data:`MAX_SEGMENT_KEYS_PER_CALL` keys.

    ``applied`` are the keys of the calls that succeeded; after the first call that does not succeed the rest
    are not sent (``outcome`` is that call's: ``retry`` or ``refused``).
    """

    outcome: CallOutcome
    applied: list[str] = field(default_factory=list)
    calls: list[CallResult] = field(default_factory=list)


@dataclass
class SegmentListing:
    outcome: CallOutcome
    keys: list[str] = field(default_factory=list)
    calls: int = 0


def auth_headers(scheme: AuthScheme, credential: str) -> dict[str, str]:
    """The header that carries the credential: ``Authorization: Bearer`` (Admin API key) or ``x-api-key``
    (Harness service account or personal access token)."""
    if scheme == "x-api-key":
        return {"x-api-key": credential}
    return {"Authorization": f"Bearer {credential}"}


def kill_url(admin_url: str, workspace_id: str, flag: str, environment: str) -> str:
    return (
        f"{admin_url.rstrip('/')}/splits/ws/{quote(workspace_id, safe='')}/{quote(flag, safe='')}"
        f"/environments/{quote(environment, safe='')}/kill"
    )


def segment_url(admin_url: str, environment: str, segment: str, action: str) -> str:
    """``{admin_url}/segments/{environment}/{segment}/{action}`` (``uploadKeys?replace=false``, ``removeKeys``,
    ``keys?...``)."""
    return f"{admin_url.rstrip('/')}/segments/{quote(environment, safe='')}/{quote(segment, safe='')}/{action}"


def check_segment_name(name: Any) -> str:
    """The segment name as Split names objects; SegmentRequestError naming the rule otherwise."""
    if not isinstance(name, str) or len(name) > MAX_SEGMENT_NAME_CHARS or not _SEGMENT_NAME.fullmatch(name):
        raise SegmentRequestError(
            f"segment name {str(name)[:80]!r} is not one Split accepts: a letter first, then letters, digits,"
            f" '_' or '-', at most {MAX_SEGMENT_NAME_CHARS} characters"
        )
    return name


def segment_key_accepted(key: Any) -> bool:
    """Whether Split would take this segment key (1-250 characters, no control characters or surrounding spaces)."""
    return (
        isinstance(key, str)
        and bool(key.strip())
        and len(key) <= MAX_SEGMENT_KEY_CHARS
        and key == key.strip()
        and not _UNPRINTABLE.search(key)
    )


def check_segment_keys(keys: Sequence[Any]) -> list[str]:
    """The keys if Split would take every one; SegmentRequestError naming the first it would refuse."""
    for key in keys:
        if not segment_key_accepted(key):
            raise SegmentRequestError(
                f"segment key {str(key)[:40]!r} is not one Split accepts: 1-{MAX_SEGMENT_KEY_CHARS} characters,"
                " no control characters or surrounding spaces"
            )
    return list(keys)


def rate_limit_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds Split asks to wait (the longest of its rate-limit headers), None when it says nothing."""
    waits = []
    for name in RATE_LIMIT_HEADERS:
        try:
            waits.append(float(headers[name]))
        except (KeyError, ValueError):
            continue
    return max(waits) if waits else None


class SplitAdminClient:
    """Split's Admin API: kills a flag in an environment; adds, removes and lists a segment's keys."""

    def __init__(
        self,
        http: AdminHttp,
        admin_url: str,
        api_key: Callable[[], str],
        *,
        auth: AuthScheme = "bearer",
        attempts: int = 5,
        budget_seconds: float = 20.0,
        base_seconds: float = 0.5,
        cap_seconds: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        rng: random.Random | None = None,
    ) -> None:
        if auth not in AUTH_SCHEMES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_SCHEMES)}, not {auth!r}")
        self._http = http
        self._admin_url = admin_url
        self._api_key = api_key
        self._auth: AuthScheme = auth
        self._attempts = attempts
        self._budget = budget_seconds
        self._base = base_seconds
        self._cap = cap_seconds
        self._sleep = sleep
        self._clock_ms = clock_ms
        self._rng = rng or random.Random()

    @property
    def auth(self) -> AuthScheme:
        return self._auth

    def kill(self, workspace_id: str, flag: str, environment: str, comment: str, *, dry_run: bool) -> KillResult:
        url = kill_url(self._admin_url, workspace_id, flag, environment)
        if dry_run:
            return KillResult("dry_run", [{"at": self._clock_ms(), "outcome": "dry_run", "method": "PUT", "url": url}])
        result = self.call("PUT", url, {"comment": comment})
        for record in result.attempts:  # the verdict's kill attempts keep their own words
            if record.get("outcome") == "ok":
                record["outcome"] = "killed"
            if "next" in record:
                record["next"] = "next evaluation"
        return KillResult("killed" if result.outcome == "ok" else result.outcome, result.attempts)

    def add_segment_keys(
        self, environment: str, segment: str, keys: Sequence[str], comment: str, *, dry_run: bool = False
    ) -> SegmentUpdate:
        """Add ``keys`` to the segment in the environment (keys already in it stay; nothing is replaced)."""
        return self._update(environment, segment, "uploadKeys?replace=false", keys, comment, dry_run)

    def remove_segment_keys(
        self, environment: str, segment: str, keys: Sequence[str], comment: str, *, dry_run: bool = False
    ) -> SegmentUpdate:
        return self._update(environment, segment, "removeKeys", keys, comment, dry_run)

    def segment_keys(self, environment: str, segment: str) -> SegmentListing:
        """Every key of the segment in the environment, a page at a time; ``retry``/``refused`` on a failed page."""
        check_segment_name(segment)
        listing = SegmentListing("ok")
        offset = 0
        while True:
            url = segment_url(self._admin_url, environment, segment, f"keys?offset={offset}&limit={SEGMENT_KEYS_PAGE}")
            result = self.call("GET", url, None)
            listing.calls += 1
            page = _keys_page(result)
            if page is None:
                return SegmentListing("refused" if result.outcome == "ok" else result.outcome, [], listing.calls)
            keys, total = page
            listing.keys.extend(keys)
            offset += len(keys)
            if not keys or offset >= total:
                return listing

    def _update(
        self, environment: str, segment: str, action: str, keys: Sequence[str], comment: str, dry_run: bool
    ) -> SegmentUpdate:
        check_segment_name(segment)
        wanted = check_segment_keys(list(dict.fromkeys(keys)))
        update = SegmentUpdate("dry_run" if dry_run else "ok")
        url = segment_url(self._admin_url, environment, segment, action)
        for start in range(0, len(wanted), MAX_SEGMENT_KEYS_PER_CALL):
            batch = wanted[start : start + MAX_SEGMENT_KEYS_PER_CALL]
            if dry_run:
                update.calls.append(CallResult("dry_run", None, [{"method": "PUT", "url": url, "keys": len(batch)}]))
                continue
            result = self.call("PUT", url, {"keys": batch, "comment": comment[:MAX_COMMENT_CHARS]})
            update.calls.append(result)
            if result.outcome != "ok":
                update.outcome = result.outcome
                return update
            update.applied.extend(batch)
        return update

    def call(self, method: str, url: str, document: Any) -> CallResult:
        """One Admin API call (JSON body when ``document`` is not None), retried as the module says."""
        body = None if document is None else json.dumps(document).encode()
        headers = {**auth_headers(self._auth, self._api_key()), "Content-Type": "application/json"}
        result = CallResult("retry")
        waited = 0.0
        for attempt in range(1, self._attempts + 1):
            record: dict[str, Any] = {"at": self._clock_ms(), "attempt": attempt, "method": method, "url": url}
            result.attempts.append(record)
            try:
                answer = self._send(method, url, body, headers)
            except TransportError as exc:
                record.update(outcome="transport_error", error=exc.kind)
                wait = self._backoff(attempt)
            else:
                result.answer = answer
                record["status"] = answer.status
                if 200 <= answer.status < 300:
                    record["outcome"] = "ok"
                    result.outcome = "ok"
                    return result
                if answer.status == 429:
                    wait = rate_limit_wait(answer.headers) or self._backoff(attempt)
                    record["outcome"] = "rate_limited"
                elif answer.status in RETRYABLE:
                    wait = self._backoff(attempt)
                    record["outcome"] = "server_error"
                else:
                    record.update(outcome="refused", response=answer.body[:500])
                    result.outcome = "refused"
                    return result
            if attempt == self._attempts or waited + wait > self._budget:
                record["next"] = "next turn"
                break
            record["wait_seconds"] = round(wait, 3)
            self._sleep(wait)
            waited += wait
        return result

    def _send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        if method == "GET":
            getter = getattr(self._http, "get", None)
            if getter is None:
                raise TypeError(f"{type(self._http).__name__} cannot GET: segment listing needs a SegmentHttp")
            answer: Response = getter(url, headers)
            return answer
        return self._http.put(url, body or b"", headers)

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self._base, self._cap, None, self._rng)


def _keys_page(result: CallResult) -> tuple[list[str], int] | None:
    """(keys, total count) of a key-list page; None when the call failed or the answer is not such a page."""
    if result.outcome != "ok" or result.answer is None:
        return None
    try:
        document = json.loads(result.answer.body)
        keys = [str(item["key"]) if isinstance(item, dict) else str(item) for item in document["keys"]]
        total = int(document.get("count", len(keys)))
    except (ValueError, KeyError, TypeError):
        return None
    return keys, total
