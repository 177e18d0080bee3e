"""Delivery of destination-queue messages to their destinations, at most once per event.

:meth:`DeliveryService.deliver_batch` takes the messages of one SQS batch and returns what became of each one.

* ``split``: the Split messages of a batch are delivered **together**, per destination. The router writes one
  message per mParticle batch, usually a handful of events, so sending each message on its own would cost a POST
  per message. Instead:

  1. every message is parsed (one that is not a destination message is *undeliverable*: :meth:`DeliveryService.process`
     keeps it in the quarantine with the reason, as before);
  2. all their event ids ``<destination>#<event dedup id>`` (stable across redeliveries and replays) are claimed in
     the delivery ledger in bulk. An id that appears in several messages of the batch (a re-routed mParticle batch)
     is claimed once and sent with the first message that has it;
  3. the claimed events of all the messages are chunked together, in order (message by message, each message's
     events in order; <= 5,000 events and < 1 MB per request, :func:`chunk_split_events`) and POSTed to
     ``/events/bulk`` one request after the other. Requests that succeed are marked sent.

  What each message becomes:

  * every one of its events sent by this delivery or before (a duplicate) -> acknowledged;
  * a request refused for good (a 4xx other than 408/425/429) -> each message with events in that request gets its
    own record in the lane's DLQ, exactly like a message delivered alone: reason ``split.refused``, Split's status
    and response, the destination, the batch key, the message and *its* events of that request. Those ids are
    marked sent (decided: never re-sent automatically) and the message is acknowledged. Events too large for any
    request go the same way (``split.event_too_large``) before anything is sent;
  * a retryable failure (timeouts, 429, 5xx after the in-invocation retries, or a failure before sending such as
    the SDK key) -> the claims of that request and of every later one are released and exactly the messages that
    still have an unsent event are reported for redelivery; messages whose events were all sent before the failure
    are acknowledged;
  * one of its ids claimed by another delivery that has not finished -> the message is retried
    (:class:`DeliveryInProgressError`), its other events are sent now.

* other types: the filtered batch of each message is claimed by ``<destination>#<batch key>`` and delivered on its
  own, as before.

Why at most once still holds: an event is POSTed only by the invocation that holds its claim; a claim is released
only for events whose request Split did not accept (never sent, failed, or refused before its DLQ record could be
written); and a message is acknowledged only when none of its events is released or still pending. So whatever
subset of the batch SQS delivers again, each event Split accepted is found ``sent`` (a duplicate) and each released
one is claimed, and sent, by exactly one later delivery.

Ids already claimed are duplicates only when they were sent: a claim still ``pending`` belongs to a delivery in
progress or to one that died before sending (a Lambda timeout), so the message is retried
(:class:`DeliveryInProgressError`) until that claim is marked sent or goes stale and can be taken over. A new request
is not started when less than ``request_reserve_seconds`` of the invocation are left (the retry policy's budget):
its claims are released and its messages retried, rather than risking a timeout between Split's 202 and the
``sent`` mark.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flagbridge.cdp.config import CdpConfig, CompiledDestination
from flagbridge.cdp.split_events import SplitEvent
from flagbridge.cdp.split_requests import SplitRequest, chunk_split_events
from flagbridge.errors import FlagbridgeError
from flagbridge.forwarding.destinations import PermanentDeliveryError, RetryableDeliveryError, Sink, SplitEventsClient
from flagbridge.forwarding.ledger import TRANSACTION_LIMIT, Ledger
from flagbridge.quarantine import Quarantine, QuarantineSource, put_message
from flagbridge.queues import MessageSender, QueueRecord

# The retry policy's default budget (RetryPolicy.budget_seconds): do not start a request with less time left.
REQUEST_RESERVE_SECONDS = 25.0

# States of a Split event id in one batch delivery.
_CLAIMED, _SENT, _DEAD_LETTERED, _RELEASED = "claimed", "sent", "dead_lettered", "released"
_DONE = frozenset({_SENT, _DEAD_LETTERED})


class UndeliverableMessageError(FlagbridgeError):
    """The message can never be delivered as it is (unknown destination, wrong shape)."""


class DeliveryInProgressError(RetryableDeliveryError):
    """Some of the message's ids are claimed by another delivery that has not finished: retry later."""


