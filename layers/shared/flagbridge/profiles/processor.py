"""The impressions processor: SQS messages of queued impressions -> profile updates.

Per SQS batch: decode every message (version 2, what the webhook writes, or version 1 from before: see
:mod:`flagbridge.impressions.records`), group impressions by (user, flag), bulk-read the current states
and tester marks, merge in memory, then write each changed (user, flag) once, in parallel. So the
number of DynamoDB write requests never exceeds the distinct (user, flag) pairs of the batch. The batch's
users are looked up in the tester registry in one bulk read too: a registered tester no rule marks gets a
mark that expires with the registration (:mod:`flagbridge.testers.registry`).

Partial failures: if a pair cannot be written, every message that contributed to it is reported as a
batch item failure and redelivered; pairs already written recognise the redelivered impressions as
duplicates, so nothing is counted twice. Messages that can never be processed (not JSON, wrong shape,
version 2 ``fields`` or record lengths that do not match, an unknown version) go to the quarantine with
the reason the model gives instead of looping to the DLQ.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, TypeVar

from flagbridge.collector import collector_paused
from flagbridge.errors import StoreError
from flagbridge.impressions.records import Row, decode_message, row_of
from flagbridge.impressions.testers import RuleMatcher
from flagbridge.profiles.model import FlagState, TestMark, merge_rows
from flagbridge.profiles.store import ConcurrentUpdateError, ProfileStore
from flagbridge.quarantine import Quarantine, QuarantineSource, put_message
from flagbridge.queues import QueueRecord, batch_item_failures
from flagbridge.testers.registry import REGISTRY_RULE, RegistryLookup

if TYPE_CHECKING:
    from flagbridge.config import BridgeConfig

MAX_CONFLICT_RETRIES = 8


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
        return batch_item_failures(self.failed_message_ids)


_T = TypeVar("_T")
_R = TypeVar("_R")


# The calling thread, working alone, compares the time that passed with the CPU time it used after this long (and
# every millisecond after): over half of it not running (waiting on the store, or preempted) starts the others.
WAIT_JUDGED_AFTER_S = 0.01


def _run_concurrently(
    fn: Callable[[_T], _R], items: list[_T], max_workers: int, pool: Callable[[], ThreadPoolExecutor]
) -> list[_R | Exception]:
    """``[fn(item) or the exception it raised for item in items]``, on up to ``max_workers`` threads of ``pool()``.

    The store calls are I/O, so the pairs are written in parallel; each worker takes the next pending item
    (rather than one pool task per item, whose bookkeeping would cost more than a fast write). The calling thread
    works through the items alone while they only compute, and starts the others once it spent more than half of
    its time not running (see :data:`WAIT_JUDGED_AFTER_S`): items that only compute share one GIL, and more
    threads would add switches and cache misses, not speed.
    """
    outcomes: list[Any] = [None] * len(items)
    pending: SimpleQueue[int] = SimpleQueue()  # thread-safe without a Python-level lock
    for index in range(len(items)):
        pending.put(index)

    def work(alone: bool = False) -> bool:
        """Run pending items until none is left (True) or, ``alone``, until it waited more than it ran (False)."""
        clock, cpu = time.perf_counter, time.thread_time
        started, used = (clock(), cpu()) if alone else (0.0, 0.0)
        judged_at = started + WAIT_JUDGED_AFTER_S
        while True:
            try:
                index = pending.get_nowait()
            except Empty:
                return True
            try:
                outcomes[index] = fn(items[index])
            except Exception as exc:
                outcomes[index] = exc
            if alone and clock() >= judged_at:
                now = clock()
                if cpu() - used < (now - started) / 2:
                    return False
                judged_at = now + 0.001

    workers = min(max_workers, len(items))
    if workers <= 1:
        work()
        return outcomes
    if work(alone=True):
        return outcomes
    executor = pool()
    helpers = [executor.submit(work) for _ in range(workers - 1)]
    work()  # the calling thread keeps working beside them
    for future in helpers:
        future.result()
    return outcomes


def _failed_messages(
    items: list[tuple[tuple[str, str], list[Row]]], outcomes: list[Any], decoded: list[tuple[str, list[Row]]]
) -> set[str]:
    """Every message that contributed to a pair not written (its outcome is an exception)."""
    failed_pairs = {pair for (pair, _), outcome in zip(items, outcomes, strict=True) if type(outcome) is not tuple}
    return {
        message_id
        for message_id, rows in decoded
        if any((f"{row[10]}#{row[0]}", row[1]) in failed_pairs for row in rows)
    }


class ImpressionProcessor:
    """Applies batches of queued impressions to the profile store."""

    def __init__(
        self,
        store: ProfileStore,
        quarantine: Quarantine,
        config: BridgeConfig,
        clock_ms: Callable[[], int] | None = None,
        max_workers: int = 16,
        lookup_registered: RegistryLookup | None = None,
    ) -> None:
        self._store = store
        self._quarantine = quarantine
        self._config = config
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._max_workers = max_workers
        self._lookup_registered = lookup_registered
        self._pool: ThreadPoolExecutor | None = None

    def _threads(self) -> ThreadPoolExecutor:
        """The writers' threads, kept for the next batches (a warm container reuses them)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="profile-writer")
        return self._pool

    def process(self, records: Sequence[QueueRecord]) -> ProcessResult:
        with collector_paused():
            return self._process(records)

    def _process(self, records: Sequence[QueueRecord]) -> ProcessResult:
        result = ProcessResult()
        groups, decoded, wanted_marks, undecodable_failed = self._read(records, result)
        result.pairs = len(groups)
        if not groups:
            result.failed_message_ids = [r.message_id for r in records if r.message_id in undecodable_failed]
            return result

        states, mark_of = self._load(groups, wanted_marks)
        profiles, save = self._config.profiles, self._store.save
        now_ms = self._clock_ms()  # the batch's merge time (each retry after a conflict reads the clock again)

        def apply(item: tuple[tuple[str, str], list[Row]]) -> tuple[int, int, int, bool]:
            pair, rows = item
            mark = mark_of.get(pair) if mark_of else None
            merged, new, duplicates = merge_rows(states.get(pair), rows, profiles, now_ms)
            if new and merged is not None:
                try:
                    save(merged, mark)  # the usual outcome, without the retry loop
                    return new, duplicates, 0, True
                except ConcurrentUpdateError:
                    return self._apply_group(pair, rows, mark, conflicts=1)
            if mark is not None:
                self._store.save_mark(pair[0], mark)
                return 0, duplicates, 0, True
            return 0, duplicates, 0, False

        items = list(groups.items())
        outcomes = _run_concurrently(apply, items, self._max_workers, self._threads)
        applied = [outcome for outcome in outcomes if type(outcome) is tuple]  # the others are exceptions
        if applied:  # summed field by field
            news, duplicates, conflicts, wrote = zip(*applied, strict=True)
            result.new_impressions, result.duplicates, result.conflicts = sum(news), sum(duplicates), sum(conflicts)
            result.writes = sum(wrote) + result.conflicts
        if mark_of:  # the users whose new mark was written: the outcomes of the pairs carrying one
            carried = compress(outcomes, map(mark_of.__contains__, groups))
            result.users_marked = sum(1 for outcome in carried if type(outcome) is tuple and outcome[3])
        failed = set(undecodable_failed)
        if len(applied) != len(outcomes):
            failed |= _failed_messages(items, outcomes, decoded)
        result.failed_message_ids = [r.message_id for r in records if r.message_id in failed]
        return result

    def _load(
        self, groups: Mapping[tuple[str, str], list[Row]], wanted_marks: Mapping[str, tuple[int, str]]
    ) -> tuple[dict[tuple[str, str], FlagState], dict[tuple[str, str], TestMark]]:
        """The stored states of the batch's pairs, and the new tester marks, each attached to exactly one of its
        user's pairs (whose write carries it)."""
        registered = self._registered(set(map(itemgetter(0), groups)), wanted_marks)
        states, marks = self._store.load(list(groups), sorted({*wanted_marks, *registered}))
        new_marks = {
            user: TestMark(rule=rule, marked_at=self._clock_ms())
            for user, (_, rule) in wanted_marks.items()
            if user not in marks or marks[user].expires_at is not None  # a rule's mark outlasts a registry's
        }
        for user, expires_ms in registered.items():
            existing = marks.get(user)
            if existing is None or (existing.expires_at is not None and existing.expires_at != expires_ms):
                new_marks[user] = TestMark(rule=REGISTRY_RULE, marked_at=self._clock_ms(), expires_at=expires_ms)
        mark_of: dict[tuple[str, str], TestMark] = {}
        marked_users: set[str] = set()
        if new_marks:
            for pair in groups:
                if pair[0] in new_marks and pair[0] not in marked_users:
                    marked_users.add(pair[0])
                    mark_of[pair] = new_marks[pair[0]]
        return states, mark_of

    def _registered(self, users: set[str], ruled: Mapping[str, object]) -> dict[str, int]:
        """Users of the batch the tester registry holds (one bulk read) and no rule marks: user -> expiry, epoch ms."""
        if self._lookup_registered is None or not users:
            return {}
        found = self._lookup_registered(users)
        return {user: registration.expires_at * 1000 for user, registration in found.items() if user not in ruled}

    def _read(
        self, records: Sequence[QueueRecord], result: ProcessResult
    ) -> tuple[
        defaultdict[tuple[str, str], list[Row]], list[tuple[str, list[Row]]], dict[str, tuple[int, str]], set[str]
    ]:
        """Decode the batch: impressions grouped by (user, flag) in batch order, each readable message's impressions,
        the tester mark each user's earliest matching impression asks for, and the messages to retry."""
        groups: defaultdict[tuple[str, str], list[Row]] = defaultdict(list)  # (user, flag) -> its impressions
        decoded: list[tuple[str, list[Row]]] = []  # (message id, impressions) of every readable message
        wanted_marks: dict[str, tuple[int, str]] = {}  # user -> (time, rule) of the earliest matching impression
        undecodable_failed: set[str] = set()
        matcher = RuleMatcher(self._config.test_users)
        for record in records:
            try:
                rows = self._decode(record, result)
            except StoreError:
                undecodable_failed.add(record.message_id)  # quarantine unavailable: let SQS redeliver
                continue
            if rows is None:
                continue
            decoded.append((record.message_id, rows))
            result.impressions += len(rows)
            for row in rows:
                groups[f"{row[10]}#{row[0]}", row[1]].append(row)  # (traffic type#key: its user_id, flag), in order
            for row, rule in matcher.marked(rows):
                user_id, candidate = f"{row[10]}#{row[0]}", (row[3], rule)
                current = wanted_marks.get(user_id)
                if current is None or candidate < current:
                    wanted_marks[user_id] = candidate
        return groups, decoded, wanted_marks, undecodable_failed

    def _apply_group(
        self, pair: tuple[str, str], rows: list[Row], mark: TestMark | None, conflicts: int
    ) -> tuple[int, int, int, bool]:
        """Merge and write one (user, flag) after ``conflicts`` concurrent updates: re-read, merge, try again."""
        while True:
            states, _ = self._store.load([pair], [])
            if conflicts >= MAX_CONFLICT_RETRIES:
                raise ConcurrentUpdateError(pair[0])
            merged, new, duplicates = merge_rows(states.get(pair), rows, self._config.profiles, self._clock_ms())
            if not new or merged is None:
                if mark is not None:
                    self._store.save_mark(pair[0], mark)
                    return 0, duplicates, conflicts, True
                return 0, duplicates, conflicts, False
            try:
                self._store.save(merged, mark)
                return new, duplicates, conflicts, True
            except ConcurrentUpdateError:
                conflicts += 1

    def _decode(self, record: QueueRecord, result: ProcessResult) -> list[Row] | None:
        rows = decode_message(record.body)
        if rows is not None:
            return rows  # what the webhook wrote, read without the models (same outcome)
        from pydantic import ValidationError

        from flagbridge.impressions.models import ImpressionMessage, describe_validation_error

        try:
            return [row_of(impression) for impression in ImpressionMessage.model_validate_json(record.body).impressions]
        except ValidationError as exc:
            reason = "invalid_message"
            detail = describe_validation_error(exc, whole="")
        try:
            body: Any = json.loads(record.body)
        except ValueError:
            body = record.body
        put_message(
            self._quarantine,
            QuarantineSource.IMPRESSIONS_PROCESSOR,
            record.message_id,
            reason=reason,
            detail=detail,
            item=body,
        )
        result.quarantined_messages += 1
        return None
