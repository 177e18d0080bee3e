"""A deterministic corpus of mParticle batches and configurations for the router equivalence test.

The batches are the samples in ``events/payloads/mparticle_*.json`` plus variants drawn from a seeded random
generator: testers and customers, both environments, both identity shapes, events the plan drops or trims,
events Split refuses (too old, bad names, blank or long keys, too many or too long properties), batches without
ids (hashed keys), without events or without a plan. :func:`routing_snapshot` turns a routing result into plain
JSON, so the output of one router implementation can be recorded and compared with another's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from pathlib import Path
from typing import Any

from flagbridge.cdp.batch import BatchFormatError
from flagbridge.cdp.config import CdpConfig, parse_cdp_config
from flagbridge.cdp.router import RoutingResult
from flagbridge.cdp.testers import TesterResolver
from flagbridge.config import load_config
from tests.fixtures import CDP_EXAMPLE, load_cdp_config

ROOT = Path(__file__).resolve().parents[3]
PAYLOADS = ROOT / "events" / "payloads"
PACKAGED_CONFIG = ROOT / "layers" / "shared" / "config" / "flagbridge.yaml"
RECORDED = Path(__file__).resolve().parent / "data" / "router_equivalence.json"
NOW_MS = 1_767_225_700_000
SEED = 20_261_207
VARIANTS = 240
MARKED = frozenset({("customer_id", "u-marked")})
REGISTERED = frozenset({("customer_id", "u-registered"), ("email", "reg@example.com")})

_NAMES = [
    "add_to_plan", "checkout_started", "checkout_completed", "debug_ping", "mystery_event", "Add To Cart!",
    "#promo", "app_heartbeat", "", "x" * 70, "search", "add to cart!", "add_to_plan",
]  # fmt: skip
_ATTRIBUTE_VALUES: list[Any] = [
    "pro", "team", "enterprise", 3, "3", 0, -1, 2.5, True, None, "x" * 300, [1, "a"], {"k": "v"}, "42.50",
]  # fmt: skip


def _predicate_config() -> dict[str, Any]:
    """A configuration exercising what the packaged ones do not: predicates, wildcards, strict plan actions."""
    plan = json.loads(json.dumps(load_cdp_config(CDP_EXAMPLE).data_plans[0].model_dump()))
    split = {
        "sdk_key_secret": "flagbridge/split",
        "identity_mapping": [
            {"identity_type": "customer_id", "traffic_type": "user"},
            {"identity_type": "email", "traffic_type": "user"},
            {"identity_type": "other_id_2", "traffic_type": "anonymous"},
        ],
    }
    return {
        "data_plans": [plan],
        "plan_enforcement": {
            "require_plan": False,
            "on_unplanned": "drop_attribute",
            "on_unplanned_event": "drop_event",
            "on_missing_required": "drop_batch",
            "on_invalid_value": "drop_event",
        },
        "destinations": [
            {
                "name": "split-strict",
                "type": "split",
                "filter": {"users": "any", "event_names": {"include": ["add*", "checkout_?tarted", "Checkout"]}},
                "options": {
                    **split,
                    "event_type_policy": "reject",
                    "commerce_event_type": "event_type",
                    "value_field": "custom_attributes.amount",
                },
            },
            {
                "name": "split-products",
                "type": "split",
                "filter": {"environments": ["development"]},
                "options": {**split, "value_field": "product.price", "max_age_hours": 1},
            },
            {
                "name": "big-spenders",
                "type": "webhook",
                "filter": {
                    "users": "any",
                    "attributes": [
                        {"attribute": "plan", "op": "in", "value": ["pro", "team"]},
                        {"attribute": "seats", "op": "gte", "value": 2},
                    ],
                },
                "options": {"url": "https://example.com/big"},
            },
            {
                "name": "odd",
                "type": "sqs",
                "filter": {
                    "users": "exclude_test",
                    "event_types": {"exclude": ["screen_view"]},
                    "event_names": {"exclude": ["*_ping", "mystery*"]},
                    "attributes": [
                        {"attribute": "coupon", "op": "not_exists"},
                        {"attribute": "plan", "op": "regex", "value": "^(pro|team|free)$"},
                    ],
                },
                "options": {"queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/odd"},
            },
            {"name": "all", "type": "firehose", "filter": {"users": "any"}, "options": {"stream_name": "all"}},
            {"name": "oracle", "type": "oracle"},
        ],
    }


def configurations() -> dict[str, tuple[CdpConfig, TesterResolver]]:
    """The configurations the corpus is routed with, by name, each with its test-user rules."""
    packaged = load_config(PACKAGED_CONFIG, {})
    assert packaged.cdp is not None
    resolver = TesterResolver(packaged.test_users)
    return {
        "packaged": (packaged.cdp, resolver),
        "example": (load_cdp_config(CDP_EXAMPLE), resolver),
        "predicates": (parse_cdp_config(_predicate_config()), resolver),
    }


def _samples() -> list[dict[str, Any]]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(PAYLOADS.glob("mparticle_*.json"))]


def _event(rng: random.Random, number: int) -> dict[str, Any]:
    kind = rng.choice(["custom_event", "custom_event", "custom_event", "screen_view", "commerce_event",
                       "session_start", "session_end", "opt_out"])  # fmt: skip
    data: dict[str, Any] = {
        "timestamp_unixtime_ms": NOW_MS - rng.choice([1_000, 60_000, 2 * 3_600_000, 30 * 3_600_000])
    }
    if rng.random() < 0.8:
        data["source_message_id"] = f"m-{number}"
    if kind == "custom_event":
        data["event_name"] = rng.choice(_NAMES) or "unnamed"
        data["custom_event_type"] = rng.choice(["transaction", "other", "navigation"])
    elif kind == "screen_view":
        data["screen_name"] = rng.choice(["Checkout", "Home", "Checkout page"])
    elif kind == "commerce_event":
        products = [
            {"id": f"sku-{i}", "name": "Seat pack", "price": rng.choice([49.5, "12", None]), "quantity": i + 1,
             "custom_attributes": {"tier": rng.choice(_ATTRIBUTE_VALUES)}}
            for i in range(rng.choice([0, 1, 2, 3]))
        ]  # fmt: skip
        action: dict[str, Any] = {"action": rng.choice(["purchase", "add_to_cart"]), "products": products}
        if rng.random() < 0.7:
            action["transaction_id"] = "T-1"
        if rng.random() < 0.7:
            action["total_amount"] = rng.choice([129.5, -3, "10"])
        data["product_action"] = action
        data["currency_code"] = "EUR"
    elif kind == "session_end":
        data["session_duration_ms"] = 1234
    if rng.random() < 0.7:
        count = rng.choice([140, 320]) if rng.random() < 0.08 else rng.choice([1, 2, 3])
        names = ["plan", "seats", "coupon", "amount"] + [f"a{i}" for i in range(count)]
        data["custom_attributes"] = {
            name: rng.choice(_ATTRIBUTE_VALUES) if count < 100 else "y" * 300 for name in rng.sample(names, count)
        }
    if rng.random() < 0.1:
        data["event_id"] = rng.randrange(1 << 62)
        data["session_id"] = rng.randrange(1000)
        data["location"] = {"latitude": 1.5, "longitude": 2.5}
    return {"event_type": kind, "data": data}


def _vary_user(rng: random.Random, doc: dict[str, Any], number: int) -> None:
    identities = doc.get("user_identities")
    key = rng.choice(["qa-bot-01", "qa-x", "u-1", "u-marked", "u-registered", " ", "k" * 260, "c-9"])
    if isinstance(identities, dict):
        identities["customer_id"] = key
        if rng.random() < 0.1:
            identities.pop("customer_id")
        if rng.random() < 0.3:
            identities["other_id_2"] = f"anon-{number}"
        if rng.random() < 0.1:
            identities["email"] = rng.choice(["reg@example.com", "a@qa.example.com", "b@example.com"])
    elif isinstance(identities, list) and identities:
        identities[0]["identity"] = key
    if rng.random() < 0.15:
        doc.setdefault("user_attributes", {})["is_test_user"] = rng.choice([True, "true", "no", 1, "maybe"])
    if rng.random() < 0.1:
        doc.setdefault("user_attributes", {})["unplanned_attribute"] = "x"


def _vary(rng: random.Random, base: dict[str, Any], number: int) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    for name in ("source_request_id", "batch_id"):
        if name in doc:
            if rng.random() < 0.8:
                doc[name] = f"v-{number}"
            else:
                doc.pop(name)  # the batch key becomes a hash of its content
    if rng.random() < 0.3:
        doc["environment"] = rng.choice(["production", "development"])
    _vary_user(rng, doc, number)
    if rng.random() < 0.1:
        doc.pop("context", None)
    elif rng.random() < 0.05:
        doc["context"] = {"data_plan": {"plan_id": "bridge_plan", "plan_version": 2}}
    events = list(doc.get("events", []))
    roll = rng.random()
    if roll < 0.05:
        events = []
    elif roll < 0.1:
        doc.pop("events", None)
        return doc
    else:
        for position in range(rng.choice([0, 1, 2, 4])):
            events.insert(rng.randrange(len(events) + 1), _event(rng, number * 10 + position))
    doc["events"] = events
    return doc


def corpus() -> list[dict[str, Any]]:
    """The samples, then the seeded variants."""
    samples = _samples()
    rng = random.Random(SEED)
    return samples + [_vary(rng, rng.choice(samples), number) for number in range(VARIANTS)]


def digest(snapshot: Any) -> str:
    """A short stable digest of a snapshot (what the recorded file keeps)."""
    text = json.dumps(snapshot, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def route_corpus(route: Any) -> dict[str, list[Any]]:
    """``{configuration: [snapshot, or {"error": [...]} for a malformed batch]}`` of ``route`` over the corpus.

    ``route`` is called as :func:`flagbridge.cdp.router.route_batch` is.
    """
    documents = corpus()
    out: dict[str, list[Any]] = {}
    for name, (config, resolver) in configurations().items():
        rows: list[Any] = []
        for document in documents:
            try:
                rows.append(routing_snapshot(route(document, config, MARKED, NOW_MS, resolver, REGISTERED)))
            except BatchFormatError as exc:
                rows.append({"error": exc.errors})
        out[name] = rows
    return out


def routing_snapshot(result: RoutingResult) -> dict[str, Any]:
    """Everything a routing result says, as JSON (payload documents included)."""
    return json.loads(
        json.dumps(
            {
                "batch_key": result.batch_key,
                # the decision and its rule; the reason is prose, worded elsewhere
                "test_user": [result.tester.is_tester, result.tester.rule],
                "plan": [result.plan.plan, result.plan.batch_drop_reason, result.plan.dropped_events],
                "reasons": result.reasons,
                "counts": result.counts,
                "decisions": [list(d) for d in result.decisions],
                "payloads": {
                    name: {
                        "type": p.type,
                        "event_indexes": p.event_indexes,
                        "batch": p.batch,
                        "split_events": [list(s) for s in p.split_events],
                    }
                    for name, p in result.payloads.items()
                },
                "quarantine": [[q.kind, q.reason, q.destination, q.batch_key, q.payload] for q in result.quarantine],
                "split_rejections": {name: [list(r) for r in rs] for name, rs in result.split_rejections.items()},
            },
            sort_keys=False,
            default=str,
        )
    )
