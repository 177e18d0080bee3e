"""Load: 8 concurrent senders against the local runner, for the same users, lose no update.

Webhook bodies (impressions) and mParticle batches are posted from 8 threads at once; afterwards the
profiles' counts and latest treatments must equal what a sequential run gives, and Split must have
received every tester event exactly once.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import Bridge

pytestmark = pytest.mark.e2e

BASE = 1_767_225_600_000
USERS = 4
FLAGS = 3
SENDERS = 8
BODIES_PER_SENDER = 5


def _impression(user: str, flag: str, treatment: str, time_ms: int) -> dict[str, Any]:
    return {
        "key": user,
        "split": flag,
        "environmentId": "env-prod-0001",
        "environmentName": "Production",
        "treatment": treatment,
        "time": time_ms,
        "label": "default rule",
        "splitVersionNumber": 1,
        "bucketingKey": None,
        "machineName": "web-1",
        "machineIp": "10.0.0.1",
        "sdk": "python",
        "sdkVersion": "10.5.1",
        "properties": None,
    }


def test_concurrent_senders_lose_no_update(bridge: Bridge, run_id: str) -> None:
    users = [f"u-load-{run_id}-{n}" for n in range(USERS)]
    flags = [f"load_flag_{n}" for n in range(FLAGS)]
    bodies: list[list[dict[str, Any]]] = []
    for sender in range(SENDERS):
        for body in range(BODIES_PER_SENDER):
            serial = sender * BODIES_PER_SENDER + body
            bodies.append(
                [
                    _impression(user, flag, f"t{(serial + u + f) % 3}", BASE + serial * 100 + u * 10 + f)
                    for u, user in enumerate(users)
                    for f, flag in enumerate(flags)
                ]
            )
    testers = [f"qa-load-{run_id}-{n}" for n in range(SENDERS)]
    basic = "Basic " + base64.b64encode(b"local-mparticle-key:local-mparticle-secret").decode()
    now = int(time.time() * 1000)

    def mparticle_batch(n: int) -> bytes:
        return json.dumps(
            {
                "environment": "production",
                "source_request_id": f"load-{run_id}-{n}",
                "user_identities": {"customer_id": testers[n % len(testers)]},
                "user_attributes": {"is_test_user": True},
                "events": [
                    {
                        "event_type": "screen_view",
                        "data": {
                            "screen_name": "Checkout",
                            "source_message_id": f"load-{run_id}-{n}",
                            "timestamp_unixtime_ms": now - n,
                        },
                    }
                ],
            }
        ).encode()

    def send(sender: int) -> list[int]:
        statuses = []
        for body in range(BODIES_PER_SENDER):
            serial = sender * BODIES_PER_SENDER + body
            payload = gzip.compress(json.dumps(bodies[serial]).encode())
            statuses.append(
                bridge.request(
                    "POST",
                    "/split/impressions?token=local-webhook-token",
                    payload,
                    {"Content-Type": "application/json"},
                ).status
            )
            statuses.append(
                bridge.request(
                    "POST",
                    "/mparticle/v2/events",
                    mparticle_batch(serial),
                    {"Content-Type": "application/json", "Authorization": basic},
                ).status
            )
        return statuses

    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        statuses = [status for result in pool.map(send, range(SENDERS)) for status in result]
    assert statuses.count(200) == SENDERS * BODIES_PER_SENDER
    assert statuses.count(202) == SENDERS * BODIES_PER_SENDER
    bridge.wait_idle(120)

    # The sequential expectation: every impression counted once, the newest treatment current.
    for u, user in enumerate(users):
        document = bridge.request(
            "GET", f"/profiles/user/{user}", headers={"Authorization": "Bearer local-profile-token"}
        ).body
        for f, flag in enumerate(flags):
            state = document["flags"][flag]
            newest = max((b[u * FLAGS + f] for b in bodies), key=lambda i: i["time"])
            assert state["exposures"] == len(bodies)
            assert state["treatment"] == newest["treatment"]
            assert state["lastExposure"] == newest["time"]
    received = bridge.request("GET", "/_local/receivers").body["split_events"]
    ours = [e for e in received if e["key"] in testers]
    assert len(ours) == SENDERS * BODIES_PER_SENDER
    assert len({e["properties"]["mp.message_id"] for e in ours}) == len(ours)
