"""``flagbridge traffic``: refusals send nothing; a run sends and reports; replays are byte-identical; shrink works.

The service under test is :class:`local.traffic_target.TrafficTarget` (127.0.0.1, records exact bytes); a
second one stands in for the bridge's Events API and records the result batches. The command runs in a fresh
interpreter, as an operator runs it. (The real bridge's routing of the results is tests/e2e/test_traffic_e2e.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.traffic_target import TrafficTarget
from tests.conftest import ROOT

CHECKOUT_PATH = os.pathsep.join(str(ROOT / part) for part in ("layers/shared", "ops", ""))
EXAMPLES = ROOT / "examples" / "traffic"
SHIPPED_CONFIG = ROOT / "layers" / "shared" / "config" / "flagbridge.yaml"
TRAFFIC_SECTION = """
traffic:
  allowlist: [localhost, 127.0.0.1]
  testers:
    - {key: qa-bot-01, email: qa-bot-01@qa.example.com}
    - {key: qa-bot-02, email: qa-bot-02@qa.example.com}
"""
ENV = {
    "FLAGBRIDGE_RUN_TAG_KEY": "tools-run-tag-key",
    "FLAGBRIDGE_MPARTICLE_KEY": "local-mparticle-key",
    "FLAGBRIDGE_MPARTICLE_SECRET": "local-mparticle-secret",
}


def write_config(directory: Path, section: str = TRAFFIC_SECTION) -> Path:
    path = directory / "flagbridge.yaml"
    path.write_text(SHIPPED_CONFIG.read_text(encoding="utf-8") + section, encoding="utf-8")
    return path


def flagbridge(args: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLAGBRIDGE_CONFIG"}
    env.update({**ENV, **extra, "PYTHONPATH": CHECKOUT_PATH})
    return subprocess.run(
        [sys.executable, "-m", "flagbridge_ops", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def sql_probe_in_query(raw: bytes, target: str) -> int:
    """The service's one bug: an SQL probe in the query string is a 500; otherwise 400 for bad JSON, else 202."""
    if "?" in target and "UNION%20SELECT" in target.split("?", 1)[1]:
        return 500
    body = raw.split(b"\r\n\r\n", 1)[1]
    try:
        json.loads(body)
    except ValueError:
        return 400
    return 202


@pytest.fixture
def service() -> Iterator[TrafficTarget]:
    target = TrafficTarget(respond=sql_probe_in_query, throttle_first=1).start()
    yield target
    target.stop()


@pytest.fixture
def events_api() -> Iterator[TrafficTarget]:
    target = TrafficTarget(respond=lambda raw, path: 202).start()
    yield target
    target.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name in (
        "published-plan.xml",
        "published-plan.attack-sets.yaml",
        "published-plan.yaml",
        "mparticle-model.yaml",
    ):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    write_config(tmp_path)
    return tmp_path


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def base_run(service: TrafficTarget, *extra: str, plan: str = "published-plan.xml") -> list[str]:
    return [
        "--config", "flagbridge.yaml", "traffic", "run", plan, "--model", "mparticle-model.yaml",
        "--target", service.url, "--seed", "11", "--requests", "300", "--rate", "2000/s", *extra,
    ]  # fmt: skip