@dataclass
class DeliveryOutcome:
    destination: str
    sent: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    requests: int = 0


@dataclass
class MessageResult:
    """What became of one queue message: ``error`` unset means delivered (or decided) and to be acknowledged."""

    message_id: str
    outcome: DeliveryOutcome | None = None
    error: Exception | None = None
    quarantine_failed: bool = False
    """Undeliverable, but the quarantine write failed: redelivered, and kept next time."""

    @property
    def undeliverable(self) -> bool:
        """Never deliverable as it is: to be kept in the quarantine with the reason, then acknowledged."""
        return isinstance(self.error, UndeliverableMessageError)

    @property
    def failed(self) -> bool:
        """To be redelivered by SQS (a batch item failure)."""
        return self.error is not None and (self.quarantine_failed or not self.undeliverable)


@dataclass
class BatchOutcome:
    """The results of one SQS batch, in the order of its records."""

    results: list[MessageResult]
    requests: dict[str, int] = field(default_factory=dict)
    """Requests made per destination (a Split request carries the events of several messages)."""
    problems: list[str] = field(default_factory=list)
    """Ledger writes that failed besides the messages' own errors (counts and error types only)."""

    def failed_message_ids(self) -> list[str]:
        return [result.message_id for result in self.results if result.failed]

    def totals(self) -> dict[str, DeliveryOutcome]:
        """Per destination: events sent, duplicates and dead-lettered of the delivered messages, and requests."""
        totals: dict[str, DeliveryOutcome] = {}
        for result in self.results:
            if result.outcome is None:
                continue
            total = totals.setdefault(result.outcome.destination, DeliveryOutcome(result.outcome.destination))
            total.sent += result.outcome.sent
            total.duplicates += result.outcome.duplicates
            total.dead_lettered += result.outcome.dead_lettered
        for destination, count in self.requests.items():
            totals.setdefault(destination, DeliveryOutcome(destination)).requests = count
        return totals

    def report(self) -> None:
        """Per destination: metrics and one log line (counts only); one warning when the batch is incomplete."""
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        from flagbridge.observability import NAMESPACE, logger

        messages: Counter[str] = Counter()
        failed_messages: Counter[str] = Counter()
        for result in self.results:
            if result.outcome is not None:
                messages[result.outcome.destination] += 1
                failed_messages[result.outcome.destination] += result.failed and not result.undeliverable
        for destination, total in self.totals().items():
            for name, value in (
                ("Delivered", total.sent),
                ("DuplicatesSkipped", total.duplicates),
                ("DeadLettered", total.dead_lettered),
            ):
                if value:
                    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
                        metric.add_dimension(name="destination", value=destination)
            logger.info(
                "delivered",
                extra={
                    "destination": destination,
                    "messages": messages[destination],
                    "sent": total.sent,
                    "duplicates": total.duplicates,
                    "dead_lettered": total.dead_lettered,
                    "requests": total.requests,
                    "failed_messages": failed_messages[destination],
                },
            )
        failed = self.failed_message_ids()
        undeliverable = sum(result.undeliverable for result in self.results)
        if failed or undeliverable or self.problems:
            reasons = Counter(
                failure_reason(result.error)
                for result in self.results
                if result.error is not None and not result.undeliverable
            )
            logger.warning(
                "delivery incomplete",
                extra={
                    "records": len(self.results),
                    "failed_records": len(failed),
                    "undeliverable_records": undeliverable,
                    "reasons": dict(reasons),
                    "ledger_problems": self.problems,
                },
            )


def failure_reason(error: Exception) -> str:
    """Our delivery errors say what happened (status, counts); of anything else only the type is logged."""
    return str(error)[:200] if isinstance(error, RetryableDeliveryError) else type(error).__name__


