"""The processor's writer threads: the calling thread works alone until it waits more than it runs, then others join."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from flagbridge.profiles.processor import WAIT_JUDGED_AFTER_S, _run_concurrently


def _square_or_raise(item: int) -> int:
    if item % 7 == 3:
        raise ValueError(f"item {item}")
    return item * item


def _expected(items: list[int]) -> list[object]:
    outcomes: list[object] = []
    for item in items:
        try:
            outcomes.append(_square_or_raise(item))
        except ValueError as exc:
            outcomes.append(str(exc))
    return outcomes


def _shown(outcomes: list[object]) -> list[object]:
    return [str(outcome) if isinstance(outcome, Exception) else outcome for outcome in outcomes]


def test_items_that_only_compute_give_every_outcome_in_order() -> None:
    items = list(range(500))
    with ThreadPoolExecutor(max_workers=4) as executor:
        outcomes = _run_concurrently(_square_or_raise, items, 4, lambda: executor)
    assert _shown(outcomes) == _expected(items)


def test_items_that_wait_start_the_other_threads_and_give_every_outcome_in_order() -> None:
    items = list(range(40))
    threads: set[str] = set()
    requested: list[ThreadPoolExecutor] = []

    def waiting(item: int) -> int:
        threads.add(threading.current_thread().name)
        time.sleep(WAIT_JUDGED_AFTER_S * 2)  # waits (no CPU) past the time the calling thread judges at
        return _square_or_raise(item)

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="helper") as executor:

        def pool() -> ThreadPoolExecutor:
            requested.append(executor)
            return executor

        outcomes = _run_concurrently(waiting, items, 4, pool)
    assert _shown(outcomes) == _expected(items)
    assert requested == [executor]  # the helpers were started, once
    assert threading.current_thread().name in threads  # the calling thread worked too


def test_one_worker_runs_everything_on_the_calling_thread() -> None:
    def no_pool() -> ThreadPoolExecutor:
        raise AssertionError("one worker needs no pool")

    items = list(range(20))
    assert _shown(_run_concurrently(_square_or_raise, items, 1, no_pool)) == _expected(items)
