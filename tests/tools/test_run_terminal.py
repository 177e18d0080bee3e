"""A warm ``make run`` as a person reads it (issue 19): the whole terminal, replay and demo included.

One run of ``python -m local.runner`` with the demo, stdout and stderr in one pipe (as a terminal shows them),
until the demo's summary and "Ctrl-C to stop.". Checked: it fits in about a screenful and a half (at most 150
lines, where it printed 2,986); the receiver's events are tallies, never one line per event; the bridge's summary
comes as soon as the bridge is ready, before the demo's minute; the demo reports its traffic with the rate it
achieved against the rate asked; no colour when the output is not a terminal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

MAX_LINES = 150


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    directory = tmp_path_factory.mktemp("make-run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLAGBRIDGE_", "NO_COLOR"))}
    env.update({"PORT": str(free_port()), "PYTHONUNBUFFERED": "1", "FLAGBRIDGE_DEMO_DIR": str(directory / "demo")})
    command = [sys.executable, "-m", "local.runner", "--log-file", str(directory / "local-run.log")]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    watchdog = threading.Timer(600, process.send_signal, [signal.SIGINT])  # a runner that hangs still ends
    watchdog.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip() == "Ctrl-C to stop.":
                break
    finally:
        watchdog.cancel()
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    (directory / "terminal.txt").write_text("\n".join(lines), encoding="utf-8")
    return lines


def test_a_warm_run_fits_in_150_lines_and_ends_with_the_demo(terminal: list[str]) -> None:
    text = "\n".join(terminal)
    assert terminal and terminal[-1] == "Ctrl-C to stop.", text[-3000:]
    assert "The loop, end to end" in text, text[-3000:]
    assert len(terminal) <= MAX_LINES, f"{len(terminal)} lines:\n{text}"


def test_no_line_per_event(terminal: list[str]) -> None:
    assert not [line for line in terminal if re.search(r"key=\S+ trafficType=", line)]
    tallies = [line for line in terminal if re.match(r"\s+api_response: \d+ from \d+ key\(s\) \(", line)]
    assert len(tallies) <= 1
    # Each tester key is named on a few lines at most (tallies, the demo's own lines), never once per event.
    assert max(sum(f"qa-demo-0{n}" in line for line in terminal) for n in range(1, 9)) <= 3


def test_the_summary_comes_when_the_bridge_is_ready_and_the_demo_reports_its_rate(terminal: list[str]) -> None:
    ready = next(index for index, line in enumerate(terminal) if "] ready on http://127.0.0.1:" in line)
    summary = next(index for index, line in enumerate(terminal) if line.startswith("flagbridge is running locally"))
    demo = next(index for index, line in enumerate(terminal) if "demo: sample service http://" in line)
    assert ready < summary < demo
    [traffic] = [line for line in terminal if "demo: traffic run demo-" in line]
    assert re.search(r"1400 requests sent in [\d.]+ s \(.*\); rate [\d.]+/s of 200/s asked", traffic), traffic
    periods = [line for line in terminal if "invocations ok in the last" in line]
    assert periods and all(line.count("invocations") == 1 for line in periods)


def test_no_colour_without_a_terminal(terminal: list[str]) -> None:
    assert not [line for line in terminal if "\033[" in line]
    assert any("FAIL" in line for line in terminal)  # the verdicts are there, uncoloured
