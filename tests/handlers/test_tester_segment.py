"""The tester registry API and the segment reconcile function on moto, against the local Split Admin receiver:
a registration adds the key, an outage leaves it ``pending`` (never lost), the scheduled reconcile repairs it,
a dry run changes nothing, and either credential header works (the configuration's ``split_admin.auth``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from local.make_events import FIXED_NOW
from local.receivers import Receiver
from tests.conftest import load_event, load_handler

ADMIN_CREDENTIAL = "local-admin-credential"
SHIPPED = Path(__file__).resolve().parents[2] / "layers" / "shared" / "config" / "flagbridge.yaml"
SEGMENT = ("Production", "flagbridge_testers")


def _config(tmp_path: Path, auth: str) -> Path:
    document = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    document["split_admin"] = {"auth": auth}
    path = tmp_path / f"flagbridge-{auth}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture(params=["bearer", "x-api-key"])
def segment_aws(
    request: pytest.FixtureRequest, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    import boto3

    from flagbridge import runtime
    from flagbridge.testers import registry

    receiver = Receiver().start()
    receiver.split_admin_key = ADMIN_CREDENTIAL
    receiver.admin_auth = request.param  # the other header is refused: the configuration really chose
    secret = boto3.client("secretsmanager").create_secret(
        Name="flagbridge/test/split-admin", SecretString=ADMIN_CREDENTIAL
    )
    monkeypatch.setenv("SPLIT_ADMIN_API_URL", f"{receiver.url}/internal/api/v2")
    monkeypatch.setenv("SPLIT_ADMIN_API_KEY_SECRET", secret["ARN"])
    monkeypatch.setenv("FLAGBRIDGE_CONFIG", str(_config(tmp_path, request.param)))
    monkeypatch.setattr(registry, "_now", lambda: FIXED_NOW)
    runtime.reset()
    try:
        yield {**aws, "receiver": receiver, "auth": request.param}
    finally:
        receiver.stop()


def _call(handler: Any, event: dict[str, Any], context: Any) -> tuple[int, dict[str, Any]]:
    response = handler.lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def _put(key: str) -> dict[str, Any]:
    event = load_event("testers_put.json")
    event["pathParameters"]["key"] = key
    event["rawPath"] = event["rawPath"].rsplit("/", 1)[0] + f"/{key}"  # the registry reads the key from the raw path
    return event


def test_register_outage_reconcile_and_dry_run(segment_aws: dict[str, Any], lambda_context: Any) -> None:
    from flagbridge import runtime

    receiver: Receiver = segment_aws["receiver"]
    testers = load_handler("tester_registry")
    status, body = _call(testers, _put("qa-seg-1"), lambda_context)
    assert status == 200 and body["segment"] == "pending"  # the answer is the stored registration...
    assert receiver.segment(*SEGMENT) == ["qa-seg-1"]  # ...and the key went in right after
    listing = _call(testers, load_event("testers_list.json"), lambda_context)[1]
    assert [(t["key"], t["segment"]) for t in listing["testers"]] == [("qa-seg-1", "synced")]

    receiver.segment_outage = 503
    runtime.tester_registry.cache_clear()
    status, body = _call(testers, _put("qa-seg-2"), lambda_context)
    assert status == 200, body  # the outage never refuses or loses a registration
    listing = _call(testers, load_event("testers_list.json"), lambda_context)[1]
    assert [(t["key"], t["segment"]) for t in listing["testers"]] == [("qa-seg-1", "synced"), ("qa-seg-2", "pending")]
    reconcile = load_handler("tester_segment_reconcile")
    failed = reconcile.lambda_handler(load_event("tester_segment_schedule.json"), lambda_context)
    assert failed["ok"] is False and receiver.segment(*SEGMENT) == ["qa-seg-1"]

    receiver.segment_outage = None
    receiver.segments[SEGMENT].append("added-by-hand")
    dry = reconcile.lambda_handler(load_event("tester_segment_dry_run.json"), lambda_context)
    (target,) = dry["segments"]
    assert (dry["dryRun"], target["to_add"], target["to_remove"]) == (True, 1, 1)
    assert receiver.segment(*SEGMENT) == ["qa-seg-1", "added-by-hand"]  # the dry run changed nothing

    report = reconcile.lambda_handler(load_event("tester_segment_schedule.json"), lambda_context)
    assert report["ok"] is True and report["markedSynced"] == 1
    assert sorted(receiver.segment(*SEGMENT)) == ["qa-seg-1", "qa-seg-2"]
    listing = _call(testers, load_event("testers_list.json"), lambda_context)[1]
    assert {t["segment"] for t in listing["testers"]} == {"synced"}
    audits = [
        (i["action"]["S"], i["actor"]["S"])
        for i in segment_aws["ddb"].scan(TableName=segment_aws["TESTERS_TABLE"])["Items"]
        if i.get("action", {}).get("S", "").startswith("segment_")
    ]
    assert sorted(audits) == [
        ("segment_add", "schedule:tester-segment-reconcile"),  # qa-seg-2, after the outage
        ("segment_add", "token:testers-api-token"),  # qa-seg-1, at registration
        ("segment_remove", "schedule:tester-segment-reconcile"),  # the key added by hand
    ]
    assert report["segments"][0]["removed"] == 1

    status, _ = _call(testers, load_event("testers_delete.json").copy() | {"rawPath": "/testers/user/qa-seg-1",
                      "pathParameters": {"trafficType": "user", "key": "qa-seg-1"}}, lambda_context)  # fmt: skip
    assert status == 200 and receiver.segment(*SEGMENT) == ["qa-seg-2"]
    assert receiver.requests and all(
        ("x-api-key" in r.headers) == (segment_aws["auth"] == "x-api-key") for r in receiver.requests
    )


def test_off_the_reconcile_does_nothing_and_registrations_carry_no_segment(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lambda_context: Any
) -> None:
    from flagbridge import runtime
    from flagbridge.testers import registry

    receiver = Receiver().start()
    try:
        document = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
        del document["testers"]
        config = tmp_path / "off.yaml"
        config.write_text(yaml.safe_dump(document), encoding="utf-8")
        monkeypatch.setenv("FLAGBRIDGE_CONFIG", str(config))
        monkeypatch.setenv("SPLIT_ADMIN_API_URL", f"{receiver.url}/internal/api/v2")
        monkeypatch.setenv("SPLIT_ADMIN_API_KEY_SECRET", "flagbridge/test/never-read")
        monkeypatch.setattr(registry, "_now", lambda: FIXED_NOW)
        runtime.reset()
        status, body = _call(load_handler("tester_registry"), _put("qa-off-1"), lambda_context)
        assert status == 200 and "segment" not in body
        report = load_handler("tester_segment_reconcile").lambda_handler(
            load_event("tester_segment_schedule.json"), lambda_context
        )
        assert report == {"segments": [], "skipped": "no testers.segments in the configuration"}
        assert receiver.requests == []
    finally:
        receiver.stop()
