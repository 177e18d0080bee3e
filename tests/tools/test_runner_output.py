"""``make run``'s terminal: one readable line per invocation and the summary; the handlers' JSON logs and metrics
in ``build/local-run.log`` (here a temporary file), or on the terminal with ``--verbose``."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from flagbridge_ops.output import coloured, use_colour
from local.runner.output import (
    HandlerOutput,
    InvocationTally,
    RepeatFilter,
    describe_invocation,
    tally_events,
)

ROOT = Path(__file__).resolve().parents[2]


def _record(request_id: str, level: str, message: str, **fields: object) -> str:
    base = {"level": level, "location": "handler:1", "message": message, "function_request_id": request_id}
    return json.dumps({**base, "function_name": "fn", "cold_start": False, **fields})


def test_handler_output_passes_every_line_through_and_keeps_records_per_request() -> None:
    sink = io.StringIO()
    output = HandlerOutput(sink)
    print(_record("r1", "INFO", "impressions ingested", received=12, accepted=9), file=output)
    print('{"_aws": {"Timestamp": 1}, "ColdStart": [1.0]}', file=output)  # a metric blob: no request id
    output.write(_record("r2", "WARNING", "delivery incomplete", failed_records=1)[:20])  # a line in two writes
    output.write(_record("r2", "WARNING", "delivery incomplete", failed_records=1)[20:] + "\n")
    assert sink.getvalue().count("\n") == 3
    assert [r["message"] for r in output.records_for("r1")] == ["impressions ingested"]
    assert output.records_for("r1") == []  # forgotten once read
    assert [r["failed_records"] for r in output.records_for("r2")] == [1]


def test_records_written_by_worker_threads_belong_to_their_invocation() -> None:
    output = HandlerOutput(io.StringIO())

    def write(request_id: str) -> None:
        for index in range(50):
            print(_record(request_id, "INFO", "row", index=index), file=output)

    threads = [threading.Thread(target=write, args=(f"r{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in range(4):
        assert [r["index"] for r in output.records_for(f"r{n}")] == list(range(50))


def test_an_invocation_line_names_function_outcome_counts_and_problems() -> None:
    http_event = {"rawPath": "/split/impressions", "requestContext": {"http": {"method": "POST"}}}
    records = [json.loads(_record("r", "INFO", "impressions ingested", received=12, accepted=9, reasons={"x": 1}))]
    line = describe_invocation("impressions_webhook", http_event, {"statusCode": 200}, None, 0.0123, records)
    expected = "impressions_webhook POST /split/impressions -> 200 in 12 ms"
    expected += " | impressions ingested: received=12 accepted=9"
    assert " ".join(line.split()) == expected  # the nested ``reasons`` is left to the log file
    sqs_event = {"Records": [{}, {}, {}]}
    problems = [json.loads(_record("r", "WARNING", "delivery incomplete", failed_records=1)) for _ in range(2)]
    result = {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    line = describe_invocation("destination_delivery", sqs_event, result, None, 0.5, problems)
    assert "3 records, 1 failed in 500 ms" in line
    assert line.endswith("| warning: delivery incomplete: failed_records=1 (+1 more)")
    assert "raised KeyError" in describe_invocation("cdp_router", sqs_event, None, KeyError("x"), 0.1, [])


def _run_until_summary(*options: str, log_file: Path) -> tuple[str, str]:
    """``python -m local.runner`` with the sample replay; its stdout (through the summary) and stderr."""
    # The demo that follows the replay has its own test (tests/e2e/test_demo_loop.py); here only the replay.
    env = {**os.environ, "PORT": "0", "PYTHONUNBUFFERED": "1", "FLAGBRIDGE_NO_DEMO": "1"}
    for name in ("AWS_ENDPOINT_URL", "MOTO_PORT", "FLAGBRIDGE_CONFIG", "FLAGBRIDGE_NO_REPLAY"):
        env.pop(name, None)
    command = [sys.executable, "-m", "local.runner", "--log-file", str(log_file), *options]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout: list[str] = []
    watchdog = threading.Timer(120, process.send_signal, [signal.SIGINT])  # a runner that hangs still ends
    watchdog.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            stdout.append(line)
            if line.strip() == "Ctrl-C to stop.":
                break
    finally:
        watchdog.cancel()
        process.send_signal(signal.SIGINT)
        try:
            rest, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, stderr = process.communicate()
    return "".join(stdout) + rest, stderr


def test_make_run_shows_one_line_per_invocation_and_writes_the_json_logs_to_a_file(tmp_path: Path) -> None:
    log_file = tmp_path / "local-run.log"
    stdout, stderr = _run_until_summary(log_file=log_file)
    assert "Ctrl-C to stop." in stdout, stderr[-3000:]
    # No JSON log line and no metric blob (the summary may quote a response body, indented).
    assert not [line for line in (stdout + stderr).splitlines() if line.startswith("{")]
    assert "HTTP 200" in stdout and "Internal Server Error" not in stdout  # the replay itself worked
    assert f"Handler logs and metrics (JSON, one line each): {log_file}" in stdout
    invocations = [line for line in stderr.splitlines() if " in " in line and " ms" in line]
    assert any("impressions_webhook" in line and "POST /split/impressions -> 200" in line for line in invocations)
    # The webhook's summary is on an invocation line, though not always its own: the runner's HTTP and queue lanes
    # run at the same time and share the handlers' one log context (a known limit, docs/demo.md).
    assert any("impressions ingested" in line and "accepted=9" in line for line in invocations), stderr
    assert any("impressions_processor" in line and "1 record in" in line for line in invocations), stderr
    assert any("destination_delivery" in line and "destination=split" in line for line in invocations), stderr
    logged = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    messages = {record.get("message") for record in logged}
    assert {"impressions ingested", "impression batch processed", "batches routed", "delivered"} <= messages
    assert any("_aws" in record for record in logged)  # the metric blobs too


def test_verbose_prints_the_json_logs_on_the_terminal(tmp_path: Path) -> None:
    log_file = tmp_path / "local-run.log"
    stdout, stderr = _run_until_summary("--verbose", "--no-replay", log_file=log_file)
    assert "Ctrl-C to stop." in stdout, stderr[-3000:]
    assert not log_file.exists()
    assert "Handler logs and metrics" not in stdout


def test_the_tally_prints_one_line_per_period_and_the_rest_when_flushed(capsys) -> None:  # type: ignore[no-untyped-def]
    now = [0.0]
    tally = InvocationTally(5.0, clock=lambda: now[0])
    for _ in range(3):
        tally.count("cdp_router")
    tally.count("oracle_counter")
    assert capsys.readouterr().err == ""
    now[0] = 5.0
    tally.count("cdp_router")  # the period is over: every count so far goes out, in one line
    assert capsys.readouterr().err.splitlines() == [
        "[flagbridge-local] invocations ok in the last 5 s: cdp_router 4, oracle_counter 1",
    ]
    now[0] = 7.0
    tally.count("oracle_counter")
    tally.flush()
    assert capsys.readouterr().err.splitlines() == [
        "[flagbridge-local] invocations ok in the last 2 s: oracle_counter 1"
    ]
    tally.flush()  # nothing counted: nothing printed
    assert capsys.readouterr().err == ""


def test_receiver_events_are_tallied_per_event_name_and_key_never_one_line_each() -> None:
    events = [{"eventTypeId": "flagbridge.result", "key": f"qa-{n % 8}"} for n in range(1000)]
    events += [{"eventTypeId": "api_response", "key": "qa-1"}] * 3
    lines = tally_events(events)
    assert lines == [
        "api_response: 3 from 1 key(s) (qa-1 3)",
        "flagbridge.result: 1000 from 8 key(s) (qa-0 125, qa-1 125, qa-2 125, qa-3 125, qa-4 125, qa-5 125,"
        " and 2 more keys)",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    text = "on: FAIL (5xx rate)\noff: PASS\nPASSED is not a state"
    assert use_colour(_Terminal(), {}) is True
    assert coloured(text, True) == (
        "on: \033[31mFAIL\033[0m (5xx rate)\noff: \033[32mPASS\033[0m\nPASSED is not a state"
    )
    assert use_colour(io.StringIO(), {}) is False  # a file or a pipe
    assert use_colour(_Terminal(), {"NO_COLOR": "1"}) is False
    assert use_colour(_Terminal(), {"TERM": "dumb"}) is False
    assert coloured(text, False) == text


def test_a_scheduled_invocation_repeating_its_line_is_shown_once_until_it_changes() -> None:
    repeats = RepeatFilter()
    schedule = {"source": "aws.events", "detail-type": "Scheduled Event"}
    fail = "oracle_evaluator       ok in 12 ms | oracle verdict: test=t state=FAIL"
    assert not repeats.repeated("oracle_evaluator", schedule, fail)
    assert repeats.repeated("oracle_evaluator", schedule, fail.replace("12 ms", "240 ms"))  # only the time differs
    assert not repeats.repeated("oracle_evaluator", schedule, fail.replace("FAIL", "PASS"))  # the verdict changed
    http = {"rawPath": "/tests", "requestContext": {"http": {"method": "GET"}}}
    line = "oracle_api             GET /tests -> 200 in 3 ms"
    assert not repeats.repeated("oracle_api", http, line) and not repeats.repeated("oracle_api", http, line)
