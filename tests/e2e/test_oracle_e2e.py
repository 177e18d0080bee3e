"""The test oracle end to end through the local runner over HTTP.

Split's impressions webhook exposes testers to a flag -> the testers' events arrive at the mParticle ingest ->
router (plan, testers, filters) -> oracle lane -> counters -> the scheduled evaluator (every second locally)
-> ``GET /tests``, the alarm topic, and the local Split Admin receiver for kills.

The acceptance figures: ``on`` with 8% 500s over 800 events fails (600 are not yet enough evidence at alpha 1%;
see docs/oracle.md), ``off`` with 0.2% over 1,500 passes, 1 error in 20 is INCONCLUSIVE, a flag nobody sends
events for is NO_DATA, sending every batch twice changes no count, and the flag is killed exactly once (then
confirmed by ``killed`` impressions).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.browser import render_in_chromium
from tests.e2e.conftest import ROOT, WEBHOOK_TOKEN, Bridge, started_runner

pytestmark = pytest.mark.e2e

ORACLE_TOKEN = "local-oracle-token"
BASIC = "Basic " + base64.b64encode(b"local-mparticle-key:local-mparticle-secret").decode()
VERSION = 1_767_000_000_000


def e2e_config(path: Path) -> Path:
    document = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    # The Split lane's ledger makes 4,000 events take minutes on moto; this test is about the oracle's path, so the
    # Split destination leaves these event names to the oracle (the routing itself is tested in test_cdp_e2e).
    for destination in document["cdp"]["destinations"]:
        if destination["name"] == "split":
            destination["filter"]["event_names"]["exclude"] += ["api_response", "flagbridge_test_request"]
    base = document["oracle"]["tests"][0]
    document["oracle"]["tests"] = [
        {**base, "name": "checkout-health", "flag": "e2e_checkout", "actions": ["alert", "kill"],
         "kill": {"workspace_id": "ws-e2e"}},
        {**base, "name": "small-cohort", "flag": "e2e_small"},
        {**base, "name": "quiet-flag", "flag": "e2e_quiet"},
    ]  # fmt: skip
    target = path / "flagbridge.yaml"
    target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def oracle_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    directory = tmp_path_factory.mktemp("oracle-runner")
    settings = {"FLAGBRIDGE_CONFIG": str(e2e_config(directory)), "FLAGBRIDGE_LOCAL_SCHEDULE_SECONDS": "1"}
    with started_runner(directory, settings) as running:
        yield running


def impression(
    key: str, flag: str, treatment: str, at: int, label: str = "in segment qa", version: int = VERSION
) -> dict[str, Any]:
    return {"key": key, "split": flag, "environmentId": "env-prod-0001", "environmentName": "Production",
            "treatment": treatment, "time": at, "bucketingKey": None, "label": label, "machineName": "web-1",
            "machineIp": "10.0.0.1", "splitVersionNumber": version, "sdk": "python", "sdkVersion": "10.5.1",
            "properties": None}  # fmt: skip


def batches(user: str, statuses: list[int], name: str, prefix: str, per_batch: int = 100) -> list[dict[str, Any]]:
    """mParticle batches of one tester: one event per result, ``per_batch`` events per batch."""
    now = int(time.time() * 1000)
    out = []
    for start in range(0, len(statuses), per_batch):
        events = [
            {"event_type": "custom_event",
             "data": {"event_name": name, "custom_event_type": "other", "timestamp_unixtime_ms": now,
                      "source_message_id": f"{prefix}-{start + i}",
                      "custom_attributes": {"status": status, "latency_ms": 120, "route": "/checkout"}}}
            for i, status in enumerate(statuses[start : start + per_batch])
        ]  # fmt: skip
        out.append({"environment": "production", "source_request_id": f"{prefix}-batch-{start}",
                    "user_identities": {"customer_id": user}, "events": events})  # fmt: skip
    return out


def send(bridge: Bridge, documents: list[dict[str, Any]]) -> None:
    for start in range(0, len(documents), 5):  # 5 batches of 100 events stay under 256 KB per request
        body = json.dumps(documents[start : start + 5]).encode()
        reply = bridge.request(
            "POST", "/mparticle/v2/bulkevents", body, {"Content-Type": "application/json", "Authorization": BASIC}
        )
        assert reply.status == 202, reply.body


def report(bridge: Bridge, name: str) -> dict[str, Any]:
    reply = bridge.request("GET", f"/tests/{name}", None, {"Authorization": f"Bearer {ORACLE_TOKEN}"})
    assert reply.status == 200, reply.body
    return dict(reply.body)


def evaluated_after(bridge: Bridge, name: str, after_ms: int, timeout: float = 60.0) -> dict[str, Any]:
    """The test's report from an evaluation that started after ``after_ms``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = report(bridge, name)
        if (document.get("evaluated_at") or 0) > after_ms:
            return document
        time.sleep(0.3)
    raise AssertionError(f"{name} was not evaluated after {after_ms}\n{bridge.log_tail()}")


def settle(bridge: Bridge) -> int:
    bridge.wait_idle(timeout=180)
    return int(time.time() * 1000)


def verdicts(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(v["treatment"], v["metric"]): v for v in document["report"]["verdicts"]}


def receivers(bridge: Bridge) -> dict[str, Any]:
    return dict(bridge.request("GET", "/_local/receivers").body)


