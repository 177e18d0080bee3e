"""The test-run handlers on moto: ``POST /runs``, ``GET /runs/{id}``, the schedule and the shard worker.

Driven by the sample events in ``events/`` (``traffic_runs_*.json``, ``sqs_traffic_shard*.json``); the worker
sends for real to a counting server on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import yaml

from local.apigw import http_api_event
from tests.conftest import ROOT, create_testers_table, load_event, load_handler
from tests.fixtures.runs import MODEL, ORACLE_TEST, PLAN, PLAN_WITH_TEST, TESTERS, CountingTarget, as_documents

TOKEN = "local-traffic-token"
RUNS_TABLE = "flagbridge-runs-test"
MANIFESTS = "flagbridge-manifests-test"
QUARANTINE = "flagbridge-quarantine-runs-test"
STOP = "/flagbridge/test/traffic/stop"
VERDICTS = "flagbridge-verdicts-test"


@pytest.fixture
def target() -> Iterator[CountingTarget]:
    server = CountingTarget().start()
    yield server
    server.stop()


@pytest.fixture
def runs_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[dict[str, Any]]:
    yield from _runs_aws(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def shared_runs_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One moto environment for the hostile cases (each is refused: nothing they do changes another's)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _runs_aws(monkeypatch, tmp_path_factory.mktemp("runs"))


def _runs_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[dict[str, Any]]:
    from moto import mock_aws

    from flagbridge import runtime

    config = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    config["traffic"] = {"allowlist": ["localhost", "127.0.0.1"], "testers": TESTERS}
    path = tmp_path / "flagbridge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName=RUNS_TABLE,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.create_table(
            TableName=VERDICTS,
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=MANIFESTS)
        s3.create_bucket(Bucket=QUARANTINE)
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="flagbridge-shards-test")["QueueUrl"]
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=STOP, Value="none", Type="String")
        for name, value in {
            "FLAGBRIDGE_CONFIG": str(path),
            "RUNS_TABLE": RUNS_TABLE,
            "MANIFEST_BUCKET": MANIFESTS,
            "SHARD_QUEUE_URL": queue_url,
            "QUARANTINE_BUCKET": QUARANTINE,
            "TRAFFIC_STOP_PARAMETER": STOP,
            "TRAFFIC_PARALLELISM": "4",
            "FLAGBRIDGE_TRAFFIC_API_TOKEN": TOKEN,
            "TRAFFIC_RUN_TAG_KEY_SECRET": "flagbridge/test/run-tag",
            "ORACLE_VERDICTS_TABLE": VERDICTS,
        }.items():
            monkeypatch.setenv(name, value)
        boto3.client("secretsmanager").create_secret(Name="flagbridge/test/run-tag", SecretString="k" * 40)
        runtime.reset()
        yield {"ddb": ddb, "s3": s3, "sqs": sqs, "ssm": ssm, "queue_url": queue_url}
        runtime.reset()


def api(handler: Any, context: Any, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> Any:
    route = "POST /runs" if method == "POST" else "GET /runs/{id}"
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(as_documents(body)).encode())
    params = {"id": path.rsplit("/", 1)[1]} if method == "GET" else None
    event = http_api_event(method=method, path=path, route_key=route, headers=headers, body=raw, path_parameters=params)
    response = handler.lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def _json_text(yaml_text: str) -> bytes:
    """A plan or model for ``plans/`` in the bucket: JSON (the stack reads no YAML text; the key's suffix says)."""
    return json.dumps(yaml.safe_load(yaml_text)).encode()


def run_body(target: CountingTarget, **extra: Any) -> dict[str, Any]:
    return {"plan": PLAN, "model": MODEL, "requests": 120, "rate": 4000, "target": target.url, "seed": 3, **extra}


def work(runs_aws: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    """Deliver every queued shard message to the worker handler (as the event source would, one per batch)."""
    worker = load_handler("traffic_worker")
    responses = []
    sqs = runs_aws["sqs"]
    while True:
        messages = sqs.receive_message(QueueUrl=runs_aws["queue_url"], MaxNumberOfMessages=1).get("Messages", [])
        if not messages:
            return responses
        message = messages[0]
        event = {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "eventSource": "aws:sqs",
                }
            ]
        }
        result = worker.lambda_handler(event, context)
        responses.append(result)
        if not result["batchItemFailures"]:
            sqs.delete_message(QueueUrl=runs_aws["queue_url"], ReceiptHandle=message["ReceiptHandle"])


