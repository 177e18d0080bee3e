"""Traffic plans end to end: the published plan (XML as published, and its YAML twin) runs against a local
service as the bridge's testers, and every result reaches the real local bridge as a tester event.

``flagbridge traffic run`` (fresh interpreter) → :class:`local.traffic_target.TrafficTarget` on 127.0.0.1 →
one ``flagbridge_test_request`` event per response → ``POST /mparticle/v2/bulkevents`` on the local runner →
router (testers by ``test_users.rules``) → the local Split receiver gets every one; the analytics webhook none.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flagbridge.traffic.generator import Target, TrafficGenerator
from flagbridge.traffic.model import Tester, load_model
from flagbridge.traffic.plan import load_plan
from flagbridge.traffic.stats import binomial_bounds
from local.receivers import split_event_problems
from local.traffic_target import TrafficTarget
from tests.e2e.conftest import Bridge
from tests.tools.test_traffic_cli import EXAMPLES, flagbridge, sql_probe_in_query, write_config

pytestmark = pytest.mark.e2e

REQUESTS = 400


@pytest.fixture(scope="module")
def service() -> Iterator[TrafficTarget]:
    target = TrafficTarget(respond=sql_probe_in_query).start()
    yield target
    target.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("traffic")
    for name in (
        "published-plan.xml",
        "published-plan.attack-sets.yaml",
        "published-plan.yaml",
        "mparticle-model.yaml",
    ):
        shutil.copy(EXAMPLES / name, directory / name)
    write_config(directory)
    return directory


def run(workdir: Path, plan: str, run_id: str, service: TrafficTarget, bridge: Bridge) -> dict[str, Any]:
    result = flagbridge(
        ["--config", "flagbridge.yaml", "traffic", "run", plan, "--model", "mparticle-model.yaml",
         "--target", service.url, "--seed", "3", "--requests", str(REQUESTS), "--rate", "1000/s",
         "--bridge", bridge.url, "--run-id", run_id, "--report", f"{run_id}.ndjson", "--json"],
        workdir,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["results"] == {"delivered_events": REQUESTS, "undelivered_events": 0}
    return report


def manifest_cases(path: Path) -> list[dict[str, Any]]:
    return [record for record in map(json.loads, path.read_text().splitlines()) if record["type"] == "case"]


def test_published_plan_results_reach_split_and_never_analytics(
    bridge: Bridge, run_id: str, service: TrafficTarget, workdir: Path
) -> None:
    xml_run, yaml_run = f"tr-xml-{run_id}", f"tr-yaml-{run_id}"
    # Given: the published plan as published (XML) and its YAML twin, same seed
    xml_report = run(workdir, "published-plan.xml", xml_run, service, bridge)
    yaml_report = run(workdir, "published-plan.yaml", yaml_run, service, bridge)
    bridge.wait_idle(120)

    # Then: both are the same plan, so every case carries the same mutations
    assert xml_report["plan_hash"] == yaml_report["plan_hash"]
    xml_cases, yaml_cases = (
        manifest_cases(workdir / f"{xml_run}.ndjson"),
        manifest_cases(workdir / f"{yaml_run}.ndjson"),
    )
    assert [c["mutations"] for c in xml_cases] == [c["mutations"] for c in yaml_cases]
    assert [c["response"] for c in xml_cases] != [] and all(len(c["mutations"]) <= 3 for c in xml_cases)
    statuses = Counter(c["response"].get("status") for c in xml_cases)
    assert statuses[500] == xml_report["summary"]["failures"]

    # And: the observed frequencies of this run stay within the 99.9% bounds (the 10,000-case proof is in unit)
    plan = load_plan(workdir / "published-plan.xml")[0]
    generator = TrafficGenerator(
        plan, load_model(workdir / "mparticle-model.yaml"), [Tester("x", "x@e.x")], seed=3, run_id="x", clock_ms=0,
        target=Target.parse(service.url),
    )  # fmt: skip
    for route in ("upload_events", "bulk_events"):
        cases = [c for c in xml_cases if c["route"] == route]
        for element, rate in generator.expected_rates(route).items():
            observed = sum(any(m["element"] == element for m in c["mutations"]) for c in cases)
            low, high = binomial_bounds(len(cases), rate.mutated)
            assert low <= observed <= high, (route, element, observed, len(cases))

    # And: every response reached the local Split receiver once, as the tester's event; analytics got none
    received = bridge.request("GET", "/_local/receivers").body
    for name, cases in ((xml_run, xml_cases), (yaml_run, yaml_cases)):
        events = [e for e in received["split_events"] if e.get("properties", {}).get("run_id") == name]
        assert sorted(e["properties"]["case_id"] for e in events) == sorted(c["id"] for c in cases)
        assert {e["eventTypeId"] for e in events} == {"flagbridge_test_request"}
        assert {e["key"] for e in events} <= {"qa-bot-01", "qa-bot-02"} and {e["trafficTypeName"] for e in events} == {
            "user"
        }
        assert all(split_event_problems(e) == [] for e in events)
        by_case = {e["properties"]["case_id"]: e["properties"] for e in events}
        for case in cases:
            assert by_case[case["id"]]["status"] == case["response"]["status"]
            assert by_case[case["id"]]["mutations"] == len(case["mutations"])
    analytics = json.dumps(received["webhooks"])
    assert "flagbridge_test_request" not in analytics and xml_run not in analytics
