"""The in-process figures: handler CPU against a floor, DynamoDB writes, router throughput, Split requests,
the local runner end to end and the built layer's size (cold start is in :mod:`local.bench.cold_start`)."""

from __future__ import annotations

import gzip
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from local import artifact
from local.bench.fakes import (
    WEBHOOK_TOKEN,
    AcceptingLedger,
    BenchContext,
    CountingDynamoDB,
    CountingHttp,
    NullProfileStore,
    bench_environment,
    gzipped_body,
    load_handler,
    make_impressions,
    mparticle_batches,
    no_sink,
    queued_bodies,
    replace_runtime,
    split_event_messages,
    split_lane_batch_size,
    sqs_batches,
    webhook_event,
)
from local.bench.timing import (
    FULL,
    LAYER_DIR,
    ROOT,
    Figure,
    Sizes,
    _ms,
    at_most,
    pair_ratios,
    paired_medians,
    quartiles,
)

LAYER_LIMIT_BYTES = 20_000_000
SPLIT_MAX_EVENTS = 5000
SPLIT_MAX_BYTES = 1_000_000


# ---- figures -------------------------------------------------------------------------------------------------


def figure_ingest_cpu(sizes: Sizes) -> list[Figure]:
    """Webhook handler CPU time for one gzipped body, against gunzip + json.loads of the same bytes."""
    bench_environment()
    from flagbridge.quarantine import InMemoryQuarantine
    from flagbridge.queues import InMemorySender

    sender, quarantine = InMemorySender(), InMemoryQuarantine()
    replace_runtime(
        impressions_sender=lambda: sender, quarantine=lambda: quarantine, webhook_token=lambda: WEBHOOK_TOKEN
    )
    handler = load_handler("impressions_webhook")
    items = make_impressions(sizes.impressions, sizes.users, sizes.flags)
    body = gzipped_body(items)
    event = webhook_event(body)
    context = BenchContext()

    def floor() -> None:
        json.loads(gzip.decompress(body))

    def measured() -> None:
        sender.bodies.clear()
        response = handler.lambda_handler(event, context)
        if response["statusCode"] != 200:
            raise RuntimeError(f"the webhook answered {response['statusCode']}: {response.get('body')}")

    floor_s, measured_s, floors, measures = paired_medians(floor, measured, sizes.runs, sizes.warmup)
    summary = json.loads(handler.lambda_handler(event, context)["body"])
    if summary["accepted"] != len(items):
        raise RuntimeError(f"the webhook accepted {summary['accepted']} of {len(items)} impressions")
    ratio = measured_s / floor_s
    return [
        Figure(
            "ingest_cpu",
            "ingest CPU (webhook, 10k gzipped)" if sizes == FULL else "ingest CPU (webhook)",
            round(measured_s * 1000, 2),
            round(floor_s * 1000, 2),
            round(ratio, 2),
            "ms",
            "<= 1.5x",
            at_most(ratio, 1.5),
            {
                "impressions": len(items),
                "gzipped_bytes": len(body),
                "json_bytes": len(gzip.decompress(body)),
                "messages": len(sender.bodies),
                "floor_runs_ms": _ms(floors),
                "measured_runs_ms": _ms(measures),
            },
            ratio_iqr=quartiles(pair_ratios(floors, measures)),
            measured_iqr=quartiles(m * 1000 for m in measures),
        )
    ]


def figure_processor_cpu(sizes: Sizes) -> list[Figure]:
    """Processor handler CPU time per impression (store faked), against the ingest floor per impression."""
    bench_environment()
    from flagbridge.quarantine import InMemoryQuarantine

    quarantine = InMemoryQuarantine()
    store = NullProfileStore()
    replace_runtime(profile_store=lambda: store, quarantine=lambda: quarantine)
    handler = load_handler("impressions_processor")
    items = make_impressions(sizes.impressions, sizes.users, sizes.flags)
    body = gzipped_body(items)
    events = sqs_batches(queued_bodies(items))
    context = BenchContext()

    def floor() -> None:
        json.loads(gzip.decompress(body))

    def measured() -> None:
        for event in events:
            response = handler.lambda_handler(event, context)
            if response["batchItemFailures"]:
                raise RuntimeError(f"the processor failed records: {response['batchItemFailures']}")

    floor_s, measured_s, floors, measures = paired_medians(floor, measured, sizes.runs, sizes.warmup)
    per_floor = floor_s / len(items)
    per_measured = measured_s / len(items)
    ratio = per_measured / per_floor
    return [
        Figure(
            "processor_cpu",
            "processor CPU per impression",
            round(per_measured * 1e6, 2),
            round(per_floor * 1e6, 2),
            round(ratio, 2),
            "µs/impression",
            "<= 2x",
            at_most(ratio, 2.0),
            {
                "impressions": len(items),
                "sqs_batches": len(events),
                "messages": sum(len(event["Records"]) for event in events),
                "floor_runs_ms": _ms(floors),
                "measured_runs_ms": _ms(measures),
            },
            ratio_iqr=quartiles(pair_ratios(floors, measures)),
            measured_iqr=quartiles(m / len(items) * 1e6 for m in measures),
        )
    ]


