"""Split's Admin API kill: ``PUT {admin_url}/splits/ws/{workspace}/{flag}/environments/{environment}/kill``.

``Authorization: Bearer <Admin API key>`` (a Secrets Manager secret; the key needs the API_ALL_GRANTED or
API_FEATURE_FLAG_EDITOR role). The effect: SDKs serve the flag's default treatment with label ``killed``; the
impressions that follow are the confirmation (:mod:`flagbridge.oracle.service`).

:meth:`SplitAdminClient.kill` makes one kill request, retried within a time budget, and returns every attempt:

* 2xx: killed. A kill of a flag already killed is also a success (the API is a state change, not a counter);
* 429: waits what Split says (``X-RateLimit-Reset-Seconds-Org``, ``-IP``, or ``Retry-After``; the longest), then
  retries, unless the wait exceeds the budget: then the outcome is ``retry`` and the next evaluation tries again;
* 5xx, 408 and transport errors (timeouts, refused or dropped connections): exponential backoff with full
  jitter, then ``retry``;
* any other 4xx (wrong key, unknown flag or workspace): ``refused``, never retried automatically.

Idempotency (never two kills for one FAIL) is the caller's claim in the verdict store, not this client's.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

from flagbridge.backoff import backoff_delay
from flagbridge.errors import FlagbridgeError

Outcome = Literal["killed", "retry", "refused", "dry_run"]
RETRYABLE = frozenset({408, 425, 500, 502, 503, 504})
RATE_LIMIT_HEADERS = ("x-ratelimit-reset-seconds-org", "x-ratelimit-reset-seconds-ip", "retry-after")


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: str


class AdminTransportError(FlagbridgeError):
    """No answer: timeout, refused or dropped connection."""


class AdminHttp(Protocol):
    def put(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer: ...


class Urllib3AdminHttp:
    """AdminHttp over urllib3 (shipped with botocore): timeouts, no implicit retries."""

    def __init__(self, connect_timeout: float = 3.0, read_timeout: float = 10.0) -> None:
        import urllib3

        self._urllib3 = urllib3
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout), retries=False, maxsize=2
        )

    def put(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        try:
            response = self._pool.request("PUT", url, body=body, headers=dict(headers), preload_content=True)
        except self._urllib3.exceptions.HTTPError as exc:
            raise AdminTransportError(type(exc).__name__) from exc
        return HttpAnswer(
            response.status, {k.lower(): v for k, v in response.headers.items()}, response.data.decode(errors="replace")
        )


@dataclass
class KillResult:
    outcome: Outcome
    attempts: list[dict[str, Any]] = field(default_factory=list)


def kill_url(admin_url: str, workspace_id: str, flag: str, environment: str) -> str:
    return (
        f"{admin_url.rstrip('/')}/splits/ws/{quote(workspace_id, safe='')}/{quote(flag, safe='')}"
        f"/environments/{quote(environment, safe='')}/kill"
    )


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
    """Kills a flag in an environment through Split's Admin API."""

    def __init__(
        self,
        http: AdminHttp,
        admin_url: str,
        api_key: Callable[[], str],
        *,
        attempts: int = 5,
        budget_seconds: float = 20.0,
        base_seconds: float = 0.5,
        cap_seconds: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self._admin_url = admin_url
        self._api_key = api_key
        self._attempts = attempts
        self._budget = budget_seconds
        self._base = base_seconds
        self._cap = cap_seconds
        self._sleep = sleep
        self._clock_ms = clock_ms
        self._rng = rng or random.Random()

    def kill(self, workspace_id: str, flag: str, environment: str, comment: str, *, dry_run: bool) -> KillResult:
        url = kill_url(self._admin_url, workspace_id, flag, environment)
        if dry_run:
            return KillResult("dry_run", [{"at": self._clock_ms(), "outcome": "dry_run", "method": "PUT", "url": url}])
        body = json.dumps({"comment": comment}).encode()
        headers = {"Authorization": f"Bearer {self._api_key()}", "Content-Type": "application/json"}
        result = KillResult("retry")
        waited = 0.0
        for attempt in range(1, self._attempts + 1):
            record: dict[str, Any] = {"at": self._clock_ms(), "attempt": attempt, "method": "PUT", "url": url}
            result.attempts.append(record)
            try:
                answer = self._http.put(url, body, headers)
            except AdminTransportError as exc:
                record.update(outcome="transport_error", error=str(exc))
                wait = self._backoff(attempt)
            else:
                record["status"] = answer.status
                if 200 <= answer.status < 300:
                    record["outcome"] = "killed"
                    result.outcome = "killed"
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
                record["next"] = "next evaluation"
                break
            record["wait_seconds"] = round(wait, 3)
            self._sleep(wait)
            waited += wait
        return result

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self._base, self._cap, None, self._rng)
