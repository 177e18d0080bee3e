"""The run loop and the results reporter, with injected send, clock and stop: pacing, back-off, budgets, batching."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pytest

from flagbridge.traffic.generator import WireRequest
from flagbridge.traffic.manifest import ManifestWriter, Outcome
from flagbridge.traffic.model import RequestModel
from flagbridge.traffic.plan import TrafficPlan
from flagbridge.traffic.results import MAX_EVENTS_PER_BATCH, ResultReporter, result_event
from flagbridge.traffic.run import RunSettings, RunSummary, run_traffic
from flagbridge.traffic.safety import TokenBucket
from tests.unit.traffic.conftest import make_generator


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Service:
    """Answers by a script of statuses (then 202), each answer taking ``latency`` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, script: Sequence[int] = (), latency: float = 0.0) -> None:
        self.clock = clock
        self.script = list(script)
        self.latency = latency
        self.sent: list[WireRequest] = []

    def __call__(self, request: WireRequest) -> Outcome:
        self.sent.append(request)
        self.clock.now += self.latency
        status = self.script.pop(0) if self.script else 202
        headers = (("retry-after", "2"),) if status == 429 else ()
        return Outcome(status, 1.0, 2, "ab", None, headers)


def run(
    plan: TrafficPlan, model: RequestModel, settings: RunSettings, service: Service, clock: FakeClock, **kwargs: Any
) -> RunSummary:
    bucket = TokenBucket(settings.rate, burst=1.0, clock=clock, sleep=clock.sleep)
    return run_traffic(make_generator(plan, model), settings, service, clock=clock, bucket=bucket, **kwargs)


def test_rate_and_429_back_off_honour_retry_after(published_plan: TrafficPlan, model: RequestModel) -> None:
    clock = FakeClock()
    service = Service(clock, script=[202, 429, 202])
    summary = run(published_plan, model, RunSettings(requests=100, rate=50.0), service, clock)
    assert summary.sent == 100 and len(service.sent) == 101 and summary.retried_429 == 1
    assert service.sent[1] == service.sent[2]  # the same case re-sent
    # 100 requests at 50/s (one token banked) plus the 2 s Retry-After
    assert clock.now == pytest.approx(99 / 50 + 2.0, abs=0.05)
    assert summary.statuses == {"202": 100}


def test_stop_switch_is_checked_between_batches(published_plan: TrafficPlan, model: RequestModel) -> None:
    clock = FakeClock()
    service = Service(clock)
    checks: list[int] = []

    def stop() -> str | None:
        checks.append(len(service.sent))
        return "stop switch: test" if len(service.sent) >= 60 else None

    summary = run(
        published_plan, model, RunSettings(requests=500, rate=1000.0, batch_size=50), service, clock, stop=stop
    )
    assert summary.sent == 100 and summary.stopped == "stop switch: test"
    assert checks == [0, 50, 100]


def test_duration_budget_and_max_failures(published_plan: TrafficPlan, model: RequestModel) -> None:
    clock = FakeClock()
    slow = Service(clock, latency=0.1)
    summary = run(
        published_plan, model, RunSettings(requests=1000, rate=1000.0, batch_size=10, max_duration_s=2.0), slow, clock
    )
    assert summary.stopped == "duration budget of 2s spent" and summary.sent == 20
    failing = Service(FakeClock(), script=[500] * 1000)
    summary = run(
        published_plan, model, RunSettings(requests=1000, batch_size=10, max_failures=15), failing, failing.clock
    )
    assert summary.sent == 20 and summary.failure_count == 20 and "max-failures" in (summary.stopped or "")


class Vanishing(Service):
    """Answers ``answered`` requests (by the script), then none: every later request is refused."""

    def __init__(self, clock: FakeClock, answered: int, script: Sequence[int] = ()) -> None:
        super().__init__(clock, script)
        self.answered = answered

    def __call__(self, request: WireRequest) -> Outcome:
        if len(self.sent) < self.answered:
            return super().__call__(request)
        self.sent.append(request)
        return Outcome(None, 0.2, 0, "", "ConnectionRefusedError: [Errno 111] Connection refused")


def test_a_target_lost_mid_run_stops_it_at_once_and_its_last_requests_are_reported(
    body_plan: TrafficPlan, model: RequestModel
) -> None:
    clock = FakeClock()
    service = Vanishing(clock, answered=12)
    posted: list[WireRequest] = []
    accepted = Outcome(202, 1.0, 2, "ab")
    reporter = ResultReporter("http://bridge/mparticle/v2", "k", "s", post=lambda r: posted.append(r) or accepted)
    settings = RunSettings(requests=1000, rate=1000.0, batch_size=50, max_unanswered=20)
    summary = run(body_plan, model, settings, service, clock, reporter=reporter)
    assert (summary.sent, len(service.sent), summary.outcomes["transport_error"]) == (32, 32, 20)
    assert summary.stopped == (
        "target http://127.0.0.1:8080 stopped answering: 20 requests in a row got no answer "
        "(last: ConnectionRefusedError: [Errno 111] Connection refused)"
    )
    reported = [e for r in posted for batch in json.loads(r.body) for e in batch["events"]]
    assert len(reported) == 32  # what was sent is reported (the unanswered rate sees it); nothing more
    assert sum(1 for e in reported if e["data"]["custom_attributes"]["status"] == 0) == 20


