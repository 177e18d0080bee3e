"""``flagbridge testers add|remove|list`` on moto, in process: durations, refusals, pages, the IAM principal.

The same commands against the local runner (a fresh process, the API seeing the same registry) are in
``test_cli_local_runner.py``.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flagbridge_ops.__main__ import main
from flagbridge_ops.commands.testers import parse_duration
from flagbridge_ops.errors import UsageError
from tests.conftest import TESTERS_TABLE


@pytest.fixture
def cli(aws: dict[str, Any]) -> Iterator[Any]:
    from flagbridge_ops.resources import Clients

    clients = Clients()

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = main(list(argv), environ={"TESTERS_TABLE": TESTERS_TABLE}, clients=clients, out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    yield run


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 604800), ("1h30m", 5400)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "2", "h", "2x", "1h 30", "-1h", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_add_list_remove(cli: Any) -> None:
    status, out, err = cli("testers", "add", "user", "qa-cli", "--for", "2h", "--reason", "release check")
    assert status == 0, err
    assert out.startswith("registered user qa-cli as a tester until ")
    status, out, _ = cli("--json", "testers", "list")
    (tester,) = json.loads(out)["testers"]
    assert tester["registeredBy"].startswith("iam:arn:aws:")  # sts:GetCallerIdentity of the credentials
    assert 7190 < tester["expiresAtEpoch"] - time.time() <= 7201
    status, out, _ = cli("testers", "list")
    assert "qa-cli" in out and out.rstrip().endswith("1 tester(s)")
    assert cli("testers", "remove", "user", "qa-cli")[0] == 0
    status, _, err = cli("testers", "remove", "user", "qa-cli")
    assert (status, err) == (1, "error: user qa-cli is not a registered tester\n")


def test_refusals_are_usage_errors_and_write_nothing(cli: Any, aws: dict[str, Any]) -> None:
    cases = [
        ("testers", "add", "user", "qa-cli", "--for", "31d", "--reason", "x"),
        ("testers", "add", "user", "qa-cli", "--expires-at", "yesterday", "--reason", "x"),
        ("testers", "add", "user", " qa", "--for", "1h", "--reason", "x"),
        ("testers", "add", "us er", "qa", "--for", "1h", "--reason", "x"),
        ("testers", "add", "user", "qa", "--for", "1h", "--reason", ""),
        ("testers", "list", "--limit", "0"),
        # keys that display as another (docs/testers.md#keys), as through the API
        ("testers", "add", "user", "qa-\u202ecli", "--for", "1h", "--reason", "x"),
        ("testers", "add", "user", "qa\u200b-cli", "--for", "1h", "--reason", "x"),
        ("testers", "add", "user", "\ufeffqa-cli", "--for", "1h", "--reason", "x"),
        ("testers", "add", "user", "qa-e\u0301", "--for", "1h", "--reason", "x"),
        ("testers", "add", "user", "qa-\udcff", "--for", "1h", "--reason", "x"),  # an undecodable argv byte
        ("testers", "add", "user", "qa", "--for", "9" * 5000 + "s", "--reason", "x"),
    ]
    for argv in cases:
        status, _, err = cli(*argv)
        assert status == 2 and err.startswith("flagbridge: error: ") and err.count("\n") == 1, (argv, err)
    assert aws["ddb"].scan(TableName=TESTERS_TABLE)["Items"] == []
    # argparse itself: --reason is required, --for and --expires-at exclude each other
    assert cli("testers", "add", "user", "qa", "--for", "1h")[0] == 2
    assert cli("testers", "add", "user", "qa", "--for", "1h", "--expires-at", "1", "--reason", "x")[0] == 2


def test_list_follows_pages_up_to_the_limit(cli: Any) -> None:
    from flagbridge import runtime

    runtime.tester_registry().register_pool("user", [f"p-{i:03d}" for i in range(130)], 600, "pool", "test")
    listed = json.loads(cli("--json", "testers", "list")[1])
    assert [t["key"] for t in listed["testers"]] == [f"p-{i:03d}" for i in range(130)]
    assert listed["truncated"] is False
    listed = json.loads(cli("--json", "testers", "list", "--limit", "120")[1])
    assert len(listed["testers"]) == 120 and listed["truncated"] is True


def test_without_a_table_it_says_what_to_set(aws: dict[str, Any]) -> None:
    err = io.StringIO()
    assert main(["testers", "list"], environ={}, out=io.StringIO(), err=err) == 1
    assert err.getvalue() == "error: no tester registry table: set TESTERS_TABLE or pass --stack\n"
