"""The corpus format shared by every route's hostile cases, and checks shared by the hostile tests.

A corpus is a module ``tests/hostile/corpus_<route>.py`` that defines:

- ``ROUTE``: a :class:`Route`, the handler directory and the API Gateway route it serves;
- ``CASES``: a list of :class:`Case` (at least 50 per route), each a request and the answer it must get;
- optionally ``prepare(aws, lambda_context)``: state to create before each case (e.g. profiles to read);
- optionally ``verify_accepted(case, body, aws)``: route-specific checks of a 2xx answer (e.g. conservation);
- optionally ``ID_PREFIX``: the prefix of its test ids (default: the handler; set it when a handler serves
  several routes);
- optionally ``error_body_keys(case)``: the keys of a refusal's JSON body (default ``{"error", "message"}``)
  and ``verify_refused(case, body, aws)``: route-specific checks of a 4xx answer (e.g. nothing enqueued).

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
from urllib.parse import unquote

from local.apigw import http_api_event
from tests.conftest import QUARANTINE_BUCKET, drain_queue, quarantine_objects, queued_records

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

# The mParticle ingest routes' credentials in the hostile environment (as the sample events use them).
MPARTICLE_KEY = "local-mparticle-key"
MPARTICLE_SECRET = "local-mparticle-secret"
MPARTICLE_WEBHOOK_AUTH = "Bearer local-mparticle-webhook"
BATCHES_QUEUE = "flagbridge-batches-hostile"


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
                parameters[expected[1:-1]] = unquote(actual)  # API Gateway decodes path parameters
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


def add_mparticle_ingest_resources(aws: dict[str, Any], monkeypatch: Any) -> None:
    """Add to a ``moto_resources`` environment what the mParticle ingest routes need, in place.

    The batches queue (``aws["batches_url"]``), the API key/secret and webhook Authorization secrets, and
    their environment variables (the functions read the secrets from Secrets Manager, as in AWS). Call it
    right after ``moto_resources`` (it resets the runtime caches).
    """
    from flagbridge import runtime

    secrets = boto3_client("secretsmanager")
    credentials = json.dumps({"api_key": MPARTICLE_KEY, "api_secret": MPARTICLE_SECRET})
    env = {
        "BATCHES_QUEUE_URL": aws["sqs"].create_queue(QueueName=BATCHES_QUEUE)["QueueUrl"],
        "MPARTICLE_CREDENTIALS_SECRET": secrets.create_secret(
            Name="flagbridge/hostile/mparticle", SecretString=credentials
        )["ARN"],
        "MPARTICLE_WEBHOOK_AUTH_SECRET": secrets.create_secret(
            Name="flagbridge/hostile/mparticle-webhook", SecretString=MPARTICLE_WEBHOOK_AUTH
        )["ARN"],
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    aws.update(env)
    aws["batches_url"] = env["BATCHES_QUEUE_URL"]
    runtime.reset()


ORACLE_TOKEN = "local-oracle-token"
ORACLE_VERDICTS_TABLE = "flagbridge-hostile-oracle-verdicts"


def add_oracle_api_resources(aws: dict[str, Any], monkeypatch: Any) -> None:
    """Add what ``GET /tests`` needs: the verdicts table, the bearer token secret, their variables."""
    from flagbridge import runtime

    aws["ddb"].create_table(
        TableName=ORACLE_VERDICTS_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    secret = boto3_client("secretsmanager").create_secret(Name="flagbridge/hostile/oracle", SecretString=ORACLE_TOKEN)
    monkeypatch.setenv("ORACLE_VERDICTS_TABLE", ORACLE_VERDICTS_TABLE)
    monkeypatch.setenv("ORACLE_API_TOKEN_SECRET", secret["ARN"])
    runtime.reset()


RUNS_TOKEN = "local-traffic-token"
RUNS_TABLE = "flagbridge-hostile-runs"
RUNS_MANIFESTS = "flagbridge-hostile-manifests"
RUNS_QUEUE = "flagbridge-hostile-shards"
RUNS_TESTERS = ["qa-bot-01", "qa-bot-02"]


def add_runs_resources(aws: dict[str, Any], monkeypatch: Any, config_dir: Path) -> None:
    """Add what ``POST /runs`` needs: runs table, manifest bucket, shard queue, token, a traffic allowlist.

    The configuration is the shipped one plus ``traffic`` (allowlist 127.0.0.1 and localhost, a tester pool).
    """
    import yaml

    from flagbridge import runtime

    config = yaml.safe_load((HERE.parents[1] / "layers/shared/config/flagbridge.yaml").read_text(encoding="utf-8"))
    config["traffic"] = {"allowlist": ["localhost", "127.0.0.1"], "testers": RUNS_TESTERS}
    path = config_dir / "flagbridge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    aws["ddb"].create_table(
        TableName=RUNS_TABLE,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    aws["s3"].create_bucket(Bucket=RUNS_MANIFESTS)
    aws["shards_url"] = aws["sqs"].create_queue(QueueName=RUNS_QUEUE)["QueueUrl"]
    env = {
        "FLAGBRIDGE_CONFIG": str(path),
        "RUNS_TABLE": RUNS_TABLE,
        "MANIFEST_BUCKET": RUNS_MANIFESTS,
        "SHARD_QUEUE_URL": aws["shards_url"],
        "TRAFFIC_PARALLELISM": "4",
        "FLAGBRIDGE_TRAFFIC_API_TOKEN": RUNS_TOKEN,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime.reset()


def boto3_client(service: str) -> Any:
    import boto3

    return boto3.client(service)


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
    from flagbridge.impressions.records import decode_message, row_of

    received, accepted, quarantined = summary["received"], summary["accepted"], summary["quarantined"]
    assert received == len(items), summary
    assert received == accepted + quarantined, summary

    queued: list[dict[str, Any]] = []
    for message in drain_queue(aws["sqs"], aws["queue_url"]):
        body = message["Body"]
        assert len(body.encode("utf-8")) <= SQS_MAX_BODY_BYTES
        assert sqs_forbidden_characters(body) == [], "SQS would refuse this message body"
        read = ImpressionMessage.model_validate_json(body)  # the processor can read it...
        assert read.v == 2
        # ...and without the model, the same (it declines only text that looks like an escaped surrogate)
        rows = decode_message(body)
        assert rows == [row_of(impression) for impression in read.impressions] or (
            rows is None and "\\ud" in body.lower()
        )
        queued.extend(queued_records(body))
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


# ---- mParticle ingest routes ------------------------------------------------------------------------

# mParticle's error codes in the ``errors`` list of a refusal, by status.
MPARTICLE_ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 413: "PAYLOAD_TOO_LARGE"}


def mparticle_error_body_keys(case: Case) -> set[str]:
    """A refusal by the function carries mParticle's ``errors`` list too; API Gateway's own 404 does not."""
    return {"error", "message"} if case.gateway_404 else {"error", "message", "errors"}


def check_mparticle_refusal(case: Case, body: Mapping[str, Any], aws: Mapping[str, Any]) -> None:
    """A refused mParticle request: mParticle's ``errors`` list, and nothing on the batches queue."""
    assert drain_queue(aws["sqs"], aws["batches_url"]) == [], "a refused request enqueued a batch"
    if case.gateway_404:
        return
    errors = body["errors"]
    assert isinstance(errors, list) and 1 <= len(errors) <= 50, body
    expected_code = MPARTICLE_ERROR_CODES.get(case.status, "BAD_REQUEST")
    for error in errors:
        assert set(error) == {"code", "message"}, error
        assert error["code"] == expected_code, (case.status, error)
        assert isinstance(error["message"], str) and error["message"].strip(), error


