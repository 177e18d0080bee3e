"""The oracle's handlers on moto, driven by ``events/``: lane -> counters -> evaluator -> SNS, EventBridge,
EMF metrics, Split Admin kill (local receiver) -> the verdicts API.

``events/sqs_oracle_lane.json`` holds five routed testers' results (qa-bot-01: 200, 503, 200 without latency;
qa-bot-02: 200, 500); the customer's result never reached the lane.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flagbridge.profiles.model import Assignment, FlagState
from local.receivers import Receiver, ScriptedResponse
from tests.conftest import ROOT, drain_queue, load_event, load_handler

ADMIN_KEY = "local-split-admin-key"
ORACLE_TOKEN = "local-oracle-token"
T_LANE = 1767225640000  # the sample results' first timestamp (make_events: FIXED_NOW - 60 s)


def oracle_config(tmp_path: Path, receiver: Receiver, **test: Any) -> Path:
    document = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    document["oracle"]["tests"][0].update(test)
    path = tmp_path / "flagbridge.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture
def oracle_aws(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    import boto3

    from flagbridge import runtime

    ddb = aws["ddb"]
    for table in ("flagbridge-test-oracle-counters", "flagbridge-test-oracle-verdicts"):
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    sqs, sns, events = aws["sqs"], boto3.client("sns"), boto3.client("events")
    topic = sns.create_topic(Name="flagbridge-test-alarms")["TopicArn"]
    alarms = sqs.create_queue(QueueName="alarm-inbox")["QueueUrl"]
    alarms_arn = sqs.get_queue_attributes(QueueUrl=alarms, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=alarms_arn, Attributes={"RawMessageDelivery": "true"})
    events.create_event_bus(Name="flagbridge-test-oracle")
    verdict_events = sqs.create_queue(QueueName="verdict-events")["QueueUrl"]
    verdict_arn = sqs.get_queue_attributes(QueueUrl=verdict_events, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="fails", EventBusName="flagbridge-test-oracle",
                    EventPattern=json.dumps({"source": ["flagbridge.oracle"]}))  # fmt: skip
    events.put_targets(Rule="fails", EventBusName="flagbridge-test-oracle", Targets=[{"Id": "q", "Arn": verdict_arn}])
    secrets = boto3.client("secretsmanager")
    admin = secrets.create_secret(Name="flagbridge/test/split-admin-api-key", SecretString=ADMIN_KEY)["ARN"]
    token = secrets.create_secret(Name="flagbridge/test/oracle-api-token", SecretString=ORACLE_TOKEN)["ARN"]
    receiver = Receiver().start()
    receiver.split_admin_key = ADMIN_KEY
    env = {
        "ORACLE_COUNTERS_TABLE": "flagbridge-test-oracle-counters",
        "ORACLE_VERDICTS_TABLE": "flagbridge-test-oracle-verdicts",
        "ORACLE_ALARM_TOPIC_ARN": topic,
        "ORACLE_EVENT_BUS_NAME": "flagbridge-test-oracle",
        "ORACLE_API_TOKEN_SECRET": token,
        "SPLIT_ADMIN_API_URL": f"{receiver.url}/internal/api/v2",
        "SPLIT_ADMIN_API_KEY_SECRET": admin,
        "FLAGBRIDGE_CONFIG": str(oracle_config(tmp_path, receiver)),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    try:
        yield {**aws, **env, "alarms": alarms, "verdict_events": verdict_events, "receiver": receiver,
               "tmp_path": tmp_path}  # fmt: skip
    finally:
        receiver.stop()


def expose(user: str, treatment: str, version: int = 7, label: str = "in segment qa") -> None:
    from flagbridge import runtime

    assignment = Assignment(treatment, label, version, "Production", T_LANE - 5000, T_LANE - 5000, 1)
    runtime.profile_store().save(
        FlagState(
            traffic_type="user", key=user, identity_type="customer_id", flag="new_checkout", treatment=treatment,
            label=label, version=version, environment="Production", environment_id="env-prod",
            current_time=T_LANE - 5000, first_seen=T_LANE - 5000, last_seen=T_LANE - 5000, exposures=1,
            assignments=(assignment,),
        )
    )  # fmt: skip


def counters(aws: dict[str, Any]) -> dict[str, dict[str, Any]]:
    items = aws["ddb"].scan(TableName="flagbridge-test-oracle-counters")["Items"]
    return {
        item["sk"]["S"]: {k: v for k, v in item.items() if k not in ("pk", "sk", "applied", "tr", "me", "hr", "ve")}
        for item in items
    }


def lane_event(statuses: list[int], user: str, prefix: str, latency: int = 100) -> dict[str, Any]:
    """An oracle-lane SQS event with one routed batch per result (each its own router batch key)."""
    template = load_event("sqs_oracle_lane.json")
    record = template["Records"][0]
    message = json.loads(record["body"])
    records = []
    for index, status in enumerate(statuses):
        body = copy.deepcopy(message)
        body["batch_key"] = f"srid:{prefix}-{index}"
        body["batch"]["user_identities"] = {"customer_id": user}
        attributes = body["batch"]["events"][0]["data"]["custom_attributes"]
        attributes.update(status=status, latency_ms=latency)
        records.append({**record, "messageId": f"{prefix}-{index}", "body": json.dumps(body)})
    return {"Records": records}


def test_the_sample_lane_batch_is_counted_exactly_once(oracle_aws: dict[str, Any], lambda_context: Any) -> None:
    expose("qa-bot-01", "on")
    expose("qa-bot-02", "off")
    handler = load_handler("oracle_counter")
    event = load_event("sqs_oracle_lane.json")
    assert handler.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    first = counters(oracle_aws)
    hour = T_LANE - T_LANE % 3_600_000
    on_rate = first[f"C#{hour:013d}#{7:015d}#on#5xx rate"]
    assert (on_rate["n"]["N"], on_rate["k"]["N"], on_rate["inv"]["N"]) == ("3", "1", "0")
    on_latency = first[f"C#{hour:013d}#{7:015d}#on#latency p95"]
    assert (on_latency["n"]["N"], on_latency["inv"]["N"]) == ("2", "1")  # one result had no latency
    # 120 and 950 ms: exactly one at/above the 500 ms pass line, none at/above 1000, both classified
    assert (on_latency["ap"]["N"], on_latency["af"]["N"], on_latency["cl"]["N"]) == ("1", "0", "2")
    assert "ap" not in on_rate  # rate counters carry no line counts
    off_rate = first[f"C#{hour:013d}#{7:015d}#off#5xx rate"]
    assert (off_rate["n"]["N"], off_rate["k"]["N"]) == ("2", "1")
    # Redelivered whole, then in two other batches: nothing changes.
    assert handler.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    records = event["Records"]
    handler.lambda_handler({"Records": records[:2]}, lambda_context)
    handler.lambda_handler({"Records": records[2:]}, lambda_context)
    assert counters(oracle_aws) == first


def test_a_crash_mid_batch_loses_and_doubles_nothing(oracle_aws: dict[str, Any], lambda_context: Any) -> None:
    expose("qa-bot-01", "on")
    handler = load_handler("oracle_counter")
    event = lane_event([500, 200, 200], "qa-bot-01", "crash")
    from flagbridge import runtime

    store = runtime.oracle_counters()
    real = store._ddb.update_item
    calls = {"n": 0}

    def flaky(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("connection reset")
        return real(**kwargs)

    store._ddb = type("Flaky", (), {"update_item": staticmethod(flaky), "get_item": store._ddb.get_item,
                                    "query": store._ddb.query, "exceptions": store._ddb.exceptions})()  # fmt: skip
    response = handler.lambda_handler(event, lambda_context)
    assert response["batchItemFailures"]  # the messages of the counter that failed come back
    store._ddb = runtime.aws_client("dynamodb")
    assert handler.lambda_handler(event, lambda_context) == {"batchItemFailures": []}  # SQS redelivers (all of it)
    hour = T_LANE - T_LANE % 3_600_000
    final = counters(oracle_aws)
    assert (
        final[f"C#{hour:013d}#{7:015d}#on#5xx rate"]["n"]["N"],
        final[f"C#{hour:013d}#{7:015d}#on#5xx rate"]["k"]["N"],
    ) == ("3", "1")
    assert final[f"C#{hour:013d}#{7:015d}#on#latency p95"]["n"]["N"] == "3"


def test_unreadable_lane_messages_go_to_the_quarantine(oracle_aws: dict[str, Any], lambda_context: Any) -> None:
    handler = load_handler("oracle_counter")
    response = handler.lambda_handler({"Records": [{"messageId": "bad", "body": "not json"}]}, lambda_context)
    assert response == {"batchItemFailures": []}
    keys = [o["Key"] for o in oracle_aws["s3"].list_objects_v2(Bucket=oracle_aws["QUARANTINE_BUCKET"])["Contents"]]
    assert any("oracle-counter" in key for key in keys)


def evaluate(lambda_context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
    handler = load_handler("oracle_evaluator")
    return handler.lambda_handler(event or load_event("oracle_schedule.json"), lambda_context)


def test_evaluator_alerts_on_change_and_kills_once(
    oracle_aws: dict[str, Any], lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from flagbridge import runtime

    path = oracle_config(oracle_aws["tmp_path"], oracle_aws["receiver"], actions=["alert", "kill"],
                         kill={"workspace_id": "ws-1"})  # fmt: skip
    assert Path(oracle_aws["FLAGBRIDGE_CONFIG"]) == path
    runtime.reset()
    expose("qa-bot-01", "on")
    expose("qa-bot-02", "off")
    counter = load_handler("oracle_counter")
    # 20 errors in 100 fail (evidence 62,813 against 1/alpha = 100), 700 clean requests pass (evidence 162).
    counter.lambda_handler(lane_event([503] * 20 + [200] * 80, "qa-bot-01", "on"), lambda_context)
    for chunk in range(7):
        counter.lambda_handler(lane_event([200] * 100, "qa-bot-02", f"off{chunk}"), lambda_context)
    oracle_aws["receiver"].fail_next(ScriptedResponse(429, {"X-RateLimit-Reset-Seconds-Org": "0.01"}))
    result = evaluate(lambda_context)
    assert result == {"evaluated": {"new-checkout-health": "FAIL"}, "failures": {}}
    kills = oracle_aws["receiver"].kills
    assert kills == [{"workspace": "ws-1", "flag": "new_checkout", "environment": "Production",
                      "body": {"comment": "flagbridge oracle: FAIL verdict"}}]  # fmt: skip
    alarms = drain_queue(oracle_aws["sqs"], oracle_aws["alarms"])
    assert len(alarms) == 2  # the verdict's change, then "kill accepted"
    alarms.sort(key=lambda message: "kill accepted" in message["Body"])
    body = alarms[0]["Body"]
    assert "FAIL new_checkout=on 5xx rate 20% (evidence 62,813 ≥ 1/alpha = 100, n=100) ≥ fail line 5%" in body
    assert "PASS new_checkout=off 5xx rate 0% (evidence 162 ≥ 1/alpha = 100, n=700) < pass line 1%" in body
    assert alarms[1]["Body"].startswith("Test new-checkout-health (flag new_checkout, Production): kill accepted")
    events = [json.loads(m["Body"]) for m in drain_queue(oracle_aws["sqs"], oracle_aws["verdict_events"])]
    [detail] = [e for e in events if e["detail-type"] == "Oracle verdict changed"]
    assert [e["detail"]["event"] for e in events if e["detail-type"] == "Oracle kill changed"] == ["accepted"]
    assert (detail["source"], detail["detail-type"]) == ("flagbridge.oracle", "Oracle verdict changed")
    assert detail["detail"]["state"] == "FAIL" and detail["detail"]["kill"] == "killed"
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"Flagbridge/Oracle"' in line]
    on_rate = next(d for d in emf if d["Treatment"] == "on" and d["Metric"] == "5xx rate")
    assert on_rate["Rate"] == pytest.approx(20.0) and on_rate["VerdictState"] == 5 and on_rate["FailLine"] == 5
    # The next evaluations: no change, no alarm, no second kill.
    for _ in range(2):
        assert evaluate(lambda_context, {"force": True})["evaluated"] == {"new-checkout-health": "FAIL"}
    assert drain_queue(oracle_aws["sqs"], oracle_aws["alarms"]) == []
    assert len(oracle_aws["receiver"].kills) == 1
    history = runtime.oracle_verdicts().history("new-checkout-health", 10)
    assert len(history) == 3
    attempts = history[-1]["kill"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["rate_limited", "killed"]


def test_the_kill_timeline_in_get_tests_and_the_messages(oracle_aws: dict[str, Any], lambda_context: Any) -> None:
    """FAIL -> kill accepted (t1) -> no `killed` event within the wait: `kill not confirmed`, once -> a `killed`
    impression and the user's next event -> confirmed (t2), each on the alarm topic and EventBridge, and in
    GET /tests/{name}."""
    from flagbridge import runtime

    oracle_config(oracle_aws["tmp_path"], oracle_aws["receiver"], actions=["alert", "kill"],
                  kill={"workspace_id": "ws-1", "confirm_within_minutes": 1})  # fmt: skip
    runtime.reset()
    expose("qa-bot-01", "on")
    counter = load_handler("oracle_counter")
    counter.lambda_handler(lane_event([503] * 20 + [200] * 80, "qa-bot-01", "on"), lambda_context)
    evaluate(lambda_context)
    api = load_handler("oracle_api")

    def shown() -> dict[str, Any]:
        answer = api.lambda_handler(load_event("oracle_api_get.json"), lambda_context)
        assert answer["statusCode"] == 200
        return dict(json.loads(answer["body"]))

    def messages() -> tuple[list[str], list[dict[str, Any]]]:
        bodies = [m["Body"] for m in drain_queue(oracle_aws["sqs"], oracle_aws["alarms"])]
        events = [json.loads(m["Body"]) for m in drain_queue(oracle_aws["sqs"], oracle_aws["verdict_events"])]
        return bodies, [e["detail"] for e in events if e["detail-type"] == "Oracle kill changed"]

    kill = shown()["report"]["kill"]
    timeline = kill["timeline"]
    assert kill["status"] == "killed" and kill["confirmation"] == "pending" and kill["confirm_within_ms"] == 60_000
    assert kill["comment"] == "flagbridge oracle: FAIL verdict"
    assert timeline["failed_at"] <= timeline["claimed_at"] <= timeline["accepted_at"]
    assert timeline["accept_ms"] == timeline["accepted_at"] - timeline["failed_at"]
    assert timeline["confirmed_at"] is None and timeline["confirm_ms"] is None
    bodies, kill_events = messages()
    assert [d["event"] for d in kill_events] == ["accepted"]
    assert kill_events[0]["kill"]["timeline"] == timeline
    assert any("kill accepted" in b and "t1 Split accepted" in b for b in bodies)

    # Split accepted it two minutes ago (the record moved back: the handler's clock is the real one)
    store = runtime.oracle_verdicts()
    [record] = store.kills("new-checkout-health")
    record["timeline"]["accepted_at"] -= 120_000
    store.save_kill("new-checkout-health", record["version"], record)
    for _ in range(2):
        evaluate(lambda_context, {"force": True})
    bodies, kill_events = messages()
    assert [d["event"] for d in kill_events] == ["not_confirmed"]  # once
    [alert] = [b for b in bodies if "kill not confirmed" in b]
    assert "within 1 minutes of Split accepting the kill" in alert and "t2 `killed` counted  - (none yet" in alert
    assert shown()["report"]["kill"]["confirmation"] == "not_confirmed"

    expose("qa-bot-03", "off", version=8, label="killed")  # Split serves the default treatment, label killed
    counter.lambda_handler(lane_event([200], "qa-bot-03", "after-kill"), lambda_context)
    evaluate(lambda_context, {"force": True})
    document = shown()
    kill = document["report"]["kill"]
    timeline = kill["timeline"]
    assert (kill["confirmation"], kill["confirmed"]) == ("confirmed", True)
    assert timeline["confirm_ms"] == timeline["confirmed_at"] - timeline["accepted_at"] >= 120_000
    assert document["kills"][0]["timeline"] == timeline
    bodies, kill_events = messages()
    assert [d["event"] for d in kill_events] == ["confirmed"]
    assert kill_events[0]["kill"]["confirmation"] == "confirmed"
    [confirmed] = [b for b in bodies if "kill confirmed" in b]
    assert f"(+{timeline['confirm_ms'] / 1000:.1f} s after t1)" in confirmed


def test_api_lists_and_shows_verdicts(oracle_aws: dict[str, Any], lambda_context: Any) -> None:
    expose("qa-bot-01", "on")
    load_handler("oracle_counter").lambda_handler(load_event("sqs_oracle_lane.json"), lambda_context)
    evaluate(lambda_context)
    api = load_handler("oracle_api")
    listed = api.lambda_handler(load_event("oracle_api_list.json"), lambda_context)
    assert listed["statusCode"] == 200
    [summary] = json.loads(listed["body"])["tests"]
    assert summary["name"] == "new-checkout-health" and summary["state"] == "INCONCLUSIVE"
    shown = api.lambda_handler(load_event("oracle_api_get.json"), lambda_context)
    document = json.loads(shown["body"])
    assert shown["statusCode"] == 200 and document["report"]["unattributed"]["5xx rate"]["n"] == 2
    assert document["config"]["metrics"][0]["pass_below"] == 0.01 and len(document["history"]) == 1
    assert "qa-bot" not in shown["body"]  # keys appear only as counts
    unknown = api.lambda_handler(load_event("oracle_api_unknown.json"), lambda_context)
    assert (unknown["statusCode"], json.loads(unknown["body"])["error"]) == (404, "test_not_found")
    assert api.lambda_handler(load_event("oracle_api_no_token.json"), lambda_context)["statusCode"] == 401


def test_api_returns_a_tests_report_as_the_html_page_the_cli_writes(
    oracle_aws: dict[str, Any], lambda_context: Any
) -> None:
    """``GET /tests/{name}/report``: the page ``flagbridge verdict --html`` writes for that test's document,
    rendered by the same layer module; bearer-protected and 404 for an unknown test like the JSON route."""
    from flagbridge.oracle.report_html import html_report

    expose("qa-bot-01", "on")
    load_handler("oracle_counter").lambda_handler(load_event("sqs_oracle_lane.json"), lambda_context)
    evaluate(lambda_context)
    api = load_handler("oracle_api")
    document = json.loads(api.lambda_handler(load_event("oracle_api_get.json"), lambda_context)["body"])
    page = api.lambda_handler(load_event("oracle_api_report.json"), lambda_context)
    assert page["statusCode"] == 200
    assert page["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert page["headers"]["Cache-Control"] == "no-store"

    def without_stamp(text: str) -> str:
        return re.sub(r"Generated [0-9-]+ [0-9:]+ UTC", "Generated -", text)

    assert without_stamp(page["body"]) == without_stamp(html_report([document]))
    assert page["body"].startswith("<!DOCTYPE html>") and "new-checkout-health" in page["body"]
    assert 'data-state="INCONCLUSIVE"' in page["body"] and "qa-bot" not in page["body"]

    unknown = load_event("oracle_api_report.json")
    unknown["rawPath"] = "/tests/nope/report"
    unknown["pathParameters"] = {"name": "nope"}
    answer = api.lambda_handler(unknown, lambda_context)
    assert (answer["statusCode"], json.loads(answer["body"])["error"]) == (404, "test_not_found")
    anonymous = load_event("oracle_api_report.json")
    del anonymous["headers"]["authorization"]
    assert api.lambda_handler(anonymous, lambda_context)["statusCode"] == 401
