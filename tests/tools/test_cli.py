"""The ``flagbridge`` command for people: help with an example on every level, exit codes, one-line errors,
and a progress bar only on a terminal.

Failures that depend on the machine (no credentials, an unreachable endpoint) run the command in a fresh
process, as an operator would, so no boto3 state of this test process can hide them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flagbridge_ops.__main__ import build_parser, main
from tests.conftest import QUARANTINE_BUCKET, ROOT

CHECKOUT_PATH = os.pathsep.join(str(ROOT / part) for part in ("layers/shared", "ops", ""))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every level of the command tree: (), ("dlq",), ("dlq", "list"), ..."""
    paths = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                paths += command_paths(child, (*path, name))
    return paths


def run_flagbridge(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``flagbridge ARGS`` in a fresh interpreter, importing this checkout's code."""
    return subprocess.run(
        [sys.executable, "-m", "flagbridge_ops", *args],
        env={**env, "PYTHONPATH": CHECKOUT_PATH},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def bare_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No AWS credentials anywhere: no variables, no files, no instance metadata."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    missing = str(tmp_path / "absent")
    env.update(
        {
            "HOME": str(tmp_path),
            "AWS_CONFIG_FILE": missing,
            "AWS_SHARED_CREDENTIALS_FILE": missing,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_DEFAULT_REGION": "us-east-1",
            **extra,
        }
    )
    return env


def test_every_level_has_help_with_an_example_that_parses(capsys: pytest.CaptureFixture[str]) -> None:
    paths = command_paths(build_parser())
    assert {("dlq", "list"), ("dlq", "show"), ("dlq", "redrive"), ("quarantine", "list")} < set(paths)
    assert ("quarantine", "replay") in paths
    for path in paths:
        assert main([*path, "--help"]) == 0, path
        text = capsys.readouterr().out
        assert "examples:\n  flagbridge " in text, path
        examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        for example in examples:
            words = shlex.split(example.split("  (", 1)[0])
            assert words[0] == "flagbridge"
            build_parser().parse_args(words[1:])  # every example is a valid command line (argparse exits if not)
            if path:
                assert " ".join(path) in example, (path, example)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("flagbridge ")


def test_top_level_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "0  ok" in text and "1  something failed" in text and "2  usage error" in text


def test_exit_codes_ok_failed_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    # 0: a command that ran (nothing configured: it says so)
    assert main(["dlq", "list"], environ={}, out=out) == 0
    assert "no DLQ found" in out.getvalue()
    # 1: something failed, one line on stderr
    assert main(["quarantine", "list"], environ={}, out=io.StringIO()) == 1
    assert (
        one_line(capsys.readouterr().err) == "error: no quarantine bucket: set QUARANTINE_BUCKET, --bucket or --stack"
    )
    # 2: usage errors, from argparse and from the command
    for argv in (
        ["dlq"],
        ["no-such-command"],
        ["dlq", "list", "--no-such-option"],
        ["quarantine", "list", "--since", "May"],
    ):
        assert main(argv, environ={}) == 2, argv
        assert "usage: flagbridge" in capsys.readouterr().err
    assert main(["dlq", "show"], environ={}, out=io.StringIO()) == 2
    assert one_line(capsys.readouterr().err) == (
        "flagbridge: error: name a DLQ (see `flagbridge dlq list`) or pass --queue-url"
    )


def test_global_options_work_before_and_after_the_command() -> None:
    before = build_parser().parse_args(["--json", "--stack", "s1", "dlq", "list"])
    after = build_parser().parse_args(["dlq", "list", "--json", "--stack", "s1"])
    neither = build_parser().parse_args(["dlq", "list"])
    assert (before.json, before.stack) == (after.json, after.stack) == (True, "s1")
    assert (neither.json, neither.stack) == (False, None)


def test_missing_credentials_or_region_are_one_line(tmp_path: Path) -> None:
    env = bare_environment(tmp_path, IMPRESSIONS_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/q")
    for args in (["dlq", "list"], ["--stack", "flagbridge-dev", "dlq", "list"]):
        result = run_flagbridge(args, env, tmp_path)
        assert result.returncode == 1, result.stderr
        assert one_line(result.stderr).startswith("error: no AWS credentials found: set AWS_PROFILE")
        assert result.stdout == ""
    # boto3 reads AWS_DEFAULT_REGION (not AWS_REGION): without it, that is the one line
    env = {name: value for name, value in env.items() if name != "AWS_DEFAULT_REGION"}
    result = run_flagbridge(["dlq", "list"], {**env, "AWS_REGION": "us-east-1"}, tmp_path)
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("error: no AWS region: set AWS_DEFAULT_REGION")


def test_an_unreachable_endpoint_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on (bound, never listening)
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        env = bare_environment(
            tmp_path,
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_MAX_ATTEMPTS="1",
            QUARANTINE_BUCKET="quarantine",
        )
        result = run_flagbridge(["--json", "quarantine", "list"], env, tmp_path)
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"error: cannot reach {endpoint}") and "AWS_ENDPOINT_URL" in line
    assert result.stdout == ""


def test_python_m_local_replay_remains_an_alias(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local.replay", "dlq", "--help"],
        env={**os.environ, "PYTHONPATH": CHECKOUT_PATH},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: flagbridge dlq" in result.stdout


def _quarantine_one_impression(aws: dict[str, Any]) -> None:
    document = {
        "source": "split-impressions",
        "request_id": "req-1",
        "items": [{"index": 0, "reason": "invalid_impression", "detail": "...", "item": {"key": "u-1"}}],
    }
    key = "split-impressions/2026/01/01/req-1.json"
    aws["s3"].put_object(Bucket=QUARANTINE_BUCKET, Key=key, Body=json.dumps(document).encode())


def test_the_progress_bar_is_drawn_only_on_a_terminal_and_never_with_json(aws: dict[str, Any]) -> None:
    _quarantine_one_impression(aws)
    argv = ["quarantine", "replay", "--dry-run"]
    for err, extra in ((io.StringIO(), []), (Terminal(), ["--json"]), (Terminal(), ["--no-progress"])):
        assert main([*extra, *argv], out=io.StringIO(), err=err) == 0
        assert err.getvalue() == "", extra
    terminal = Terminal()
    assert main(argv, out=io.StringIO(), err=terminal) == 0
    assert "replay: 1/1 [" in terminal.getvalue() and terminal.getvalue().endswith("100%\x1b[K\n")
