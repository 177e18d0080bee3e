"""Runs the figures, each in its own subprocess, and writes the report (``python -m local.bench``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from local.bench.cold_start import figure_cold_start
from local.bench.figures import (
    figure_ingest_cpu,
    figure_layer_size,
    figure_local_e2e,
    figure_processor_cpu,
    figure_profile_writes,
    figure_router_cpu,
    figure_split_requests,
)
from local.bench.oracle import figure_oracle_cpu, figure_oracle_eval, figure_oracle_rule, figure_oracle_writes
from local.bench.registry import figure_registry_requests
from local.bench.runs import figure_runs_sqs_requests, figure_runs_worker
from local.bench.segment import figure_segment_reconcile
from local.bench.timing import FULL, LAYER_DIR, ROOT, SHARED, SMOKE, Figure, Sizes, peak_rss_mb
from local.bench.traffic import figure_traffic_cpu, figure_traffic_generate

DEFAULT_OUTPUT = ROOT / "build" / "bench.json"
CHILD_TIMEOUT_SECONDS = 600  # cold_start: a layer build and 130 fresh interpreters on a shared 2-core machine

FIGURES: dict[str, Callable[[Sizes], list[Figure]]] = {
    "ingest_cpu": figure_ingest_cpu,
    "profile_writes": figure_profile_writes,
    "processor_cpu": figure_processor_cpu,
    "cold_start": figure_cold_start,
    "router_cpu": figure_router_cpu,
    "split_requests": figure_split_requests,
    "registry_requests": figure_registry_requests,
    "oracle_cpu": figure_oracle_cpu,
    "oracle_writes": figure_oracle_writes,
    "oracle_eval": figure_oracle_eval,
    "oracle_rule": figure_oracle_rule,
    "local_e2e": figure_local_e2e,
    "layer_size": figure_layer_size,
    "traffic_cpu": figure_traffic_cpu,
    "traffic_generate": figure_traffic_generate,
    "runs_worker": figure_runs_worker,
    "runs_sqs_requests": figure_runs_sqs_requests,
    "segment_reconcile": figure_segment_reconcile,
}


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """Silence file descriptor 1 (Powertools logs and metrics print there); the report is written to a file."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_figure_here(name: str, sizes: Sizes, build_layer_first: bool) -> list[dict[str, Any]]:
    """Compute one figure in this process (the child side of :func:`run_figure`)."""
    with stdout_to_devnull():
        build = build_layer_first and name == "layer_size"
        figures = figure_layer_size(sizes, build=True) if build else FIGURES[name](sizes)
    peak = peak_rss_mb()
    for figure in figures:
        if figure.peak_rss_mb is None:
            figure.peak_rss_mb = peak
    return [figure.as_dict() for figure in figures]


def run_figure(name: str, smoke: bool, build_layer_first: bool) -> list[dict[str, Any]]:
    """Compute one figure in a fresh subprocess; a failure becomes a figure with an ``error``."""
    with tempfile.TemporaryDirectory() as scratch:
        result_path = Path(scratch) / "result.json"
        command = [sys.executable, "-m", "local.bench", "--figure", name, "--result", str(result_path)]
        if smoke:
            command.append("--smoke")
        if build_layer_first:
            command.append("--build-layer")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(SHARED)])}
        started = time.perf_counter()
        try:
            completed = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS
            )
            error = None if completed.returncode == 0 else completed.stderr[-3000:] or f"exit {completed.returncode}"
        except subprocess.TimeoutExpired:
            error = f"timed out after {CHILD_TIMEOUT_SECONDS} s"
        seconds = round(time.perf_counter() - started, 1)
        if error is None and result_path.exists():
            figures: list[dict[str, Any]] = json.loads(result_path.read_text())
            for figure in figures:
                figure["seconds"] = seconds
            return figures
    failed = Figure(name, name, None, None, None, "", "", False, {"error": error or "no result"}).as_dict()
    failed["seconds"] = seconds
    return [failed]


def layer_needs_build() -> bool:
    """The layer is missing or older than what it is built from (its Makefile, pins, package and configuration)."""
    marker = LAYER_DIR / "python"
    if not marker.is_dir():
        return True
    built = marker.stat().st_mtime
    sources = [SHARED / "requirements.txt", SHARED / "Makefile", SHARED / "find-python3.13"]
    sources += [*(SHARED / "flagbridge").rglob("*.py"), *(SHARED / "config").iterdir()]
    return any(source.stat().st_mtime > built for source in sources)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def spread(figure: dict[str, Any]) -> str:
    """The IQR column: of the per-round ratio when the figure has one, else of the measured value; "-" if counted."""
    if figure.get("ratio_iqr"):
        low, high = figure["ratio_iqr"]
        return f"{_format(low)}\u2013{_format(high)}x"
    if figure.get("measured_iqr"):
        low, high = figure["measured_iqr"]
        return f"{_format(low)}\u2013{_format(high)} {figure['unit']}".rstrip()
    return "-"


def table(figures: list[dict[str, Any]]) -> str:
    """The report as a Markdown table (what the README's performance section shows)."""
    header = ["figure", "measured", "floor", "ratio", "IQR", "target", "pass", "peak RSS MB"]
    rows = [header, ["---"] * len(header)]
    for figure in figures:
        passed = {True: "yes", False: "**no**", None: "-"}[figure["pass"]]
        if figure["details"].get("error"):
            passed = "error"
        unit = f" {figure['unit']}" if figure["measured"] is not None and figure["unit"] else ""
        rows.append(
            [
                figure["title"],
                _format(figure["measured"]) + unit,
                _format(figure["floor"]) + (unit if figure["floor"] is not None else ""),
                _format(figure["ratio"]) + ("x" if figure["ratio"] is not None else ""),
                spread(figure),
                figure["target"],
                passed,
                _format(figure["peak_rss_mb"]),
            ]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def run(names: Sequence[str], smoke: bool, output: Path, build: bool | None = None) -> dict[str, Any]:
    """Run the figures (each in its own subprocess), write the JSON report, return it."""
    started = time.perf_counter()
    sizes = SMOKE if smoke else FULL
    build_first = (not smoke and layer_needs_build()) if build is None else build
    figures: list[dict[str, Any]] = []
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        figures.extend(run_figure(name, smoke, build_first and name == "layer_size"))
    report = {
        "smoke": smoke,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "sizes": asdict(sizes),
        "seconds": round(time.perf_counter() - started, 1),
        "all_pass": all(f["pass"] is not False for f in figures),
        "figures": figures,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.bench", description="Performance benchmark: every figure a ratio against a floor."
    )
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one run each (checks the benchmark runs)")
    parser.add_argument("--only", action="append", choices=sorted(FIGURES), help="run only these figures")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON report (default build/bench.json)")
    parser.add_argument("--build-layer", action="store_true", help="run `sam build SharedLayer` before measuring it")
    parser.add_argument("--figure", choices=sorted(FIGURES), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.figure:  # child process: one figure, result to a file
        sizes = SMOKE if args.smoke else FULL
        figures = run_figure_here(args.figure, sizes, args.build_layer)
        assert args.result is not None
        args.result.write_text(json.dumps(figures), encoding="utf-8")
        return 0
    names = args.only or list(FIGURES)
    report = run(names, args.smoke, args.output, True if args.build_layer else None)
    print(table(report["figures"]))
    print(f"\n{len(report['figures'])} figures in {report['seconds']} s; report: {args.output}")
    return 0 if report["all_pass"] or args.smoke else 1
