"""The tester registry end to end over HTTP on the local runner: register -> tester in both directions -> expiry.

A customer (no rule makes them a tester) is registered with ``PUT /testers/user/{key}``; then the official
mParticle SDK sends their events (the router sends them to Split, never to the analytics webhook) and Split's
webhook their impressions (the profile is marked ``tester-registry``). Once the registration expires, the same
user's next events go to analytics and not to Split, and the profile is a customer's again.

The tester phase must finish before the registration expires; rather than a fixed, generous window (slow) or
a tight one (flaky on a loaded machine), an attempt that overran its window is repeated with a fresh key and
twice the window.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import Bridge
from tests.e2e.test_cdp_e2e import events_api, receivers, sdk_batch
from tests.e2e.test_impressions_e2e import impression

pytestmark = pytest.mark.e2e

TESTERS_TOKEN = "local-testers-token"
FIRST_WINDOW_SECONDS = 20
ATTEMPTS = 3


def register(bridge: Bridge, key: str, expires_at: float, token: str = TESTERS_TOKEN) -> Any:
    body = json.dumps({"expiresAt": expires_at, "reason": "e2e: registry routes both directions"}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return bridge.request("PUT", f"/testers/user/{key}", body, headers)


def split_keys(bridge: Bridge, key: str) -> list[str]:
    return sorted(e["eventTypeId"] for e in receivers(bridge)["split_events"] if e["key"] == key)


def analytics_batches(bridge: Bridge, key: str) -> list[dict[str, Any]]:
    return [
        batch
        for path, batches in receivers(bridge)["webhooks"].items()
        if "mparticle" in path
        for batch in batches
        if key in json.dumps(batch.get("user_identities"))
    ]


def registered_phase(bridge: Bridge, key: str, window: float) -> bool:
    """Register ``key`` for ``window`` seconds and check it is a tester both ways; False if the window ran out."""
    expires_at = time.time() + window
    response = register(bridge, key, expires_at)
    assert response.status == 200, response.body
    assert response.body["registeredBy"] == "token:testers-api-token"
    listing = bridge.request("GET", "/testers?limit=100", None, {"Authorization": f"Bearer {TESTERS_TOKEN}"})
    assert key in [t["key"] for t in listing.body["testers"]] or listing.body["nextCursor"] is not None, listing.body

    events_api(bridge).upload_events(sdk_batch(f"{key}-registered", key, tester=False))
    bridge.post_impressions([impression(key, "new_checkout", "on", int(time.time() * 1000))])
    bridge.wait_idle(90)
    profile = bridge.profile("user", key).body
    if time.time() >= expires_at - 1:
        return False  # too slow to tell: the registration may have expired meanwhile
    assert split_keys(bridge, key) == ["add_to_plan", "screen_view"]
    assert analytics_batches(bridge, key) == []
    assert profile["testUser"]["isTestUser"] is True, profile
    assert profile["testUser"]["rule"] == "tester-registry"
    # wait out the registration (TTL would delete it days later; the expiry check on read is what counts)
    time.sleep(max(0.0, expires_at - time.time()) + 1.0)
    return True


def test_a_registered_tester_is_a_tester_both_ways_until_it_expires(bridge: Bridge, run_id: str) -> None:
    window = FIRST_WINDOW_SECONDS
    for attempt in range(ATTEMPTS):
        key = f"reg-{run_id}-{attempt}"
        # Given a customer no configured rule makes a tester, registered through the API
        if registered_phase(bridge, key, window):
            break
        window *= 2
    else:
        pytest.fail(f"the tester phase overran its window {ATTEMPTS} times (last {window // 2}s)")

    # When the registration has expired and the same user sends events and impressions again
    events_api(bridge).upload_events(sdk_batch(f"{key}-expired", key, tester=False))
    bridge.post_impressions([impression(key, "new_checkout", "off", int(time.time() * 1000))])
    bridge.wait_idle(90)

    # Then they are a customer again: analytics gets the new batch, Split nothing more, the profile is unmarked
    assert split_keys(bridge, key) == ["add_to_plan", "screen_view"]  # only the registered phase's events
    assert len(analytics_batches(bridge, key)) == 1
    profile = bridge.profile("user", key).body
    assert profile["testUser"] == {"isTestUser": False, "rule": None, "markedAt": None, "expiresAt": None}
    listing = bridge.request("GET", "/testers?limit=100", None, {"Authorization": f"Bearer {TESTERS_TOKEN}"})
    assert key not in [t["key"] for t in listing.body["testers"]]


def test_the_registry_refuses_without_the_token_and_bad_expiries(bridge: Bridge, run_id: str) -> None:
    key = f"reg-refused-{run_id}"
    assert register(bridge, key, time.time() + 60, token="wrong").status == 401
    response = register(bridge, key, time.time() - 60)
    assert (response.status, response.body["error"]) == (400, "expired")
    response = register(bridge, key, time.time() + 40 * 86400)
    assert (response.status, response.body["error"]) == (400, "expiry_too_far")
    response = bridge.request("DELETE", f"/testers/user/{key}", None, {"Authorization": f"Bearer {TESTERS_TOKEN}"})
    assert (response.status, response.body["error"]) == (404, "tester_not_found")