def figure_profile_writes(sizes: Sizes) -> list[Figure]:
    """DynamoDB write requests per SQS batch, against the batch's distinct (user, flag) pairs."""
    bench_environment()
    from flagbridge.profiles.store import DynamoDBProfileStore
    from flagbridge.quarantine import InMemoryQuarantine

    client = CountingDynamoDB()
    quarantine = InMemoryQuarantine()
    store = DynamoDBProfileStore(client, "flagbridge-profiles")
    replace_runtime(profile_store=lambda: store, quarantine=lambda: quarantine)
    handler = load_handler("impressions_processor")
    items = make_impressions(sizes.impressions, sizes.users, sizes.flags)
    events = sqs_batches(queued_bodies(items))
    context = BenchContext()
    per_batch: list[dict[str, Any]] = []
    for event in events:
        pairs: set[tuple[str, str]] = set()
        for record in event["Records"]:
            message = json.loads(record["body"])
            key, flag, traffic_type = (message["fields"].index(name) for name in ("key", "flag", "traffic_type"))
            for impression in message["impressions"]:
                pairs.add((f"{impression[traffic_type]}#{impression[key]}", impression[flag]))
        before = dict(client.calls)
        writes_before = client.write_requests
        response = handler.lambda_handler(event, context)
        if response["batchItemFailures"]:
            raise RuntimeError(f"the processor failed records: {response['batchItemFailures']}")
        calls = {name: count - before.get(name, 0) for name, count in client.calls.items()}
        per_batch.append({"pairs": len(pairs), "writes": client.write_requests - writes_before, "calls": calls})
    # A redelivery of the same batches is recognised as duplicates: no write at all.
    writes_before = client.write_requests
    for event in events:
        handler.lambda_handler(event, context)
    redelivery_writes = client.write_requests - writes_before
    writes = sum(int(batch["writes"]) for batch in per_batch)
    pairs_total = sum(int(batch["pairs"]) for batch in per_batch)
    ratio = writes / pairs_total
    return [
        Figure(
            "profile_writes",
            "profile writes per SQS batch",
            round(writes / len(per_batch), 1),
            round(pairs_total / len(per_batch), 1),
            round(ratio, 3),
            "writes/batch",
            "= 1.0",
            ratio == 1.0 and redelivery_writes == 0,
            {
                "impressions": len(items),
                "batches": per_batch,
                "redelivery_writes": redelivery_writes,
            },
        )
    ]


def figure_router_cpu(sizes: Sizes) -> list[Figure]:
    """Events/s through route_batch for the configured destinations, against json.loads of the batches."""
    bench_environment()
    from flagbridge.cdp.router import route_batch
    from flagbridge.cdp.testers import TesterResolver
    from flagbridge.settings import get_settings

    config = get_settings().config
    assert config.cdp is not None
    cdp = config.cdp
    resolver = TesterResolver(config.test_users)
    now_ms = int(time.time() * 1000)
    texts = mparticle_batches(sizes.router_batches, now_ms)
    documents: list[Any] = []
    events = sum(len(json.loads(text).get("events", [])) for text in texts)
    marked: set[tuple[str, str]] = set()
    counts: dict[str, int] = {}

    def floor() -> None:
        documents[:] = [json.loads(text) for text in texts]  # also the input of the next measured run

    def measured() -> None:
        for document in documents:
            result = route_batch(document, cdp, marked, now_ms, resolver)
            for name, payload in result.payloads.items():
                counts[name] = counts.get(name, 0) + len(payload.event_indexes)

    floor_s, measured_s, floors, measures = paired_medians(floor, measured, sizes.runs, sizes.warmup)
    floor_eps = events / floor_s
    measured_eps = events / measured_s
    ratio = floor_eps / measured_eps
    return [
        Figure(
            "router_cpu",
            f"router CPU ({len(cdp.compiled_destinations)} destinations)",
            round(measured_eps),
            round(floor_eps),
            round(ratio, 2),
            "events/s",
            "<= 3x",
            at_most(ratio, 3.0),
            {
                "batches": len(texts),
                "events": events,
                "destinations": [d.name for d in cdp.compiled_destinations],
                "events_sent_per_destination_all_runs": counts,
                "floor_runs_ms": _ms(floors),
                "measured_runs_ms": _ms(measures),
            },
            ratio_iqr=quartiles(pair_ratios(floors, measures)),
            measured_iqr=quartiles((events / m for m in measures), 0),
        )
    ]


