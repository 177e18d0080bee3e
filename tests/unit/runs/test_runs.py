"""Test runs, pure parts: the run request's validation, shards and their messages, the stop switch, starting a
run with the tester registry, and status on the in-memory twins (no network: nothing is sent here)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from flagbridge.errors import RequestError
from flagbridge.oracle.verdicts import InMemoryVerdicts
from flagbridge.runs.service import RunService
from flagbridge.runs.shards import (
    ShardMessageError,
    check_against,
    parse_shard_message,
    shard_messages,
    sqs_requests,
)
from flagbridge.runs.spec import MAX_RATE_PER_WORKER, RunSpec, shard_size_for, validate_run_request
from flagbridge.runs.stop import ParameterStop, run_stop, stopped_runs, with_run
from flagbridge.runs.store import InMemoryManifestStore, InMemoryRunStore
from tests.fixtures.runs import (
    MODEL,
    PLAN,
    PLAN_WITH_TEST,
    ListSender,
    qa_rules,
    run_request,
    traffic_config,
    yaml_document,
)

NOW = 1_767_225_600_000


def spec_of(**extra: Any) -> RunSpec:
    spec, _ = validate_run_request(
        run_request("http://127.0.0.1:9", **extra), traffic_config(), parallelism=4, now_ms=NOW
    )
    return spec


def test_shards_cover_every_case_once_with_the_runs_seed() -> None:
    spec = spec_of(requests=1001, shard_size=100)
    messages = shard_messages(spec)
    assert spec.shards == len(messages) == 11
    covered = [i for m in messages for i in range(m.first, m.first + m.count)]
    assert covered == list(range(1001))
    assert {m.seed for m in messages} == {7}
    for message in messages:
        assert parse_shard_message(message.body()) == message
        check_against(message, spec)


@pytest.mark.parametrize("shards", [1, 9, 10, 11, 99, 100, 101, 2600])
def test_sqs_requests_per_run_are_ceil_shards_over_ten(shards: int) -> None:
    assert sqs_requests(shards) == math.ceil(shards / 10)


def test_computed_shards_last_about_a_minute_and_give_every_worker_one() -> None:
    assert shard_size_for(6_000_000, 38.5, 260) == 2310  # 60 s at 38.5/s
    assert shard_size_for(100, 1000, 4) == 25  # small runs: one shard per worker
    assert spec_of(requests=100).shards == 4


def test_a_message_naming_another_range_or_seed_is_refused() -> None:
    spec = spec_of(requests=100, shard_size=10)
    (message,) = shard_messages(spec, [3])
    forged = json.loads(message.body())
    for change in ({"count": 11}, {"first": 0}, {"seed": 8}, {"shard": 10}):
        with pytest.raises(ShardMessageError):
            check_against(parse_shard_message(json.dumps({**forged, **change})), spec)


def test_the_spec_regenerates_the_same_cases_anywhere() -> None:
    from flagbridge.runs.spec import build_generator

    spec = spec_of(requests=50)
    again = RunSpec.from_document(json.loads(json.dumps(spec.document())))
    assert again == spec
    first, second = build_generator(spec), build_generator(again)
    assert [first.case(i).request.to_bytes() for i in range(50)] == [
        second.case(i).request.to_bytes() for i in range(50)
    ]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"rate": 0}, "invalid_rate"),
        ({"rate": 10**9}, "rate_too_high"),
        ({"rate": 4 * MAX_RATE_PER_WORKER + 1}, "rate_too_high"),
        ({"rate": 5e-324}, "rate_too_low"),  # below parallelism / 600 s: refused before any division
        ({"run_id": {}}, "invalid_run_id"),  # falsy, not a string: never "no run id"
        ({"run_id": []}, "invalid_run_id"),
        ({"run_id": 0}, "invalid_run_id"),
        ({"run_id": False}, "invalid_run_id"),
        ({"run_id": ""}, "invalid_run_id"),
        ({"run_id": None}, None),  # null: a generated id
        ({"target": "http://evil.example.com"}, "outside_allowlist"),
        ({"plan": "nope: 1"}, "invalid_plan"),
        ({"testers": ["customer-1"]}, None),  # refused when the run starts (not a tester), not here
    ],
)
def test_run_requests_are_refused_naming_the_problem(change: dict[str, Any], code: str | None) -> None:
    body = {**run_request("http://127.0.0.1:9"), **change}
    if code is None:
        validate_run_request(body, traffic_config(), parallelism=4, now_ms=NOW)
        return
    with pytest.raises(RequestError) as refused:
        validate_run_request(body, traffic_config(), parallelism=4, now_ms=NOW)
    assert (refused.value.status, refused.value.code) == (400, code)


@pytest.mark.parametrize(
    ("target", "model_url", "code"),
    [
        ("http://127.0.0.1:9/shop/../admin", None, "invalid_target"),
        ("http://127.0.0.1:9/shop/%2E%2e/admin", None, "invalid_target"),
        ("http://127.0.0.1:9/shop/./x/../../admin", None, "invalid_target"),
        (None, "http://127.0.0.1:9/shop/../admin/checkout", "invalid_model"),
        (None, "http://127.0.0.1:9/shop/%2e%2e/admin/checkout", "invalid_model"),
        (None, "http://127.0.0.1:9/shop/{id}\n    path_params: {id: ../admin}", "invalid_model"),
    ],
)
def test_a_path_climbing_out_of_its_allowed_prefix_is_refused(
    target: str | None, model_url: str | None, code: str
) -> None:
    # Given an allowlist that lets runs reach only /shop on 127.0.0.1
    from flagbridge.traffic.config import TrafficConfig

    traffic = TrafficConfig.from_document(
        {"allowlist": [{"host": "127.0.0.1", "path_prefixes": ["/shop"]}], "testers": ["qa-bot-01"]}
    )
    model = MODEL.replace("http://localhost/", "http://127.0.0.1:9/shop/")
    validate_run_request(
        run_request("http://127.0.0.1:9/shop", model=model), traffic, parallelism=4, now_ms=NOW
    )  # within it: accepted

    # When a run's target or model path climbs out of it with dot segments, which a server resolves
    # (/shop/../admin is /admin), whether or not they are percent-encoded
    if model_url is not None:
        model = model.replace("http://127.0.0.1:9/shop/checkout", model_url)
    body = run_request(target or "", model=model)
    if target is None:
        del body["target"]

    # Then the run is refused, naming the problem, before anything is sent
    with pytest.raises(RequestError) as refused:
        validate_run_request(body, traffic, parallelism=4, now_ms=NOW)
    assert (refused.value.status, refused.value.code) == (400, code)
    assert "segment" in refused.value.message


def test_the_stop_parameter_names_runs_or_all() -> None:
    assert stopped_runs("none") == (False, frozenset())
    assert stopped_runs(" all ") == (True, frozenset())
    assert stopped_runs("a, b c") == (False, frozenset({"a", "b", "c"}))
    assert with_run("none", "r1") == "r1"
    assert with_run("r1", "r2") == "r1,r2"
    assert with_run("all", "r2") == "all"


def test_the_stop_switch_reads_at_most_once_per_interval_and_remembers_a_stop() -> None:
    now = [0.0]
    value = ["none"]
    switch = ParameterStop("r1", lambda: value[0], refresh_seconds=5, clock=lambda: now[0])
    assert switch() is None and switch.reads == 1
    value[0] = "r1"
    now[0] = 4.9
    assert switch() is None and switch.reads == 1
    now[0] = 5.0
    assert switch() == "stop switch: the stack's stop parameter names this run" and switch.reads == 2
    value[0] = "none"
    now[0] = 100
    assert switch() is not None and switch.reads == 2  # once stopped, stopped (and never read again)


def test_an_unreadable_switch_does_not_stop_the_run() -> None:
    errors: list[str] = []

    def broken() -> str:
        raise TimeoutError

    check = run_stop("r1", broken, None, None, None, refresh_seconds=0, on_error=lambda what, _e: errors.append(what))
    assert check() is None and errors == ["stop parameter"]


def _verdicts(*verdicts: tuple[str, str, str]) -> dict[str, Any]:
    rows = [{"treatment": t, "metric": m, "state": state, "explain": "..."} for t, m, state in verdicts]
    return {"state": "FAIL" if any(v[2] == "FAIL" for v in verdicts) else "PASS", "verdicts": rows}


def test_a_run_stops_on_the_oracle_fail_of_a_metric_it_feeds_with_the_local_message() -> None:
    # Given a run feeding the 5xx rate of its test, its parameter and verdict read at most every 5 s
    now = [0.0]
    source = InMemoryVerdicts({"checkout": _verdicts(("on", "latency p95", "FAIL"), ("on", "5xx rate", "PASS"))})
    parameter = ["none"]
    check = run_stop("r1", lambda: parameter[0], "checkout", ["5xx rate"], source, refresh_seconds=5,
                     clock=lambda: now[0])  # fmt: skip

    # Then a FAIL of a metric the run does not feed does not stop it
    assert check() is None and source.reads == 1
    # and a FAIL of the fed metric does, at the next read (not before), as a local run says it
    source.documents["checkout"] = _verdicts(("on", "5xx rate", "FAIL"))
    now[0] = 4.0
    assert check() is None and source.reads == 1
    now[0] = 5.0
    assert check() == "oracle FAIL for test checkout treatment on (5xx rate)" and source.reads == 2
    # the stack's parameter is asked first: a stopped run says so
    fresh = run_stop("r1", lambda: "all", "checkout", ["5xx rate"], source, refresh_seconds=5, clock=lambda: now[0])
    assert fresh() == "stop switch: the stack's stop parameter stops every run" and source.reads == 2


def test_a_run_that_cannot_hear_its_oracle_stops_after_five_failed_reads() -> None:
    errors: list[str] = []
    source = InMemoryVerdicts({}, fail_reads=5)
    check = run_stop("r1", lambda: "none", "checkout", None, source, refresh_seconds=0,
                     on_error=lambda what, _e: errors.append(what))  # fmt: skip
    assert [check() for _ in range(4)] == [None] * 4
    reason = check()
    assert reason is not None and reason.startswith("the oracle's verdict for test checkout could not be read 5 times")
    assert errors == ["oracle verdict"] * 5


def shipped_oracle() -> Any:
    import yaml

    from flagbridge.oracle.config import parse_oracle_config
    from tests.conftest import ROOT

    document = yaml.safe_load((ROOT / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    return parse_oracle_config(document["oracle"])


@pytest.mark.parametrize(
    ("oracle_section", "message"),
    [
        ("{test: nope}",
         "plan: 'oracle.test': no oracle test 'nope' in the configuration (known: new-checkout-health)"),
        ("{test: new-checkout-health, metrics: [error budget]}",
         "plan: 'oracle.metrics.0': test 'new-checkout-health' has no metric 'error budget'"),
    ],
)  # fmt: skip
def test_a_plan_feeding_a_test_the_stack_cannot_move_is_refused(oracle_section: str, message: str) -> None:
    body = {**run_request("http://127.0.0.1:9"), "plan": yaml_document(PLAN + f"oracle: {oracle_section}\n")}
    with pytest.raises(RequestError) as refused:
        validate_run_request(body, traffic_config(), parallelism=4, now_ms=NOW, oracle=shipped_oracle())
    assert (refused.value.status, refused.value.code) == (400, "invalid_oracle")
    assert refused.value.message.startswith(message)
    with pytest.raises(RequestError, match="the configuration has no oracle tests"):
        validate_run_request(body, traffic_config(), parallelism=4, now_ms=NOW, oracle=None)


def test_the_spec_keeps_the_metrics_the_run_feeds() -> None:
    oracle = shipped_oracle()
    body = {**run_request("http://127.0.0.1:9"), "plan": yaml_document(PLAN_WITH_TEST)}
    spec, _ = validate_run_request(body, traffic_config(), parallelism=4, now_ms=NOW, oracle=oracle)
    assert (spec.oracle_test, spec.oracle_metrics) == ("new-checkout-health", ("5xx rate",))
    assert spec.manifest_header()["oracle"] == {"test": "new-checkout-health", "metrics": ["5xx rate"]}
    assert RunSpec.from_document(json.loads(json.dumps(spec.document()))) == spec
    # without metrics: every metric of the test that counts the results
    body["plan"] = yaml_document(PLAN + "oracle: {test: new-checkout-health}\n")
    every, _ = validate_run_request(body, traffic_config(), parallelism=4, now_ms=NOW, oracle=oracle)
    assert every.oracle_metrics == ("5xx rate", "latency p95", "unanswered rate")
    # a run.json written before the metrics were kept still loads: the run feeds every metric
    old = spec.document()
    del old["oracle_metrics"]
    assert RunSpec.from_document(old).oracle_metrics is None


def test_a_refused_oracle_test_records_and_enqueues_nothing() -> None:
    store, manifests, queue = InMemoryRunStore(), InMemoryManifestStore("m"), []
    service = RunService(store, manifests, ListSender(queue), traffic_config(), qa_rules(), 4, oracle=shipped_oracle())
    body = {**run_request("http://127.0.0.1:9", run_id="r-bad"), "plan": yaml_document(PLAN + "oracle: {test: nope}\n")}
    with pytest.raises(RequestError) as refused:
        service.start(body)
    assert refused.value.code == "invalid_oracle"
    assert store.get_run("r-bad") is None and manifests.keys("runs/") == [] and queue == []


class Registrar:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[Any, ...]] = []

    def register_pool(self, traffic_type: str, keys: Any, duration_seconds: float, reason: str, actor: str,
                      margin_seconds: float = 600) -> int:  # fmt: skip
        self.calls.append((traffic_type, list(keys), duration_seconds, reason, actor, margin_seconds))
        if self.fail is not None:
            raise self.fail
        return 1_767_300_000


def service(registrar: Any = None) -> tuple[RunService, list[str]]:
    queue: list[str] = []
    return (
        RunService(
            InMemoryRunStore(), InMemoryManifestStore(), ListSender(queue), traffic_config(), qa_rules(), 4,
            registrar=registrar,
        ),
        queue,
    )  # fmt: skip


def test_a_run_registers_its_tester_pool_for_its_duration_plus_a_margin() -> None:
    registrar = Registrar()
    runs, queue = service(registrar)
    status, body = runs.start(run_request("http://127.0.0.1:9", requests=4000, run_id="reg"))
    assert status == 202 and len(queue) == body["shards"]
    ((traffic_type, keys, duration, reason, actor, margin),) = registrar.calls
    assert traffic_type == "user" and keys == ["qa-bot-01", "qa-bot-02", "qa-runner-7"]
    assert duration == 1.0 and margin >= 600 and "reg" in reason and actor == "flagbridge-runs"
    assert runs.store.get_run("reg")["testers_until"] == 1_767_300_000  # type: ignore[index]


def test_a_run_refuses_to_start_when_its_testers_cannot_be_registered() -> None:
    class RegistryDownError(Exception):
        pass

    runs, queue = service(Registrar(RegistryDownError("down")))
    with pytest.raises(RequestError) as refused:
        runs.start(run_request("http://127.0.0.1:9", run_id="noreg"))
    assert (refused.value.status, refused.value.code) == (503, "registry_unavailable")
    assert queue == [] and runs.store.get_run("noreg") is None


def test_without_a_registry_the_pool_must_be_testers_by_the_rules() -> None:
    runs, queue = service()
    with pytest.raises(RequestError) as refused:
        runs.start(run_request("http://127.0.0.1:9", testers=["customer-42"]))
    assert (refused.value.status, refused.value.code) == (400, "not_testers") and queue == []


def test_status_of_a_run_not_started_by_any_worker_is_queued() -> None:
    runs, _ = service()
    runs.start(run_request("http://127.0.0.1:9", run_id="q", plan=PLAN, model=MODEL))
    status = runs.status("q")
    assert status is not None
    assert (status["state"], status["sent"], status["shards"]["pending"]) == ("queued", 0, 4)
    assert runs.status("unknown") is None
