"""Shrinking a failing case: drop one mutation at a time, re-send, keep only those the failure needs.

A failing case carries a handful of mutations (never more than the request cap), so a greedy
one-at-a-time pass to a fixed point (the 1-minimal form of delta debugging) is cheap: at most
``n·(n+1)/2`` re-sends for ``n`` mutations. Each trial is the same case regenerated with a subset of
its mutations (:meth:`flagbridge.traffic.generator.TrafficGenerator.case` with ``keep``), sent
through the injected ``send``. The shrunk case is then sent once more and must fail again
(``confirmed``), so the reported reason is the shrunk case's own (the bug Schemathesis #4332 had).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flagbridge.traffic.manifest import Outcome

Send = Callable[[Sequence[int]], Outcome]


@dataclass(frozen=True)
class ShrinkResult:
    """The positions of the mutations kept, whether the original and the shrunk case failed, and the cost."""

    kept: tuple[int, ...]
    reproduced: bool
    confirmed: bool
    attempts: int
    outcome: Outcome | None


def default_failed(outcome: Outcome) -> bool:
    return outcome.failed


def shrink(mutation_count: int, send: Send, failed: Callable[[Outcome], bool] = default_failed) -> ShrinkResult:
    """Minimise the mutations of a failing case (positions ``0 .. mutation_count-1``)."""
    keep = list(range(mutation_count))
    attempts = 1
    first = send(keep)
    if not failed(first):
        return ShrinkResult(tuple(keep), False, False, attempts, first)
    changed = True
    while changed and keep:
        changed = False
        for position in list(keep):
            trial = [item for item in keep if item != position]
            attempts += 1
            if failed(send(trial)):
                keep = trial
                changed = True
    attempts += 1
    final = send(keep)
    return ShrinkResult(tuple(keep), True, failed(final), attempts, final)
