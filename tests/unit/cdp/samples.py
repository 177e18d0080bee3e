"""Sample mParticle batches and plan documents for the CDP unit tests (constructed values)."""

from __future__ import annotations

import copy
from typing import Any

NOW_MS = 1_767_225_700_000
TS = NOW_MS - 60_000  # one minute ago

# What the official Python SDK (mparticle 0.16.1) puts on the wire: note "customerid".
SDK_BATCH: dict[str, Any] = {
    "events": [
        {
            "data": {
                "timestamp_unixtime_ms": TS,
                "custom_attributes": {"plan": "pro"},
                "custom_event_type": "transaction",
                "event_name": "checkout_clicked",
            },
            "event_type": "custom_event",
        }
    ],
    "source_request_id": "req-1",
    "environment": "development",
    "user_attributes": {"is_test_user": True},
    "user_identities": {"customerid": "u-1", "other_id_2": "anon-9"},
}

# mParticle's outbound webhook shape: identities as an array, batch_id, message_id.
WEBHOOK_BATCH: dict[str, Any] = {
    "schema_version": 2,
    "environment": "production",
    "batch_id": -5158959812941698317,
    "timestamp_unixtime_ms": NOW_MS - 1000,
    "mpid": 7346244611012968789,
    "source_info": {"channel": "server_to_server", "partner": None},
    "user_identities": [
        {"identity_type": "customer_id", "identity": "qa-bot-01", "timestamp_unixtime_ms": TS},
        {"identity_type": "email", "identity": "qa@example.com", "timestamp_unixtime_ms": TS},
    ],
    "user_attributes": {"is_test_user": "true"},
    "events": [
        {
            "event_type": "custom_event",
            "data": {
                "event_name": "add_to_plan",
                "custom_event_type": "transaction",
                "timestamp_unixtime_ms": TS,
                "event_start_unixtime_ms": TS,
                "event_id": 6004677780660780000,
                "message_id": "msg-1",
                "custom_attributes": {"plan": "pro"},
            },
        }
    ],
    "system_notifications": [],
}


def commerce_event(n_products: int = 3, action: str = "purchase", ts: int = TS) -> dict[str, Any]:
    """A commerce event with ``n_products`` products."""
    return {
        "event_type": "commerce_event",
        "data": {
            "timestamp_unixtime_ms": ts,
            "source_message_id": f"com-{action}-{n_products}",
            "currency_code": "EUR",
            "product_action": {
                "action": action,
                "transaction_id": "T-1",
                "total_amount": 60.0,
                "products": [
                    {"id": f"sku-{i}", "name": f"Product {i}", "price": 10.0 * (i + 1), "quantity": 1}
                    for i in range(n_products)
                ],
            },
        },
    }


def custom_event(
    name: str = "add_to_plan",
    attributes: dict[str, Any] | None = None,
    ts: int = TS,
    custom_event_type: str = "transaction",
    message_id: str | None = None,
) -> dict[str, Any]:
    """A custom event envelope."""
    data: dict[str, Any] = {
        "event_name": name,
        "custom_event_type": custom_event_type,
        "timestamp_unixtime_ms": ts,
        "custom_attributes": dict(attributes or {}),
    }
    if message_id is not None:
        data["source_message_id"] = message_id
    return {"event_type": "custom_event", "data": data}


def batch(
    events: list[dict[str, Any]],
    *,
    customer_id: str | None = "qa-bot-01",
    environment: str = "production",
    user_attributes: dict[str, Any] | None = None,
    plan: dict[str, Any] | None = None,
    source_request_id: str | None = "req-42",
) -> dict[str, Any]:
    """An Events API batch."""
    doc: dict[str, Any] = {"environment": environment, "events": copy.deepcopy(events)}
    if customer_id is not None:
        doc["user_identities"] = {"customer_id": customer_id}
    if user_attributes is not None:
        doc["user_attributes"] = user_attributes
    if plan is not None:
        doc["context"] = {"data_plan": plan}
    if source_request_id is not None:
        doc["source_request_id"] = source_request_id
    return doc


PLAN_DOCUMENT: dict[str, Any] = {
    "version_document": {
        "data_points": [
            {
                "description": "test-user add_to_plan",
                "match": {
                    "type": "custom_event",
                    "criteria": {"event_name": "add_to_plan", "custom_event_type": "transaction"},
                },
                "validator": {
                    "type": "json_schema",
                    "definition": {
                        "properties": {
                            "data": {
                                "properties": {
                                    "custom_attributes": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "plan": {"type": "string", "enum": ["free", "pro"]},
                                            "seats": {"type": "integer", "minimum": 1},
                                            "trial": {"type": "boolean"},
                                            "code": {"type": "string"},
                                        },
                                        "required": ["plan"],
                                    }
                                }
                            }
                        }
                    },
                },
            },
            {"match": {"type": "screen_view", "criteria": {"screen_name": "Cart"}}},
            {"match": {"type": "product_action", "criteria": {"action": "purchase"}}},
            {
                "match": {"type": "user_attributes", "criteria": {}},
                "validator": {
                    "type": "json_schema",
                    "definition": {"additionalProperties": False, "properties": {"is_test_user": {"type": "boolean"}}},
                },
            },
        ]
    }
}