@dataclass
class _SplitMessage:
    """A parsed Split message of the batch: its unique ledger ids in order and their events."""

    result: MessageResult
    message: dict[str, Any]
    events: dict[str, SplitEvent]
    error: Exception | None = None
    requests: int = 0


class DeliveryService:
    """Delivers destination-queue messages using injected adapters."""

    def __init__(
        self,
        cdp: CdpConfig | None,
        ledger: Ledger,
        split_client: Callable[[CompiledDestination], SplitEventsClient],
        sink: Callable[[CompiledDestination], Sink],
        dead_letter: Callable[[str], MessageSender],
        request_reserve_seconds: float = REQUEST_RESERVE_SECONDS,
        quarantine: Quarantine | None = None,
    ) -> None:
        self._configured = cdp is not None
        self._destinations: Mapping[str, CompiledDestination] = (
            {d.name: d for d in cdp.compiled_destinations} if cdp is not None else {}
        )
        self._quarantine = quarantine
        self._ledger = ledger
        self._split_client = split_client
        self._sink = sink
        self._dead_letter = dead_letter
        self._reserve_ms = request_reserve_seconds * 1000

    def process(self, records: Sequence[QueueRecord], remaining_ms: Callable[[], int] | None = None) -> BatchOutcome:
        """Deliver one SQS batch (:meth:`deliver_batch`), then keep each undeliverable message in the quarantine
        with the reason instead of cycling it to the DLQ; one whose quarantine write fails is redelivered."""
        outcome = self.deliver_batch(records, remaining_ms)
        for record, result in zip(records, outcome.results, strict=True):
            if result.undeliverable and result.error is not None:
                result.quarantine_failed = not self._keep(record, result.error)
        return outcome

    def _keep(self, record: QueueRecord, error: Exception) -> bool:
        if self._quarantine is None:
            return False
        try:
            put_message(
                self._quarantine,
                QuarantineSource.DESTINATION_DELIVERY,
                record.message_id,
                reason="undeliverable",
                detail=str(error),
                item=record.body,
            )
        except Exception as exc:  # not kept yet: redelivered, and kept next time
            from flagbridge.observability import logger

            logger.warning("quarantine write failed", extra={"error": type(exc).__name__})
            return False
        return True

    def deliver(self, body: str) -> DeliveryOutcome:
        """Deliver one message on its own; raises what :meth:`deliver_batch` reports as its error."""
        (result,) = self.deliver_batch([QueueRecord("message", body)]).results
        if result.error is not None:
            raise result.error
        assert result.outcome is not None
        return result.outcome

    def deliver_batch(
        self, records: Sequence[QueueRecord], remaining_ms: Callable[[], int] | None = None
    ) -> BatchOutcome:
        """Deliver the messages of one SQS batch; never raises for one message's sake.

        ``remaining_ms`` (the Lambda context's ``get_remaining_time_in_millis``) stops new Split requests when the
        invocation is about to time out.
        """
        batch = BatchOutcome([MessageResult(record.message_id) for record in records])
        if not self._configured:  # no message can be delivered
            for result in batch.results:
                result.error = UndeliverableMessageError("the configuration has no 'cdp' section")
            return batch
        split: dict[str, list[_SplitMessage]] = {}
        others: list[tuple[MessageResult, CompiledDestination, dict[str, Any]]] = []
        for record, result in zip(records, batch.results, strict=True):
            try:
                destination, message = self._parse(record.body)
                if destination.type == "split":
                    split.setdefault(destination.name, []).append(
                        _SplitMessage(result, message, self._split_events(destination, message))
                    )
                else:
                    others.append((result, destination, message))
            except UndeliverableMessageError as exc:
                result.error = exc
        for name, messages in split.items():
            self._deliver_split(self._destinations[name], messages, batch, remaining_ms)
        for result, destination, message in others:
            try:
                result.outcome = self._deliver_batch(destination, message)
            except Exception as exc:  # this message is retried; the others are independent
                result.error = exc
            else:
                batch.requests[destination.name] = batch.requests.get(destination.name, 0) + result.outcome.requests
        return batch

    def _parse(self, body: str) -> tuple[CompiledDestination, dict[str, Any]]:
        constants: list[str] = []

        def constant(text: str) -> float:
            constants.append(text)
            return float(text)

        try:
            message = json.loads(body, parse_constant=constant)
            name = message["destination"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UndeliverableMessageError("not a destination message") from exc
        if not isinstance(message, dict) or not isinstance(name, str):
            raise UndeliverableMessageError("not a destination message")
        destination = self._destinations.get(name)
        if destination is None:
            raise UndeliverableMessageError(f"destination {name!r} is not configured")
        if constants and destination.type == "split":  # Split bodies are strict JSON: NaN/Infinity cannot be sent
            raise UndeliverableMessageError(f"{constants[0]} is not JSON")
        if destination.type != "split":
            _check_batch_message(message)
        return destination, message

    @staticmethod
    def _split_events(destination: CompiledDestination, message: dict[str, Any]) -> dict[str, SplitEvent]:
        """The message's events by ledger id, in order (a repeated id once: its first event)."""
        items = message.get("split_events")  # the router always writes it: a message without it is no lane message
        if not isinstance(items, list):
            raise UndeliverableMessageError("split_events is missing or not a list")
        events: dict[str, SplitEvent] = {}
        for item in items:
            try:
                event = SplitEvent(
                    item["body"], item["event_index"], item["message_id"], item.get("product_index"), item["dedup_id"]
                )
            except (KeyError, TypeError, AttributeError) as exc:
                raise UndeliverableMessageError("a Split event lacks its body or ids") from exc
            if not isinstance(event.body, dict) or not isinstance(event.dedup_id, str) or not event.dedup_id:
                raise UndeliverableMessageError("a Split event lacks its body or ids")
            events.setdefault(f"{destination.name}#{event.dedup_id}", event)
        return events

    # ---- Split: the messages of one batch together ------------------------------------------------------------

    def _deliver_split(
        self,
        destination: CompiledDestination,
        messages: list[_SplitMessage],
        batch: BatchOutcome,
        remaining_ms: Callable[[], int] | None,
    ) -> None:
        owner: dict[str, _SplitMessage] = {}
        for item in messages:
            for ledger_id in item.events:
                owner.setdefault(ledger_id, item)
        ids = list(owner)
        try:
            owned_set, in_progress = self._claim_split(ids, batch)
        except Exception as exc:  # nothing was sent (what was claimed was given back): retry every message
            for item in messages:
                item.result.error = exc
            return

        state = {ledger_id: _CLAIMED for ledger_id in ids if ledger_id in owned_set}
        failure = self._send_split(destination, owner, state, batch, remaining_ms)
        for item in messages:
            _settle_split_message(destination.name, item, owner, state, in_progress, failure)

    def _claim_split(self, ids: list[str], batch: BatchOutcome) -> tuple[set[str], set[str]]:
        """(the ids this delivery claimed, the others' ids claimed by an unfinished delivery); on a ledger error,
        what was claimed is released and the error raised."""
        owned: list[str] = []
        try:
            for start in range(0, len(ids), TRANSACTION_LIMIT):
                owned.extend(self._ledger.claim(ids[start : start + TRANSACTION_LIMIT]))
            owned_set = set(owned)
            others = [ledger_id for ledger_id in ids if ledger_id not in owned_set]
            in_progress = set(self._ledger.pending(others)) if others else set()
        except Exception:
            self._release(owned, batch)
            raise
        return owned_set, in_progress

    def _send_split(
        self,
        destination: CompiledDestination,
        owner: dict[str, _SplitMessage],
        state: dict[str, str],
        batch: BatchOutcome,
        remaining_ms: Callable[[], int] | None,
    ) -> Exception | None:
        """Send the claimed events (``state``, updated in place); returns the error that stopped the sending."""
        name = destination.name
        if not state:
            return None
        options = destination.spec.options
        chunks = chunk_split_events(
            [owner[ledger_id].events[ledger_id] for ledger_id in state],
            max_events=getattr(options, "max_events_per_request", 5000),
            max_bytes=getattr(options, "max_request_bytes", 1_000_000),
        )
        if chunks.rejections:
            self._dead_letter_too_large(name, chunks.requests, owner, state, batch)

        failure: Exception | None = None
        requests = 0
        client: SplitEventsClient | None = None
        for request in chunks.requests:
            request_ids = [f"{name}#{event.dedup_id}" for event in request.events]
            if remaining_ms is not None and remaining_ms() < self._reserve_ms:
                failure = RetryableDeliveryError("too little time left in the invocation for another request")
                break
            owners = _by_owner(request_ids, owner)
            try:
                client = client or self._split_client(destination)
                client.send(request.body)
            except PermanentDeliveryError as exc:
                failure = self._dead_letter_refused(name, exc, owners)
                if failure is not None:  # refused, so not sent: released below with the later requests
                    break
                state.update(dict.fromkeys(request_ids, _DEAD_LETTERED))
            except Exception as exc:  # retryable, or failed before sending (e.g. the SDK key): let the retry claim them
                failure = exc
                break
            else:
                state.update(dict.fromkeys(request_ids, _SENT))
            requests += 1
            for item, _ in owners:
                item.requests += 1
            if not self._mark_sent(request_ids, batch):
                # The ledger is failing: stop before sending more whose "sent" mark could be lost as well.
                failure = RetryableDeliveryError("the delivery ledger could not record sent events")
                break
        if requests:
            batch.requests[name] = batch.requests.get(name, 0) + requests
        if failure is not None:
            unsent = [ledger_id for ledger_id, status in state.items() if status == _CLAIMED]
            self._release(unsent, batch)
            state.update(dict.fromkeys(unsent, _RELEASED))
        return failure

    def _dead_letter_too_large(
        self,
        name: str,
        requests: Sequence[SplitRequest],
        owner: dict[str, _SplitMessage],
        state: dict[str, str],
        batch: BatchOutcome,
    ) -> None:
        """Keep the events no request can carry in the DLQ (decided), or give them back when the DLQ refuses."""
        requested = {f"{name}#{event.dedup_id}" for request in requests for event in request.events}
        too_large = [ledger_id for ledger_id in state if ledger_id not in requested]
        for item, item_ids in _by_owner(too_large, owner):
            bodies = [item.events[ledger_id].body for ledger_id in item_ids]
            record = _record(name, item.message, "split.event_too_large", None, "", bodies)
            try:
                self._send_dead_letters(name, [record])
            except Exception as exc:  # never sent: give them back, retry that message
                item.error = exc
                self._release(item_ids, batch)
                state.update(dict.fromkeys(item_ids, _RELEASED))
                continue
            # decided (kept in the DLQ): marked so that a redelivery neither waits for nor re-sends them
            state.update(dict.fromkeys(item_ids, _DEAD_LETTERED))
            self._mark_sent(item_ids, batch)

    def _dead_letter_refused(
        self, name: str, exc: PermanentDeliveryError, owners: list[tuple[_SplitMessage, list[str]]]
    ) -> Exception | None:
        """Keep a request Split refused in the DLQ, one record per message; the DLQ's error when it refuses."""
        records = [
            _record(
                name,
                item.message,
                "split.refused",
                exc.status,
                exc.response_body,
                [item.events[ledger_id].body for ledger_id in item_ids],
            )
            for item, item_ids in owners
        ]
        try:
            self._send_dead_letters(name, records)
        except Exception as dlq_exc:
            return dlq_exc
        return None

    def _mark_sent(self, ids: list[str], batch: BatchOutcome) -> bool:
        try:
            self._ledger.mark_sent(ids)
        except Exception as exc:  # sent (or decided) all the same: acknowledged, never re-sent by a redelivery
            batch.problems.append(f"{len(ids)} sent id(s) stay pending until stale: mark_sent {type(exc).__name__}")
            return False
        return True

    def _release(self, ids: list[str], batch: BatchOutcome) -> None:
        if not ids:
            return
        try:
            self._ledger.release(ids)
        except Exception as exc:  # their messages are retried and wait until the claims go stale
            batch.problems.append(f"{len(ids)} unsent id(s) stay pending until stale: release {type(exc).__name__}")

    # ---- other destinations: one message at a time ------------------------------------------------------------

    def _deliver_batch(self, destination: CompiledDestination, message: dict[str, Any]) -> DeliveryOutcome:
        outcome = DeliveryOutcome(destination.name)
        ledger_id = f"{destination.name}#{message.get('batch_key')}"
        if not self._ledger.claim([ledger_id]):
            if self._ledger.pending([ledger_id]):
                raise DeliveryInProgressError(f"{ledger_id} is claimed by an unfinished delivery")
            outcome.duplicates = 1
            return outcome
        try:
            self._sink(destination).deliver(message["batch"])
        except PermanentDeliveryError as exc:
            record = _record(destination.name, message, "destination.refused", exc.status, exc.response_body, [])
            self._send_dead_letters(destination.name, [record])
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

    def _send_dead_letters(self, destination: str, records: list[str]) -> None:
        self._dead_letter(destination).send_bodies(records)


def _check_batch_message(message: dict[str, Any]) -> None:
    """What the router always writes for a non-Split lane: without its ``batch_key`` the ledger would take the
    message for another one's duplicate and drop it; without its ``batch`` it could never be sent."""
    batch_key = message.get("batch_key")
    if not isinstance(batch_key, str) or not batch_key:
        raise UndeliverableMessageError("the message has no batch_key (the delivery ledger's key)")
    if "batch" not in message:
        raise UndeliverableMessageError("the message has no batch to send")
    if not isinstance(message["batch"], dict):
        raise UndeliverableMessageError("the message's batch is not a JSON object (an mParticle batch)")


def _settle_split_message(
    name: str,
    item: _SplitMessage,
    owner: dict[str, _SplitMessage],
    state: dict[str, str],
    in_progress: set[str],
    failure: Exception | None,
) -> None:
    """A Split message's outcome from its events' states; its error when one of them is unsent or pending."""
    outcome = DeliveryOutcome(name, requests=item.requests)
    unsent = pending = 0
    for ledger_id in item.events:
        status = state.get(ledger_id)
        if status is None:  # claimed elsewhere: in progress, or sent before
            if ledger_id in in_progress:
                pending += 1
            else:
                outcome.duplicates += 1
        elif status not in _DONE:
            unsent += 1
        elif owner[ledger_id] is not item:  # sent (or decided) with an earlier message of this batch
            outcome.duplicates += 1
        elif status == _SENT:
            outcome.sent += 1
        else:
            outcome.dead_lettered += 1
    item.result.outcome = outcome
    if unsent:
        item.result.error = item.error or failure or RetryableDeliveryError(f"{unsent} event(s) not sent")
    elif pending:
        item.result.error = DeliveryInProgressError(f"{pending} event(s) are claimed by an unfinished delivery")


def _by_owner(ids: list[str], owner: dict[str, _SplitMessage]) -> list[tuple[_SplitMessage, list[str]]]:
    """``ids`` grouped by the message that sends them, in order of first appearance."""
    groups: dict[int, tuple[_SplitMessage, list[str]]] = {}
    for ledger_id in ids:
        item = owner[ledger_id]
        groups.setdefault(id(item), (item, []))[1].append(ledger_id)
    return list(groups.values())


def _record(
    destination: str,
    message: dict[str, Any],
    reason: str,
    status: int | None,
    response: str,
    events: list[dict[str, Any]],
) -> str:
    """A lane-DLQ record: why, Split's (or the destination's) answer, the message, and the events concerned."""
    record: dict[str, Any] = {
        "reason": reason,
        "status": status,
        "response": response,
        "destination": destination,
        "batch_key": message.get("batch_key"),
        "message": message,
    }
    if events:
        record["events"] = events
    return json.dumps(record, separators=(",", ":"))
