"""The tester registry's cost: DynamoDB requests its lookups add per SQS batch, in the router and the processor.

Both consumers ask the registry once per SQS batch, for every distinct user of the batch at once
(``BatchGetItem``, 100 keys per request), like the router's profile marks: the figure is the testers table's
requests per batch against that floor, ``ceil(distinct users / 100)``, so 1.0 means no request per event.
The real adapters run on a counting fake client (one per table, so the registry's requests are told apart).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from local.bench.fakes import (
    CountingDynamoDB,
    bench_environment,
    make_impressions,
    mparticle_batches,
    queued_bodies,
)
from local.bench.timing import Figure, Sizes

SQS_BATCH = 10  # the BatchSize of the router's and the processor's event sources in template.yaml


def _registry(client: CountingDynamoDB, testers: list[str]) -> Any:
    from flagbridge.testers.registry import TesterRegistry
    from flagbridge.testers.store import DynamoDBTesterStore

    registry = TesterRegistry(DynamoDBTesterStore(client, "flagbridge-testers"))
    for traffic_type in ("user",):
        registry.register_pool(traffic_type, testers, 3600, "bench", "bench", margin_seconds=0)
    client.calls.clear()
    return registry


def _identities(text: str) -> list[tuple[str, str]]:
    from flagbridge.cdp.batch import normalize_batch

    return list(normalize_batch(json.loads(text)).identities)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _router_figure(sizes: Sizes) -> Figure:
    from flagbridge.forwarding.router_service import RouterService
    from flagbridge.profiles.store import DynamoDBProfileStore
    from flagbridge.quarantine import InMemoryQuarantine
    from flagbridge.queues import InMemorySender, QueueRecord
    from flagbridge.settings import get_settings

    now_ms = int(time.time() * 1000)
    texts = mparticle_batches(max(SQS_BATCH, sizes.router_batches // 10), now_ms)
    customers = sorted({value for text in texts for kind, value in _identities(text) if kind == "customer_id"})
    testers_client, profiles_client = CountingDynamoDB(), CountingDynamoDB()
    registry = _registry(testers_client, customers[::2])  # every other customer is a registered tester
    senders: dict[str, InMemorySender] = {}
    service = RouterService(
        get_settings().config,
        DynamoDBProfileStore(profiles_client, "flagbridge-profiles").load_marks,
        lambda name: senders.setdefault(name, InMemorySender()),
        InMemoryQuarantine(),
        lookup_registered=registry.active,
    )
    per_batch: list[dict[str, int]] = []
    for batch in _chunks(texts, SQS_BATCH):
        users = {pair for text in batch for pair in _identities(text)}
        events = sum(len(json.loads(text).get("events", [])) for text in batch)
        before = testers_client.calls.get("batch_get_item", 0)
        result = service.process([QueueRecord(f"m-{i}", text) for i, text in enumerate(batch)])
        if result.failed_message_ids:
            raise RuntimeError(f"the router failed {len(result.failed_message_ids)} messages")
        requests = testers_client.calls.get("batch_get_item", 0) - before
        per_batch.append({"events": events, "users": len(users), "registry_requests": requests})
    return _figure("registry_requests", "registry lookups per router SQS batch", per_batch)


def _processor_figure(sizes: Sizes) -> Figure:
    from flagbridge.profiles.processor import ImpressionProcessor
    from flagbridge.profiles.store import DynamoDBProfileStore
    from flagbridge.quarantine import InMemoryQuarantine
    from flagbridge.queues import QueueRecord
    from flagbridge.settings import get_settings

    items = make_impressions(sizes.impressions, sizes.users, sizes.flags)
    testers_client, profiles_client = CountingDynamoDB(), CountingDynamoDB()
    registry = _registry(testers_client, sorted({item["key"] for item in items})[::10])
    processor = ImpressionProcessor(
        DynamoDBProfileStore(profiles_client, "flagbridge-profiles"),
        InMemoryQuarantine(),
        get_settings().config,
        lookup_registered=registry.active,
    )
    bodies = queued_bodies(items)
    per_batch: list[dict[str, int]] = []
    for batch in _chunks(bodies, SQS_BATCH):
        rows = [record for body in batch for record in json.loads(body)["impressions"]]
        fields = json.loads(batch[0])["fields"]
        key = fields.index("key")
        before = testers_client.calls.get("batch_get_item", 0)
        result = processor.process([QueueRecord(f"m-{i}", body) for i, body in enumerate(batch)])
        if result.failed_message_ids:
            raise RuntimeError(f"the processor failed {len(result.failed_message_ids)} messages")
        requests = testers_client.calls.get("batch_get_item", 0) - before
        users = len({row[key] for row in rows})
        per_batch.append({"events": len(rows), "users": users, "registry_requests": requests})
    return _figure("registry_requests.processor", "registry lookups per processor SQS batch", per_batch)


def _figure(name: str, title: str, per_batch: list[dict[str, int]]) -> Figure:
    requests = sum(batch["registry_requests"] for batch in per_batch)
    floor = sum(math.ceil(batch["users"] / 100) for batch in per_batch)
    events = sum(batch["events"] for batch in per_batch)
    ratio = requests / floor if floor else None
    return Figure(
        name,
        title,
        round(requests / len(per_batch), 2),
        round(floor / len(per_batch), 2),
        None if ratio is None else round(ratio, 3),
        "requests/batch",
        "= 1.0",
        ratio == 1.0,
        {
            "sqs_batches": len(per_batch),
            "events": events,
            "registry_requests": requests,
            "registry_requests_per_event": round(requests / events, 4) if events else None,
            "max_users_in_a_batch": max(batch["users"] for batch in per_batch),
        },
    )


def figure_registry_requests(sizes: Sizes) -> list[Figure]:
    """DynamoDB requests of the tester registry per SQS batch (router and processor), against ceil(users / 100)."""
    bench_environment()
    return [_router_figure(sizes), _processor_figure(sizes)]
