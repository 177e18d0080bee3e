"""The traffic run's results as the oracle judges them, and the plan's oracle section checked against the tests.

* a result whose request got no answer (status 0, outcome ``transport_error``) is bad in the default and the
  shipped ``unanswered rate`` and left out of the 5xx rate and the latency (answers only); a 4xx (the target
  refusing a mutated request cleanly) is good;
* the results are attributed to the tester's treatment by the profiles' assignment history (the batch carries the
  tester's ``customer_id`` and ``email``), at the result's time, and at the version of that assignment;
* :func:`flagbridge.oracle.feeds.traffic_feed`: an unknown test, an unknown metric, a metric that does not count
  results, a test that reads the treatment from an attribute: one error naming the key; a warning when no metric
  the run feeds counts no answer as bad.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flagbridge.errors import ConfigError
from flagbridge.oracle.config import DEFAULT_METRICS, parse_oracle_config
from flagbridge.oracle.counting import UNATTRIBUTED, Counter, CounterKey
from flagbridge.oracle.feeds import traffic_feed
from flagbridge.profiles.model import Assignment, FlagState
from flagbridge.traffic.generator import WireRequest
from flagbridge.traffic.manifest import Outcome
from flagbridge.traffic.model import RequestModel, load_model
from flagbridge.traffic.plan import TrafficPlan, load_plan
from flagbridge.traffic.results import ResultReporter
from tests.unit.traffic.conftest import EXAMPLES, make_generator

T0 = 1_767_225_600_000  # an hour boundary
SHIPPED = Path(__file__).resolve().parents[3] / "layers" / "shared" / "config" / "flagbridge.yaml"
TRAFFIC_TYPES = {"customer_id": ["user"], "email": ["user"]}
NO_ANSWER = Outcome(None, 10_000.0, 0, "", "TimeoutError: timed out")


@pytest.fixture(scope="module")
def model() -> RequestModel:
    return load_model(EXAMPLES / "mparticle-model.yaml")


@pytest.fixture(scope="module")
def body_plan() -> TrafficPlan:
    return load_plan(EXAMPLES / "mparticle-plan.yaml")[0]


def oracle(**test: Any) -> Any:
    return parse_oracle_config(
        {"tests": [{"name": "checkout", "flag": "new_checkout", "environment": "Production", **test}]}
    )


def shipped_oracle() -> Any:
    document = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return parse_oracle_config(document["oracle"], str(SHIPPED))


def exposure(key: str, treatment: str, version: int, first: int, last: int) -> FlagState:
    assignment = Assignment(treatment, "in segment qa", version, "Production", first, last, 1)
    return FlagState(
        traffic_type="user", key=key, identity_type="customer_id", flag="new_checkout", treatment=treatment,
        label="in segment qa", version=version, environment="Production", environment_id="env-1",
        current_time=last, first_seen=first, last_seen=last, exposures=1, assignments=(assignment,),
    )  # fmt: skip


class Bridge:
    """Takes the reporter's bulk uploads as the bridge would."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []

    def __call__(self, request: WireRequest) -> Outcome:
        self.batches.extend(json.loads(request.body))
        return Outcome(202, 1.0, 0, "")


def lane_messages(plan: TrafficPlan, model: RequestModel, outcomes: list[Outcome], at_ms: int) -> list[dict[str, Any]]:
    """The run's results as the router puts them on the oracle lane: one message per batch, as a tester's."""
    generator = make_generator(plan, model)
    bridge = Bridge()
    reporter = ResultReporter("http://127.0.0.1:3000/mparticle/v2", "k", "s", post=bridge, clock_ms=lambda: at_ms,
                              oracle_test="checkout")  # fmt: skip
    for index, outcome in enumerate(outcomes):
        reporter.add(generator.case(index), outcome, "run-1", plan.plan_hash)
    reporter.flush("run-1")
    return [
        {"v": 1, "destination": "oracle", "type": "oracle", "batch_key": batch["source_request_id"],
         "test_user": True, "batch": batch}
        for batch in bridge.batches
    ]  # fmt: skip


def count(config: Any, messages: list[dict[str, Any]], states: dict[str, FlagState]) -> dict[CounterKey, Any]:
    counter = Counter(config, TRAFFIC_TYPES)
    totals: dict[CounterKey, Any] = {}
    for message in messages:
        contribution = counter.count(counter.parse(json.dumps(message)), lambda user, flag: states.get(user), T0)
        for key, delta in contribution.deltas.items():
            totals.setdefault(key, []).append(delta)
    return {key: (sum(d.n for d in ds), sum(d.k for d in ds), sum(d.invalid for d in ds)) for key, ds in totals.items()}


@pytest.mark.parametrize("config", [oracle(), shipped_oracle()], ids=["default metrics", "shipped config"])
def test_a_request_nothing_answered_is_its_own_metric_not_a_5xx(
    config: Any, body_plan: TrafficPlan, model: RequestModel
) -> None:
    # Given: results 200, 404 (a clean refusal), 500, and no answer at all; both testers exposed to `on`
    outcomes = [Outcome(200, 5.0, 2, "ab"), Outcome(404, 5.0, 2, "ab"), Outcome(500, 5.0, 2, "ab"), NO_ANSWER] * 5
    states = {f"user#qa-bot-0{n}": exposure(f"qa-bot-0{n}", "on", 3, T0 - 60_000, T0 - 1) for n in (1, 2)}
    name = config.tests[0].name
    # When: the oracle counts the lane messages of the run's results
    counted = count(config, lane_messages(body_plan, model, outcomes, T0 + 1000), states)
    # Then: the 5xx rate judges the 15 answers (5 bad); the unanswered rate all 20 (the 5 unanswered bad)
    assert counted[CounterKey(name, T0, 3, "on", "5xx rate")] == (15, 5, 0)
    assert counted[CounterKey(name, T0, 3, "on", "unanswered rate")] == (20, 5, 0)
    latency = counted[CounterKey(name, T0, 3, "on", "latency p95")]
    assert latency == (15, 0, 0)  # answers only: a timeout's 10 s is not the service's latency
    assert not [key for key in counted if key.treatment == UNATTRIBUTED]