def test_any_answer_resets_the_unanswered_count_and_zero_turns_it_off(
    body_plan: TrafficPlan, model: RequestModel
) -> None:
    class Flaky(Service):
        def __call__(self, request: WireRequest) -> Outcome:
            self.sent.append(request)
            if len(self.sent) % 10 == 0:
                return Outcome(500, 1.0, 2, "ab")  # a 500 is an answer
            return Outcome(None, 1.0, 0, "", "TimeoutError: timed out")

    clock = FakeClock()
    summary = run(body_plan, model, RunSettings(requests=200, rate=1000.0, max_unanswered=10), Flaky(clock), clock)
    assert summary.stopped is None and summary.sent == 200
    never = run(body_plan, model, RunSettings(requests=200, rate=1000.0, max_unanswered=0), Vanishing(clock, 0), clock)
    assert never.stopped is None and never.sent == 200


def test_preflight_asks_each_destination_once_and_any_answer_will_do(
    body_plan: TrafficPlan, model: RequestModel
) -> None:
    from flagbridge.traffic.preflight import preflight

    generator = make_generator(body_plan, model)
    for status in (200, 404, 405, 500, 501):
        asked: list[WireRequest] = []
        assert preflight(generator, lambda r: asked.append(r) or Outcome(status, 1.0, 0, "")) is None  # noqa: B023
        assert [(r.method, r.target, r.body, r.header("Host")) for r in asked] == [
            ("OPTIONS", "*", b"", b"127.0.0.1:8080")
        ]  # no route, no tester, no run tag, no body
        assert r"X-Flagbridge-Run" not in asked[0].to_bytes().decode()
    refused = Outcome(None, 0.1, 0, "", "ConnectionRefusedError: [Errno 111] Connection refused")
    assert preflight(generator, lambda r: refused) == (
        "target http://127.0.0.1:8080 does not answer (ConnectionRefusedError: [Errno 111] Connection refused); "
        "nothing was sent"
    )


def test_dry_run_writes_the_manifest_and_sends_nothing(published_plan: TrafficPlan, model: RequestModel) -> None:
    clock = FakeClock()
    service = Service(clock)
    stream = io.StringIO()
    summary = run(
        published_plan, model, RunSettings(requests=30, dry_run=True), service, clock, manifest=ManifestWriter(stream)
    )
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert service.sent == [] and summary.sent == 0 and summary.generated == 30
    assert len(records) == 31 and all("response" not in r for r in records[:-1]) and records[-1]["type"] == "summary"


def reporter(post: Service, **kwargs: Any) -> ResultReporter:
    return ResultReporter(
        "http://127.0.0.1:3000/mparticle/v2", "k", "s", post=post, clock_ms=lambda: 1_767_225_600_000,
        sleep=post.clock.sleep, **kwargs,
    )  # fmt: skip


def test_results_are_batched_per_tester_within_mparticle_limits(body_plan: TrafficPlan, model: RequestModel) -> None:
    generator = make_generator(body_plan, model)
    bridge = Service(FakeClock())
    results = reporter(bridge, oracle_test="checkout-v2")
    cases = [generator.case(index) for index in range(250)]
    for case in cases:
        results.add(case, Outcome(500 if case.index % 7 == 0 else 202, 12.3456, 2, "ab"), "run-1", "hash")
    results.flush("run-1")
    posted = [json.loads(request.body) for request in bridge.sent]
    batches = [batch for request in posted for batch in request]
    assert all(len(batch["events"]) <= MAX_EVENTS_PER_BATCH for batch in batches)
    assert all(len(request.body) <= 256_000 and len(json.loads(request.body)) <= 100 for request in bridge.sent)
    events = {e["data"]["custom_attributes"]["case_id"]: (b, e) for b in batches for e in b["events"]}
    assert len(events) == 250 and results.counts() == {"delivered_events": 250, "undelivered_events": 0}
    for case in cases:
        batch, event = events[case.case_id]
        assert batch["user_identities"] == {"customer_id": case.tester.key, "email": case.tester.email}
        attributes = event["data"]["custom_attributes"]
        assert attributes["status"] == (500 if case.index % 7 == 0 else 202) and attributes["latency_ms"] == 12.346
        assert attributes["mutations"] == len(case.mutations) and attributes["oracle_test"] == "checkout-v2"
        assert event["data"]["source_message_id"] == f"run-1-{case.case_id}"
    assert bridge.sent[0].target == "/mparticle/v2/bulkevents"
    assert bridge.sent[0].header("Authorization") == b"Basic azpz"


def test_results_retry_on_429_and_keep_what_the_bridge_refuses(body_plan: TrafficPlan, model: RequestModel) -> None:
    generator = make_generator(body_plan, model)
    bridge = Service(FakeClock(), script=[429, 202])
    results = reporter(bridge)
    results.add(generator.case(0), Outcome(202, 1.0, 0, ""), "r", "h")
    results.flush("r")
    assert results.counts()["delivered_events"] == 1 and bridge.clock.now == 2.0
    refusing = Service(FakeClock(), script=[403])
    kept = reporter(refusing)
    kept.add(generator.case(1), Outcome(None, 1.0, 0, "", "TimeoutError: timed out"), "r", "h")
    kept.flush("r")
    assert len(refusing.sent) == 1 and kept.counts() == {"delivered_events": 0, "undelivered_events": 1}
    event = kept.undelivered[0]["events"][0]["data"]["custom_attributes"]
    assert event["outcome"] == "transport_error" and event["status"] == 0 and event["error"].startswith("TimeoutError")


def test_long_attribute_lists_are_cut_to_mparticle_limits(body_plan: TrafficPlan, model: RequestModel) -> None:
    generator = make_generator(body_plan, model)
    case = next(generator.case(i) for i in range(100) if generator.case(i).mutations)
    event = result_event(case, Outcome(200, 1.0, 0, ""), "r", "h", 0)
    assert all(len(str(value)) <= 4096 for value in event["data"]["custom_attributes"].values())