def test_sample_events_drive_the_handlers(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    handler = load_handler("traffic_runs")
    start = load_event("traffic_runs_start.json")
    start["body"] = json.dumps({**json.loads(start["body"]), "target": target.url})
    response = handler.lambda_handler(start, lambda_context)
    assert response["statusCode"] == 202, response["body"]
    run_id = json.loads(response["body"])["run_id"]
    # the sample shard message (shard 0 of the sample run) first, then the queue (whose shard 0 is then a duplicate)
    worker = load_handler("traffic_worker")
    assert worker.lambda_handler(load_event("sqs_traffic_shard.json"), lambda_context) == {"batchItemFailures": []}
    assert target.total == 10
    work(runs_aws, lambda_context)
    status = handler.lambda_handler(load_event("traffic_runs_status.json"), lambda_context)
    document = json.loads(status["body"])
    assert document["run_id"] == run_id and document["state"] == "completed"
    assert document["sent"] == document["planned"] == target.total
    assert handler.lambda_handler(load_event("traffic_runs_no_token.json"), lambda_context)["statusCode"] == 401


def test_a_run_end_to_end_on_moto(runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget) -> None:
    handler = load_handler("traffic_runs")
    status, body = api(handler, lambda_context, "POST", "/runs", run_body(target, run_id="r-moto"))
    assert status == 202, body
    assert body["shards"] == 4 and body["sqs_requests"] == 1 == body["expected_sqs_requests"]
    work(runs_aws, lambda_context)
    status, run = api(handler, lambda_context, "GET", "/runs/r-moto")
    assert status == 200
    assert (run["state"], run["planned"], run["sent"], run["statuses"]) == ("completed", 120, 120, {"200": 120})
    assert run["verdict"] == "no test" and run["rate_achieved"] > 0
    assert run["manifest"]["location"] == f"s3://{MANIFESTS}/runs/r-moto/manifest/"
    assert target.total == 120 and max(target.cases.values()) == 1
    # the same request again: nothing more is enqueued; a different one under the same id is a conflict
    assert api(handler, lambda_context, "POST", "/runs", run_body(target, run_id="r-moto"))[0] == 200
    assert api(handler, lambda_context, "POST", "/runs", run_body(target, run_id="r-moto", requests=121))[0] == 409


def test_the_stop_parameter_stops_the_run_within_a_shard(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    handler = load_handler("traffic_runs")
    assert api(handler, lambda_context, "POST", "/runs", run_body(target, run_id="r-stop"))[0] == 202
    runs_aws["ssm"].put_parameter(Name=STOP, Value="other-run,r-stop", Type="String", Overwrite=True)
    work(runs_aws, lambda_context)
    _, run = api(handler, lambda_context, "GET", "/runs/r-stop")
    assert run["state"] == "stopped" and run["sent"] == 0 and target.total == 0
    assert run["stopped"] == ["stop switch: the stack's stop parameter names this run"]


def _put_verdict(runs_aws: dict[str, Any], *verdicts: tuple[str, str]) -> None:
    """The oracle's STATE item of the shipped test, as its evaluator writes it: ``(metric, state)`` of treatment on."""
    rows = [{"treatment": "on", "metric": metric, "state": state, "explain": "..."} for metric, state in verdicts]
    state = {"state": "FAIL" if any(s == "FAIL" for _, s in verdicts) else "PASS", "verdicts": rows}
    runs_aws["ddb"].put_item(
        TableName=VERDICTS,
        Item={"pk": {"S": f"TEST#{ORACLE_TEST}"}, "sk": {"S": "STATE"}, "doc": {"S": json.dumps(state)}},
    )


def test_the_oracle_fail_stops_the_run_as_a_local_run_says_it_and_is_its_verdict(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    handler = load_handler("traffic_runs")
    body = run_body(target, run_id="r-fail", plan=PLAN_WITH_TEST)  # feeds the 5xx rate of the shipped test
    status, started = api(handler, lambda_context, "POST", "/runs", body)
    assert status == 202, started
    _put_verdict(runs_aws, ("5xx rate", "FAIL"), ("latency p95", "PASS"))
    work(runs_aws, lambda_context)
    _, run = api(handler, lambda_context, "GET", "/runs/r-fail")
    assert run["state"] == "stopped" and target.total == 0
    # the message of flagbridge traffic run on a laptop (flagbridge.traffic.stop.OracleStop), not one of its own
    assert run["stopped"] == [f"oracle FAIL for test {ORACLE_TEST} treatment on (5xx rate)"]
    assert run["verdict"]["state"] == "FAIL" and run["verdict"]["verdicts"][0]["treatment"] == "on"


def test_the_fail_of_a_metric_the_run_does_not_feed_does_not_stop_it(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    handler = load_handler("traffic_runs")
    body = run_body(target, run_id="r-other-metric", plan=PLAN_WITH_TEST)  # feeds the 5xx rate only
    assert api(handler, lambda_context, "POST", "/runs", body)[0] == 202
    _put_verdict(runs_aws, ("5xx rate", "PASS"), ("latency p95", "FAIL"))
    work(runs_aws, lambda_context)
    _, run = api(handler, lambda_context, "GET", "/runs/r-other-metric")
    assert (run["state"], run["sent"], run["stopped"]) == ("completed", 120, [])
    assert target.total == 120 and run["verdict"]["state"] == "FAIL"


@pytest.mark.parametrize(
    ("oracle_section", "message"),
    [
        ("{test: checkout-errors}",
         f"plan: 'oracle.test': no oracle test 'checkout-errors' in the configuration (known: {ORACLE_TEST})"),
        (f"{{test: {ORACLE_TEST}, metrics: [error budget]}}",
         f"plan: 'oracle.metrics.0': test '{ORACLE_TEST}' has no metric 'error budget'"),
    ],
)  # fmt: skip
def test_a_run_feeding_a_test_the_stack_cannot_move_is_refused_and_nothing_recorded(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget, oracle_section: str, message: str
) -> None:
    handler = load_handler("traffic_runs")
    body = run_body(target, run_id="r-no-test", plan=PLAN + f"oracle: {oracle_section}\n")
    status, answer = api(handler, lambda_context, "POST", "/runs", body)
    assert (status, answer["error"]) == (400, "invalid_oracle")
    assert answer["message"].startswith(message) and set(answer) == {"error", "message"}
    assert api(handler, lambda_context, "GET", "/runs/r-no-test")[0] == 404
    assert runs_aws["s3"].list_objects_v2(Bucket=MANIFESTS, Prefix="runs/").get("KeyCount") == 0
    assert runs_aws["sqs"].receive_message(QueueUrl=runs_aws["queue_url"]).get("Messages") is None


def test_the_schedule_refuses_a_plan_naming_an_unknown_oracle_test(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    runs_aws["s3"].put_object(
        Bucket=MANIFESTS, Key="plans/scheduled/plan.json", Body=_json_text(PLAN + "oracle: {test: nope}\n")
    )
    runs_aws["s3"].put_object(Bucket=MANIFESTS, Key="plans/scheduled/model.json", Body=_json_text(MODEL))
    event = load_event("traffic_runs_schedule.json")
    event["schedule"]["target"] = target.url
    result = load_handler("traffic_runs").lambda_handler(event, lambda_context)
    assert (result["http_status"], result["error"]) == (400, "invalid_oracle")
    assert "no oracle test 'nope'" in result["message"]
    assert runs_aws["sqs"].receive_message(QueueUrl=runs_aws["queue_url"]).get("Messages") is None


def test_a_refused_schedule_logs_no_user_key(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from flagbridge.observability import logger

    # Given a schedule whose pool names a key that is no tester (a customer's email, by mistake)
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    runs_aws["s3"].put_object(Bucket=MANIFESTS, Key="plans/scheduled/plan.json", Body=_json_text(PLAN))
    runs_aws["s3"].put_object(Bucket=MANIFESTS, Key="plans/scheduled/model.json", Body=_json_text(MODEL))
    event = load_event("traffic_runs_schedule.json")
    event["schedule"]["target"] = target.url
    event["schedule"]["testers"] = ["pii-customer-4f2a@example.com"]

    # When the schedule fires
    result = load_handler("traffic_runs").lambda_handler(event, lambda_context)

    # Then the run is refused naming the key to the invoker, and the log line says why without the key
    assert (result["http_status"], result["error"]) == (400, "not_testers")
    assert "pii-customer-4f2a@example.com" in result["message"]
    logged = stream.getvalue()
    assert "scheduled run refused" in logged and "not_testers" in logged
    assert "pii-customer-4f2a" not in logged


def test_a_garbage_shard_message_is_quarantined_with_its_reason(runs_aws: dict[str, Any], lambda_context: Any) -> None:
    worker = load_handler("traffic_worker")
    result = worker.lambda_handler(load_event("sqs_traffic_shard_garbage.json"), lambda_context)
    assert result == {"batchItemFailures": []}
    keys = [o["Key"] for o in runs_aws["s3"].list_objects_v2(Bucket=QUARANTINE).get("Contents", [])]
    assert len(keys) == 1 and keys[0].startswith("traffic-shards/")
    kept = json.loads(runs_aws["s3"].get_object(Bucket=QUARANTINE, Key=keys[0])["Body"].read())
    assert kept["reason"] == "not_json"


def test_the_schedule_starts_a_run_from_plans_in_the_bucket(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget
) -> None:
    runs_aws["s3"].put_object(Bucket=MANIFESTS, Key="plans/scheduled/plan.json", Body=_json_text(PLAN))
    runs_aws["s3"].put_object(Bucket=MANIFESTS, Key="plans/scheduled/model.json", Body=_json_text(MODEL))
    event = load_event("traffic_runs_schedule.json")
    event["schedule"]["target"] = target.url
    result = load_handler("traffic_runs").lambda_handler(event, lambda_context)
    assert result["http_status"] == 202 and result["shards"] >= 1
    work(runs_aws, lambda_context)
    assert target.total == event["schedule"]["requests"]


def test_a_run_registers_its_pool_in_the_tester_registry_before_it_starts(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from flagbridge import runtime

    create_testers_table(runs_aws["ddb"], "testers-runs")
    monkeypatch.setenv("TESTERS_TABLE", "testers-runs")
    runtime.reset()
    handler = load_handler("traffic_runs")
    # "customer-9" is no tester by the rules: registering it for the run's duration makes it one
    body = run_body(target, run_id="r-reg", testers=["customer-9", "qa-bot-01"])
    before = int(time.time())  # expiries are whole seconds from the start, which a busy machine may reach late
    status, started = api(handler, lambda_context, "POST", "/runs", body)
    assert status == 202, started
    active = runtime.tester_registry().active(["user#customer-9", "user#qa-bot-01"])
    assert set(active) == {"user#customer-9", "user#qa-bot-01"}
    until = {registration.expires_at for registration in active.values()}
    assert len(until) == 1 and until.pop() >= before + 600  # the run's duration plus at least 10 minutes
    _, run = api(handler, lambda_context, "GET", "/runs/r-reg")
    assert run["testers_until"] is not None


def test_a_run_refuses_to_start_when_the_registry_cannot_register_its_pool(
    runs_aws: dict[str, Any], lambda_context: Any, target: CountingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flagbridge import runtime

    monkeypatch.setenv("TESTERS_TABLE", "no-such-table")
    runtime.reset()
    handler = load_handler("traffic_runs")
    status, body = api(handler, lambda_context, "POST", "/runs", run_body(target, run_id="r-noreg"))
    assert (status, body["error"]) == (503, "registry_unavailable")
    assert api(handler, lambda_context, "GET", "/runs/r-noreg")[0] == 404
    assert runs_aws["sqs"].receive_message(QueueUrl=runs_aws["queue_url"]).get("Messages") is None


# ---- hostile: >= 50 cases per route, never a 5xx ---------------------------------------------------------------

HUGE = 10**9


def _start_cases(target_url: str) -> list[tuple[str, Any, int]]:
    good = {"plan": PLAN, "model": MODEL, "requests": 10, "rate": 10, "target": target_url}
    cases: list[tuple[str, Any, int]] = [
        ("not json", b"{nope", 400),
        ("empty body", b"", 400),
        ("json array", [], 400),
        ("json string", "run", 400),
        ("json null", None, 400),
        ("deep nesting", b"[" * 5000 + b"]" * 5000, 400),
        ("unknown field", {**good, "evil": 1}, 400),
        ("unknown plan key", {**good, "plan_key": "plans/none.yaml", "plan": None}, 400),
        ("plan key outside plans/", {**good, "plan_key": "runs/x/run.json", "plan": None}, 400),
        ("plan key traversal", {**good, "plan_key": "plans/../runs/x", "plan": None}, 400),
        ("plan and plan key", {**good, "plan_key": "plans/x.yaml"}, 400),
        ("missing plan", {k: v for k, v in good.items() if k != "plan"}, 400),
        ("missing model", {k: v for k, v in good.items() if k != "model"}, 400),
        ("plan not yaml", {**good, "plan": "a: [b"}, 400),
        ("plan a list", {**good, "plan": "[1, 2]"}, 400),
        ("plan unknown key", {**good, "plan": "bogus: 1"}, 400),
        ("plan bad probability", {**good, "plan": "query: {attack_set: X, probability: 150%}"}, 400),
        ("plan unknown attack set", {**good, "plan": "query: {attack_set: Nope, probability: 5%}"}, 400),
        ("plan reads files", {**good, "plan": "attack_set_files: [/etc/passwd]"}, 400),
        ("plan xml garbage", {**good, "plan": "<Request><", "plan_format": "xml"}, 400),
        ("plan format unknown", {**good, "plan_format": "toml"}, 400),
        ("plan number", {**good, "plan": 5}, 400),
        ("model not yaml", {**good, "model": "requests: [a"}, 400),
        ("model empty", {**good, "model": "requests: []"}, 400),
        ("model xml", {**good, "model_format": "xml"}, 400),
        ("model host outside allowlist", {**good, "model": MODEL.replace("localhost", "evil.example.com")}, 400),
        ("target outside allowlist", {**good, "target": "http://evil.example.com"}, 400),
        ("target metadata endpoint", {**good, "target": "http://169.254.169.254/latest"}, 400),
        ("target not a url", {**good, "target": "ftp://x"}, 400),
        ("target a number", {**good, "target": 5}, 400),
        ("target too long", {**good, "target": "http://127.0.0.1/" + "a" * 5000}, 400),
        ("rate 0", {**good, "rate": 0}, 400),
        ("rate negative", {**good, "rate": -5}, 400),
        ("rate 10^9", {**good, "rate": HUGE}, 400),
        ("rate text", {**good, "rate": "50/s"}, 400),
        ("rate bool", {**good, "rate": True}, 400),
        ("rate missing", {k: v for k, v in good.items() if k != "rate"}, 400),
        ("requests 0", {**good, "requests": 0}, 400),
        ("requests 10^9", {**good, "requests": HUGE}, 400),
        ("requests float", {**good, "requests": 1.5}, 400),
        ("requests missing", {k: v for k, v in good.items() if k != "requests"}, 400),
        ("seed negative", {**good, "seed": -1}, 400),
        ("seed huge", {**good, "seed": 2**80}, 400),
        ("shard size 0", {**good, "shard_size": 0}, 400),
        ("shard too long", {**good, "requests": 100_000, "rate": 10, "shard_size": 100_000}, 400),
        ("too many shards", {**good, "requests": 1_000_000, "rate": 4000, "shard_size": 1}, 400),
        ("checkpoint 0", {**good, "checkpoint_every": 0}, 400),
        ("run id slash", {**good, "run_id": "a/b"}, 400),
        ("run id long", {**good, "run_id": "a" * 100}, 400),
        ("run id unicode", {**good, "run_id": "\u00e9t\u00e9"}, 400),
        ("testers not a list", {**good, "testers": "qa-bot-01"}, 400),
        ("testers empty", {**good, "testers": []}, 400),
        ("testers not testers", {**good, "testers": ["customer-42"]}, 400),
        ("testers bad item", {**good, "testers": [{"email": "x"}]}, 400),
        ("traffic type bad", {**good, "traffic_type": "../x"}, 400),
        ("destructive method", {**good, "model": MODEL.replace("method: GET", "method: DELETE")}, 400),
        ("max duration 0", {**good, "max_duration_s": 0}, 400),
        ("lone surrogate in plan", b'{"plan": "\\ud800", "model": "x", "requests": 1, "rate": 1}', 400),
        ("oracle test unknown", {**good, "plan": PLAN + "oracle: {test: checkout-errors}\n"}, 400),
        ("oracle test injection", {**good, "plan": PLAN + 'oracle: {test: "x\' OR 1=1; <script>"}\n'}, 400),
        ("oracle metric unknown", {**good, "plan": PLAN + f"oracle: {{test: {ORACLE_TEST}, metrics: [x]}}\n"}, 400),
    ]
    return cases


@pytest.mark.parametrize("index", range(61))
def test_hostile_run_requests_get_a_4xx_json_answer(
    shared_runs_aws: dict[str, Any], lambda_context: Any, index: int
) -> None:
    runs_aws = shared_runs_aws
    name, body, expected = _start_cases("http://127.0.0.1:9")[index]
    handler = load_handler("traffic_runs")
    status, answer = api(handler, lambda_context, "POST", "/runs", body)
    assert status == expected, (name, answer)
    assert set(answer) == {"error", "message"}, name
    assert runs_aws["sqs"].receive_message(QueueUrl=runs_aws["queue_url"]).get("Messages") is None, name


def test_the_hostile_start_corpus_has_at_least_50_cases() -> None:
    assert len(_start_cases("http://127.0.0.1:9")) == 61


STATUS_IDS = [
    "nope",
    "a" * 65,
    "..",
    "%2e%2e",
    "a/b",
    "<script>",
    "' OR 1=1",
    "\u00e9",
    "run-1;rm",
    "x" * 64,
    "-",
    "_",
    ".",
    "a.b",
    "RUN#x",
    "SHARD#1",
    "null",
    "undefined",
    "0",
    "-1",
    "%00",
    "a%20b",
    "\\",
    "{}",
    "[]",
    "a" * 1000,
    "run-" + "9" * 40,
    "CON",
    "con.txt",
    "..%2f",
    "%2f",
    "a\tb",
    "a\nb",
    "\u202e",
    "\ud83d\ude00",
    "run-1 ",
    " run-1",
    "run\x00",
    "r" * 63,
    "$(id)",
    "`id`",
    "*",
    "?",
    "#",
    "&",
    "=",
    "+",
    "~",
    "!",
    "@",
    "^",
]


@pytest.mark.parametrize("run_id", STATUS_IDS)
def test_hostile_status_requests_get_a_4xx_json_answer(
    shared_runs_aws: dict[str, Any], lambda_context: Any, run_id: str
) -> None:
    handler = load_handler("traffic_runs")
    event = http_api_event(
        method="GET",
        path="/runs/x",
        route_key="GET /runs/{id}",
        headers={"authorization": f"Bearer {TOKEN}"},
        path_parameters={"id": run_id},
    )
    response = handler.lambda_handler(event, lambda_context)
    assert response["statusCode"] in (400, 404), run_id
    assert set(json.loads(response["body"])) == {"error", "message"}


def test_the_hostile_status_corpus_has_at_least_50_cases() -> None:
    assert len(set(STATUS_IDS)) >= 50


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN.upper()])
def test_both_routes_need_the_bearer_token(
    shared_runs_aws: dict[str, Any], lambda_context: Any, token: str | None
) -> None:
    handler = load_handler("traffic_runs")
    assert api(handler, lambda_context, "GET", "/runs/r1", token=token)[0] == 401
    assert api(handler, lambda_context, "POST", "/runs", {"requests": 1}, token=token)[0] == 401


GARBAGE_SHARDS = [
    ("not json", "{", "not_json"),
    ("a list", "[]", "not_an_object"),
    ("no version", '{"run_id": "r"}', "unknown_version"),
    ("unknown field", '{"v":1,"run_id":"r","shard":0,"first":0,"count":1,"seed":1,"x":1}', "unknown_field"),
    ("bad run id", '{"v":1,"run_id":"a/b","shard":0,"first":0,"count":1,"seed":1}', "invalid_run_id"),
    ("negative shard", '{"v":1,"run_id":"r","shard":-1,"first":0,"count":1,"seed":1}', "invalid_field"),
    ("unknown run", '{"v":1,"run_id":"nope","shard":0,"first":0,"count":1,"seed":1}', "unknown_run"),
]


@pytest.mark.parametrize(("name", "body", "reason"), GARBAGE_SHARDS)
def test_garbage_shard_messages_are_quarantined_with_their_reason(
    shared_runs_aws: dict[str, Any], lambda_context: Any, name: str, body: str, reason: str
) -> None:
    runs_aws = shared_runs_aws
    worker = load_handler("traffic_worker")
    message_id = f"m-{name.replace(' ', '-')}"
    event = {"Records": [{"messageId": message_id, "receiptHandle": "h", "body": body}]}
    assert worker.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    keys = [o["Key"] for o in runs_aws["s3"].list_objects_v2(Bucket=QUARANTINE)["Contents"]]
    (key,) = [k for k in keys if k.endswith(f"/{message_id}.json")]
    assert json.loads(runs_aws["s3"].get_object(Bucket=QUARANTINE, Key=key)["Body"].read())["reason"] == reason
