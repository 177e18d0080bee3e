"""``flagbridge verdict``: the table, the exit codes of a CI gate, JUnit XML, and the HTML report rendered in
headless Chromium (it renders, shows every treatment, and logs no console error)."""

from __future__ import annotations

import io
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from flagbridge.oracle.config import parse_oracle_config
from flagbridge.oracle.counting import Counter
from flagbridge.oracle.report_html import html_report
from flagbridge.oracle.service import CounterService, Evaluator
from flagbridge.oracle.store import DynamoDBVerdictStore, InMemoryCounterStore
from flagbridge.oracle.verdicts import verdict_rows
from flagbridge_ops.__main__ import main
from flagbridge_ops.resources import Clients
from flagbridge_ops.verdict import junit_xml
from tests.browser import require_chromium
from tests.conftest import ROOT
from tests.unit.oracle.test_service import NOW, profile

TABLE = "flagbridge-test-oracle-verdicts"


class Silent:
    def verdict_changed(self, report: Any, changed: Any) -> None:
        return None

    def metrics(self, report: Any) -> None:
        return None

    def kill_changed(self, report: Any, event: Any) -> None:
        return None


def config_file(tmp_path: Path, tests: list[dict[str, Any]]) -> Path:
    document = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    document["oracle"]["tests"] = tests
    path = tmp_path / "flagbridge.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def record(user: str, index: int, status: int, key: str) -> Any:
    from flagbridge.queues import QueueRecord
    from tests.unit.oracle.test_counting import request

    outcome = "server_error" if status >= 500 else "ok"  # as the traffic plan reports its results
    batch = {"user_identities": {"customer_id": user}, "events": [request(status, 100 + index % 50, outcome=outcome)]}
    body = {"destination": "oracle", "batch_key": f"{key}-{index}", "test_user": True, "batch": batch}
    return QueueRecord(f"{key}-{index}", json.dumps(body))


