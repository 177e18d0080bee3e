"""``local.bench --smoke``: the benchmark runs end to end on tiny inputs and reports every figure.

Structure only: nothing here asserts a timing (the full ``make bench`` run checks the targets).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local import bench

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"name", "title", "measured", "floor", "ratio", "unit", "target", "pass", "details", "peak_rss_mb", "seconds"}
KEYS |= {"ratio_iqr", "measured_iqr"}
# What is timed reports its spread over the rounds (the IQR); what is counted or sized has none.
TIMED_RATIOS = ["ingest_cpu", "processor_cpu", "router_cpu", "oracle_cpu", "oracle_eval", "oracle_rule"]
TIMED_RATIOS += ["traffic_cpu", "runs_worker", "cold_start.shared"]
TIMED_REPORTS = ["local_e2e", "traffic_generate"]
COUNTED = ["profile_writes", "split_requests", "split_requests.lane", "registry_requests"]
COUNTED += ["registry_requests.processor", "oracle_writes", "runs_sqs_requests", "segment_reconcile", "layer_size"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("bench") / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "local.bench", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| figure |" in completed.stdout  # the table is printed
    return json.loads(output.read_text())


def test_every_figure_is_reported_with_the_same_fields(report: dict[str, Any]) -> None:
    assert report["smoke"] is True
    names = [figure["name"] for figure in report["figures"]]
    expected = [name for name in bench.FIGURES if name != "cold_start"] + ["split_requests.lane"]
    expected += ["registry_requests.processor"]
    expected += [f"cold_start.{function}" for function in bench.FUNCTIONS] + ["cold_start.shared"]
    expected += [f"cold_start.shared.{name}" for name in bench.SHARED_STAGE_NAMES.values()]
    assert sorted(names) == sorted(expected)
    for figure in report["figures"]:
        assert set(figure) == KEYS, figure["name"]
        assert "error" not in figure["details"], (figure["name"], figure["details"].get("error"))


def test_ratio_figures_are_computed_against_a_positive_floor(report: dict[str, Any]) -> None:
    by_name = {figure["name"]: figure for figure in report["figures"]}
    ratio_figures = ["ingest_cpu", "processor_cpu", "router_cpu", "profile_writes", "split_requests"]
    ratio_figures += ["split_requests.lane", "registry_requests", "registry_requests.processor", "segment_reconcile"]
    ratio_figures += [f"cold_start.{function}" for function in bench.FUNCTIONS]
    for name in ratio_figures:
        figure = by_name[name]
        assert figure["measured"] > 0 and figure["floor"] > 0, name
        assert figure["ratio"] == pytest.approx(_expected_ratio(figure), rel=0.05, abs=0.01), name
        assert isinstance(figure["pass"], bool), name
        assert figure["peak_rss_mb"] > 0, name


def _expected_ratio(figure: dict[str, Any]) -> float:
    # Throughputs (higher is better) are inverted so that every ratio reads "times the floor's cost".
    if figure["unit"] == "events/s":
        return float(figure["floor"] / figure["measured"])
    return float(figure["measured"] / figure["floor"])


def test_counting_figures_are_exact_on_tiny_inputs(report: dict[str, Any]) -> None:
    by_name = {figure["name"]: figure for figure in report["figures"]}
    writes = by_name["profile_writes"]
    assert writes["ratio"] == 1.0 and writes["details"]["redelivery_writes"] == 0
    split = by_name["split_requests"]
    assert split["measured"] == split["floor"] == 1
    assert all(size < 1_000_000 for size in split["details"]["body_bytes"])
    # 7 events as the router writes them (3 per message), in one batch of the Split lane: one shared request
    lane = by_name["split_requests.lane"]
    assert lane["measured"] == lane["floor"] == 1
    details = lane["details"]
    assert (details["messages"], details["sqs_batches"], details["floor_if_all_events_were_one_batch"]) == (3, 1, 1)
    assert details["sqs_batch_size"] > 10


def test_report_only_figures(report: dict[str, Any]) -> None:
    by_name = {figure["name"]: figure for figure in report["figures"]}
    shared = by_name["cold_start.shared"]
    stages = shared["details"]["stages_ms"]
    assert list(stages) == [title for title, _ in bench.SHARED_IMPORT_STAGES]
    assert shared["floor"] == stages[bench.SHARED_IMPORT_STAGES[0][0]] and shared["pass"] is None
    e2e = by_name["local_e2e"]
    assert e2e["measured"] > 0 and e2e["details"]["profile_visible"] == [True]
    layer = by_name["layer_size"]
    if layer["measured"] is None:  # not built yet on this machine (make test builds after the unit tests)
        assert "skipped" in layer["details"]
    else:
        assert layer["details"]["forbidden_packages"] == []


def test_shared_imports_are_reported_stage_by_stage(report: dict[str, Any]) -> None:
    by_name = {figure["name"]: figure for figure in report["figures"]}
    stages_ms = by_name["cold_start.shared"]["details"]["stages_ms"]
    for (title, module), milliseconds in zip(bench.SHARED_IMPORT_STAGES[1:], list(stages_ms.values())[1:], strict=True):
        stage = by_name[f"cold_start.shared.{bench.SHARED_STAGE_NAMES[module]}"]
        assert title in stage["title"] and stage["details"]["module"] == module
        assert stage["measured"] == milliseconds and stage["floor"] == by_name["cold_start.shared"]["floor"]
        assert stage["pass"] is None and stage["ratio_iqr"] is not None


def test_timed_figures_report_their_spread(report: dict[str, Any]) -> None:
    by_name = {figure["name"]: figure for figure in report["figures"]}
    timed_ratios = TIMED_RATIOS + [f"cold_start.{function}" for function in bench.FUNCTIONS]
    timed_ratios += [f"cold_start.shared.{name}" for name in bench.SHARED_STAGE_NAMES.values()]
    for name in timed_ratios:
        low, high = by_name[name]["ratio_iqr"]
        # a stage that costs next to nothing (routing) rounds to 0.00 of `import boto3`: a spread, not a failure
        assert 0 <= low <= high, name
        assert low > 0 or name.startswith("cold_start.shared."), name
        assert by_name[name]["measured_iqr"][0] <= by_name[name]["measured_iqr"][1], name
    for name in TIMED_REPORTS:
        low, high = by_name[name]["measured_iqr"]
        assert 0 < low <= high and by_name[name]["ratio_iqr"] is None, name
    for name in COUNTED:
        assert by_name[name]["ratio_iqr"] is None and by_name[name]["measured_iqr"] is None, name
    assert set(timed_ratios + TIMED_REPORTS + COUNTED) == set(by_name)  # every figure is classified


def test_table_renders_every_figure(report: dict[str, Any]) -> None:
    rendered = bench.table(report["figures"])
    assert rendered.count("\n") == len(report["figures"]) + 1
    rows = {figure["name"]: line for figure, line in zip(report["figures"], rendered.splitlines()[2:], strict=True)}
    assert "| IQR |" in rendered.splitlines()[0]
    for name in COUNTED:
        assert rows[name].split(" | ")[4] == "-", name  # no spread for a count
    ingest = next(figure for figure in report["figures"] if figure["name"] == "ingest_cpu")
    low, high = ingest["ratio_iqr"]
    assert f"{low:,.2f}\u2013{high:,.2f}x" in rows["ingest_cpu"]
