"""CDP forwarding end to end with the official ``mparticle`` Python SDK pointed at the local bridge.

SDK -> POST /mparticle/v2/events (Basic auth) -> batches queue -> router (plan, testers, filters) -> lanes ->
delivery -> the local Split-compatible receiver and the analytics webhook receiver; plan violations land in
the quarantine bucket (inspected on the runner's moto endpoint).
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import mparticle
import pytest

from local.receivers import split_event_problems
from tests.e2e.conftest import Bridge

pytestmark = pytest.mark.e2e

MPARTICLE_KEY, MPARTICLE_SECRET = "local-mparticle-key", "local-mparticle-secret"


def events_api(bridge: Bridge) -> mparticle.EventsApi:
    configuration = mparticle.Configuration()
    configuration.api_key = MPARTICLE_KEY
    configuration.api_secret = MPARTICLE_SECRET
    configuration.host = f"{bridge.url}/mparticle/v2"
    return mparticle.EventsApi(configuration)


def plan_context() -> mparticle.BatchContext:
    return mparticle.BatchContext(data_plan=mparticle.DataPlanContext(plan_id="bridge_plan", plan_version=3))


def sdk_batch(run_id: str, customer: str, *, tester: bool, plan_value: str = "pro") -> mparticle.Batch:
    now = int(time.time() * 1000)
    identities = mparticle.UserIdentities()
    identities.customerid = customer  # the SDK serialises this as "customerid"
    batch = mparticle.Batch()
    batch.environment = "production"
    batch.source_request_id = f"{run_id}-{customer}"
    batch.user_identities = identities
    batch.user_attributes = {"is_test_user": True} if tester else {"$country": "DE"}
    batch.context = plan_context()
    add = mparticle.AppEvent(
        event_name="add_to_plan",
        custom_event_type="transaction",
        timestamp_unixtime_ms=now - 2000,
        source_message_id=f"{run_id}-{customer}-add",
        custom_attributes={"plan": plan_value, "seats": "3"},
    )
    view = mparticle.ScreenViewEvent(
        screen_name="Checkout", timestamp_unixtime_ms=now - 1000, source_message_id=f"{run_id}-{customer}-view"
    )
    batch.events = [add, view]
    return batch


def receivers(bridge: Bridge) -> dict[str, Any]:
    response = bridge.request("GET", "/_local/receivers")
    assert response.status == 200
    return response.body


def quarantined(bridge: Bridge) -> list[dict[str, Any]]:
    aws = bridge.request("GET", "/_local/aws").body
    s3 = boto3.client(
        "s3",
        endpoint_url=aws["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = aws["resources"]["QUARANTINE_BUCKET"]
    documents = []
    for entry in s3.list_objects_v2(Bucket=bucket, Prefix="cdp-router/").get("Contents", []):
        documents.append(json.loads(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()))
    return documents


def test_official_sdk_batches_reach_the_right_destinations(bridge: Bridge, run_id: str) -> None:
    api = events_api(bridge)
    tester, customer, violator = f"qa-sdk-{run_id}", f"customer-{run_id}", f"violator-{run_id}"

    # Given: a tester, a real customer (bulk upload) and a plan violation, all sent by the official SDK
    api.upload_events(sdk_batch(run_id, tester, tester=True))
    api.bulk_upload_events([sdk_batch(run_id, customer, tester=False)])
    api.upload_events(sdk_batch(run_id, violator, tester=False, plan_value="enterprise"))
    bridge.wait_idle(90)

    got = receivers(bridge)
    # Then: the tester's events reached Split, valid under Split's rules, once each
    split_events = [e for e in got["split_events"] if e["key"] == tester]
    assert sorted(e["eventTypeId"] for e in split_events) == ["add_to_plan", "screen_view"]
    assert all(split_event_problems(e) == [] for e in split_events)
    assert {e["trafficTypeName"] for e in split_events} == {"user"}
    # the real customer never reaches Split, and no tester reaches the analytics webhook
    assert not [e for e in got["split_events"] if e["key"] in (customer, violator)]
    analytics = [b for path, batches in got["webhooks"].items() if "mparticle" in path for b in batches]
    analytics_users = {json.dumps(b["user_identities"]) for b in analytics}
    assert any(customer in users for users in analytics_users)
    assert not any(tester in users for users in analytics_users)

    # And: the plan violation is quarantined with its reason
    blocked = [
        item
        for document in quarantined(bridge)
        for item in document["items"]
        if item["kind"] == "plan_blocked" and violator in json.dumps(item["item"])
    ]
    assert blocked and blocked[0]["reason"].startswith("plan.")


def test_sdk_redelivery_of_the_same_batch_has_no_second_effect(bridge: Bridge, run_id: str) -> None:
    api = events_api(bridge)
    tester = f"qa-again-{run_id}"
    batch = sdk_batch(run_id, tester, tester=True)
    api.upload_events(batch)
    bridge.wait_idle(90)
    api.upload_events(batch)  # same source_request_id and source_message_ids
    bridge.wait_idle(90)
    keys = [e["eventTypeId"] for e in receivers(bridge)["split_events"] if e["key"] == tester]
    assert sorted(keys) == ["add_to_plan", "screen_view"]


def test_wrong_credentials_are_refused_like_mparticle(bridge: Bridge) -> None:
    configuration = mparticle.Configuration()
    configuration.api_key, configuration.api_secret = MPARTICLE_KEY, "wrong"
    configuration.host = f"{bridge.url}/mparticle/v2"
    with pytest.raises(mparticle.rest.ApiException) as error:
        mparticle.EventsApi(configuration).upload_events(sdk_batch("x", "nobody", tester=False))
    assert error.value.status == 403
