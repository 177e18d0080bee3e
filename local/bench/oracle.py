"""The test oracle's figures: counting CPU per event, DynamoDB writes per SQS batch, and the cost of an evaluation.

* ``oracle_cpu``: ``oracle_counter.lambda_handler`` CPU time per event for oracle-lane messages (testers' results,
  one mParticle batch of 5 events per message, SQS batches of the lane's 100 messages), with profile attribution
  from an in-memory store and the real ``DynamoDBCounterStore`` on a counting fake client; against
  ``json.loads`` of the same lane messages. Target <= 3x.
* ``oracle_writes``: DynamoDB write requests per SQS batch against the distinct counters the batch touched.
  Target = 1.0.
* ``oracle_eval``: one evaluation (read the counters, sum the window, judge every treatment x metric) over the
  counters that 1,000,000 events leave against those of 10,000 events: the same 24 hours x 2 treatments x 2
  metrics, so the cost must not grow with the events. Target <= 1.5x.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from local.bench.fakes import BenchContext, CountingDynamoDB, bench_environment, load_handler, replace_runtime
from local.bench.timing import Figure, Sizes, _ms, at_most, pair_ratios, paired_medians, quartiles

NOW_MS = 1_767_225_600_000
HOUR_MS = 3_600_000
LANE_BATCH = 100  # the oracle lane's BatchSize in template.yaml
EVENTS_PER_MESSAGE = 5
TESTERS = 40


class _OracleDynamoDB(CountingDynamoDB):
    """The counting fake plus the UpdateItem the counter store makes (never a conflict: first deliveries)."""

    def update_item(self, **update: Any) -> dict[str, Any]:
        self._count("update_item")
        key = (update["Key"]["pk"]["S"], update["Key"]["sk"]["S"])
        self.items.setdefault(key, {})
        return {}

    def get_item(self, **_: Any) -> dict[str, Any]:
        self._count("get_item")
        return {}


class _Silent:
    """A notifier that sends nothing: the figures time the evaluation, not the messages."""

    def verdict_changed(self, report: Any, changed: Any) -> None:
        return None

    def metrics(self, report: Any) -> None:
        return None

    def kill_changed(self, report: Any, event: Any) -> None:
        return None


def _config() -> Any:
    from flagbridge.oracle.config import parse_oracle_config

    return parse_oracle_config({"tests": [{"name": "checkout", "flag": "new_checkout", "environment": "Production"}]})


def _states() -> dict[tuple[str, str], Any]:
    from flagbridge.profiles.model import Assignment, FlagState

    states = {}
    for index in range(TESTERS):
        treatment = "on" if index % 2 else "off"
        assignment = Assignment(treatment, "whitelisted", 7, "Production", NOW_MS - HOUR_MS, NOW_MS - HOUR_MS, 1)
        states[(f"user#qa-{index}", "new_checkout")] = FlagState(
            traffic_type="user", key=f"qa-{index}", identity_type="customer_id", flag="new_checkout",
            treatment=treatment, label="whitelisted", version=7, environment="Production", environment_id="env-1",
            current_time=NOW_MS - HOUR_MS, first_seen=NOW_MS - HOUR_MS, last_seen=NOW_MS - HOUR_MS, exposures=1,
            assignments=(assignment,),
        )  # fmt: skip
    return states


def lane_messages(events: int, seed: int = 11) -> list[str]:
    """Oracle-lane message bodies as the router writes them: testers' ``flagbridge_test_request`` results."""
    rng = random.Random(seed)
    bodies = []
    for message in range(max(1, events // EVENTS_PER_MESSAGE)):
        user = f"qa-{message % TESTERS}"
        batch_events = [
            {"event_type": "custom_event",
             "data": {"event_name": "flagbridge_test_request", "custom_event_type": "other",
                      "timestamp_unixtime_ms": NOW_MS + message * 100 + i, "source_message_id": f"m{message}-{i}",
                      "custom_attributes": {"run_id": "bench", "case_id": f"c{message}-{i}", "route": "/checkout",
                                            "method": "POST", "status": 500 if rng.random() < 0.02 else 200,
                                            "latency_ms": round(rng.lognormvariate(5, 0.5), 1)}}}
            for i in range(EVENTS_PER_MESSAGE)
        ]  # fmt: skip
        batch = {"environment": "production", "source_request_id": f"bench-{message}",
                 "user_identities": {"customer_id": user}, "events": batch_events}  # fmt: skip
        message_body = {"v": 1, "destination": "oracle", "type": "oracle", "batch_key": f"srid:bench-{message}",
                        "test_user": True, "batch": batch}  # fmt: skip
        bodies.append(json.dumps(message_body))
    return bodies


def _sqs_events(bodies: list[str]) -> list[dict[str, Any]]:
    return [
        {"Records": [{"messageId": f"m-{start + i}", "body": body, "attributes": {}}
                     for i, body in enumerate(bodies[start : start + LANE_BATCH])]}
        for start in range(0, len(bodies), LANE_BATCH)
    ]  # fmt: skip


def _counter_handler(client: CountingDynamoDB) -> Any:
    """The counter handler with the shipped configuration, its store on ``client``, profiles in memory."""
    bench_environment()
    from flagbridge.oracle.store import DynamoDBCounterStore

    states = _states()

    class Profiles:
        def load(self, pairs: Any, users: Any) -> tuple[dict[Any, Any], dict[str, Any]]:
            return {pair: states[pair] for pair in pairs if pair in states}, {}

    store = DynamoDBCounterStore(client, "oracle-counters")
    replace_runtime(oracle_counters=lambda: store, profile_store=lambda: Profiles())
    return load_handler("oracle_counter")


def figure_oracle_cpu(sizes: Sizes) -> list[Figure]:
    """Counter handler CPU per event against json.loads of the lane messages."""
    client = _OracleDynamoDB()
    handler = _counter_handler(client)
    bodies = lane_messages(sizes.oracle_events)
    events = _sqs_events(bodies)
    context = BenchContext()
    counted = sum(len(json.loads(b)["batch"]["events"]) for b in bodies)

    def floor() -> None:
        for body in bodies:
            json.loads(body)

    def measured() -> None:
        for event in events:
            response = handler.lambda_handler(event, context)
            if response["batchItemFailures"]:
                raise RuntimeError(f"the counter failed records: {response['batchItemFailures']}")

    floor_s, measured_s, floors, measures = paired_medians(floor, measured, sizes.runs, sizes.warmup)
    ratio = measured_s / floor_s
    return [
        Figure(
            "oracle_cpu", "oracle counter CPU per event", round(measured_s / counted * 1e6, 2),
            round(floor_s / counted * 1e6, 2), round(ratio, 2), "µs/event", "<= 3x", at_most(ratio, 3.0),
            {"events": counted, "messages": len(bodies), "sqs_batches": len(events), "floor_runs_ms": _ms(floors),
             "measured_runs_ms": _ms(measures)},
            ratio_iqr=quartiles(pair_ratios(floors, measures)),
            measured_iqr=quartiles(m / counted * 1e6 for m in measures),
        )
    ]  # fmt: skip


def figure_oracle_writes(sizes: Sizes) -> list[Figure]:
    """DynamoDB write requests per oracle-lane SQS batch against the distinct counters it touched."""
    client = _OracleDynamoDB()
    handler = _counter_handler(client)
    from flagbridge.oracle.counting import Counter

    counter = Counter(_config(), {"customer_id": ["user"]})
    states = _states()
    per_batch = []
    for event in _sqs_events(lane_messages(sizes.oracle_events)):
        touched: set[Any] = set()
        for record in event["Records"]:
            message = counter.parse(record["body"])
            touched |= set(counter.count(message, lambda user, flag: states.get((user, flag)), NOW_MS).deltas)
        before = client.write_requests
        handler.lambda_handler(event, BenchContext())
        per_batch.append({"counters": len(touched), "writes": client.write_requests - before})
    writes = sum(b["writes"] for b in per_batch)
    counters = sum(b["counters"] for b in per_batch)
    ratio = writes / counters
    return [
        Figure(
            "oracle_writes", "oracle counter writes per SQS batch", round(writes / len(per_batch), 2),
            round(counters / len(per_batch), 2), round(ratio, 3), "writes/batch", "= 1.0", ratio == 1.0,
            {"batches": per_batch[:20], "sqs_batches": len(per_batch), "messages_per_batch": LANE_BATCH},
        )
    ]  # fmt: skip


def _counters_for(events: int, seed: int) -> Any:
    """The counters ``events`` results over 24 hours leave (2 treatments x 2 metrics x 24 hours), built directly."""
    from flagbridge.oracle import histogram
    from flagbridge.oracle.counting import CounterKey, Delta
    from flagbridge.oracle.store import InMemoryCounterStore

    rng = random.Random(seed)
    store = InMemoryCounterStore()
    per_cell = events // (24 * 2)
    for hour in range(24):
        for treatment, error_rate in (("on", 0.03), ("off", 0.002)):
            key_hour = NOW_MS + hour * HOUR_MS
            rate = Delta(n=per_cell, k=round(per_cell * error_rate))
            buckets: dict[int, int] = {}
            at_pass = at_fail = 0
            for _ in range(min(per_cell, 2000)):  # the histogram's shape; its bucket count does not grow with n
                value = rng.lognormvariate(5, 0.5)
                index = histogram.bucket_of(value)
                weight = max(1, per_cell // 2000)
                buckets[index] = buckets.get(index, 0) + weight
                at_pass += weight if value >= 500 else 0  # the exact line counts the counter keeps
                at_fail += weight if value >= 1000 else 0
            n = sum(buckets.values())
            latency = Delta(n=n, buckets=buckets, at_pass=at_pass, at_fail=at_fail, classified=n)
            store.counters[CounterKey("checkout", key_hour, 7, treatment, "5xx rate")] = rate
            store.counters[CounterKey("checkout", key_hour, 7, treatment, "latency p95")] = latency
    return store


def figure_oracle_eval(sizes: Sizes) -> list[Figure]:
    """One evaluation over the counters of many events against one over the counters of few."""
    bench_environment()
    from flagbridge.oracle.service import Evaluator
    from flagbridge.oracle.store import InMemoryVerdictStore

    config = _config()
    small_events, large_events = sizes.oracle_eval_events
    small, large = _counters_for(small_events, 1), _counters_for(large_events, 2)
    now = NOW_MS + 25 * HOUR_MS

    def evaluation(store: Any) -> Any:
        return lambda: Evaluator(config, store, InMemoryVerdictStore(), _Silent(), None, lambda: now).run(force=True)

    floor_s, measured_s, floors, measures = paired_medians(
        evaluation(small), evaluation(large), sizes.runs, sizes.warmup, clock=time.process_time
    )
    ratio = measured_s / floor_s
    [report] = evaluation(large)()
    return [
        Figure(
            "oracle_eval", f"oracle evaluation, {large_events:,} vs {small_events:,} events",
            round(measured_s * 1000, 3), round(floor_s * 1000, 3), round(ratio, 2), "ms/evaluation", "<= 1.5x",
            at_most(ratio, 1.5),
            {"events": {"floor": small_events, "measured": large_events},
             "counters": {"floor": len(small.counters), "measured": len(large.counters)},
             "state": report["state"], "floor_runs_ms": _ms(floors), "measured_runs_ms": _ms(measures)},
            ratio_iqr=quartiles(pair_ratios(floors, measures)),
            measured_iqr=quartiles((m * 1000 for m in measures), 3),
        )
    ]  # fmt: skip


def _wilson_rule() -> tuple[Any, Any]:
    """The rule before the always-valid one (Wilson bounds at the interim 99%, min_samples / min_failures, "about N
    more" by bisection), with the judge's signatures: the floor of ``oracle_rule`` only, never a verdict."""
    from flagbridge.oracle.judge import Judgement
    from flagbridge.oracle.stats import wilson_bounds, z_for

    z = z_for(0.99)

    def smallest(decides: Any, start: int, limit: int = 100_000_000) -> int | None:
        if decides(start):
            return start
        low, high = start, start * 2
        while not decides(high):
            if high >= limit:
                return None
            low, high = high, min(limit, high * 2)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if decides(middle) else (middle, high)
        return high

    def needed(metric: Any, n: int, k_pass: int, k_fail: int, pass_line: float, fail_line: float) -> int | None:
        rate = k_pass / n if n else 0.0
        if rate < pass_line:
            total = smallest(lambda t: t >= metric.min_samples and wilson_bounds(round(rate * t), t, z)[1] < pass_line,
                             max(n, 1))  # fmt: skip
            return None if total is None else total - n
        rate = k_fail / n
        if rate < fail_line:
            return None
        total = smallest(lambda t: round(rate * t) >= metric.min_failures and wilson_bounds(round(rate * t), t, z)[0]
                         >= fail_line, max(n, 1))  # fmt: skip
        return None if total is None else total - n

    def judge(metric: Any, flag: str, treatment: str, n: int, k_pass: int, k_fail: int, pass_line: float,
              fail_line: float, invalid: int) -> Judgement:  # fmt: skip
        lower_fail = wilson_bounds(k_fail, n, z)[0]
        lower, upper = wilson_bounds(k_pass, n, z)
        state: Any
        if n and k_fail >= metric.min_failures and lower_fail >= fail_line:
            state, more = "FAIL", None
        elif n >= metric.min_samples and upper < pass_line:
            state, more = "PASS", None
        else:
            state, more = ("NO_DATA" if n == 0 else "INCONCLUSIVE"), needed(metric, n, k_pass, k_fail, pass_line,
                                                                         fail_line)  # fmt: skip
        return Judgement(flag=flag, treatment=treatment, metric=metric.name, kind=metric.type, state=state, n=n,
                         k=k_pass, rate=k_pass / n if n else None, lower=lower, upper=upper,
                         pass_below=metric.pass_below, fail_at=metric.fail_at, confidence=0.99, final=False,
                         needed=more, invalid=invalid, explain=f"{state} {flag}={treatment} {metric.name}")  # fmt: skip

    def judge_rate(metric: Any, flag: str, treatment: str, n: int, k: int, *, final: bool, invalid: int = 0) -> Any:
        return judge(metric, flag, treatment, n, k, k, metric.pass_below, metric.fail_at, invalid)

    def judge_percentile(metric: Any, flag: str, treatment: str, n: int, at_pass: int, at_fail: int, value: Any, *,
                         final: bool, invalid: int = 0) -> Any:  # fmt: skip
        return judge(metric, flag, treatment, n, at_pass, at_fail, metric.tail, metric.tail, invalid)

    return judge_rate, judge_percentile


def figure_oracle_rule(sizes: Sizes) -> list[Figure]:
    """One evaluation with the always-valid rule against the same evaluation with the Wilson rule before it."""
    bench_environment()
    from flagbridge.oracle.kinds import percentile, rate
    from flagbridge.oracle.service import Evaluator
    from flagbridge.oracle.store import InMemoryVerdictStore

    config = _config()
    store = _counters_for(sizes.oracle_eval_events[1], 2)
    now = NOW_MS + 25 * HOUR_MS
    always_valid = (rate.judge_rate, percentile.judge_percentile)
    wilson = _wilson_rule()

    def evaluation(rule: tuple[Any, Any]) -> Any:
        def run() -> Any:
            rate.judge_rate, percentile.judge_percentile = rule  # the kinds' judge calls these
            try:
                return Evaluator(config, store, InMemoryVerdictStore(), _Silent(), None, lambda: now).run(force=True)
            finally:
                rate.judge_rate, percentile.judge_percentile = always_valid

        return run

    floor_s, measured_s, floors, measures = paired_medians(
        evaluation(wilson), evaluation(always_valid), sizes.runs, sizes.warmup, clock=time.process_time
    )
    ratio = measured_s / floor_s
    [report] = evaluation(always_valid)()
    [before] = evaluation(wilson)()
    states = {f"{v['treatment']}/{v['metric']}": v["state"] for v in report["verdicts"]}
    states_before = {f"{v['treatment']}/{v['metric']}": v["state"] for v in before["verdicts"]}
    return [
        Figure(
            "oracle_rule", f"oracle evaluation, always-valid vs Wilson rule ({sizes.oracle_eval_events[1]:,} events)",
            round(measured_s * 1000, 3), round(floor_s * 1000, 3), round(ratio, 2), "ms/evaluation", "<= 2x",
            at_most(ratio, 2.0),
            {"states": states, "states_wilson": states_before, "floor_runs_ms": _ms(floors),
             "measured_runs_ms": _ms(measures)},
            ratio_iqr=quartiles(pair_ratios(floors, measures)),
            measured_iqr=quartiles((m * 1000 for m in measures), 3),
        )
    ]  # fmt: skip
