"""The loop closed, end to end through the local runner over HTTP: a traffic run feeds the oracle, whose FAIL stops it.

Split's impressions webhook exposes two testers to flag ``e2e_link``: ``qa-link-on`` gets ``on``, ``qa-link-off``
gets ``off``. ``flagbridge traffic run`` (a fresh interpreter) sends checkouts as both testers to a service on
127.0.0.1 whose ``on`` has a bug: a mutated quantity (30% of requests, by the plan) is answered 500, or not at all
(the connection dropped, for a ``null`` one); ``off`` refuses the same inputs with a clean 422. Each result
goes back through the bridge (mParticle ingest -> router -> oracle lane -> counters -> the evaluator, every second
locally) -> the oracle says FAIL for ``on`` -> the run's stop switch (``GET /tests/link-health`` between batches)
stops it long before its 12,000 requests -> the command prints the verdict and exits 1, as ``flagbridge verdict``.

Then, once the bridge is idle, the oracle's counts are checked against the run's manifest: every result is
attributed to its tester's treatment (none unattributed): ``on``'s 5xx rate counts its answers, bad exactly its
500s, and its unanswered rate every result, bad exactly its unanswered requests (status 0). Deterministic: fixed
seed, and every wait polls with a deadline.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from local.traffic_target import DROP, TrafficTarget
from tests.e2e.conftest import ROOT, Bridge, started_runner
from tests.e2e.test_oracle_e2e import ORACLE_TOKEN, evaluated_after, impression, settle, verdicts
from tests.tools.test_traffic_cli import flagbridge

pytestmark = pytest.mark.e2e

TEST, FLAG = "link-health", "e2e_link"
ON_TESTER, OFF_TESTER = "qa-link-on", "qa-link-off"
REQUESTS = 12_000  # at 100/s: two minutes, if the oracle's FAIL never stopped the run
MODEL = """
requests:
  - name: checkout
    method: POST
    url: http://127.0.0.1/checkout
    headers: {Content-Type: application/json, X-Tester: "{{tester.key}}"}
    body: {user: "{{tester.key}}", sku: A1, quantity: 1}
"""
PLAN = f"""
max_attacks: 1
host: {{probability: 0%}}
body:
  - {{pointer: /quantity, probability: 30%, attack_set: BadQuantities}}
attack_sets:
  BadQuantities: [0, -1, "abc", null, 99999999999]