def check_batches_conservation(case: Case, summary: Mapping[str, Any], aws: Mapping[str, Any], source: str) -> None:
    """An accepted mParticle request: every batch is enqueued as received or quarantined with its reason, once.

    ``case.items`` are the batches of the request (one for the single-batch routes), ``case.accepted`` how many
    must be enqueued and ``case.reasons`` the quarantine reasons of the others.
    """
    assert case.items is not None
    items = case.items
    assert summary["requestId"] == f"hostile-{case.name}", summary
    assert (summary["received"], summary["accepted"], summary["quarantined"]) == (
        len(items),
        case.accepted,
        len(items) - (case.accepted or 0),
    ), summary

    queued = []
    for message in drain_queue(aws["sqs"], aws["batches_url"]):
        body = message["Body"]
        assert len(body.encode("utf-8")) <= SQS_MAX_BODY_BYTES
        assert sqs_forbidden_characters(body) == [], "SQS would refuse this message body"
        envelope = json.loads(body)
        assert (envelope["v"], envelope["source"], envelope["request_id"]) == (1, source, summary["requestId"])
        queued.append(envelope["batch"])

    objects = quarantine_objects(aws["s3"])
    rejected: list[dict[str, Any]] = []
    if summary["quarantined"]:
        assert len(objects) == 1, list(objects)
        ((key, document),) = objects.items()
        assert key.startswith("mparticle-batches/"), key
        assert document["request_id"] == summary["requestId"]
        rejected = document["items"]
    else:
        assert objects == {}
        assert "errors" not in summary, summary
    indices = [entry["index"] for entry in rejected]
    assert len(set(indices)) == len(indices) == summary["quarantined"], "a batch was quarantined twice"
    for entry in rejected:
        assert entry["item"] == items[entry["index"]], f"batch {entry['index']} was not kept as received"
        assert entry["detail"], entry
    assert dict(Counter(entry["reason"] for entry in rejected)) == dict(case.reasons or {})
    if rejected:
        assert [error["index"] for error in summary["errors"]] == indices, summary
        assert all(error["code"] and error["message"] for error in summary["errors"]), summary
    kept = [item for index, item in enumerate(items) if index not in set(indices)]
    # SQS does not keep order: compare as multisets (each accepted batch enqueued once, as received)
    assert sorted(map(_canonical, queued)) == sorted(map(_canonical, kept)), "enqueued batches differ from accepted"


def _canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True)
