"""A metric kind is one object in one registry: a toy kind registered here alone is parsed, counted through the
real counter and store, judged by the evaluator, and rendered in notifications, the CLI table and the HTML report."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from flagbridge.errors import ConfigError
from flagbridge.oracle import histogram
from flagbridge.oracle.config import parse_oracle_config
from flagbridge.oracle.counting import Counter
from flagbridge.oracle.judge import Judgement, judge_common, with_text
from flagbridge.oracle.kinds import KINDS, ChartRow, CountEvent, MetricKind, kind_of, registered
from flagbridge.oracle.metric import MetricConfig
from flagbridge.oracle.notify import metric_data
from flagbridge.oracle.report_html import html_report
from flagbridge.oracle.service import Evaluator, detail_document
from flagbridge.oracle.store import InMemoryCounterStore, InMemoryVerdictStore
from flagbridge.oracle.tally import Delta, number_of
from flagbridge.oracle.verdicts import verdict_rows
from flagbridge_ops.verdict import table_rows

T0 = 1_767_225_600_000


class RetriedMetric(MetricConfig):
    """The share of requests that needed a retry (``attempts`` above 1)."""

    type: Literal["retried"]
    attribute: str = Field(default="attempts", min_length=1)
    pass_below: float = Field(gt=0, lt=1)
    fail_at: float = Field(gt=0, lt=1)


class RetriedKind(MetricKind):
    name = "retried"
    model = RetriedMetric

    def compile(self, metric: Any) -> CountEvent:
        attribute = metric.attribute

        def count(
            delta: Delta, event_type: Any, name: str, data: dict[str, Any], attributes: Mapping[str, Any]
        ) -> None:
            attempts = attributes.get(attribute)
            if type(attempts) is not int:
                delta.invalid += 1
                return
            delta.n += 1
            delta.k += attempts > 1

        return count

    def judge(self, metric: Any, flag: str, treatment: str, delta: Delta, *, final: bool) -> Judgement:
        state, judged = judge_common(
            metric, flag, treatment, delta.n, delta.k, delta.k, final=final, invalid=delta.invalid
        )
        return with_text(judged, f"{state} {flag}={treatment} {metric.name}: {delta.k} of {delta.n} retried")

    def datums(self, verdict: Mapping[str, Any]) -> dict[str, tuple[float, str]]:
        return {"Retried": (float(verdict["k"]), "Count")}

    def cells(self, verdict: Mapping[str, Any]) -> tuple[str, str]:
        return f"{verdict['k']} retried", "-"

    def chart_row(self, verdict: Mapping[str, Any]) -> ChartRow:
        rate = verdict.get("rate")
        return ChartRow(top=1.0, pass_line=verdict["pass_below"], fail_line=verdict["fail_at"], pass_tick="ok",
                        fail_tick="retry storm", value=rate)  # fmt: skip


def _config() -> Any:
    return parse_oracle_config({"tests": [{
        "name": "checkout", "flag": "new_checkout", "environment": "Production", "treatment_attribute": "arm",
        "metrics": [{"name": "retried", "type": "retried", "pass_below": 0.05, "fail_at": 0.2, "min_failures": 1,
                     "events": {"event_names": {"include": ["flagbridge_test_request"]}}}],
    }]})  # fmt: skip


def _message(attempts: list[Any], key: str) -> str:
    events = [
        {"event_type": "custom_event",
         "data": {"event_name": "flagbridge_test_request", "timestamp_unixtime_ms": T0 + i,
                  "custom_attributes": {"arm": "on", "attempts": a}}}
        for i, a in enumerate(attempts)
    ]  # fmt: skip
    batch = {"user_identities": {"customer_id": "qa-1"}, "events": events}
    return json.dumps({"destination": "oracle", "batch_key": key, "test_user": True, "batch": batch})


class _Silent:
    def verdict_changed(self, report: Any, changed: Any) -> None: ...
    def metrics(self, report: Any) -> None: ...
    def kill_changed(self, report: Any, event: Any) -> None: ...


def test_a_kind_registered_in_one_place_is_parsed_counted_judged_and_rendered() -> None:
    with registered(RetriedKind()):
        config = _config()
        [metric] = config.tests[0].metrics
        assert isinstance(metric, RetriedMetric) and kind_of(metric).name == "retried"

        counter, counters = Counter(config, {}), InMemoryCounterStore()
        bodies = [_message([1, 3, 1, "x"], "srid:1"), _message([2] * 30, "srid:2")]
        contributions = [counter.count(counter.parse(b), lambda user, flag: None, T0) for b in bodies]
        counters.apply(contributions)
        verdicts = InMemoryVerdictStore()
        [report] = Evaluator(config, counters, verdicts, _Silent(), None, lambda: T0 + 60_000).run(force=True)

        [verdict] = report["verdicts"]
        assert (verdict["kind"], verdict["treatment"], verdict["n"], verdict["k"], verdict["invalid"]) == (
            "retried", "on", 33, 31, 1
        )  # fmt: skip
        assert verdict["state"] == "FAIL" == report["state"]
        assert verdict["explain"] == "FAIL new_checkout=on retried: 31 of 33 retried"

        datums = {d["MetricName"]: d["Value"] for d in metric_data(report)}
        assert datums["Retried"] == 31.0 and datums["EventsCounted"] == 33.0

        rows = verdict_rows([detail_document(config.tests[0], verdicts)])
        assert table_rows(rows) == [("checkout", "on", "retried", "FAIL", 33, "31 retried", "-")]
        page = html_report([detail_document(config.tests[0], verdicts)])
        assert "retried" in page and 'class="value"' in page  # its chart_row's point on the shared axis

    assert "retried" not in KINDS
    with pytest.raises(ConfigError, match="does not match any of the expected tags: 'rate', 'percentile'"):
        _config()


def test_every_shipped_kind_is_registered_under_its_type() -> None:
    for name, kind in KINDS.items():
        assert kind.name == name and kind.model.model_fields["type"].annotation == Literal[name]
    with pytest.raises(ValueError, match="unknown metric kind 'mean'"):
        kind_of("mean")
    with registered(RetriedKind()), pytest.raises(ValueError, match="already registered"), registered(RetriedKind()):
        pass


_NUMBERS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-5, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["500", "1e3", "-0", "abc", "", " 7", "nan"]),
    st.lists(st.integers(), max_size=1),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_NUMBERS, min_size=1, max_size=40))
def test_the_compiled_percentile_count_equals_the_reference(values: list[Any]) -> None:
    """The per-event percentile count (numbers and buckets read inline) against number_of and bucket_of."""
    [_, metric, _] = parse_oracle_config({"tests": [{"name": "t", "flag": "f", "environment": "P"}]}).tests[0].metrics
    count, fast, slow = kind_of(metric).compile(metric), Delta(), Delta()
    for value in values:
        count(fast, "custom_event", "x", {}, {"latency_ms": value})
        number = None if value is None else number_of(value)
        if number is None:
            slow.invalid += 1
            continue
        slow.n += 1
        slow.buckets[histogram.bucket_of(number)] = slow.buckets.get(histogram.bucket_of(number), 0) + 1
        slow.classified += 1
        slow.at_pass += number >= metric.pass_below
        slow.at_fail += number >= metric.fail_at
    assert fast == slow


def test_the_readme_row_for_a_new_kind_names_files_that_exist() -> None:
    """The README's "where to change what" row for a metric kind names only real files, the registry among them."""
    root = Path(__file__).resolve().parents[3]
    [row] = [line for line in (root / "README.md").read_text().splitlines() if "add an oracle metric *kind*" in line]
    named = set(re.findall(r"`(oracle/[\w/.]+)`", row))
    assert {"oracle/kinds/__init__.py", "oracle/kinds/base.py", "oracle/metric.py"} <= named
    for path in named:
        assert (root / "layers" / "shared" / "flagbridge" / path).exists(), path
    for path in re.findall(r"`(tests/[\w/.]+)`", row):
        assert (root / path).exists(), path
