"""Results flow back through the bridge: each response becomes a tester's mParticle custom event.

Every sent case is reported as one ``custom_event`` named ``flagbridge_test_request``, in a batch with
the case's tester as ``user_identities`` (``customer_id``, plus ``email`` when the pool has one), posted
to the bridge's **own** mParticle Events API ingest (``POST <bridge>/mparticle/v2/bulkevents``, HTTP
Basic with the bridge's mParticle key and secret). The router then does what it does for any tester:
Split gets the events (``test_only``), the oracle lane gets them, analytics never do.

Event attributes (``custom_attributes``): ``run_id``, ``case_id``, ``route``, ``method``, ``status``
(0 when nothing answered), ``latency_ms``, ``outcome`` (``ok``, ``client_error``, ``server_error``,
``transport_error``), ``error`` (only then), ``mutations`` (count), ``mutated_elements`` and ``attacks``
(comma-separated, cut to mParticle's 4,096 characters), ``plan_hash``, and ``oracle_test`` when the plan
names one. ``source_message_id`` is ``<run id>-<case id>`` and ``source_request_id`` is unique per batch,
so a re-posted batch is deduplicated by the bridge.

Limits kept: one user per batch, at most 100 events per batch, at most 100 batches and 256 KB per bulk
request (mParticle's). A bulk request is retried on 429 (``Retry-After``) and 5xx; what still fails is kept
in :attr:`ResultReporter.undelivered` for the caller to write out, never dropped silently.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flagbridge.traffic.generator import Case, WireRequest
from flagbridge.traffic.manifest import Outcome

EVENT_NAME = "flagbridge_test_request"
MAX_EVENTS_PER_BATCH = 100
MAX_BATCHES_PER_REQUEST = 100
MAX_REQUEST_BYTES = 256_000
MAX_ATTRIBUTE_CHARS = 4096

Post = Callable[[WireRequest], Outcome]


def outcome_class(outcome: Outcome) -> str:
    if outcome.error is not None or outcome.status is None:
        return "transport_error"
    if outcome.status >= 500:
        return "server_error"
    if outcome.status >= 400:
        return "client_error"
    return "ok"


def _joined(values: list[str]) -> str:
    text = ",".join(dict.fromkeys(values))
    return text if len(text) <= MAX_ATTRIBUTE_CHARS else text[: MAX_ATTRIBUTE_CHARS - 1] + "…"


def result_event(
    case: Case, outcome: Outcome, run_id: str, plan_hash: str, timestamp_ms: int, oracle_test: str | None = None
) -> dict[str, Any]:
    """The ``flagbridge_test_request`` event for one sent case."""
    attributes: dict[str, Any] = {
        "run_id": run_id,
        "case_id": case.case_id,
        "route": case.route,
        "method": case.request.method,
        "status": outcome.status or 0,
        "latency_ms": round(outcome.latency_ms, 3),
        "outcome": outcome_class(outcome),
        "mutations": len(case.mutations),
        "mutated_elements": _joined([mutation.element for mutation in case.mutations]),
        "attacks": _joined([mutation.attack for mutation in case.mutations]),
        "plan_hash": plan_hash,
    }
    if outcome.error is not None:
        attributes["error"] = outcome.error[:MAX_ATTRIBUTE_CHARS]
    if oracle_test:
        attributes["oracle_test"] = oracle_test
    return {
        "event_type": "custom_event",
        "data": {
            "event_name": EVENT_NAME,
            "custom_event_type": "other",
            "timestamp_unixtime_ms": timestamp_ms,
            "source_message_id": f"{run_id}-{case.case_id}",
            "custom_attributes": attributes,
        },
    }


@dataclass
class ResultReporter:
    """Buffers result events per tester and posts them to the bridge in bulk batches."""

    events_api: str  # the bridge's Events API base, e.g. http://127.0.0.1:3000/mparticle/v2
    api_key: str
    api_secret: str = field(repr=False)
    post: Post | None = None
    environment: str = "production"
    oracle_test: str | None = None
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    sleep: Callable[[float], None] = time.sleep
    max_attempts: int = 4
    undelivered: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    """The bridge's answer to each undelivered batch (same order): ``{"status", "body"}`` or ``{"error"}``."""
    delivered_events: int = 0
    _pending: dict[tuple[str, str | None], list[dict[str, Any]]] = field(default_factory=dict)
    _ready: list[dict[str, Any]] = field(default_factory=list)
    _sequence: int = 0

    def add(self, case: Case, outcome: Outcome, run_id: str, plan_hash: str) -> None:
        key = (case.tester.key, case.tester.email)
        events = self._pending.setdefault(key, [])
        events.append(result_event(case, outcome, run_id, plan_hash, self.clock_ms(), self.oracle_test))
        if len(events) >= MAX_EVENTS_PER_BATCH:
            self._ready.append(self._batch(key, events, run_id))
            del self._pending[key]

    def _batch(self, key: tuple[str, str | None], events: list[dict[str, Any]], run_id: str) -> dict[str, Any]:
        self._sequence += 1
        identities = {"customer_id": key[0]}
        if key[1]:
            identities["email"] = key[1]
        return {
            "environment": self.environment,
            "source_request_id": f"{run_id}-results-{self._sequence}",
            "user_identities": identities,
            "events": events,
        }

    def flush(self, run_id: str) -> None:
        """Post every buffered event (called between run batches and at the end)."""
        for key, events in self._pending.items():
            self._ready.append(self._batch(key, events, run_id))
        self._pending.clear()
        ready, self._ready = self._ready, []
        chunk: list[dict[str, Any]] = []
        size = 2
        for batch in ready:
            encoded = len(json.dumps(batch, separators=(",", ":")))
            if chunk and (len(chunk) >= MAX_BATCHES_PER_REQUEST or size + encoded + 1 > MAX_REQUEST_BYTES):
                self._post(chunk)
                chunk, size = [], 2
            chunk.append(batch)
            size += encoded + 1
        if chunk:
            self._post(chunk)

    def _request(self, batches: list[dict[str, Any]]) -> WireRequest:
        parts = urlsplit(self.events_api.rstrip("/") + "/bulkevents")
        body = json.dumps(batches, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        credentials = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode("ascii")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        headers = (
            ("Host", parts.netloc.encode("ascii")),
            ("Authorization", f"Basic {credentials}".encode("ascii")),
            ("Content-Type", b"application/json"),
            ("Accept", b"application/json"),
            ("User-Agent", b"flagbridge-traffic/1"),
            ("Content-Length", str(len(body)).encode("ascii")),
        )
        return WireRequest("POST", parts.scheme, parts.hostname or "", port, parts.path, headers, body)

    def _post(self, batches: list[dict[str, Any]]) -> None:
        if self.post is None:
            raise RuntimeError("ResultReporter.post is not set")
        request = self._request(batches)
        from flagbridge.traffic.sender import retry_after_seconds

        for attempt in range(self.max_attempts):
            outcome = self.post(request)
            if outcome.status is not None and 200 <= outcome.status < 300:
                self.delivered_events += sum(len(batch["events"]) for batch in batches)
                return
            if outcome.status is not None and outcome.status < 500 and outcome.status != 429:
                break  # refused (400/401/403/413): retrying will not help
            if attempt + 1 < self.max_attempts:
                delay = retry_after_seconds(outcome, 2.0**attempt) if outcome.status == 429 else 0.5 * 2**attempt
                self.sleep(delay)
        answer = (
            {"error": outcome.error} if outcome.status is None else {"status": outcome.status, "body": outcome.excerpt}
        )
        self.undelivered.extend(batches)
        self.answers.extend(answer for _ in batches)

    def undelivered_with_answers(self) -> list[dict[str, Any]]:
        """Each undelivered batch beside the bridge's answer to it: what a person needs to see why, and resend."""
        return [
            {"answer": answer, "batch": batch} for answer, batch in zip(self.answers, self.undelivered, strict=False)
        ]

    def refusal(self) -> str | None:
        """The bridge's last answer to an undelivered batch, as one phrase (``HTTP 401: {...}``), or None."""
        if not self.answers:
            return None
        answer = self.answers[-1]
        if "error" in answer:
            return f"no answer ({answer['error']})"
        body = " ".join(str(answer.get("body") or "").split())
        return f"HTTP {answer['status']}" + (f": {body[:200]}" if body else "")

    def counts(self) -> Mapping[str, int]:
        return {
            "delivered_events": self.delivered_events,
            "undelivered_events": sum(len(batch["events"]) for batch in self.undelivered),
        }
