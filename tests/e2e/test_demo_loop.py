"""``make run`` shows the whole loop: the demo at start-up, end to end over HTTP (issue 11's acceptance), and the
terminal as a person reads it (issue 19).

One run of ``python -m local.runner`` as ``make run`` starts it (sample replay, then the demo), stdout and stderr
in one pipe as a terminal shows them, serves every test here: the sample service under test
(:mod:`local.demo.service`) next to the bridge, ``flagbridge traffic run`` of the shipped plan as testers, results
and the service's own events and impressions through the bridge, the oracle's scheduled evaluation, its HTML
report, and the local Split Admin receiver. The summary is read from the terminal (each summary is one write, so
the stderr lines come between the two summaries, never inside one); every claim is then checked against the bridge
itself (``GET /tests/...``, ``/_local/receivers``) and the run's manifest:

* the oracle judged ``on`` FAIL and ``off`` PASS, counting every request of the run exactly once;
* the Split receiver got each case's result and the service's event of it exactly once, from testers only;
* the analytics webhook got no event of the run (while it did get the sample replay's customer events);
* the flag was killed once, and the kill confirmed: the service served it killed, and the oracle counted the
  testers' next events under ``(killed)`` (t0, t1 and t2 in the report and the summary).

The terminal up to the demo's summary and "Ctrl-C to stop.": it fits in about a screenful and a half (at most 150
lines besides the half-minute progress tallies, where it printed 2,986); the receiver's events are tallies, never
one line per event; the bridge's summary comes as soon as the bridge is ready, before the demo's minute; the demo
reports its traffic with the rate it achieved against the rate asked; no colour when the output is not a terminal.

Deterministic: fixed seed, and every wait is a poll with a deadline (the demo's own, then this test's).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from local.demo.run import FLAG, TEST, TESTERS, analytics_webhook_path
from local.demo.service import treatment_for
from local.receivers import split_event_problems
from tests.e2e.conftest import ROOT, Bridge, free_port

pytestmark = pytest.mark.e2e

ORACLE_TOKEN = "local-oracle-token"
SUMMARY_DEADLINE = 900.0  # seconds; about one on an idle laptop, more on 2 busy CI cores
MAX_LINES = 150
LAST_LINE = "Ctrl-C to stop."


@dataclass
class Demo:
    bridge: Bridge
    terminal: list[str]  # stdout and stderr as one pipe gave them, up to LAST_LINE
    workdir: Path

    @property
    def stdout(self) -> str:
        """The terminal's text, where the summaries are whole (each is one write on stdout)."""
        return "".join(f"{line}\n" for line in self.terminal)


