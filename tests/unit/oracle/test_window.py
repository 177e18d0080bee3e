"""The window: whole hours, one final decision, judged on the window's own events (the audit's defect 1).

The rule before kept the hour holding a window end off the hour and marked every look with ``now >= end``
final: up to 59 extra "final" looks while the counts still grew (fractional ``window_hours``, a ``start`` off the
hour), and events before a ``start`` inside its hour were counted. Now a window is the whole hours from the hour
holding its start to the first hour boundary at or after ``start + window_hours``; the first look at or after
that end is the one final decision, and later looks repeat it.
"""

from __future__ import annotations

from typing import Any

from flagbridge.oracle.config import OracleTest, parse_oracle_config
from flagbridge.oracle.counting import CounterKey, Delta
from flagbridge.oracle.evaluate import collect, judge_test, read_range, window
from flagbridge.oracle.store import CounterItem

H, T0, MINUTE = 3_600_000, 1_767_225_600_000, 60_000


def oracle_test(**options: Any) -> OracleTest:
    metric = {"name": "r", "type": "rate", "bad": {"event_names": {"include": ["x"]}}, "pass_below": 0.01,
              "fail_at": 0.05, "decision": "fixed"}  # fmt: skip
    document = {"tests": [{"name": "t", "flag": "f", "environment": "e", "metrics": [metric], **options}]}
    return parse_oracle_config(document).tests[0]


def items(second_hour: int, third_hour: int = 0) -> list[CounterItem]:
    found = [
        CounterItem(CounterKey("t", T0, 1, "on", "r"), Delta(n=600, k=3)),
        CounterItem(CounterKey("t", T0 + H, 1, "on", "r"), Delta(n=second_hour, k=0)),
    ]
    if third_hour:
        found.append(CounterItem(CounterKey("t", T0 + 2 * H, 1, "on", "r"), Delta(n=third_hour, k=0)))
    return found


def look(test: OracleTest, minute: int, counted: list[CounterItem], previous: Any = None) -> dict[str, Any]:
    now = T0 + minute * MINUTE
    return judge_test(test, collect(test, counted, {}, now), now, previous)


def test_the_audits_reproduction_fractional_window_hours() -> None:
    # window_hours 1.5: the rule before made minute 91 and 119 "final" 95% looks with growing counts (PASS)
    test = oracle_test(window_hours=1.5)
    assert look(test, 89, items(290))["window"] == {"start": T0, "end": T0 + 2 * H, "final": False}
    for minute, second_hour in ((91, 310), (119, 590)):
        report = look(test, minute, items(second_hour))
        assert not report["window"]["final"] and report["verdicts"][0]["state"] == "INCONCLUSIVE"
    final = look(test, 120, items(600))
    assert final["window"]["final"] and final["decided_at"] == T0 + 120 * MINUTE
    assert final["verdicts"][0]["n"] == 1200


def test_one_final_decision_later_looks_repeat_it() -> None:
    test = oracle_test(window_hours=1.5)
    final = look(test, 120, items(600))
    # late events of the window's last hour, and events after it: the decision is not taken again
    later = look(test, 121, items(900, third_hour=500), final)
    assert later["verdicts"] == final["verdicts"] and later["state"] == final["state"]
    assert later["decided_at"] == final["decided_at"] and later["evaluated_at"] == T0 + 121 * MINUTE
    # without the previous decision the window still excludes the hour after its end
    assert look(test, 121, items(600, third_hour=500))["verdicts"][0]["n"] == 1200


def test_a_start_off_the_hour_covers_whole_hours() -> None:
    start = "2026-01-01T00:30:00Z"
    assert T0 == 1_767_225_600_000  # 2026-01-01T00:00:00Z
    test = oracle_test(start=start, window_hours=1)
    assert window(test, T0 + 30 * MINUTE) == (T0, T0 + 2 * H)
    assert read_range(test, T0) == (T0, T0 + 2 * H)
    report = look(test, 100, items(600, third_hour=500))
    assert report["window"] == {"start": T0, "end": T0 + 2 * H, "final": False}
    assert report["verdicts"][0]["n"] == 1200  # the hour after the end is not the window's
    assert look(test, 120, items(600, third_hour=500))["window"]["final"]


def test_whole_hour_windows_are_unchanged() -> None:
    test = oracle_test(window_hours=24)
    assert window(test, T0) == (T0, T0 + 24 * H)
    assert not look(test, 24 * 60 - 1, items(600))["window"]["final"]
    assert look(test, 24 * 60, items(600))["window"]["final"]


def test_counters_written_before_the_exact_line_counts_err_toward_inconclusive() -> None:
    from flagbridge.oracle import histogram

    document = {"tests": [{"name": "t", "flag": "f", "environment": "e"}]}
    test = parse_oracle_config(document).tests[0]
    at_500 = {histogram.bucket_of(500.0): 1000}  # an old counter: buckets only (classified 0)
    old = [CounterItem(CounterKey("t", T0, 1, "on", "latency p95"), Delta(n=1000, buckets=at_500))]
    data = collect(test, old, {}, T0 + MINUTE)
    delta = data.per[("on", "latency p95")]
    assert (delta.at_pass, delta.at_fail, delta.classified) == (1000, 0, 1000)  # may be >= 500: not a PASS
    report = judge_test(test, data, T0 + MINUTE)
    [latency] = [v for v in report["verdicts"] if v["metric"] == "latency p95"]
    assert latency["state"] == "INCONCLUSIVE"
    new = [CounterItem(CounterKey("t", T0, 1, "on", "latency p95"),
                       Delta(n=1000, buckets=at_500, at_pass=1000, at_fail=0, classified=1000))]  # fmt: skip
    assert collect(test, new, {}, T0 + MINUTE).per[("on", "latency p95")].at_pass == 1000