oracle: {{test: {TEST}}}
"""


def checkout_service(raw: bytes, target: str) -> int:
    """200 for a plain checkout; a mutated quantity is 500 (unanswered when null) in ``on``, a clean 422 in ``off``.

    With seed 7 the first 100 cases, which every run sends before its first look can see a FAIL, hold nulls for
    ``on`` (cases c14 and c52): the run always has unanswered requests to count."""
    head, body = raw.split(b"\r\n\r\n", 1)
    tester = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"x-tester:")), "")  # fmt: skip
    quantity = json.loads(body).get("quantity")
    if quantity == 1:
        return 200
    if tester == ON_TESTER:
        return DROP if quantity is None else 500
    return 422


def write_config(directory: Path) -> Path:
    document = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    # As in test_oracle_e2e: the Split lane's ledger is slow on moto; this test is about the oracle's path, so the
    # Split destination leaves the results to the oracle (their routing to Split is tested in test_traffic_e2e).
    for destination in document["cdp"]["destinations"]:
        if destination["name"] == "split":
            destination["filter"]["event_names"]["exclude"] += ["flagbridge_test_request"]
    base = {key: value for key, value in document["oracle"]["tests"][0].items() if key != "kill"}
    document["oracle"]["tests"] = [{**base, "name": TEST, "flag": FLAG, "actions": ["alert"]}]
    document["traffic"] = {"allowlist": ["127.0.0.1"], "testers": [ON_TESTER, OFF_TESTER]}
    path = directory / "flagbridge.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    (directory / "model.yaml").write_text(MODEL, encoding="utf-8")
    (directory / "plan.yaml").write_text(PLAN, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("traffic-oracle")
    write_config(directory)
    return directory


@pytest.fixture(scope="module")
def link_bridge(workdir: Path) -> Iterator[Bridge]:
    settings = {
        "FLAGBRIDGE_NO_DEMO": "1",
        "FLAGBRIDGE_CONFIG": str(workdir / "flagbridge.yaml"),
        "FLAGBRIDGE_LOCAL_SCHEDULE_SECONDS": "1",
    }
    with started_runner(workdir, settings) as running:
        yield running


@pytest.fixture(scope="module")
def service() -> Iterator[TrafficTarget]:
    target = TrafficTarget(respond=checkout_service, record=False).start()
    yield target
    target.stop()


def cases(path: Path) -> list[dict[str, Any]]:
    return [record for record in map(json.loads, path.read_text().splitlines()) if record["type"] == "case"]


def test_the_oracle_s_fail_stops_the_traffic_run_that_fed_it(
    link_bridge: Bridge, service: TrafficTarget, workdir: Path
) -> None:
    bridge = link_bridge
    # Given: the two testers were served the flag a minute ago
    exposed_at = int(time.time() * 1000) - 60_000
    reply = bridge.post_impressions([impression(ON_TESTER, FLAG, "on", exposed_at),
                                     impression(OFF_TESTER, FLAG, "off", exposed_at)])  # fmt: skip
    assert reply.status == 200, reply.body
    settle(bridge)

    # When: the plan runs against the service, feeding the oracle test, at 100 requests/s
    result = flagbridge(
        ["--config", "flagbridge.yaml", "traffic", "run", "plan.yaml", "--model", "model.yaml",
         "--target", service.url, "--seed", "7", "--requests", str(REQUESTS), "--rate", "100/s",
         "--bridge", bridge.url, "--run-id", "tr-link-e2e", "--report", "run.ndjson", "--timeout", "5",
         "--verdict-wait", "60", "--json"],
        workdir, FLAGBRIDGE_ORACLE_API_TOKEN=ORACLE_TOKEN,
    )  # fmt: skip

    # Then: the oracle's FAIL for `on` stopped it between batches, and it exits 1 like `flagbridge verdict`
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:] + bridge.log_tail()
    assert "Traceback" not in result.stderr
    outcome = json.loads(result.stdout)
    summary = outcome["summary"]
    assert summary["stopped"].startswith(f"oracle FAIL for test {TEST} treatment on (5xx rate")  # maybe unanswered too
    assert 0 < summary["sent"] < REQUESTS and summary["sent"] % 50 == 0
    assert outcome["results"] == {"delivered_events": summary["sent"], "undelivered_events": 0}
    oracle = outcome["oracle"]
    assert oracle["stopped_the_run"] is True and oracle["state"] == "FAIL"
    shown = {(v["treatment"], v["metric"]): v["state"] for v in oracle["verdicts"]}
    assert shown[("on", "5xx rate")] == "FAIL" and shown.get(("off", "5xx rate")) != "FAIL"

    # And: once the bridge is idle, the oracle counted every result of the run once, for its tester's treatment,
    # and on's bad results are its 500s plus its unanswered requests (status 0)
    run = cases(workdir / "run.ndjson")
    assert len(run) == summary["sent"]
    answers = {tester: Counter(str(c["response"].get("status", "no answer")) for c in run if c["tester"] == tester)
               for tester in (ON_TESTER, OFF_TESTER)}  # fmt: skip
    assert answers[ON_TESTER]["no answer"] > 0 and answers[ON_TESTER]["500"] > 0, answers
    assert set(answers[OFF_TESTER]) <= {"200", "422"}, answers
    report = evaluated_after(bridge, TEST, settle(bridge), timeout=120)
    counted = {key: (v["n"], v["k"]) for key, v in verdicts(report).items()}
    on_total, off_total = sum(answers[ON_TESTER].values()), sum(answers[OFF_TESTER].values())
    unanswered = answers[ON_TESTER]["no answer"]
    assert counted[("on", "5xx rate")] == (on_total - unanswered, answers[ON_TESTER]["500"])  # the answers
    assert counted[("on", "unanswered rate")] == (on_total, unanswered)
    assert counted[("off", "5xx rate")] == (off_total, 0)
    assert counted[("off", "unanswered rate")] == (off_total, 0)
    assert not report["report"]["unattributed"]
    assert report["state"] == "FAIL"
