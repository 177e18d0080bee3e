"""Time and memory bounds of a parse, asserted without wall-clock limits (the suite runs on loaded machines).

- Memory: :func:`peak_memory` is the tracemalloc peak of one call: deterministic for a given input.
- Time: :func:`scaling_ratio` is how much more CPU time (``time.process_time``: this process only, so other
  processes on the machine do not count) a parse takes when its input grows ``factor`` times, the minimum of
  a few runs at each size. A linear parser's ratio is about ``factor``; a quadratic one's about ``factor**2``.
  Tests assert a ratio under ``factor * 3``: far from both, whatever the machine's speed.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

MAX_PEAK_BYTES = 50 * 1024 * 1024
SCALING_FACTOR = 8
MAX_SCALING_RATIO = SCALING_FACTOR * 3  # linear: ~8; quadratic: ~64


def outcome(parse: Callable[[Any], Any], value: Any) -> Any:
    """The parse's result, or the exception it raised (returned, not raised)."""
    try:
        return parse(value)
    except Exception as exc:  # every outcome is compared by the caller
        return exc


def peak_memory(parse: Callable[[Any], Any], value: Any) -> tuple[Any, int]:
    """``(outcome, peak bytes allocated during the call)``."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = outcome(parse, value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def _cpu_seconds(parse: Callable[[Any], Any], value: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        outcome(parse, value)
        best = min(best, time.process_time() - started)
    return best


def scaling_ratio(
    parse: Callable[[Any], Any], make: Callable[[int], Any], size: int, repeats: int = 3, floor: float = 0.002
) -> float:
    """CPU time of ``parse(make(size * SCALING_FACTOR))`` over that of ``parse(make(size))``.

    ``floor`` (seconds) keeps a parse too fast to time (a refusal by size alone) from dividing by noise: such a
    parse scales by 1, as it should.
    """
    small, large = make(size), make(size * SCALING_FACTOR)
    outcome(parse, small)  # imports and caches warmed before timing
    return max(_cpu_seconds(parse, large, repeats), floor) / max(_cpu_seconds(parse, small, repeats), floor)
