"""Test-run figures: what one shard worker sustains, and the SQS requests a run costs to enqueue.

``runs_worker``: requests/s of one :class:`flagbridge.runs.worker.ShardWorker` sending a shard (claim, generate,
send, record progress after *every* case, manifest lines and parts, stop checks, finish) with the in-memory
stores, against the same HTTP client's plain loop over the same cases (``HttpSender.send(generator.case(i)
.request)``, nothing else) to the same local server (:class:`local.traffic_target.TrafficTarget`, in its own
process), wall clock, in the same run. Target: >= 0.7x the plain loop. Also reported: the rate of sending the
same requests built beforehand (the client alone) and the worker's ratio to it; building a case is the traffic
generator's cost (its own figure, ``traffic_cpu``). Results reporting is off in both.

``runs_sqs_requests``: ``SendMessageBatch`` calls :class:`flagbridge.runs.service.RunService` makes to enqueue a
run of N shards (a counting fake SQS client behind the real :class:`flagbridge.queues.SqsSender`), against
ceil(N / 10). Target: = 1.0.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from local.bench.timing import Figure, Sizes, _ms, pair_ratios, paired_medians, quartiles

# JSON objects, as `flagbridge traffic run --stack` sends them: a deployed stack parses no YAML text (docs/runs.md).
PLAN = {
    "name": "bench",
    "max_attacks": 2,
    "query": {"attack_set": "Values", "probability": "20%"},
    "body": [{"pointer": "/sku", "probability": "10%", "attack_set": "Values"}],
    "attack_sets": {"Values": ["", "0", "-1", "<script>"]},
}
MODEL = {
    "name": "bench",
    "requests": [
        {
            "name": "checkout",
            "method": "POST",
            "url": "http://localhost/checkout",
            "headers": {"Content-Type": "application/json"},
            "body": {"user": "{{tester.key}}", "sku": "{{choice:A1,B2,C3}}", "quantity": "{{int:1..5}}"},
        }
    ],
}


def _traffic() -> Any:
    from flagbridge.traffic.config import TrafficConfig

    return TrafficConfig.from_document({"allowlist": ["localhost", "127.0.0.1"], "testers": ["qa-bot-01"]})


def _test_users() -> Any:
    from flagbridge.config import TesterRules

    return TesterRules.model_validate({"rules": [{"name": "qa", "type": "key_pattern", "pattern": "qa-.*"}]})


class _TargetProcess:
    """:class:`local.traffic_target.TrafficTarget` in its own process: it does not compete for this one's GIL."""

    def start(self) -> _TargetProcess:
        import subprocess
        import sys

        code = (
            "import sys, time\n"
            "from local.traffic_target import TrafficTarget\n"
            "t = TrafficTarget(record=False).start()\n"
            "print(t.url, flush=True)\n"
            "sys.stdin.read()\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        return self

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


def figure_runs_worker(sizes: Sizes) -> list[Figure]:
    from flagbridge.runs.service import RunService
    from flagbridge.runs.spec import build_generator
    from flagbridge.runs.stop import run_stop
    from flagbridge.runs.store import InMemoryManifestStore, InMemoryRunStore
    from flagbridge.runs.worker import Runtime, ShardWorker
    from flagbridge.traffic.safety import RunTag
    from flagbridge.traffic.sender import HttpSender

    target = _TargetProcess().start()
    count = sizes.traffic_requests
    traffic = _traffic()
    runs = {"n": 0}
    try:
        sender = HttpSender(traffic.allowlist)
        queue: list[str] = []

        class Queue:
            def send_bodies(self, bodies: Any) -> None:
                queue.extend(bodies)

        store, manifests = InMemoryRunStore(), InMemoryManifestStore()
        service = RunService(store, manifests, Queue(), traffic, _test_users(), parallelism=2)
        runtime = Runtime(
            store,
            manifests,
            lambda spec: build_generator(spec, RunTag(b"bench-key", spec.run_tag_header)),
            lambda: sender.send,
            lambda _spec: None,
            lambda spec: run_stop(spec.run_id, lambda: "none", None, None, None),
        )
        worker = ShardWorker(runtime)

        def new_run() -> str:
            runs["n"] += 1
            request = {"plan": PLAN, "model": MODEL, "requests": count, "rate": 20_000, "target": target.url,
                       "seed": 1, "run_id": f"bench-{runs['n']}", "shard_size": count}  # fmt: skip
            service.start(request)
            return queue.pop()

        first = json.loads(new_run())  # the floor sends this run's cases, generated beforehand
        spec = worker.spec(first["run_id"])
        assert spec is not None
        generator = build_generator(spec, RunTag(b"bench-key", spec.run_tag_header))
        requests = [generator.case(index).request for index in range(count)]

        def floor() -> None:  # the plain loop: build each case of the run and send it, nothing else
            for index in range(count):
                sender.send(generator.case(index).request)

        def send_only() -> None:  # reported: the same requests built beforehand (the client alone)
            for request in requests:
                sender.send(request)

        def measured() -> None:
            message = new_run()
            result = worker.process(message, lambda: 600_000)
            assert result.outcome == "done" and result.sent == count, result

        floor_s, measured_s, floors, measures = paired_medians(
            floor, measured, sizes.runs, sizes.warmup, clock=time.perf_counter
        )
        send_only_s, _, _, _ = paired_medians(send_only, lambda: None, max(1, sizes.runs // 3), 0, time.perf_counter)
        sender.close()
    finally:
        target.stop()
    ratio = floor_s / measured_s  # requests/s of the worker over the plain loop's
    return [
        Figure(
            "runs_worker",
            "requests/s one shard worker sustains vs the same client's plain loop",
            round(count / measured_s, 1),
            round(count / floor_s, 1),
            round(ratio, 2),
            "requests/s",
            ">= 0.7x",
            ratio >= 0.7,
            {
                "requests_per_shard": count,
                "progress_writes_per_request": 1,
                "stores": "in-memory twins (DynamoDB and S3 latency not included)",
                "floor": "the plain loop: HttpSender.send(generator.case(i).request) for the run's cases, same server",
                "send_only_requests_per_s": round(count / send_only_s, 1),
                "ratio_to_send_only": round(send_only_s / measured_s, 2),
                "floor_runs_ms": _ms(floors),
                "measured_runs_ms": _ms(measures),
            },
            ratio_iqr=quartiles(pair_ratios(measures, floors)),  # requests/s: the plain loop's time over the worker's
            measured_iqr=quartiles((count / m for m in measures), 1),
        )
    ]


class _CountingSqs:
    def __init__(self) -> None:
        self.calls = 0
        self.entries = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        self.entries += len(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def figure_runs_sqs_requests(sizes: Sizes) -> list[Figure]:
    from flagbridge.queues import SqsSender
    from flagbridge.runs.service import RunService
    from flagbridge.runs.store import InMemoryManifestStore, InMemoryRunStore

    details: dict[str, Any] = {}
    worst = 0.0
    for shards in (1, 9, 10, 11, 95, 1000 if sizes.runs > 2 else 101):
        sqs = _CountingSqs()
        service = RunService(
            InMemoryRunStore(), InMemoryManifestStore(), SqsSender(sqs, "queue"), _traffic(), _test_users(), 10
        )
        request = {"plan": PLAN, "model": MODEL, "requests": shards * 10, "rate": 1000, "shard_size": 10,
                   "target": "http://127.0.0.1:9", "seed": 1, "run_id": f"sqs-{shards}"}  # fmt: skip
        status, body = service.start(request)
        assert status == 202 and body["shards"] == shards and sqs.entries == shards
        expected = math.ceil(shards / 10)
        details[f"{shards} shards"] = {"send_message_batch": sqs.calls, "ceil(shards/10)": expected}
        worst = max(worst, sqs.calls / expected)
    return [
        Figure(
            "runs_sqs_requests",
            "SQS requests to enqueue a run vs ceil(shards / 10)",
            worst,
            1.0,
            worst,
            "ratio",
            "= 1.0",
            worst == 1.0,
            details,
        )
    ]