def test_results_take_each_tester_s_treatment_at_the_result_s_time(body_plan: TrafficPlan, model: RequestModel) -> None:
    # Given: qa-bot-01 served `on` (version 3), qa-bot-02 served `off` (version 3) before the run
    states = {
        "user#qa-bot-01": exposure("qa-bot-01", "on", 3, T0 - 60_000, T0 - 1),
        "user#qa-bot-02": exposure("qa-bot-02", "off", 3, T0 - 60_000, T0 - 1),
    }
    generator = make_generator(body_plan, model)
    on = {i for i in range(40) if generator.case(i).tester.key == "qa-bot-01"}
    outcomes = [Outcome(500 if i in on else 200, 5.0, 2, "ab") for i in range(40)]
    on_cases = len(on)
    # When
    counted = count(oracle(), lane_messages(body_plan, model, outcomes, T0 + 1000), states)
    # Then: every result of qa-bot-01 is `on`'s (all bad), every one of qa-bot-02 is `off`'s (all good)
    assert counted[CounterKey("checkout", T0, 3, "on", "5xx rate")] == (on_cases, on_cases, 0)
    assert counted[CounterKey("checkout", T0, 3, "off", "5xx rate")] == (40 - on_cases, 0, 0)
    # And: results from before a tester was exposed are shown as unattributed, never judged
    early = count(oracle(), lane_messages(body_plan, model, outcomes, T0 - 120_000), states)
    assert {key.treatment for key in early} == {UNATTRIBUTED}


def test_the_feed_defaults_to_the_metrics_that_count_results_and_warns_when_no_answer_would_go_unseen() -> None:
    every = ("5xx rate", "latency p95", "unanswered rate")
    feed = traffic_feed({"test": "checkout"}, oracle(), "plan.yaml")
    assert feed is not None and feed.metrics == every and feed.warnings == ()
    assert traffic_feed({}, oracle(), "plan.yaml") is None
    shipped = shipped_oracle()
    shipped_feed = traffic_feed({"test": shipped.tests[0].name}, shipped, "plan.yaml")
    assert shipped_feed is not None and shipped_feed.metrics == every
    assert shipped_feed.warnings == ()
    # A plan that feeds the 5xx rate only: the test counts no answer, but not from this run
    partial = traffic_feed({"test": "checkout", "metrics": ["5xx rate"]}, oracle(), "plan.yaml")
    assert partial is not None and len(partial.warnings) == 1
    assert "the run does not feed metric 'unanswered rate'" in partial.warnings[0]
    # A test with no metric counting no answer as bad (an old 5xx rule that leaves it out, or calls it good)
    old = [dict(DEFAULT_METRICS[0], bad={"attributes": [{"attribute": "status", "op": "gte", "value": 500}]})]
    warned = traffic_feed({"test": "checkout"}, oracle(metrics=[*old, DEFAULT_METRICS[1]]), "plan.yaml")
    assert warned is not None and len(warned.warnings) == 1
    assert "counts a request nothing answered (status 0, outcome transport_error) as bad" in warned.warnings[0]
    assert "'unanswered rate'" in warned.warnings[0]


@pytest.mark.parametrize(
    ("section", "test", "message"),
    [
        ({"test": "nope"}, {},
         "plan.yaml: 'oracle.test': no oracle test 'nope' in the configuration (known: checkout)"),
        ({"test": "checkout", "metrics": ["5xx rate", "error budget"]}, {},
         "plan.yaml: 'oracle.metrics.1': test 'checkout' has no metric 'error budget' (its metrics: 5xx rate, "
         "latency p95, unanswered rate)"),
        ({"test": "checkout", "metrics": ["api 5xx"]},
         {"metrics": [dict(DEFAULT_METRICS[0], name="api 5xx", events={"event_names": {"include": ["api_response"]}})]},
         "plan.yaml: 'oracle.metrics.0': metric 'api 5xx' of test 'checkout' does not count flagbridge_test_request "
         "events (its events selector leaves them out)"),
        ({"test": "checkout"},
         {"metrics": [dict(DEFAULT_METRICS[0], name="api 5xx", events={"event_names": {"include": ["api_response"]}})]},
         "plan.yaml: 'oracle.test': no metric of test 'checkout' counts flagbridge_test_request events"),
        ({"test": "checkout"}, {"treatment_attribute": "variant"},
         "plan.yaml: 'oracle.test': test 'checkout' reads the treatment from the event attribute 'variant'"),
    ],
)  # fmt: skip
def test_a_feed_the_run_cannot_move_is_one_error_naming_the_key(
    section: dict[str, Any], test: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        traffic_feed(section, oracle(**test), "plan.yaml")
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_no_oracle_section_in_the_configuration_is_named() -> None:
    with pytest.raises(ConfigError, match="the configuration has no oracle tests"):
        traffic_feed({"test": "checkout"}, None, "plan.yaml")