def test_a_run_sends_reports_and_a_failing_case_replays_and_shrinks(
    workdir: Path, service: TrafficTarget, events_api: TrafficTarget
) -> None:
    # When: the published plan runs 300 cases against the service, results to the (stand-in) bridge
    result = flagbridge([*base_run(service, "--bridge", events_api.url, "--report", "run.ndjson"), "--json"], workdir)
    assert result.returncode == 1, result.stderr  # the service has a bug: failures exit 1
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["generated"] == summary["sent"] == 300 and summary["retried_429"] == 1
    assert summary["statuses"].get("500", 0) == summary["failures"] > 0
    assert report["failures"][0]["curl"].startswith("curl -sS --path-as-is")

    # Then: every case is in the manifest with its response, and every response reached the Events API
    lines = [json.loads(line) for line in (workdir / "run.ndjson").read_text().splitlines()]
    header, cases, footer = lines[0], lines[1:-1], lines[-1]
    assert header["type"] == "run" and footer["type"] == "summary" and len(cases) == 300
    assert all("response" in case and len(case["mutations"]) <= 3 for case in cases)
    posted = [json.loads(item.raw.split(b"\r\n\r\n", 1)[1]) for item in events_api.received]
    assert all(item.target == "/mparticle/v2/bulkevents" for item in events_api.received)
    batches = [batch for request in posted for batch in request]
    events = [event for batch in batches for event in batch["events"]]
    assert sorted(e["data"]["custom_attributes"]["case_id"] for e in events) == sorted(c["id"] for c in cases)
    assert all(len(batch["events"]) <= 100 and len(request) <= 100 for request in posted for batch in request)
    for batch in batches:
        assert batch["user_identities"]["customer_id"] in ("qa-bot-01", "qa-bot-02")
        assert {e["data"]["event_name"] for e in batch["events"]} == {"flagbridge_test_request"}
    by_case = {e["data"]["custom_attributes"]["case_id"]: e["data"]["custom_attributes"] for e in events}
    failing = next(case for case in cases if case["response"].get("status") == 500)
    assert by_case[failing["id"]]["status"] == 500 and by_case[failing["id"]]["outcome"] == "server_error"

    # When: the failing case with the most mutations is replayed and shrunk
    failing = max((c for c in cases if c["response"].get("status") == 500), key=lambda c: len(c["mutations"]))
    original = service.by_case()[failing["id"]]
    replay = flagbridge(
        ["--config", "flagbridge.yaml", "traffic", "replay", "--manifest", "run.ndjson", "--case", failing["id"],
         "--shrink", "--json"], workdir,
    )  # fmt: skip
    assert replay.returncode == 1, replay.stderr  # it still fails
    replayed = json.loads(replay.stdout)
    # Then: the replayed request is byte-identical, and the shrunk case keeps only the SQL probe in the query
    assert replayed["byte_identical"] and replayed["response"]["status"] == 500
    sent = [item.raw for item in service.received if item.run_tag and f".{failing['id']}." in item.run_tag]
    assert sent[-1 - replayed["shrink"]["attempts"]] == original
    shrunk = replayed["shrink"]
    assert shrunk["reproduced"] and shrunk["confirmed"]
    assert len(shrunk["kept"]) == 1 and shrunk["kept"][0]["element"] == "query"
    assert shrunk["kept"][0]["new"] == "1 UNION SELECT NULL--"
    assert "UNION%20SELECT" in shrunk["curl"]


