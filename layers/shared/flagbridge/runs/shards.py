"""Shards: a run's cases cut into ranges, one SQS message each, sent ten to a ``SendMessageBatch``.

A shard message is ``{"v": 1, "run_id": ..., "shard": n, "first": i, "count": c, "seed": s}``: the case
range and the run's seed (a worker checks both against the run's spec, so a message can never make a worker
send cases that are not the run's). :func:`parse_shard_message` refuses anything else with a reason, and
the worker quarantines it.

A run until decided also puts **look** messages on the queue, sent with a delay (``DelaySeconds``) once a round's
shards are finished: ``{"v": 1, "kind": "look", "run_id": ..., "round": r, "look_id": ..., "results_end_ms": t,
"first_look_ms": f}``: look at the verdict of round ``r`` (whose last result was taken at ``t``; the first look
at it was sent at ``f``) and start the next round or end the run (:mod:`flagbridge.runs.rounds`).
:func:`parse_message` reads either kind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flagbridge.errors import FlagbridgeError
from flagbridge.runs.spec import RUN_ID, RunSpec

SQS_BATCH = 10
MESSAGE_VERSION = 1


class ShardMessageError(FlagbridgeError):
    """A shard message that can never be processed; ``reason`` is a short code for the quarantine."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ShardMessage:
    run_id: str
    shard: int
    first: int
    count: int
    seed: int

    def body(self) -> str:
        return json.dumps(
            {
                "v": MESSAGE_VERSION,
                "run_id": self.run_id,
                "shard": self.shard,
                "first": self.first,
                "count": self.count,
                "seed": self.seed,
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True, slots=True)
class LookMessage:
    run_id: str
    round: int
    look_id: str
    results_end_ms: int
    first_look_ms: int

    def body(self) -> str:
        return json.dumps(
            {
                "v": MESSAGE_VERSION,
                "kind": "look",
                "run_id": self.run_id,
                "round": self.round,
                "look_id": self.look_id,
                "results_end_ms": self.results_end_ms,
                "first_look_ms": self.first_look_ms,
            },
            separators=(",", ":"),
        )


def shard_messages(spec: RunSpec, shards: Sequence[int] | None = None) -> list[ShardMessage]:
    """The messages of ``shards`` (default: all of the run's), in order."""
    wanted = range(spec.shards) if shards is None else shards
    messages = []
    for shard in wanted:
        first, count = spec.shard_range(shard)
        messages.append(ShardMessage(spec.run_id, shard, first, count, spec.seed))
    return messages


def sqs_requests(shards: int) -> int:
    """``SendMessageBatch`` calls to enqueue a run (no retries): ceil(shards / 10)."""
    return math.ceil(shards / SQS_BATCH)


def _int(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**63:
        raise ShardMessageError("invalid_field", f"'{name}' must be a whole number >= 0")
    return value


def _document(body: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        raise ShardMessageError("not_json", "the message body is not JSON") from None
    if not isinstance(document, dict):
        raise ShardMessageError("not_an_object", "the message body is not a JSON object")
    return document


def parse_message(body: str) -> ShardMessage | LookMessage:
    """A shard or a look message from its SQS body; ShardMessageError (the reason to quarantine it) otherwise."""
    document = _document(body)
    if document.get("kind") != "look":
        return _shard_message(document)
    if document.get("v") != MESSAGE_VERSION:
        raise ShardMessageError("unknown_version", f"'v' must be {MESSAGE_VERSION}")
    unknown = sorted(set(document) - {"v", "kind", "run_id", "round", "look_id", "results_end_ms", "first_look_ms"})
    if unknown:
        raise ShardMessageError("unknown_field", f"unknown field {unknown[0][:40]!r}")
    run_id, look_id = document.get("run_id"), document.get("look_id")
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise ShardMessageError("invalid_run_id", "'run_id' is not a run id")
    if not isinstance(look_id, str) or not RUN_ID.match(look_id):
        raise ShardMessageError("invalid_field", "'look_id' is not a look id")
    return LookMessage(
        run_id,
        _int(document, "round"),
        look_id,
        _int(document, "results_end_ms"),
        _int(document, "first_look_ms"),
    )


def parse_shard_message(body: str) -> ShardMessage:
    """A shard message from its SQS body; ShardMessageError (with the reason to quarantine it) otherwise."""
    return _shard_message(_document(body))


def _shard_message(document: dict[str, Any]) -> ShardMessage:
    if document.get("v") != MESSAGE_VERSION:
        raise ShardMessageError("unknown_version", f"'v' must be {MESSAGE_VERSION}")
    unknown = sorted(set(document) - {"v", "run_id", "shard", "first", "count", "seed"})
    if unknown:
        raise ShardMessageError("unknown_field", f"unknown field {unknown[0][:40]!r}")
    run_id = document.get("run_id")
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise ShardMessageError("invalid_run_id", "'run_id' is not a run id")
    return ShardMessage(
        run_id, _int(document, "shard"), _int(document, "first"), _int(document, "count"), _int(document, "seed")
    )


def check_against(message: ShardMessage, spec: RunSpec) -> None:
    """The message must name one of the run's shards exactly (range and seed)."""
    if message.shard >= spec.shards:
        raise ShardMessageError("unknown_shard", f"the run has {spec.shards} shards, not shard {message.shard}")
    if (message.first, message.count) != spec.shard_range(message.shard) or message.seed != spec.seed:
        raise ShardMessageError("range_mismatch", "the case range or seed differs from the run's")
