"""The impressions processor: SQS messages of queued impressions -> profile updates.

Per SQS batch: decode every message, group impressions by (user, flag), bulk-read the current states
and test-user marks, merge in memory, then write each changed (user, flag) once, in parallel. So the
number of DynamoDB write requests never exceeds the distinct (user, flag) pairs of the batch.

Partial failures: if a pair cannot be written, every message that contributed to it is reported as a
batch item failure and redelivered; pairs already written recognise the redelivered impressions as
duplicates, so nothing is counted twice. Messages that can never be processed (not JSON, wrong shape)
go to the quarantine with the reason instead of looping to the DLQ.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from flagbridge.config import BridgeConfig
from flagbridge.errors import StoreError
from flagbridge.impressions.models import ImpressionMessage, QueuedImpression
from flagbridge.impressions.testers import RuleMatcher
from flagbridge.profiles.model import FlagState, TestMark, merge_impressions
from flagbridge.profiles.store import ConcurrentUpdateError, ProfileStore
from flagbridge.quarantine import Quarantine

QUARANTINE_SOURCE = "impressions-processor"
MAX_CONFLICT_RETRIES = 8


@dataclass(frozen=True)
class QueueRecord:
    """The parts of an SQS record the processor uses."""

    message_id: str
    body: str


@dataclass
class ProcessResult:
    """Outcome of one batch: failed message ids (for ``batchItemFailures``) and counters for metrics."""

    failed_message_ids: list[str] = field(default_factory=list)
    impressions: int = 0
    new_impressions: int = 0
    duplicates: int = 0
    pairs: int = 0
    writes: int = 0
    conflicts: int = 0
    quarantined_messages: int = 0
    users_marked: int = 0

    def batch_response(self) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in self.failed_message_ids]}


@dataclass
class _Group:
    user_id: str
    flag: str
    impressions: list[QueuedImpression] = field(default_factory=list)
    message_ids: set[str] = field(default_factory=set)


_T = TypeVar("_T")
_R = TypeVar("_R")


def _run_concurrently(fn: Callable[[_T], _R], items: list[_T], max_workers: int) -> dict[_T, _R | Exception]:
    """``{item: fn(item) or the exception it raised}``, on up to ``max_workers`` threads.

    The store calls are I/O, so the pairs are written in parallel; each worker takes the next pending item
    (rather than one pool task per item, whose bookkeeping would cost more than a fast write).
    """
    outcomes: dict[_T, _R | Exception] = {}
    pending = iter(items)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                item = next(pending, _DONE)
            if item is _DONE:
                return
            try:
                outcomes[item] = fn(item)
            except Exception as exc:
                outcomes[item] = exc

    workers = min(max_workers, len(items))
    if workers <= 1:
        work()
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(work) for _ in range(workers)]:
                future.result()
    return {item: outcomes[item] for item in items}


_DONE: Any = object()


class ImpressionProcessor:
    """Applies batches of queued impressions to the profile store."""

    def __init__(
        self,
        store: ProfileStore,
        quarantine: Quarantine,
        config: BridgeConfig,
        clock_ms: Callable[[], int] | None = None,
        max_workers: int = 16,
    ) -> None:
        self._store = store
        self._quarantine = quarantine
        self._config = config
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._max_workers = max_workers

    def process(self, records: Sequence[QueueRecord]) -> ProcessResult:
        result = ProcessResult()
        groups: dict[tuple[str, str], _Group] = {}
        wanted_marks: dict[str, tuple[int, str]] = {}  # user -> (time, rule) of the earliest matching impression
        undecodable_failed: set[str] = set()
        match = RuleMatcher(self._config.test_users).match
        for record in records:
            try:
                message = self._decode(record, result)
            except StoreError:
                undecodable_failed.add(record.message_id)  # quarantine unavailable: let SQS redeliver
                continue
            if message is None:
                continue
            message_id = record.message_id
            result.impressions += len(message.impressions)
            for impression in message.impressions:
                user_id = f"{impression.traffic_type}#{impression.key}"  # QueuedImpression.user_id
                pair = (user_id, impression.flag)
                group = groups.get(pair)
                if group is None:
                    group = groups[pair] = _Group(user_id, impression.flag)
                group.impressions.append(impression)
                group.message_ids.add(message_id)
                rule = match(impression)
                if rule is not None:
                    candidate = (impression.time, rule)
                    current = wanted_marks.get(user_id)
                    if current is None or candidate < current:
                        wanted_marks[user_id] = candidate
        result.pairs = len(groups)
        if not groups:
            result.failed_message_ids = [r.message_id for r in records if r.message_id in undecodable_failed]
            return result

        states, marks = self._store.load(list(groups), sorted(wanted_marks))
        new_marks = {
            user: TestMark(rule=rule, marked_at=self._clock_ms())
            for user, (_, rule) in wanted_marks.items()
            if user not in marks
        }
        failed: set[str] = set(undecodable_failed)
        # Attach each new mark to exactly one of its user's pair writes.
        mark_owner: dict[str, tuple[str, str]] = {}
        for pair in groups:
            if pair[0] in new_marks and pair[0] not in mark_owner:
                mark_owner[pair[0]] = pair

        def apply(pair: tuple[str, str]) -> tuple[int, int, int, bool]:
            group = groups[pair]
            mark = new_marks.get(pair[0]) if mark_owner.get(pair[0]) == pair else None
            return self._apply_group(group, states.get(pair), mark)

        outcomes = _run_concurrently(apply, list(groups), self._max_workers)
        for pair, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                failed.update(groups[pair].message_ids)
                continue
            new, dupes, conflicts, wrote = outcome
            result.new_impressions += new
            result.duplicates += dupes
            result.conflicts += conflicts
            result.writes += int(wrote) + conflicts
            if pair[0] in new_marks and mark_owner.get(pair[0]) == pair and wrote:
                result.users_marked += 1
        result.failed_message_ids = [r.message_id for r in records if r.message_id in failed]
        return result

    def _apply_group(self, group: _Group, state: FlagState | None, mark: TestMark | None) -> tuple[int, int, int, bool]:
        """Merge and write one (user, flag); on a concurrent update re-read and try again."""
        conflicts = 0
        for _ in range(MAX_CONFLICT_RETRIES):
            outcome = merge_impressions(state, group.impressions, self._config.profiles, self._clock_ms())
            if not outcome.changed or outcome.state is None:
                if mark is not None:
                    self._store.save_mark(group.user_id, mark)
                    return 0, outcome.duplicates, conflicts, True
                return 0, outcome.duplicates, conflicts, False
            try:
                self._store.save(outcome.state, mark)
                return outcome.new_impressions, outcome.duplicates, conflicts, True
            except ConcurrentUpdateError:
                conflicts += 1
                states, _ = self._store.load([(group.user_id, group.flag)], [])
                state = states.get((group.user_id, group.flag))
        raise ConcurrentUpdateError(group.user_id)

    def _decode(self, record: QueueRecord, result: ProcessResult) -> ImpressionMessage | None:
        try:
            return ImpressionMessage.model_validate_json(record.body)
        except ValidationError as exc:
            reason = "invalid_message"
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)[:5]
            )
        try:
            body: Any = json.loads(record.body)
        except ValueError:
            body = record.body
        self._quarantine.put(
            QUARANTINE_SOURCE,
            record.message_id,
            {
                "source": QUARANTINE_SOURCE,
                "message_id": record.message_id,
                "reason": reason,
                "detail": detail,
                "items": [{"index": 0, "reason": reason, "detail": detail, "item": body}],
            },
        )
        result.quarantined_messages += 1
        return None
