"""Delivery of one destination-queue message to its destination, at most once per event.

* ``split``: the message's Split events are claimed in the delivery ledger by
  ``<destination>#<event dedup id>`` (ids stable across redeliveries and replays), the claimed ones are
  chunked (<= 5,000 events and < 1 MB per request) and POSTed to ``/events/bulk``. Requests that
  succeed are marked sent; on a retryable failure the unsent claims are released and the message is
  retried by SQS (then the lane's DLQ); a permanent 4xx sends the events with Split's response to the
  lane's DLQ and the message is acknowledged.
* other types: the filtered batch is claimed by ``<destination>#<batch key>`` and delivered once.

Ids already claimed are duplicates only when they were sent: a claim still ``pending`` belongs to a
delivery in progress or to one that died before sending (a Lambda timeout), so the message is retried
(:class:`DeliveryInProgress`) until that claim is marked sent or goes stale and can be taken over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flagbridge.cdp.config import CdpConfig, CompiledDestination
from flagbridge.cdp.split_events import SplitEvent
from flagbridge.cdp.split_requests import chunk_split_events
from flagbridge.forwarding.destinations import PermanentDeliveryError, RetryableDeliveryError, Sink, SplitEventsClient
from flagbridge.forwarding.ledger import Ledger
from flagbridge.queues import MessageSender


class UndeliverableMessage(Exception):
    """The message can never be delivered as it is (unknown destination, wrong shape)."""


class DeliveryInProgress(RetryableDeliveryError):
    """Some of the message's ids are claimed by another delivery that has not finished: retry later."""


@dataclass
class DeliveryOutcome:
    destination: str
    sent: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    requests: int = 0


class DeliveryService:
    """Delivers destination-queue messages using injected adapters."""

    def __init__(
        self,
        cdp: CdpConfig,
        ledger: Ledger,
        split_client: Callable[[CompiledDestination], SplitEventsClient],
        sink: Callable[[CompiledDestination], Sink],
        dead_letter: Callable[[str], MessageSender],
    ) -> None:
        self._destinations: Mapping[str, CompiledDestination] = {d.name: d for d in cdp.compiled_destinations}
        self._ledger = ledger
        self._split_client = split_client
        self._sink = sink
        self._dead_letter = dead_letter

    def deliver(self, body: str) -> DeliveryOutcome:
        try:
            message = json.loads(body)
            name = message["destination"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UndeliverableMessage("not a destination message") from exc
        destination = self._destinations.get(name)
        if destination is None:
            raise UndeliverableMessage(f"destination {name!r} is not configured")
        if destination.type == "split":
            return self._deliver_split(destination, message)
        return self._deliver_batch(destination, message)

    def _deliver_split(self, destination: CompiledDestination, message: dict[str, Any]) -> DeliveryOutcome:
        outcome = DeliveryOutcome(destination.name)
        events = [
            SplitEvent(e["body"], e["event_index"], e["message_id"], e.get("product_index"), e["dedup_id"])
            for e in message.get("split_events", [])
        ]
        ids = {f"{destination.name}#{event.dedup_id}": event for event in events}
        owned = set(self._ledger.claim(list(ids)))
        others = [ledger_id for ledger_id in ids if ledger_id not in owned]
        in_progress = self._ledger.pending(others) if others else []
        outcome.duplicates = len(others) - len(in_progress)
        to_send = [event for ledger_id, event in ids.items() if ledger_id in owned]
        if to_send:
            self._send_split(destination, message, to_send, outcome)
        if in_progress:
            raise DeliveryInProgress(f"{len(in_progress)} event(s) are claimed by an unfinished delivery")
        return outcome

    def _send_split(
        self,
        destination: CompiledDestination,
        message: dict[str, Any],
        to_send: list[SplitEvent],
        outcome: DeliveryOutcome,
    ) -> None:
        options = destination.spec.options
        chunks = chunk_split_events(
            to_send,
            max_events=getattr(options, "max_events_per_request", 5000),
            max_bytes=getattr(options, "max_request_bytes", 1_000_000),
        )
        client = self._split_client(destination)
        pending = [f"{destination.name}#{event.dedup_id}" for event in to_send]
        if chunks.rejections:
            too_large = [r.body for r in chunks.rejections if r.body is not None]
            self._to_dead_letter(destination.name, message, "split.event_too_large", None, "", too_large)
            outcome.dead_lettered += len(too_large)
            # decided (kept in the DLQ): marked so that a redelivery neither waits for nor re-sends them
            requested = {f"{destination.name}#{event.dedup_id}" for r in chunks.requests for event in r.events}
            self._ledger.mark_sent([ledger_id for ledger_id in pending if ledger_id not in requested])
            pending = [ledger_id for ledger_id in pending if ledger_id in requested]
        for request in chunks.requests:
            request_ids = [f"{destination.name}#{event.dedup_id}" for event in request.events]
            try:
                client.send(request.body)
            except PermanentDeliveryError as exc:
                self._to_dead_letter(
                    destination.name,
                    message,
                    "split.refused",
                    exc.status,
                    exc.response_body,
                    [event.body for event in request.events],
                )
                outcome.dead_lettered += request.count
                self._ledger.mark_sent(request_ids)  # decided: kept in the DLQ, never re-sent automatically
            except Exception:  # retryable, or failed before sending (e.g. the SDK key): let the retry claim them
                self._ledger.release(pending)
                raise
            else:
                self._ledger.mark_sent(request_ids)
                outcome.sent += request.count
            outcome.requests += 1
            pending = [ledger_id for ledger_id in pending if ledger_id not in set(request_ids)]

    def _deliver_batch(self, destination: CompiledDestination, message: dict[str, Any]) -> DeliveryOutcome:
        outcome = DeliveryOutcome(destination.name)
        ledger_id = f"{destination.name}#{message.get('batch_key')}"
        if not self._ledger.claim([ledger_id]):
            if self._ledger.pending([ledger_id]):
                raise DeliveryInProgress(f"{ledger_id} is claimed by an unfinished delivery")
            outcome.duplicates = 1
            return outcome
        try:
            self._sink(destination).deliver(message["batch"])
        except PermanentDeliveryError as exc:
            self._to_dead_letter(destination.name, message, "destination.refused", exc.status, exc.response_body, [])
            self._ledger.mark_sent([ledger_id])
            outcome.dead_lettered = 1
            return outcome
        except Exception:
            self._ledger.release([ledger_id])
            raise
        self._ledger.mark_sent([ledger_id])
        outcome.sent = 1
        outcome.requests = 1
        return outcome

    def _to_dead_letter(
        self,
        destination: str,
        message: dict[str, Any],
        reason: str,
        status: int | None,
        response: str,
        events: list[dict[str, Any]],
    ) -> None:
        record = {
            "reason": reason,
            "status": status,
            "response": response,
            "destination": destination,
            "batch_key": message.get("batch_key"),
            "message": message,
        }
        if events:
            record["events"] = events
        self._dead_letter(destination).send_bodies([json.dumps(record, separators=(",", ":"))])