def _read_terminal(stream: IO[str], log_path: Path, lines: list[str], summarized: threading.Event) -> None:
    """Every line into the log (the pipe is drained until the runner exits), the terminal's up to LAST_LINE."""
    with log_path.open("w", encoding="utf-8") as log:
        for line in stream:
            log.write(line)
            log.flush()
            if not summarized.is_set():
                lines.append(line.rstrip("\n"))
                if line.strip() == LAST_LINE:
                    summarized.set()
    summarized.set()  # the runner ended (before its summary, if LAST_LINE is not the last line read)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    directory = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLAGBRIDGE_", "NO_COLOR", "MOTO_"))}
    env.update({"PORT": str(port), "PYTHONUNBUFFERED": "1", "FLAGBRIDGE_DEMO_DIR": str(directory),
                "FLAGBRIDGE_DEMO_TIMEOUT": str(SUMMARY_DEADLINE - 120)})  # fmt: skip
    log_path = directory / "runner.terminal"
    process = subprocess.Popen(
        [sys.executable, "-m", "local.runner", "--log-file", str(directory / "local-run.log")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    bridge = Bridge(f"http://127.0.0.1:{port}", process, log_path)  # type: ignore[arg-type]
    lines: list[str] = []
    summarized = threading.Event()
    reader = threading.Thread(target=_read_terminal, args=(process.stdout, log_path, lines, summarized), daemon=True)
    reader.start()
    try:
        summarized.wait(SUMMARY_DEADLINE)  # a hung runner still ends: stopped below
        (directory / "terminal.txt").write_text("\n".join(lines), encoding="utf-8")
        text = "\n".join(lines)
        assert LAST_LINE in lines, f"no summary:\n{text}\n{bridge.log_tail()}"
        yield Demo(bridge, lines, directory)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=10)


def manifest_cases(workdir: Path) -> tuple[str, list[dict[str, Any]]]:
    [path] = workdir.glob("demo-*.ndjson")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return str(records[0]["run_id"]), [record for record in records if record["type"] == "case"]


def test_make_run_shows_the_loop_and_the_bridge_agrees(demo: Demo) -> None:
    bridge, stdout = demo.bridge, demo.stdout
    run_id, cases = manifest_cases(demo.workdir)
    assert len(cases) == 1400 and len({case["id"] for case in cases}) == 1400

    # The summary, as a person reads it
    assert "The loop, end to end" in stdout, stdout[-4000:]
    assert f"traffic run {run_id}: 1400 requests sent as {len(TESTERS)} testers" in stdout
    assert re.search(rf"{FLAG}=on: FAIL\n\s+FAIL {FLAG}=on 5xx rate", stdout), stdout[-4000:]
    assert f"{FLAG}=off: PASS" in stdout and f"PASS {FLAG}=off 5xx rate 0%" in stdout
    assert re.search(r"analytics webhook: 0 events of the run \([1-9]\d* in all, from other traffic\)", stdout)
    assert "kill recorded by the local Split Admin receiver: new_checkout in Production" in stdout
    segment_line = f"segment Production/flagbridge_testers (local Split Admin receiver): the demo's {len(TESTERS)}"
    assert f"{segment_line} testers added ({TESTERS[0]}..{TESTERS[-1]})" in stdout, stdout[-4000:]
    html = demo.workdir / f"{TEST}.html"
    assert f"HTML report (the oracle's `flagbridge verdict --html`): {html}" in stdout
    assert "<svg" in html.read_text(encoding="utf-8") and TEST in html.read_text(encoding="utf-8")

    # The oracle's own answer: on FAILs, off PASSes, every request of the run counted once (its result only)
    reply = bridge.request("GET", f"/tests/{TEST}", None, {"Authorization": f"Bearer {ORACLE_TOKEN}"})
    assert reply.status == 200, reply.body
    report = reply.body["report"]
    verdicts = {(v["treatment"], v["metric"]): v for v in report["verdicts"]}
    assert reply.body["state"] == "FAIL"
    assert verdicts[("on", "5xx rate")]["state"] == "FAIL"
    assert {v["state"] for (treatment, _), v in verdicts.items() if treatment == "off"} == {"PASS"}
    failures = sum(1 for case in cases if case["response"].get("status", 0) >= 500)
    on_failures = sum(
        1 for case in cases if case["response"].get("status", 0) >= 500 and treatment_for(case["tester"]) == "on"
    )
    assert failures == on_failures > 0  # the bug is in `on` only
    unattributed = report.get("unattributed", {}).get("5xx rate", {"n": 0, "k": 0})
    counted = verdicts[("on", "5xx rate")]["n"] + verdicts[("off", "5xx rate")]["n"] + unattributed["n"]
    bad = verdicts[("on", "5xx rate")]["k"] + verdicts[("off", "5xx rate")]["k"] + unattributed["k"]
    assert (counted, bad) == (len(cases), failures)  # not 2,800: the service's api_response of a run is left out

    # Split: each case's result and the service's event of it, exactly once, testers only, as Split accepts them
    received = bridge.request("GET", "/_local/receivers").body
    results = Counter(
        e["properties"]["case_id"]
        for e in received["split_events"]
        if e["eventTypeId"] == "flagbridge_test_request" and e["properties"].get("run_id") == run_id
    )
    responses = Counter(
        e["properties"]["flagbridge_case"]
        for e in received["split_events"]
        if e["eventTypeId"] == "api_response" and e["properties"].get("flagbridge_run") == run_id
    )
    expected = Counter(case["id"] for case in cases)
    assert results == expected and responses == expected
    of_run = [e for e in received["split_events"] if run_id in json.dumps(e)]
    assert {e["key"] for e in of_run} <= set(TESTERS) and {e["trafficTypeName"] for e in of_run} == {"user"}
    assert all(split_event_problems(event) == [] for event in of_run)
    assert all(re.fullmatch(r"qa-.*", key) for key in TESTERS)  # testers by the shipped rule qa-key-prefix

    # Analytics: nothing of the run, while customers' events did arrive (so "none" is not an empty receiver)
    analytics = {path: batches for path, batches in received["webhooks"].items() if path == analytics_webhook_path()}
    assert sum(len(batch.get("events") or []) for batches in analytics.values() for batch in batches) > 0
    text = json.dumps(analytics)
    assert run_id not in text and not any(key in text for key in TESTERS)

    # The kill: once, for the flag, in the workspace the shipped test names
    kills = [kill for kill in received["kills"] if kill["flag"] == FLAG]
    assert kills == [{"workspace": "demo-workspace", "flag": FLAG, "environment": "Production",
                      "body": {"comment": "flagbridge oracle: FAIL verdict"}}]  # fmt: skip
    assert report["kill"]["status"] == "killed"

    # The kill proven end to end: t0 FAIL -> t1 Split accepted -> t2 the testers' `killed` events counted (the
    # service served the flag killed after the kill, through the impressions webhook, the profiles and the lane)
    kill = report["kill"]
    timeline = kill["timeline"]
    assert (kill["confirmation"], kill["confirmed"]) == ("confirmed", True)
    assert timeline["failed_at"] <= timeline["claimed_at"] <= timeline["accepted_at"] < timeline["confirmed_at"]
    assert timeline["accept_ms"] == timeline["accepted_at"] - timeline["failed_at"]
    assert timeline["confirm_ms"] == timeline["confirmed_at"] - timeline["accepted_at"] > 0
    assert report["killed_versions"] and kill["comment"] == "flagbridge oracle: FAIL verdict"
    assert f"oracle: Kill of version {report['version']}: killed, confirmed" in stdout
    assert re.search(r"t1 Split accepted +\d{4}-\d\d-\d\d .*\(\+\d+\.\d s after t0\)", stdout), stdout[-3000:]
    assert re.search(r"t2 `killed` counted +\d{4}-\d\d-\d\d .*\(\+\d+\.\d s after t1\)", stdout), stdout[-3000:]

    # The segment: the demo's testers, registered through PUT /testers, are in the receiver's segment
    assert set(TESTERS) <= set(received["segments"]["Production/flagbridge_testers"])


# The terminal as a person reads it (issue 19)


def test_a_warm_run_fits_in_150_lines_and_ends_with_the_demo(demo: Demo) -> None:
    terminal = demo.terminal
    text = "\n".join(terminal)
    assert terminal and terminal[-1] == LAST_LINE, text[-3000:]
    [took] = re.findall(r"The loop, end to end .*, in (\d+) s$", text, re.MULTILINE)
    # The half-minute progress tallies come with time, not with work: a busier machine's slower demo prints more of
    # them (one per 30 s at most), so they are bounded by the demo's duration and left out of the 150.
    elapsed = [re.search(r"invocations ok in the last (\d+) s: ", line) for line in terminal]
    periodic = [line for line, match in zip(terminal, elapsed, strict=True) if match and int(match[1]) >= 30]
    assert len(periodic) <= int(took) // 30 + 1, "\n".join(periodic)
    assert len(terminal) - len(periodic) <= MAX_LINES, f"{len(terminal)} lines:\n{text}"


def test_no_line_per_event(demo: Demo) -> None:
    terminal = demo.terminal
    assert not [line for line in terminal if re.search(r"key=\S+ trafficType=", line)]
    tallies = [line for line in terminal if re.match(r"\s+api_response: \d+ from \d+ key\(s\) \(", line)]
    assert len(tallies) <= 1
    # Each tester key is named on a few lines at most (tallies, the demo's own lines), never once per event.
    assert max(sum(f"qa-demo-0{n}" in line for line in terminal) for n in range(1, 9)) <= 3


def test_the_summary_comes_when_the_bridge_is_ready_and_the_demo_reports_its_rate(demo: Demo) -> None:
    terminal = demo.terminal
    ready = next(index for index, line in enumerate(terminal) if "] ready on http://127.0.0.1:" in line)
    summary = next(index for index, line in enumerate(terminal) if line.startswith("flagbridge is running locally"))
    started = next(index for index, line in enumerate(terminal) if "demo: sample service http://" in line)
    assert ready < summary < started
    [traffic] = [line for line in terminal if "demo: traffic run demo-" in line]
    assert re.search(r"1400 requests sent in [\d.]+ s \(.*\); rate [\d.]+/s of 200/s asked", traffic), traffic
    periods = [line for line in terminal if "invocations ok in the last" in line]
    assert periods and all(line.count("invocations") == 1 for line in periods)


def test_no_colour_without_a_terminal(demo: Demo) -> None:
    terminal = demo.terminal
    assert not [line for line in terminal if "\033[" in line]
    assert any("FAIL" in line for line in terminal)  # the verdicts are there, uncoloured