def figure_split_requests(sizes: Sizes) -> list[Figure]:
    """HTTP requests for N Split events in the router's small lane messages, in SQS batches of the Split lane."""
    bench_environment()
    from flagbridge.forwarding.delivery import DeliveryService
    from flagbridge.forwarding.destinations import RetryPolicy, SplitEventsClient
    from flagbridge.queues import InMemorySender, QueueRecord
    from flagbridge.settings import get_settings

    config = get_settings().config
    assert config.cdp is not None
    now_ms = int(time.time() * 1000)

    def event_sizes(message: str) -> tuple[int, int]:
        """The message's events, and the bytes they take in a request body (each event and its comma)."""
        events = json.loads(message)["split_events"]
        size = sum(len(json.dumps(e["body"], separators=(",", ":"), ensure_ascii=False).encode()) + 1 for e in events)
        return len(events), size

    def lane_batches(messages: list[str], batch_size: int) -> list[list[str]]:
        """As the event source mapping invokes: at most ``batch_size`` messages and 6 MB of payload per batch."""
        batches: list[list[str]] = [[]]
        payload = 0
        for message in messages:
            size = len(message.encode()) + 1024  # the record's ids and attributes around the body
            if batches[-1] and (len(batches[-1]) == batch_size or payload + size > 6 * 1024 * 1024):
                batches.append([])
                payload = 0
            batches[-1].append(message)
            payload += size
        return batches

    def floor_of(events: int, total_bytes: int) -> int:
        return max(math.ceil(events / SPLIT_MAX_EVENTS), math.ceil((total_bytes + 1) / SPLIT_MAX_BYTES))

    def deliver(batches: list[list[str]]) -> CountingHttp:
        http = CountingHttp()
        dead_letters = InMemorySender()
        service = DeliveryService(
            config.cdp,
            AcceptingLedger(),
            lambda d: SplitEventsClient(http, "https://events.split.invalid/api", lambda: "sdk-key", RetryPolicy()),
            no_sink,
            lambda name: dead_letters,
        )
        for batch in batches:
            outcome = service.deliver_batch([QueueRecord(f"m-{i}", body) for i, body in enumerate(batch)])
            if outcome.failed_message_ids():
                raise RuntimeError(f"{len(outcome.failed_message_ids())} messages failed")
        if dead_letters.bodies:
            raise RuntimeError(f"{len(dead_letters.bodies)} Split deliveries were dead-lettered")
        return http

    n = sizes.split_events
    # 1. The figure: N events delivered together (one destination message), against ceil(N / 5000).
    (single,) = split_event_messages(n, n, now_ms)
    _, single_bytes = event_sizes(single)
    single_http = deliver([[single]])
    single_floor = floor_of(n, single_bytes)
    # 2. As in production: the router writes one small message per mParticle batch, and the Split lane's event
    # source hands the function batches of at most BatchSize messages; requests cannot span two invocations.
    per_message = 3
    batch_size = split_lane_batch_size()
    messages = split_event_messages(n, per_message, now_ms)
    batches = lane_batches(messages, batch_size)
    sizes_by_message = {message: event_sizes(message) for message in messages}
    total_bytes = sum(size for _, size in sizes_by_message.values())
    per_batch_floor = sum(
        floor_of(sum(sizes_by_message[m][0] for m in batch), sum(sizes_by_message[m][1] for m in batch))
        for batch in batches
    )
    lane_http = deliver(batches)
    lane_requests = len(lane_http.bodies)
    small = split_event_messages(30, 3, now_ms)  # an SQS batch of 10 messages of 3 events each
    small_http = deliver([small])
    return [
        Figure(
            "split_requests",
            f"Split requests ({n} events)",
            len(single_http.bodies),
            single_floor,
            round(len(single_http.bodies) / single_floor, 3),
            "requests",
            "= 1.0, < 1 MB",
            len(single_http.bodies) == single_floor and all(size < SPLIT_MAX_BYTES for size in single_http.bodies),
            {"events": n, "event_bytes": single_bytes, "body_bytes": single_http.bodies},
        ),
        Figure(
            "split_requests.lane",
            f"Split requests ({n} events in {len(messages)} lane messages)",
            lane_requests,
            per_batch_floor,
            round(lane_requests / per_batch_floor, 3),
            "requests",
            "= 1.0 per SQS batch, < 1 MB",
            lane_requests == per_batch_floor and all(size < SPLIT_MAX_BYTES for size in lane_http.bodies),
            {
                "events": n,
                "event_bytes": total_bytes,
                "body_bytes": lane_http.bodies,
                "messages": len(messages),
                "events_per_message": per_message,
                "sqs_batch_size": batch_size,
                "sqs_batches": len(batches),
                "floor_if_all_events_were_one_batch": floor_of(n, total_bytes),
                "sqs_batch_of_10_messages_x_3_events_requests": len(small_http.bodies),
            },
        ),
    ]


