"""The measuring frame of every figure: paths, input sizes, the report line (:class:`Figure`) and paired timing."""

from __future__ import annotations

import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "layers" / "shared"
CONFIG_PATH = SHARED / "config" / "flagbridge.yaml"
LAYER_DIR = ROOT / ".aws-sam" / "build" / "SharedLayer"


# ---- sizes and results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """Input sizes and repetitions of one benchmark run."""

    impressions: int = 10_000
    users: int = 1_000
    flags: int = 10
    runs: int = 15
    warmup: int = 1
    router_batches: int = 2_000
    split_events: int = 12_345
    e2e_impressions: int = 2_000
    e2e_runs: int = 3
    cold_runs: int = 9
    traffic_requests: int = 2_000
    traffic_cases: int = 100_000
    oracle_events: int = 20_000
    oracle_eval_events: tuple[int, int] = (10_000, 1_000_000)
    segment_testers: int = 10_000


FULL = Sizes()
SMOKE = Sizes(
    impressions=120,
    users=15,
    flags=4,
    runs=2,
    warmup=0,
    router_batches=10,
    split_events=7,
    e2e_impressions=12,
    e2e_runs=1,
    cold_runs=1,
    traffic_requests=50,
    traffic_cases=500,
    oracle_events=100,
    oracle_eval_events=(480, 4_800),
    segment_testers=300,
)


@dataclass
class Figure:
    """One line of the report."""

    name: str
    title: str
    measured: float | None
    floor: float | None
    ratio: float | None
    unit: str
    target: str
    passed: bool | None
    details: dict[str, Any]
    peak_rss_mb: float | None = None
    # The spread over the rounds of a timed figure, as [first quartile, third quartile]: of the ratio taken
    # round by round (each measured run against its own floor run) and of the measured value, in its unit.
    # None for what is counted (requests, writes, sizes), which does not vary between rounds.
    ratio_iqr: list[float] | None = None
    measured_iqr: list[float] | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pass"] = data.pop("passed")
        return data


def quartiles(values: Iterable[float], digits: int = 2) -> list[float] | None:
    """[first, third] quartile of ``values`` (the interquartile range), rounded; None without values.

    The inclusive method keeps both ends within the samples, which matters for the few rounds of a smoke run.
    """
    samples = list(values)
    if not samples:
        return None
    if len(samples) == 1:
        return [round(samples[0], digits)] * 2
    first, _, third = statistics.quantiles(samples, n=4, method="inclusive")
    return [round(first, digits), round(third, digits)]


def pair_ratios(floors: Sequence[float], measures: Sequence[float]) -> list[float]:
    """Each round's ratio: the measured run against the floor run interleaved with it."""
    return [measured / floor for floor, measured in zip(floors, measures, strict=True)]


def at_most(ratio: float | None, limit: float) -> bool | None:
    return None if ratio is None else ratio <= limit


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


# ---- timing ------------------------------------------------------------------------------------------------


def paired_medians(
    floor: Callable[[], object],
    measured: Callable[[], object],
    runs: int,
    warmup: int,
    clock: Callable[[], float] = time.process_time,
) -> tuple[float, float, list[float], list[float]]:
    """Median seconds of ``floor`` and ``measured``, run alternately after ``warmup`` rounds of each."""
    for _ in range(warmup):
        floor()
        measured()
    floors: list[float] = []
    measures: list[float] = []
    for _ in range(runs):
        for fn, samples in ((floor, floors), (measured, measures)):
            gc.collect()
            started = clock()
            fn()
            samples.append(clock() - started)
    return statistics.median(floors), statistics.median(measures), floors, measures


def _ms(values: Sequence[float]) -> list[float]:
    return [round(v * 1000, 3) for v in values]
