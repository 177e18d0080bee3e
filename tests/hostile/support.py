"""The corpus format shared by every route's hostile cases, and checks shared by the hostile tests.

A corpus is a module ``tests/hostile/corpus_<route>.py`` that defines:

- ``ROUTE``: a :class:`Route`, the handler directory and the API Gateway route it serves;
- ``CASES``: a list of :class:`Case` (at least 50 per route), each a request and the answer it must get;
- optionally ``prepare(aws, lambda_context)``: state to create before each case (e.g. profiles to read);
- optionally ``verify_accepted(case, body, aws)``: route-specific checks of a 2xx answer (e.g. conservation).

``test_hostile_routes.py`` discovers every ``corpus_*.py`` module, so a new route only adds its corpus file.
Events are built with :func:`local.apigw.http_api_event`, exactly as API Gateway (and the local runner) build them.
"""

from __future__ import annotations

import importlib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from local.apigw import http_api_event
from tests.conftest import QUARANTINE_BUCKET, drain_queue, quarantine_objects

HERE = Path(__file__).resolve().parent
FIXED_NOW = 1767225700.0
# A distinctive client address: the PII scan looks for it in the logs.
CLIENT_IP = "198.51.100.77"
# What API Gateway itself answers (before any function runs) for a method/path that matches no route.
GATEWAY_NOT_FOUND = {"message": "Not Found"}

SQS_MAX_BODY_BYTES = 262_144
# Characters SQS accepts in a message body: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
_SQS_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Body = bytes | Callable[[], bytes]


@dataclass(frozen=True)
class Route:
    """One HTTP API route: the function behind it and its method and path template (as in template.yaml)."""

    handler: str
    method: str
    path: str

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when ``path`` matches this route's template, else None."""
        template = self.path.strip("/").split("/")
        segments = path.strip("/").split("/")
        if len(template) != len(segments) or path != "/" + path.strip("/"):
            return None
        parameters: dict[str, str] = {}
        for expected, actual in zip(template, segments, strict=True):
            if expected.startswith("{") and expected.endswith("}"):
                if not actual:
                    return None
                parameters[expected[1:-1]] = actual
            elif expected != actual:
                return None
        return parameters

    def path_parameters(self, path: str) -> dict[str, str] | None:
        """The ``pathParameters`` API Gateway would send for ``path`` (absent when there are none)."""
        return self.match(path) or None


@dataclass(frozen=True)
class Case:
    """One hostile request and the answer the bridge must give.

    ``status`` is the exact status; ``error`` the ``error`` code of a 4xx JSON body. ``gateway_404`` marks
    requests API Gateway answers itself with 404 ``{"message":"Not Found"}`` (no route for the method and
    path): the function never sees them in AWS or in the local runner, but its own fallback is still tested
    (404 ``not_found``). For accepted requests, ``items`` is the decoded document and ``accepted``,
    ``quarantined`` and ``reasons`` what must become of it. ``event_hook`` alters the built event for what
    API Gateway would never send but a hostile or broken integration might.
    """

    name: str
    status: int
    error: str | None = None
    path: str = ""
    method: str | None = None
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Body = b""
    event_hook: Callable[[dict[str, Any]], None] | None = None
    gateway_404: bool = False
    items: list[Any] | None = None
    accepted: int | None = None
    quarantined: int | None = None
    reasons: Mapping[str, int] | None = None
    xfail: str | None = None

    def body_bytes(self) -> bytes:
        return self.body() if callable(self.body) else self.body


def build_event(route: Route, case: Case) -> dict[str, Any]:
    """The API Gateway HTTP API v2 event of ``case`` (same builder as the local runner)."""
    event = http_api_event(
        method=case.method or route.method,
        path=case.path,
        route_key=route.route_key,
        raw_query=case.query,
        headers=case.headers,
        body=case.body_bytes(),
        path_parameters=route.path_parameters(case.path),
        source_ip=CLIENT_IP,
        request_id=f"hostile-{case.name}",
        now=FIXED_NOW,
    )
    if case.event_hook is not None:
        case.event_hook(event)
    return event


def corpora() -> list[ModuleType]:
    """Every ``tests/hostile/corpus_*.py`` module: adding a route means adding its corpus file."""
    return [importlib.import_module(f"tests.hostile.{path.stem}") for path in sorted(HERE.glob("corpus_*.py"))]


def gateway_404_cases() -> list[tuple[Route, Case]]:
    """Every request API Gateway answers itself with 404 ``{"message":"Not Found"}`` (no route matches).

    For end-to-end tests against the local runner, which must answer these exactly like API Gateway.
    """
    return [(corpus.ROUTE, case) for corpus in corpora() for case in corpus.CASES if case.gateway_404]


def sqs_forbidden_characters(body: str) -> list[str]:
    """Characters SQS would refuse in a message body (moto does not check them)."""
    return sorted({f"U+{ord(char):04X}" for char in _SQS_FORBIDDEN.findall(body)})


def clear_quarantine(s3: Any) -> None:
    for entry in s3.list_objects_v2(Bucket=QUARANTINE_BUCKET).get("Contents", []):
        s3.delete_object(Bucket=QUARANTINE_BUCKET, Key=entry["Key"])


def check_impressions_conservation(
    items: list[Any], summary: Mapping[str, Any], aws: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check an accepted webhook request: every item is queued or quarantined, once, and nothing else is.

    Drains the queue and reads the quarantine; returns (queued impressions, quarantined entries).
    Quarantined entries must hold the original item at their index and a non-empty reason; the queued
    impressions must be exactly the other items, in order.
    """
    from flagbridge.impressions.models import ImpressionMessage

    received, accepted, quarantined = summary["received"], summary["accepted"], summary["quarantined"]
    assert received == len(items), summary
    assert received == accepted + quarantined, summary

    queued: list[dict[str, Any]] = []
    for message in drain_queue(aws["sqs"], aws["queue_url"]):
        body = message["Body"]
        assert len(body.encode("utf-8")) <= SQS_MAX_BODY_BYTES
        assert sqs_forbidden_characters(body) == [], "SQS would refuse this message body"
        ImpressionMessage.model_validate_json(body)  # the processor can read it
        queued.extend(json.loads(body)["impressions"])
    assert len(queued) == accepted

    objects = quarantine_objects(aws["s3"])
    rejected: list[dict[str, Any]] = []
    if quarantined:
        assert len(objects) == 1, list(objects)
        (document,) = objects.values()
        rejected = document["items"]
        assert document["request_id"] == summary["requestId"]
    else:
        assert objects == {}
    assert len(rejected) == quarantined
    indices = [entry["index"] for entry in rejected]
    assert len(set(indices)) == len(indices), "an item was quarantined twice"
    for entry in rejected:
        assert isinstance(entry["reason"], str) and entry["reason"], entry
        assert isinstance(entry["detail"], str), entry
        assert entry["item"] == items[entry["index"]], f"item {entry['index']} was not kept as received"
    assert summary.get("quarantineReasons", {}) == dict(Counter(entry["reason"] for entry in rejected))

    rejected_indices = set(indices)
    kept = [item for index, item in enumerate(items) if index not in rejected_indices]
    assert [(q["key"], q["flag"], q["time"]) for q in queued] == [(i["key"], i["split"], i["time"]) for i in kept]
    return queued, rejected
