"""The tester registry drives the Split segment, end to end on the local runner (shipped configuration:
``testers.segments`` = ``flagbridge_testers`` in ``Production``).

HTTP ``PUT``/``DELETE /testers`` -> the registry function -> moto -> the local Split Admin receiver's segment;
expiry and a segment outage are repaired by the scheduled reconcile function (the runner fires schedules every
``FLAGBRIDGE_LOCAL_SCHEDULE_SECONDS``); an impression labelled ``in segment flagbridge_testers`` marks its user
as a tester on the profile. Every wait polls with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Bridge
from tests.e2e.test_cdp_e2e import receivers
from tests.e2e.test_impressions_e2e import impression

pytestmark = pytest.mark.e2e

TESTERS_TOKEN = "local-testers-token"
ORACLE_TOKEN = "local-oracle-token"
SEGMENT = "Production/flagbridge_testers"
RECONCILE_DEADLINE = 90.0  # several local schedule ticks, on a loaded machine


def _auth(token: str = TESTERS_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def register(bridge: Bridge, key: str, expires_at: float, token: str = TESTERS_TOKEN) -> Any:
    body = json.dumps({"expiresAt": expires_at, "reason": "e2e: segment"}).encode()
    return bridge.request("PUT", f"/testers/user/{key}", body, _auth(token))


def segment(bridge: Bridge) -> list[str]:
    return list(receivers(bridge).get("segments", {}).get(SEGMENT, []))


def listed(bridge: Bridge, key: str) -> dict[str, Any] | None:
    cursor = ""
    while True:
        page = bridge.request("GET", f"/testers?limit=100{cursor}", None, _auth()).body
        for tester in page["testers"]:
            if tester["key"] == key:
                return dict(tester)
        if page["nextCursor"] is None:
            return None
        cursor = f"&cursor={page['nextCursor']}"


def eventually(what: str, check: Callable[[], bool], deadline: float = RECONCILE_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.5)


def outage(bridge: Bridge, status: int | None) -> None:
    query = f"?status={status}" if status is not None else ""
    assert bridge.request("POST", f"/_local/receivers/segment-outage{query}").status == 200


def test_register_remove_and_expire_change_the_segment(bridge: Bridge, run_id: str) -> None:
    kept, removed, expiring = (f"seg-{run_id}-{name}" for name in ("kept", "removed", "expiring"))
    for key in (kept, removed):
        response = register(bridge, key, time.time() + 3600)
        assert response.status == 200 and response.body["segment"] == "pending", response.body
    assert {kept, removed} <= set(segment(bridge))  # added by the request itself
    assert listed(bridge, kept)["segment"] == "synced"  # type: ignore[index]

    assert bridge.request("DELETE", f"/testers/user/{removed}?reason=done", None, _auth()).status == 200
    assert removed not in segment(bridge) and kept in segment(bridge)

    assert register(bridge, expiring, time.time() + 3).status == 200
    assert expiring in segment(bridge)
    eventually("the reconcile to remove the expired tester", lambda: expiring not in segment(bridge))
    assert kept in segment(bridge)


def test_an_outage_loses_nothing_and_the_reconcile_repairs_it(bridge: Bridge, run_id: str) -> None:
    key = f"seg-{run_id}-outage"
    outage(bridge, 503)
    try:
        response = register(bridge, key, time.time() + 3600)
        assert response.status == 200, response.body  # registered although Split is down
        assert listed(bridge, key)["segment"] == "pending"  # type: ignore[index]
        assert key not in segment(bridge)
    finally:
        outage(bridge, None)
    eventually("the reconcile to add the pending tester", lambda: key in segment(bridge))
    eventually("the registration to be marked synced", lambda: (listed(bridge, key) or {}).get("segment") == "synced")


def test_the_segment_label_marks_the_user_as_a_tester(bridge: Bridge, run_id: str) -> None:
    key = f"seg-{run_id}-served"  # no rule, no registration: only the flag's segment targeting
    now = int(time.time() * 1000)
    posted = bridge.post_impressions(
        [impression(key, "new_checkout", "on", now, label="in segment flagbridge_testers")]
    )
    assert posted.status == 200, posted.body
    bridge.wait_idle(90)
    profile = bridge.profile("user", key).body
    assert profile["testUser"]["isTestUser"] is True, profile
    assert profile["testUser"]["rule"] == "targeted-by-whitelist"
    assert profile["flags"]["new_checkout"]["label"] == "in segment flagbridge_testers"


def test_a_registry_write_with_the_oracles_read_token_is_refused(bridge: Bridge, run_id: str) -> None:
    key = f"seg-{run_id}-intruder"
    before = segment(bridge)
    response = register(bridge, key, time.time() + 3600, token=ORACLE_TOKEN)
    assert response.status == 401 and response.body["error"] == "unauthorized", response.body
    deleting = bridge.request("DELETE", f"/testers/user/seg-{run_id}-kept", None, _auth(ORACLE_TOKEN))
    assert deleting.status == 401
    assert listed(bridge, key) is None and segment(bridge) == before
