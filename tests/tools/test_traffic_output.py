"""What a hand-run ``flagbridge traffic`` prints (issue 19, item 5): the rate it reached against the rate asked,
with a warning under 90%; units on every number; identical warnings grouped; no Python repr in ``replay``."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from flagbridge.oracle.report_html import attribute_unit
from flagbridge_ops.commands.traffic import _print_replay, _print_run, grouped
from flagbridge_ops.verdict import annotate_units, table_rows
from local.traffic_target import TrafficTarget
from tests.tools.test_traffic_cli import flagbridge
from tests.tools.test_traffic_cli import workdir as workdir  # a fixture

SLOW_ANSWER_S = 0.05


def test_a_rate_the_target_cannot_take_is_a_warning_with_both_rates(workdir: Path) -> None:
    def slow(raw: bytes, target: str) -> int:
        time.sleep(SLOW_ANSWER_S)  # every answer takes 50 ms: far under the 2000/s asked, whatever the machine
        return 202

    service = TrafficTarget(respond=slow, record=False).start()
    try:
        arguments = ["--config", "flagbridge.yaml", "traffic", "run", "published-plan.xml", "--model",
                     "mparticle-model.yaml", "--target", service.url, "--seed", "3", "--requests", "40",
                     "--rate", "2000/s", "--bridge", service.url, "--report", "run.ndjson"]  # fmt: skip
        result = flagbridge(arguments, workdir)
    finally:
        service.stop()
    lines = result.stdout.splitlines()
    [rate] = [line for line in lines if line.strip().startswith("rate ")]
    assert rate.strip().endswith("/s of 2000/s asked"), result.stdout
    [warning] = [line for line in lines if "warning: the run reached" in line]
    assert "under 90% of the 2000/s asked" in warning
    assert any(" s" in line and line.strip().startswith("cases 40/40") for line in lines), result.stdout


def _record(rate: float) -> dict[str, Any]:
    return {"generated": 10, "planned": 10, "mutations": 3, "sent": 10, "rate_per_s": rate, "elapsed_s": 0.2,
            "statuses": {"202": 10}, "latency_p95_ms": 2.2932675214577776, "failures": 0, "stopped": None}  # fmt: skip


def _printed(rate: float, asked: float) -> str:
    out = io.StringIO()
    result = {"run_id": "r", "plan_hash": "h", "seed": 1, "summary": _record(rate), "rate_asked_per_s": asked,
              "results": None, "refused": None, "undelivered_file": None, "report": None, "oracle": None,
              "oracle_test": None, "failures": []}  # fmt: skip

    class Summary:
        failure_count = 0

    _print_run(out, result, Summary())
    return out.getvalue()


def test_a_rate_reached_is_not_a_warning_and_every_number_has_its_unit() -> None:
    text = _printed(rate=49.5, asked=50.0)
    assert "rate 49.5/s of 50/s asked" in text and "warning" not in text
    assert "in 0.2 s" in text and "latency p95 2.3 ms" in text
    assert "2.2932675214577776" not in text
    assert "warning: the run reached 44/s, under 90% of the 50/s asked" in _printed(rate=44.0, asked=50.0)


def test_identical_warnings_are_grouped_in_first_seen_order() -> None:
    curly = "plan.xml line 3: a curly quote in 'value' was read as a straight one"
    warnings = [curly] * 21 + ["another warning", curly]
    assert grouped(warnings) == [f"{curly} (22 times)", "another warning"]


def test_replay_prints_json_values_and_answers_not_python_reprs() -> None:
    out = io.StringIO()
    mutation = {"element": "body.qty", "attack": "type-confusion", "original": 1, "new": True}
    _print_replay(
        out,
        {
            "case": "c7",
            "byte_identical": True,
            "response": {"status": 500, "latency_ms": 3.25, "size": 21, "body_sha256": "ab"},
            "recorded": {"error": "ConnectionResetError: reset", "latency_ms": 1.0},
            "mutations": [mutation, {**mutation, "original": "a'b", "new": None}],
            "curl": "curl -sS http://127.0.0.1:1/x",
            "shrink": {"reproduced": True, "confirmed": True, "attempts": 2, "kept": [mutation], "curl": "curl"},
        },
    )
    text = out.getvalue()
    assert "case c7 (byte-identical to the run): HTTP 500, 21 bytes in 3.2 ms" in text
    assert "(the run recorded: no answer (ConnectionResetError: reset))" in text
    assert "body.qty [type-confusion]: 1 -> true" in text and '"a\'b" -> null' in text
    assert "{'" not in text and "True" not in text and "None" not in text


def test_percentile_verdicts_carry_their_unit() -> None:
    from flagbridge.config import load_config
    from tests.conftest import ROOT

    oracle = load_config(ROOT / "layers" / "shared" / "config" / "flagbridge.yaml").oracle
    assert oracle is not None
    document = {"name": "new-checkout-health", "report": {"verdicts": [
        {"treatment": "on", "metric": "latency p95", "kind": "percentile", "state": "PASS", "n": 9,
         "value": 2.2932675214577776},
        {"treatment": "on", "metric": "5xx rate", "kind": "rate", "state": "FAIL", "n": 9, "rate": 0.5,
         "lower": 0.2, "upper": 0.8},
    ]}}  # fmt: skip
    annotate_units([document], oracle)
    rows = [{"test": "t", **verdict} for verdict in document["report"]["verdicts"]]
    assert [row[5] for row in table_rows(rows)] == ["2.293 ms", "50.00%"]
    assert attribute_unit("latency_ms") == "ms" and attribute_unit("size_bytes") == "bytes"
    assert attribute_unit("score") == ""


def test_the_environment_page_names_what_the_code_reads() -> None:
    from flagbridge.traffic.config import TrafficConfig
    from flagbridge_ops.traffic import ORACLE_TOKEN_ENV, ORACLE_TOKEN_SECRET_ENV
    from tests.conftest import ROOT

    page = (ROOT / "docs" / "traffic.md").read_text(encoding="utf-8")
    section = page[page.index("## Running it by hand: the environment") : page.index("## The request model")]
    defaults = TrafficConfig(allowlist=(), testers=())
    for name in (ORACLE_TOKEN_ENV, ORACLE_TOKEN_SECRET_ENV, defaults.run_tag_key_env, *defaults.credentials_env):
        assert f"`{name}`" in section, name
    for path in ("local/demo/checkout_plan.yaml", "local/demo/checkout_model.yaml"):
        assert path in section and (ROOT / path).is_file()
    from flagbridge_ops.commands.traffic import DEFAULT_VERDICT_WAIT_S

    assert f"up to {DEFAULT_VERDICT_WAIT_S:g} s by default" in section
    assert "make service" in section and "\nservice: venv\n" in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_make_service_starts_the_sample_service_alone(tmp_path: Path) -> None:
    import json
    import os
    import signal
    import subprocess
    from urllib.request import urlopen

    from tests.conftest import ROOT
    from tests.e2e.conftest import free_port

    port = free_port()
    env = {**os.environ, "SERVICE_PORT": str(port), "PORT": str(free_port())}
    process = subprocess.Popen(
        ["make", "-s", "service"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        assert started["url"] == f"http://127.0.0.1:{port}" and started["flag"] == "new_checkout"
        from urllib.error import HTTPError

        try:
            urlopen(f"{started['url']}/products/sku-1", timeout=30)
        except HTTPError as refused:  # it answers, as the service: a request without its X-User-Key is refused
            assert refused.code == 401
        else:
            raise AssertionError("the service took a request without X-User-Key")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
