"""The shape of a metric kind: what the oracle asks of one, from its configuration to its chart.

A kind is one object (a :class:`MetricKind`) that every part of the oracle dispatches through by the metric's
``type``: the configuration parses with its pydantic ``model``; the counter compiles each configured metric once
into a :data:`CountEvent` (a plain function run per event: no pydantic on the per-event path); the evaluator
judges the summed counter with ``judge`` (its ``explain`` line included); notifications add its ``datums``; the
CLI's table and the HTML report render its ``cells`` and ``chart_row``. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flagbridge.oracle.metric import MetricConfig
from flagbridge.oracle.tally import Delta

CountEvent = Callable[[Delta, Any, str, dict[str, Any], Mapping[str, Any]], None]
"""``(delta, event type, event name, event data, custom attributes) -> None``: adds one selected event."""


@dataclass(frozen=True, slots=True)
class ChartRow:
    """One verdict's chart in the HTML report: a value (and its interval) against the PASS and FAIL lines."""

    top: float
    """The axis runs from 0 to ``top``."""
    pass_line: float
    fail_line: float
    pass_tick: str
    fail_tick: str
    value: float | None
    """The point drawn (None: nothing counted)."""
    interval: tuple[float, float] | None = None
    line_titles: tuple[str, str] | None = None
    """Hover titles of the PASS and FAIL lines."""


def percent(value: Any) -> str:
    """A fraction as the CLI table shows it (``0.0123`` -> ``1.23%``; None -> ``-``)."""
    return "-" if value is None else f"{100 * float(value):.2f}%"


class MetricKind:
    """One kind of oracle metric. Subclasses set ``name`` and ``model`` and implement the per-kind parts."""

    name: str
    """The ``type`` a metric names in the configuration (and ``kind`` in a verdict)."""
    model: type[MetricConfig]
    """The pydantic model of a metric of this kind (validated at load, errors naming the key)."""

    def compile(self, metric: Any) -> CountEvent:
        """The per-event count of one configured metric, built once per configuration."""
        raise NotImplementedError

    def judge(self, metric: Any, flag: str, treatment: str, delta: Delta, *, final: bool) -> Any:
        """The :class:`~flagbridge.oracle.judge.Judgement` of a summed counter, its explain line included."""
        raise NotImplementedError

    def exact_shares(self, metric: Any, delta: Delta) -> Delta:
        """The counter as the judge reads it (a kind may fill counts that older counters lack)."""
        return delta

    def counts_as_bad(self, metric: Any, event: Any) -> bool:
        """Whether the metric counts ``event`` (a :class:`~flagbridge.cdp.batch.Event`) as a bad one."""
        return False

    def datums(self, verdict: Mapping[str, Any]) -> dict[str, tuple[float, str]]:
        """CloudWatch values of one verdict beyond the shared ones: name -> (value, unit)."""
        return {}

    def cells(self, verdict: Mapping[str, Any]) -> tuple[str, str]:
        """(value, interval) of the verdict's row in the CLI table."""
        return f"{verdict.get('value') or '-'}", "-"

    def chart_row(self, verdict: Mapping[str, Any]) -> ChartRow:
        """The verdict's chart in the HTML report: by default its value as a point against the lines."""
        pass_line, fail_line = float(verdict["pass_below"]), float(verdict["fail_at"])
        value = verdict.get("value")
        return ChartRow(
            top=max(fail_line * 1.5, float(value or 0) * 1.1), pass_line=pass_line, fail_line=fail_line,
            pass_tick=f"{pass_line:g}", fail_tick=f"{fail_line:g}", value=None if value is None else float(value),
        )  # fmt: skip