def test_dry_run_and_count_only_send_nothing(workdir: Path, service: TrafficTarget) -> None:
    dry = flagbridge([*base_run(service, "--dry-run", "--report", "dry.ndjson"), "--json"], workdir)
    count = flagbridge([*base_run(service, "--count-only"), "--json"], workdir)
    assert dry.returncode == 0 and count.returncode == 0, dry.stderr + count.stderr
    assert service.received == []
    assert json.loads(count.stdout)["summary"]["generated"] == 300
    assert len((workdir / "dry.ndjson").read_text().splitlines()) == 302


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol9 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Request MaxAttacks="3"><Method Probability="&lol9;"/></Request>
"""


@pytest.mark.parametrize(
    ("name", "setup", "extra", "expected"),
    [
        (
            "host outside the allowlist",
            None,
            ["--target", "http://10.9.8.7:8080"],
            "'10.9.8.7' is not in the traffic allowlist",
        ),
        ("model host outside the allowlist", "evil-model", [], "'api.evil.example' is not in the traffic allowlist"),
        ("non-tester key", None, ["--testers", "qa-bot-01,customer-42"], "'customer-42' is not a tester"),
        ("XML bomb", "bomb.xml", [], "DOCTYPE, ENTITY and other <! declarations are refused"),
        (
            "probability 150%",
            "p150.yaml",
            [],
            "'method.probability': probability must be between 0% and 100%, got '150%'",
        ),
        ("probability -1", "pminus.yaml", [], "'path.probability': probability must be between 0% and 100%, got -1"),
        ("unknown attack set", "unknown.yaml", [], "'method.attack_set': unknown attack set 'Nope'"),
    ],
)
def test_refusals_are_one_line_and_send_nothing(
    workdir: Path,
    service: TrafficTarget,
    events_api: TrafficTarget,
    name: str,
    setup: str | None,
    extra: list[str],
    expected: str,
) -> None:
    plan, model = "published-plan.yaml", "mparticle-model.yaml"
    if setup == "evil-model":
        text = (workdir / model).read_text().replace("http://localhost/v2/events", "http://api.evil.example/v2/events")
        (workdir / "evil.yaml").write_text(text)
        model = "evil.yaml"
    elif setup == "bomb.xml":
        (workdir / setup).write_text(BOMB)
        plan = setup
    elif setup is not None:
        documents = {
            "p150.yaml": "method: {probability: 150%, attack_set: http_methods}\n",
            "pminus.yaml": "path: {probability: -1, attack_set: path_traversal}\n",
            "unknown.yaml": "method: {probability: 5%, attack_set: Nope}\n",
        }
        (workdir / setup).write_text(documents[setup])
        plan = setup
    args = ["--config", "flagbridge.yaml", "traffic", "run", plan, "--model", model, "--target", service.url]
    args += ["--requests", "20", "--bridge", events_api.url, *extra]
    # a target given twice: the last one wins (argparse), so the allowlist case names its own
    result = flagbridge(args, workdir)
    assert result.returncode == 1, name
    assert expected in one_line(result.stderr), result.stderr
    assert service.received == [] and events_api.received == []
    assert not list(workdir.glob("traffic-*.ndjson"))


def test_a_target_that_does_not_answer_is_one_line_naming_it_and_nothing_is_sent_or_reported(
    workdir: Path, service: TrafficTarget, events_api: TrafficTarget
) -> None:
    from tests.e2e.conftest import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there: refused
    args = ["--config", "flagbridge.yaml", "traffic", "run", "published-plan.yaml", "--model", "mparticle-model.yaml",
            "--requests", "20", "--bridge", events_api.url]  # fmt: skip
    result = flagbridge([*args, "--target", closed], workdir)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith(f"error: target {closed} does not answer (ConnectionRefusedError") and line.endswith(
        "; nothing was sent"
    ), line
    assert events_api.received == [] and not list(workdir.glob("traffic-*.ndjson"))
    # any answer will do: the running service answers the preflight itself and the run goes on
    answered = flagbridge([*args, "--target", service.url, "--json"], workdir)
    assert answered.returncode in (0, 1), answered.stderr  # 1: its bug
    assert service.probes == 1 and len(service.received) == 20 + 1  # + the one 429 re-sent


def test_explain_and_import_har(workdir: Path) -> None:
    explained = flagbridge(
        ["traffic", "plan", "explain", "published-plan.xml", "--model", "mparticle-model.yaml"], workdir
    )
    assert explained.returncode == 0, explained.stderr
    assert "Method: mutated in 5% of requests" in explained.stdout
    assert "Expected per 1,000 requests" in explained.stdout and "curly quotes" in explained.stdout
    har = {
        "log": {
            "entries": [
                {
                    "request": {
                        "method": "POST",
                        "url": "http://localhost/v2/events",
                        "headers": [],
                        "postData": {"text": "{}"},
                    }
                },
                {"request": {"method": "GET", "url": "https://tracker.example/p", "headers": []}},
            ]
        }
    }
    (workdir / "s.har").write_text(json.dumps(har))
    imported = flagbridge(["--config", "flagbridge.yaml", "traffic", "import-har", "s.har", "--out", "m.yaml"], workdir)
    assert imported.returncode == 0, imported.stderr
    assert "skipped 1 request(s) to tracker.example" in imported.stderr
    assert "http://localhost/v2/events" in (workdir / "m.yaml").read_text()


def test_the_progress_bar_is_drawn_on_a_terminal_only(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from flagbridge_ops.__main__ import main

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.chdir(workdir)
    args = ["--config", "flagbridge.yaml", "traffic", "run", "published-plan.xml", "--model", "mparticle-model.yaml",
            "--target", "http://127.0.0.1:9", "--requests", "120", "--count-only"]  # fmt: skip
    for stream, expected in ((Terminal(), True), (io.StringIO(), False)):
        out = io.StringIO()
        assert main(args, environ={**os.environ, **ENV}, out=out, err=stream) == 0
        assert ("\rtraffic: 120/120 [" in stream.getvalue()) is expected
        assert "cases 120/120" in out.getvalue() and "(count only)" in out.getvalue()
    json_err = Terminal()
    assert main([*args, "--json"], environ={**os.environ, **ENV}, out=io.StringIO(), err=json_err) == 0
    assert json_err.getvalue() == ""


def test_the_stop_file_stops_a_run_before_its_next_batch(workdir: Path, service: TrafficTarget) -> None:
    (workdir / "STOP").write_text("")
    result = flagbridge([*base_run(service, "--stop-file", "STOP", "--dry-run"), "--json"], workdir)
    assert result.returncode == 2, result.stderr  # could not finish as asked
    report = json.loads(result.stdout)
    assert report["summary"]["stopped"] == "stop switch: STOP exists" and report["summary"]["generated"] == 0
    assert service.received == []