def test_the_oracle_judges_the_tester_cohort_and_kills_once(oracle_bridge: Bridge, tmp_path: Path) -> None:
    bridge = oracle_bridge
    run = f"{int(time.time())}"
    on_user, off_user, small_user = f"qa-{run}-on", f"qa-{run}-off", f"qa-{run}-small"
    exposed_at = int(time.time() * 1000) - 60_000
    reply = bridge.post_impressions([
        impression(on_user, "e2e_checkout", "on", exposed_at),
        impression(off_user, "e2e_checkout", "off", exposed_at),
        impression(small_user, "e2e_small", "on", exposed_at),
    ], token=WEBHOOK_TOKEN)  # fmt: skip
    assert reply.status == 200, reply.body
    settle(bridge)

    on = batches(on_user, [500] * 64 + [200] * 736, "api_response", f"{run}-on")
    off = batches(off_user, [503] * 3 + [200] * 1497, "flagbridge_test_request", f"{run}-off")
    small = batches(small_user, [500] + [200] * 19, "flagbridge_test_request", f"{run}-small")
    send(bridge, on + off + small)
    first = evaluated_after(bridge, "checkout-health", settle(bridge))
    counted = {key: (v["n"], v["k"]) for key, v in verdicts(first).items()}
    assert counted[("on", "5xx rate")] == (800, 64)
    assert counted[("off", "5xx rate")] == (1500, 3)

    send(bridge, on + off + small)  # every batch again: the same source_request_id, the same events
    checkout = evaluated_after(bridge, "checkout-health", settle(bridge))
    judged = verdicts(checkout)
    assert {key: (v["n"], v["k"]) for key, v in judged.items()} == counted
    assert judged[("on", "5xx rate")]["state"] == "FAIL"
    assert judged[("on", "5xx rate")]["explain"] == (
        "FAIL e2e_checkout=on 5xx rate 8% (evidence 158 ≥ 1/alpha = 100, n=800) ≥ fail line 5%"
    )
    assert judged[("off", "5xx rate")]["state"] == "PASS"
    assert judged[("off", "latency p95")]["state"] == "PASS"
    assert checkout["state"] == "FAIL"

    small_report = evaluated_after(bridge, "small-cohort", settle(bridge))
    assert verdicts(small_report)[("on", "5xx rate")]["state"] == "INCONCLUSIVE"
    assert verdicts(small_report)[("on", "5xx rate")]["n"] == 20
    quiet = report(bridge, "quiet-flag")
    assert quiet["state"] == "NO_DATA"

    listed = bridge.request("GET", "/tests", None, {"Authorization": f"Bearer {ORACLE_TOKEN}"})
    assert {t["name"]: t["state"] for t in listed.body["tests"]} == {
        "checkout-health": "FAIL", "small-cohort": "INCONCLUSIVE", "quiet-flag": "NO_DATA",
    }  # fmt: skip
    assert bridge.request("GET", "/tests").status == 401

    kills = receivers(bridge)["kills"]
    assert kills == [{"workspace": "ws-e2e", "flag": "e2e_checkout", "environment": "Production",
                      "body": {"comment": "flagbridge oracle: FAIL verdict"}}]  # fmt: skip
    assert checkout["report"]["kill"]["status"] == "killed"
    assert checkout["report"]["kill"]["confirmed"] is False
    assert checkout["report"]["kill"]["confirmation"] == "pending"
    accepted = checkout["report"]["kill"]["timeline"]
    assert accepted["failed_at"] <= accepted["claimed_at"] <= accepted["accepted_at"]
    assert accepted["confirmed_at"] is None

    # Split now serves the default treatment with label "killed": its impressions, then the tester's next event.
    killed_at = int(time.time() * 1000) - 1000
    bridge.post_impressions([impression(on_user, "e2e_checkout", "off", killed_at, "killed", VERSION + 1)])
    settle(bridge)
    send(bridge, batches(on_user, [200], "api_response", f"{run}-after-kill"))
    confirmed = evaluated_after(bridge, "checkout-health", settle(bridge))
    assert confirmed["report"]["kill"]["confirmed"] is True
    timeline = confirmed["report"]["kill"]["timeline"]
    assert {k: timeline[k] for k in ("failed_at", "claimed_at", "accepted_at")} == {
        k: accepted[k] for k in ("failed_at", "claimed_at", "accepted_at")
    }
    assert timeline["confirm_ms"] == timeline["confirmed_at"] - timeline["accepted_at"] > 0
    assert confirmed["report"]["kill"]["confirmation"] == "confirmed"
    assert confirmed["state"] == "FAIL"  # the version that failed is still the one judged
    assert len(receivers(bridge)["kills"]) == 1  # never twice for one FAIL

    # The same test's report as the oracle API's HTML page, over real HTTP, rendered by a browser.
    page = bridge.request(
        "GET", "/tests/checkout-health/report", None, {"Authorization": f"Bearer {ORACLE_TOKEN}"}
    )  # fmt: skip
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    html_file = tmp_path / "checkout-health.html"
    html_file.write_text(str(page.body), encoding="utf-8")
    dom = render_in_chromium(html_file.as_uri(), html_file.parent)
    assert 'data-rendered="1 tests, 2 treatments"' in dom  # the page's script ran
    assert dom.index('data-treatment="on"') < dom.index('data-treatment="off"')  # the failing treatment first
    assert 'data-confirmation="confirmed"' in dom and 'class="legend"' in dom and dom.count('class="axis"') >= 4
    assert on_user not in dom  # keys never appear, only counts
    assert bridge.request("GET", "/tests/checkout-health/report").status == 401