@pytest.fixture
def verdicts(aws: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Three tests evaluated three times into a moto verdicts table: FAIL/PASS, INCONCLUSIVE, NO_DATA."""
    aws["ddb"].create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}
        ],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    tests = [
        {"name": "checkout", "flag": "new_checkout", "environment": "Production"},
        {"name": "small", "flag": "small_flag", "environment": "Production"},
        {"name": "quiet", "flag": "quiet_flag", "environment": "Production"},
    ]
    path = config_file(tmp_path, tests)
    oracle = parse_oracle_config({"tests": tests})
    states = {
        ("user#qa-on", "new_checkout"): profile("qa-on", "on"),
        ("user#qa-off", "new_checkout"): profile("qa-off", "off"),
    }
    small = profile("qa-small", "on")
    states[("user#qa-small", "small_flag")] = type(small)(**{**small.__dict__, "flag": "small_flag"})
    counters = InMemoryCounterStore()
    clock = {"now": NOW}
    load = lambda pairs: {p: states[p] for p in pairs if p in states}  # noqa: E731
    counting = CounterService(Counter(oracle, {"customer_id": ["user"]}), counters, load, lambda: clock["now"])
    store = DynamoDBVerdictStore(aws["ddb"], TABLE)
    evaluator = Evaluator(oracle, counters, store, Silent(), None, lambda: clock["now"])
    evaluator.run()  # all NO_DATA
    counting.process([record("qa-on", i, 500 if i < 64 else 200, "on") for i in range(200)])
    counting.process([record("qa-small", i, 500 if i == 0 else 200, "small") for i in range(20)])
    clock["now"] += 60_000
    evaluator.run()
    counting.process([record("qa-on", i, 200, "on") for i in range(200, 800)])
    counting.process([record("qa-off", i, 500 if i < 3 else 200, "off") for i in range(1500)])
    clock["now"] += 60_000
    evaluator.run()
    return {"config": path, "store": store, "oracle": oracle}


def run(arguments: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(arguments, environ=env, clients=Clients(), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_exit_codes_table_junit_and_html(verdicts: dict[str, Any], tmp_path: Path) -> None:
    env = {"FLAGBRIDGE_CONFIG": str(verdicts["config"]), "ORACLE_VERDICTS_TABLE": TABLE}
    junit, report = tmp_path / "verdict.xml", tmp_path / "verdict.html"
    status, out, err = run(["verdict", "--junit", str(junit), "--html", str(report)], env)
    assert (status, err) == (1, "")  # a FAIL gates the release
    assert "FAIL new_checkout=on 5xx rate 8% (evidence 158 ≥ 1/alpha = 100, n=800) ≥ fail line 5%" in out
    assert "PASS new_checkout=off 5xx rate 0.2% (evidence 406 ≥ 1/alpha = 100, n=1,500) < pass line 1%" in out
    header = out.splitlines()[0].split()
    assert header == ["test", "treatment", "metric", "verdict", "n", "rate", "bounds"]
    assert run(["verdict", "small"], env)[0] == 2  # INCONCLUSIVE: neither pass nor fail
    assert run(["verdict", "quiet"], env)[0] == 2  # NO_DATA
    status, out, _ = run(["--json", "verdict", "checkout"], env)
    assert status == 1 and json.loads(out)["exit_status"] == 1
    status, _, err = run(["verdict", "nope"], env)
    assert status == 2 and err.startswith("flagbridge: error: no test named 'nope'")

    suites = ET.parse(junit).getroot()
    assert (suites.get("tests"), suites.get("failures")) == ("12", "1")  # 4 treatments x 3 metrics
    failed = [case.get("name") for case in suites.iter("testcase") if case.find("failure") is not None]
    assert failed == ["on 5xx rate"]
    passed = [case.get("name") for case in suites.iter("testcase") if len(case) == 1]
    assert sorted(passed) == [
        "off 5xx rate", "off latency p95", "off unanswered rate", "on latency p95", "on unanswered rate"
    ]  # fmt: skip

    page = report.read_text(encoding="utf-8")
    assert "<svg" in page and "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert page.count('class="treatment"') == 4  # on, off, small's on, quiet's (none)


def test_all_pass_is_zero_and_every_state_maps() -> None:
    rows = [{"test": "t", "treatment": "on", "metric": "m", "state": "PASS", "explain": "PASS ..."}]
    assert run_rows(rows) == 0
    rows.append({"test": "t", "treatment": "off", "metric": "m", "state": "ERROR", "explain": "ERROR ..."})
    assert run_rows(rows) == 2
    xml = ET.fromstring(junit_xml(rows).split("\n", 1)[1])
    assert xml.get("skipped") == "1"


def run_rows(rows: list[dict[str, Any]]) -> int:
    from flagbridge.oracle.verdicts import exit_status

    return exit_status(row["state"] for row in rows)


def test_the_html_report_renders_in_headless_chromium(verdicts: dict[str, Any], tmp_path: Path) -> None:
    browser = require_chromium()
    from flagbridge.oracle.service import detail_document

    documents = [detail_document(test, verdicts["store"]) for test in verdicts["oracle"].tests]
    page = tmp_path / "report.html"
    page.write_text(html_report(documents), encoding="utf-8")
    result = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert 'data-rendered="3 tests, 4 treatments"' in dom  # the script ran
    for treatment in ("new_checkout=on", "new_checkout=off", "small_flag=on", "quiet_flag=(none)"):
        assert f"<h3>{treatment}</h3>" in dom, treatment
    assert dom.count("<svg") >= 8
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console


def test_rows_of_a_test_never_evaluated() -> None:
    rows = verdict_rows([{"name": "t", "state": "PENDING", "report": None}])
    assert rows == [{"test": "t", "treatment": "-", "metric": "-", "state": "PENDING", "explain": "not evaluated yet"}]


def test_watch_refreshes_until_decided_or_timeout(
    verdicts: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"FLAGBRIDGE_CONFIG": str(verdicts["config"]), "ORACLE_VERDICTS_TABLE": TABLE}
    sleeps: list[float] = []
    monkeypatch.setattr("flagbridge_ops.commands.verdict.time.sleep", sleeps.append)
    # every verdict of `checkout` is decided (FAIL and PASS): one look, no refresh
    status, out, _ = run(["verdict", "checkout", "--watch", "--interval", "5"], env)
    assert (status, sleeps) == (1, [])
    # `small` stays INCONCLUSIVE: refreshed until the timeout
    status, out, _ = run(["verdict", "small", "--watch", "--interval", "5", "--timeout", "0"], env)
    assert status == 2 and sleeps == [] and out.count("INCONCLUSIVE small_flag=on 5xx rate") == 1
    clock = iter(range(0, 1000, 6))
    monkeypatch.setattr("flagbridge_ops.commands.verdict.time.monotonic", lambda: float(next(clock)))
    status, out, _ = run(["verdict", "small", "--watch", "--interval", "5", "--timeout", "13"], env)
    assert status == 2 and sleeps == [5.0, 5.0] and out.count("refreshing in 5s") == 2


def test_the_kill_timeline_in_the_text_and_json(aws: dict[str, Any], tmp_path: Path) -> None:
    """A FAIL killed through the Admin API, then confirmed by a `killed` event: `flagbridge verdict` prints t0, the
    claim, t1 and t2 with their latencies; `--json` carries the kill block."""
    from flagbridge.oracle.split_admin import SplitAdminClient
    from flagbridge.outbound import Response as HttpAnswer

    class Admin:
        def put(self, url: str, body: bytes, headers: Any) -> HttpAnswer:
            clock["now"] += 2_000  # the call takes two seconds
            return HttpAnswer(200, {}, "{}")

    aws["ddb"].create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}
        ],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    tests = [{"name": "checkout", "flag": "new_checkout", "environment": "Production", "actions": ["alert", "kill"],
              "kill": {"workspace_id": "ws-1"}}]  # fmt: skip
    path = config_file(tmp_path, tests)
    oracle = parse_oracle_config({"tests": tests})
    states = {("user#qa-on", "new_checkout"): profile("qa-on", "on")}
    clock = {"now": NOW}
    counters = InMemoryCounterStore()
    load = lambda pairs: {p: states[p] for p in pairs if p in states}  # noqa: E731
    counting = CounterService(Counter(oracle, {"customer_id": ["user"]}), counters, load, lambda: clock["now"])
    admin = SplitAdminClient(Admin(), "http://admin", lambda: "key", clock_ms=lambda: clock["now"])
    store = DynamoDBVerdictStore(aws["ddb"], TABLE)
    evaluator = Evaluator(oracle, counters, store, Silent(), lambda: admin, lambda: clock["now"])
    counting.process([record("qa-on", i, 500 if i < 64 else 200, "on") for i in range(800)])
    evaluator.run()
    env = {"FLAGBRIDGE_CONFIG": str(path), "ORACLE_VERDICTS_TABLE": TABLE}
    _, out, _ = run(["verdict"], env)
    assert "checkout: Kill of version 5: killed, pending" in out
    assert "  t1 Split accepted    2026-" in out and "(+2.0 s after t0)" in out
    assert "  t2 `killed` counted  - (none yet, expected within 1800.0 s of t1)" in out
    states[("user#qa-killed", "new_checkout")] = profile("qa-killed", "off", label="killed", version=6)
    counting.process([record("qa-killed", 0, 200, "after-kill")])
    clock["now"] += 60_000
    evaluator.run()
    _, out, _ = run(["verdict"], env)
    assert "checkout: Kill of version 5: killed, confirmed" in out
    assert "  t2 `killed` counted  2026-" in out and "(+60.0 s after t1)" in out
    _, out, _ = run(["--json", "verdict"], env)
    kill = json.loads(out)["kills"]["checkout"]
    assert kill["confirmation"] == "confirmed" and kill["timeline"]["confirm_ms"] == 60_000
    assert kill["timeline"]["accept_ms"] == 2_000 and kill["timeline"]["claim_ms"] == 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_verdict_colours_pass_and_fail_at_a_terminal_only(verdicts: dict[str, Any]) -> None:
    from flagbridge_ops.__main__ import main
    from flagbridge_ops.resources import Clients

    env = {"FLAGBRIDGE_CONFIG": str(verdicts["config"]), "ORACLE_VERDICTS_TABLE": TABLE}
    for environ, expected in ((env, True), ({**env, "NO_COLOR": "1"}, False)):
        out = _Terminal()
        main(["verdict", "checkout"], environ=environ, clients=Clients(), out=out, err=io.StringIO())
        assert ("\033[31mFAIL\033[0m" in out.getvalue()) is expected
        assert "FAIL" in out.getvalue()
    piped = io.StringIO()
    main(["verdict", "checkout"], environ=env, clients=Clients(), out=piped, err=io.StringIO())
    assert "\033[" not in piped.getvalue()