def figure_local_e2e(sizes: Sizes) -> list[Figure]:
    """Impressions/s from the HTTP POST to the last profile visible, on the in-process local runner."""
    from urllib.parse import quote

    os.environ["FLAGBRIDGE_LOCAL_RETRY_SECONDS"] = "1"
    from local.runner import LocalBridge

    bridge = LocalBridge(port=0)
    bridge.start()
    try:
        webhook_token = bridge.secret_value("WebhookTokenSecret") or ""
        profile_token = bridge.secret_value("ProfileApiTokenSecret") or ""
        rates, elapsed_runs, visible = [], [], []
        for run in range(sizes.e2e_runs):
            items = make_impressions(
                sizes.e2e_impressions, max(2, sizes.e2e_impressions // 10), sizes.flags, seed=run, key_prefix=f"e{run}"
            )
            last = items[-1]
            body = gzipped_body(items)
            started = time.perf_counter()
            status, reply = bridge.request(
                "POST",
                f"/split/impressions?token={quote(webhook_token, safe='')}",
                body,
                {"Content-Type": "application/json"},
            )
            if status != 200:
                raise RuntimeError(f"the webhook answered {status}: {reply}")
            if not bridge.wait_idle(timeout=180, interval=0.05):
                raise RuntimeError("the local runner did not become idle")
            traffic_type = "anonymous" if last["key"].startswith("anon-") else "user"
            status, profile = bridge.request(
                "GET",
                f"/profiles/{traffic_type}/{quote(last['key'], safe='')}",
                headers={"Authorization": f"Bearer {profile_token}"},
            )
            elapsed = time.perf_counter() - started
            visible.append(status == 200 and last["split"] in json.dumps(profile))
            elapsed_runs.append(elapsed)
            rates.append(len(items) / elapsed)
    finally:
        bridge.stop()
    rate = statistics.median(rates)
    return [
        Figure(
            "local_e2e",
            "local end to end",
            round(rate, 1),
            None,
            None,
            "impressions/s",
            "report",
            all(visible) if visible else None,
            {
                "impressions_per_run": sizes.e2e_impressions,
                "runs_seconds": [round(value, 3) for value in elapsed_runs],
                "profile_visible": visible,
                "startup_seconds": round(bridge.startup_seconds, 2),
            },
            measured_iqr=quartiles(rates, 1),
        )
    ]


def _elf_machine(path: Path) -> str:
    header = path.read_bytes()[:20]
    machine = int.from_bytes(header[18:20], "little")
    return {0xB7: "aarch64", 0x3E: "x86_64"}.get(machine, hex(machine))


def build_layer() -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    sam = Path(sys.executable).parent / "sam"
    subprocess.run([str(sam), "build", "--parallel", "SharedLayer"], cwd=ROOT, env=env, check=True, stdout=sys.stderr)


def figure_layer_size(sizes: Sizes, build: bool = False) -> list[Figure]:
    """Unzipped size of the built SharedLayer: no runtime-provided package or PyYAML in it, 3.13 bytecode for all."""
    if build:
        build_layer()
    python_dir = LAYER_DIR / "python"
    if not python_dir.is_dir():
        return [
            Figure(
                "layer_size",
                "layer size (unzipped)",
                None,
                None,
                None,
                "MB",
                "<= 20 MB",
                None,
                {"skipped": f"{LAYER_DIR.relative_to(ROOT)} not built (run `make build` or `make bench`)"},
            )
        ]
    total = 0
    per_package: dict[str, int] = {}
    for path in LAYER_DIR.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            total += size
            relative = path.relative_to(LAYER_DIR).parts
            top = relative[1] if relative[0] == "python" and len(relative) > 1 else relative[0]
            per_package[top] = per_package.get(top, 0) + size
    forbidden = artifact.forbidden_in_layer(LAYER_DIR)  # what the runtime provides, and PyYAML
    bytecode_problems = artifact.bytecode_problems(LAYER_DIR)
    native = sorted(python_dir.rglob("_pydantic_core*.so"))
    largest = dict(sorted(per_package.items(), key=lambda kv: -kv[1])[:8])
    megabytes = total / 1_000_000
    return [
        Figure(
            "layer_size",
            "layer size (unzipped)",
            round(megabytes, 2),
            None,
            None,
            "MB",
            "<= 20 MB, no runtime pkgs, 3.13 bytecode",
            total <= LAYER_LIMIT_BYTES and not forbidden and not bytecode_problems,
            {
                "bytes": total,
                "forbidden_packages": forbidden,
                "modules_without_hash_based_313_bytecode": len(bytecode_problems),
                "architecture": _elf_machine(native[0]) if native else "unknown",
                "largest_bytes": largest,
            },
        )
    ]
