"""The bridge's HTTP API as an OpenAPI 3.1 description, generated from the code: ``make openapi`` writes
``docs/openapi.json``; ``make run`` serves it at ``/openapi.json``.

Request bodies are the JSON Schema of the models the handlers validate with (Split's impression is the layer's own
pydantic model) or, where a handler checks a document by hand (mParticle batches, tester registrations, run
requests), a pydantic model here that states the same rules with the layer's own limits (sizes, ranges, patterns),
so that a changed limit changes the description. Responses are the documents the handlers build, and every
refusal's JSON body. Schemathesis (``tests/api``) holds the description and the code to each other: a request the
description allows must not be refused, one it forbids must be, every response must match it.

Laptop-only: the layer never imports this module, so it costs the handlers nothing at cold start.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter
from pydantic.json_schema import JsonDict

from flagbridge.cdp.batch import CUSTOM_EVENT_TYPES, EVENT_TYPES, PRODUCT_ACTIONS
from flagbridge.config import LimitsConfig
from flagbridge.forwarding.ingest import MAX_BULK_BATCHES
from flagbridge.impressions.models import SplitImpression
from flagbridge.runs import spec as runs
from flagbridge.testers import registry
from local.resources import ROOT

OUTPUT = ROOT / "docs" / "openapi.json"
JSON = "application/json"
LIMITS = LimitsConfig()
TESTERS_MAX_BODY_BYTES = 4096  # functions/tester_registry: MAX_BODY_BYTES
RUNS_MAX_BODY_BYTES = 2_500_000  # functions/traffic_runs: MAX_BODY_BYTES


def _pattern(regex: str) -> str:
    """A Python ``re`` pattern as an anchored ECMA-262 one."""
    return "^" + regex.removeprefix("^").removesuffix("$") + "$"


# ---- responses ------------------------------------------------------------------------------------------------


class Error(BaseModel):
    """Every refusal and failure of the bridge's functions."""

    error: str = Field(description="a stable code, e.g. unauthorized, invalid_json, tester_not_found")
    message: str = Field(description="what was wrong, for a person")


class GatewayError(BaseModel):
    """API Gateway's own refusals: no route for the method and path, a body over 10 MB, a failed function."""

    message: str


class MParticleErrorItem(BaseModel):
    code: str
    message: str


class MParticleError(Error):
    """A refused mParticle request: our error plus mParticle's ``errors`` list, which its SDKs read."""

    errors: list[MParticleErrorItem]


class ImpressionsAccepted(BaseModel):
    requestId: str
    received: int = Field(ge=0)
    accepted: int = Field(ge=0)
    quarantined: int = Field(ge=0)
    quarantineReasons: dict[str, int] | None = Field(None, description="count per reason, when any was quarantined")


class BatchError(BaseModel):
    index: int = Field(ge=0, description="the batch's position in the request")
    code: str
    message: str


class BatchesAccepted(BaseModel):
    requestId: str
    received: int = Field(ge=0)
    accepted: int = Field(ge=0)
    quarantined: int = Field(ge=0)
    errors: list[BatchError] | None = Field(None, description="bulk only: the quarantined batches and why")


class TestMark(BaseModel):
    isTestUser: bool
    rule: str | None
    markedAt: int | str | None
    expiresAt: int | str | None


class Assignment(BaseModel):
    treatment: str
    label: str | None
    version: int | None
    environment: str | None
    firstSeen: int
    lastSeen: int
    count: int


class FlagState(BaseModel):
    treatment: str
    label: str | None
    version: int | None
    environment: str | None
    environmentId: str | None
    treatmentTime: int
    firstExposure: int
    lastExposure: int
    exposures: int
    history: list[Assignment]
    updatedAt: int | str | None


class Profile(BaseModel):
    trafficType: str
    key: str
    identityType: str | None
    testUser: TestMark
    flags: dict[str, FlagState]


class TestsList(BaseModel):
    tests: list[dict[str, Any]] = Field(description="every configured test with its verdict per treatment and metric")


class Tester(BaseModel):
    trafficType: str
    key: str
    expiresAt: str = Field(description="ISO-8601, UTC")
    expiresAtEpoch: int
    reason: str
    registeredBy: str
    registeredAt: str


class TesterRemoved(BaseModel):
    trafficType: str
    key: str
    removed: Literal[True]


class TestersPage(BaseModel):
    testers: list[Tester]
    nextCursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class RunStarted(BaseModel):
    run_id: str
    state: str
    requests: int
    rate: float
    parallelism: int
    rate_per_worker: float
    shards: int
    shard_size: int
    sqs_requests: int
    expected_sqs_requests: int
    seed: int
    plan_hash: str
    manifest: str
    status: str = Field(description="the run's status path: GET it")
    warnings: list[str]


class RunStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    run_id: str
    state: str
    planned: int | None
    sent: int
    statuses: dict[str, int]
    errors: int
    shards: dict[str, Any]
    stopped: list[str]


# ---- request bodies -------------------------------------------------------------------------------------------

_Object = dict[str, Any]
_Attributes = _Object | None
_Int = Annotated[int, Field(strict=True)]


class EventData(BaseModel):
    model_config = ConfigDict(extra="allow")

    timestamp_unixtime_ms: _Int | None = None
    custom_attributes: _Attributes = None
    source_message_id: str | None = None
    message_id: str | None = None


class CustomEventData(EventData):
    event_name: str = Field(min_length=1)
    custom_event_type: Literal[tuple(sorted(CUSTOM_EVENT_TYPES))]  # type: ignore[valid-type]


class ScreenViewData(EventData):
    screen_name: str


class ProductAction(BaseModel):
    model_config = ConfigDict(extra="allow")

    action: Literal[tuple(sorted(PRODUCT_ACTIONS))]  # type: ignore[valid-type]
    products: list[_Object] | None = None


# "Carries" as the batch check reads it: a value Python takes as true (not null, false, 0, "", {} or []).
_CARRIED: JsonDict = {"not": {"enum": [None, False, 0, "", {}, []]}}
_ONE_OF_THREE: list[JsonValue] = [
    {"not": {"required": [a, b], "properties": {a: _CARRIED, b: _CARRIED}}}
    for a, b in (
        ("product_action", "promotion_action"),
        ("product_action", "product_impressions"),
        ("promotion_action", "product_impressions"),
    )
]


class CommerceEventData(EventData):
    """At most one of ``product_action``, ``promotion_action`` and ``product_impressions``."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"allOf": _ONE_OF_THREE})

    product_action: ProductAction | None = None
    promotion_action: _Object | None = None
    product_impressions: list[Any] | None = None


class CustomEvent(BaseModel):
    event_type: Literal["custom_event"]
    data: CustomEventData


class ScreenView(BaseModel):
    event_type: Literal["screen_view"]
    data: ScreenViewData


class CommerceEvent(BaseModel):
    event_type: Literal["commerce_event"]
    data: CommerceEventData


class OtherEvent(BaseModel):
    event_type: Literal[tuple(sorted(EVENT_TYPES - {"custom_event", "screen_view", "commerce_event"}))]  # type: ignore[valid-type]
    data: EventData


Event = Annotated[CustomEvent | ScreenView | CommerceEvent | OtherEvent, Field(discriminator="event_type")]


class Identity(BaseModel):
    model_config = ConfigDict(extra="allow")

    identity_type: str = Field(min_length=1)
    identity: str | _Int | None = None


class DataPlan(BaseModel):
    model_config = ConfigDict(extra="allow")

    plan_id: str | None = Field(None, min_length=1)
    plan_version: _Int | Annotated[str, Field(pattern=r"^\s*[0-9]{1,18}\s*$")] | None = Field(
        None, description="an integer, or its ASCII digits"
    )


class Context(BaseModel):
    model_config = ConfigDict(extra="allow")

    data_plan: DataPlan | None = None


class MParticleBatch(BaseModel):
    """One mParticle batch: the Events API's shape (identities an object) or the webhook's (an array)."""

    model_config = ConfigDict(extra="allow")

    environment: Literal["production", "development"] = "production"
    events: list[Event] | None = None
    user_identities: dict[str, str | _Int | None] | list[Identity] | None = None
    user_attributes: _Attributes = None
    context: Context | None = None
    timestamp_unixtime_ms: _Int | None = None
    source_request_id: str | None = None
    batch_id: str | _Int | None = None
    mpid: str | _Int | None = None


# What registry.check_reason keeps: 1-200 characters after stripping, none of them a control character.
_PRINTABLE = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]"
_VISIBLE = r"[^\s\x00-\x1f\x7f-\x9f\u2028\u2029]"
REASON = f"{_VISIBLE}(?:{_PRINTABLE}{{0,{registry.MAX_REASON_CHARS - 2}}}{_VISIBLE})?"


class TesterRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expiresAt: Annotated[str, Field(min_length=1, max_length=registry.MAX_EXPIRY_TEXT)] | float = Field(
        description=f"ISO-8601 with a zone, or epoch seconds; in the future, at most "
        f"{registry.MAX_REGISTRATION_SECONDS // 86400} days ahead"
    )
    reason: str = Field(
        pattern=f"^\\s*{REASON}\\s*$", description="why this user is a tester (audited); surrounding spaces are dropped"
    )


_Source = Annotated[str, Field(max_length=runs.MAX_SOURCE_BYTES)] | _Object
_PlanKey = Annotated[str, Field(pattern=_pattern(runs.PLAN_KEY.pattern))]


class RunTester(BaseModel):
    key: str = Field(min_length=1, max_length=256)
    email: str | None = None


class RunRequest(BaseModel):
    """A run: the plan and request model (text, a JSON object, or a key under ``plans/`` in the manifest bucket)."""

    model_config = ConfigDict(extra="forbid")

    plan: _Source | None = None
    plan_format: Literal[runs.FORMATS] | None = None  # type: ignore[valid-type]
    plan_key: _PlanKey | None = None
    model: _Source | None = None
    model_format: Literal[runs.FORMATS] | None = None  # type: ignore[valid-type]
    model_key: _PlanKey | None = None
    requests: int = Field(ge=1, le=runs.MAX_REQUESTS)
    rate: float = Field(gt=0, description="requests per second over all workers")
    target: str | None = Field(None, max_length=2048, description="an http(s) URL in traffic.allowlist")
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    testers: list[str | RunTester] | None = Field(None, max_length=1000)
    until_decided: bool | None = Field(None, description="requests is a budget: stop once the verdict is decided")
    traffic_type: str = Field("user", pattern=_pattern(runs.TRAFFIC_TYPE.pattern))
    run_id: str | None = Field(None, pattern=_pattern(runs.RUN_ID.pattern))
    shard_size: int | None = Field(None, ge=1, le=runs.MAX_REQUESTS)
    checkpoint_every: int | None = Field(None, ge=1, le=1000)
    max_duration_s: float | None = Field(None, gt=0, le=runs.MAX_DURATION_S)
    max_unanswered: int | None = Field(
        None, ge=0, le=runs.MAX_REQUESTS, description="requests in a row with no answer that stop a shard (0: never)"
    )
    clock_ms: int | None = Field(None, ge=0, le=2**53)


# ---- operations -----------------------------------------------------------------------------------------------

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "splitToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "the WebhookTokenSecret, in the URL (Split's webhook form only takes a URL)",
    },
    "splitTokenHeader": {"type": "apiKey", "in": "header", "name": "X-Flagbridge-Token"},
    "mparticleBasic": {"type": "http", "scheme": "basic", "description": "MParticleCredentialsSecret's key:secret"},
    "mparticleWebhook": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "the whole Authorization value configured on mParticle's webhook output "
        "(MParticleWebhookAuthSecret)",
    },
    "profileBearer": {"type": "http", "scheme": "bearer", "description": "ProfileApiTokenSecret"},
    "oracleBearer": {"type": "http", "scheme": "bearer", "description": "OracleApiTokenSecret"},
    "testersBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "TestersApiTokenSecret: one token, or a JSON object of named tokens (the audit's actor)",
    },
    "trafficBearer": {"type": "http", "scheme": "bearer", "description": "TrafficApiTokenSecret"},
}

STATUS_TEXT = {
    200: "OK",
    202: "accepted: durably queued before the answer",
    400: "refused: the error names the problem",
    401: "no or wrong credentials",
    403: "wrong credentials",
    404: "not found",
    409: "conflict",
    413: "too large",
    415: "unsupported content encoding",
    500: "the bridge failed; nothing was processed",
    503: "could not be stored durably; repeat the request",
}

PATH = {
    "name": "trafficType",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
    "example": "user",
}
KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}, "example": "qa-1"}
# A run that starts where traffic.allowlist has 127.0.0.1 (tests/api points its target at the runner itself).
RUN_EXAMPLE = {
    "run_id": "example-run",
    # JSON objects: a deployed stack parses no YAML text (docs/runs.md), and neither does `make run`.
    "plan": {
        "name": "example",
        "max_attacks": 1,
        "attack_sets": {"Values": ["", "-1"]},
        "query": {"attack_set": "Values"},
    },
    "model": {"name": "example", "requests": [{"name": "home", "method": "GET", "url": "http://localhost/"}]},
    "requests": 2,
    "rate": 2,
    "target": "http://127.0.0.1:9",
    "testers": ["qa-bot-01"],
    "seed": 7,
}


def _schema(model: Any, defs: dict[str, Any], mode: Literal["validation", "serialization"]) -> dict[str, Any]:
    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    schema = adapter.json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    defs.update(schema.pop("$defs", {}))
    if isinstance(model, type) and issubclass(model, BaseModel):
        defs[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}
    return schema


def _responses(ok: dict[int, Any], errors: dict[int, Any], defs: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, model in sorted({**ok, **errors}.items()):
        responses[str(status)] = {
            "description": STATUS_TEXT[status],
            "content": {JSON: {"schema": _schema(model, defs, "serialization")}},
        }
    return responses


def _body(
    model: Any, defs: dict[str, Any], max_bytes: int, example: Any = None, decompressed: int | None = None
) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": _schema(model, defs, "validation")}
    if example is not None:
        media["example"] = example
    description = f"JSON, at most {max_bytes} bytes (413 above)"
    if decompressed is not None:
        description += f"; or gzip-compressed JSON (Content-Encoding: gzip), at most {decompressed} bytes decompressed"
    return {"required": True, "description": description, "content": {JSON: media}}


def _operations(defs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    common = {500: Error}
    mp_errors = {400: MParticleError, 401: MParticleError, 403: MParticleError, 413: MParticleError, 500: Error}
    paths: dict[str, dict[str, Any]] = {}

    def add(method: str, path: str, operation: dict[str, Any]) -> None:
        paths.setdefault(path, {})[method] = operation

    add(
        "post",
        "/split/impressions",
        {
            "operationId": "receiveSplitImpressions",
            "tags": ["impressions"],
            "summary": "Split's impressions webhook: a JSON array of impressions, usually gzipped",
            "description": "200 with a summary once the valid impressions are queued (Split treats anything "
            "else as a failure and retries once); items that do not match the schema are quarantined with the "
            "reason, never lost.",
            "security": [{"splitToken": []}, {"splitTokenHeader": []}],
            "requestBody": _body(
                list[SplitImpression], defs, LIMITS.max_body_bytes, decompressed=LIMITS.max_decompressed_bytes
            ),
            "responses": _responses(
                {200: ImpressionsAccepted}, {400: Error, 401: Error, 413: Error, 415: Error, 503: Error, **common}, defs
            ),
        },
    )
    add(
        "get",
        "/profiles/{trafficType}/{key}",
        {
            "operationId": "getProfile",
            "tags": ["profiles"],
            "summary": "One user's profile: flag exposures per flag and the test-user mark",
            "security": [{"profileBearer": []}],
            "parameters": [PATH, KEY],
            "responses": _responses({200: Profile}, {400: Error, 401: Error, 404: Error, **common}, defs),
        },
    )
    for path, operation_id, summary, batch, security in (
        ("/mparticle/v2/events", "receiveMParticleEvents", "mParticle's Events API: one batch", True, "mparticleBasic"),
        (
            "/mparticle/v2/bulkevents",
            "receiveMParticleBulkEvents",
            f"mParticle's Events API: up to {MAX_BULK_BATCHES} batches; malformed ones are quarantined",
            False,
            "mparticleBasic",
        ),
        (
            "/mparticle/webhook",
            "receiveMParticleWebhook",
            "mParticle's webhook output: one batch",
            True,
            "mparticleWebhook",
        ),
    ):
        body: Any = MParticleBatch if batch else Annotated[list[MParticleBatch], Field(max_length=MAX_BULK_BATCHES)]
        add(
            "post",
            path,
            {
                "operationId": operation_id,
                "tags": ["mparticle"],
                "summary": summary,
                "security": [{security: []}],
                "requestBody": _body(
                    body, defs, LIMITS.max_cdp_request_bytes, decompressed=LIMITS.max_cdp_request_bytes * 4
                ),
                "responses": _responses({202: BatchesAccepted}, {**mp_errors, 415: MParticleError, 503: Error}, defs),
            },
        )
    add(
        "get",
        "/tests",
        {
            "operationId": "listTests",
            "tags": ["oracle"],
            "summary": "Every configured oracle test with its current verdict per treatment and metric",
            "security": [{"oracleBearer": []}],
            "responses": _responses({200: TestsList}, {401: Error, **common}, defs),
        },
    )
    add(
        "get",
        "/tests/{name}",
        {
            "operationId": "getTest",
            "tags": ["oracle"],
            "summary": "One test's report: counts, rates, bounds, reasons, its configuration, kills and history",
            "security": [{"oracleBearer": []}],
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                    "example": "new-checkout-health",
                }
            ],
            "responses": _responses({200: dict[str, Any]}, {401: Error, 404: Error, **common}, defs),
        },
    )
    report = _responses({200: str}, {401: Error, 404: Error, **common}, defs)
    report["200"]["content"] = {"text/html": {"schema": {"type": "string"}}}
    add(
        "get",
        "/tests/{name}/report",
        {
            "operationId": "getTestReport",
            "tags": ["oracle"],
            "summary": "One test's report as the self-contained HTML page `flagbridge verdict --html` writes",
            "security": [{"oracleBearer": []}],
            "parameters": paths["/tests/{name}"]["get"]["parameters"],
            "responses": report,
        },
    )
    tester_path = "/testers/{trafficType}/{key}"
    tester_parameters = [
        {**PATH, "schema": {"type": "string", "pattern": _pattern(registry._TRAFFIC_TYPE.pattern)}},
        {
            **KEY,
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": registry.MAX_KEY_CHARS,
                "pattern": f"^{_VISIBLE}(?:{_PRINTABLE}*{_VISIBLE})?$",
                "description": "no control characters or surrounding whitespace",
            },
        },
    ]
    same_tester = {"trafficType": "$request.path.trafficType", "key": "$request.path.key"}
    add(
        "put",
        tester_path,
        {
            "operationId": "registerTester",
            "tags": ["testers"],
            "summary": "Register (or renew) a tester until expiresAt",
            "security": [{"testersBearer": []}],
            "parameters": tester_parameters,
            "requestBody": _body(TesterRegistration, defs, TESTERS_MAX_BODY_BYTES),
            "responses": _responses(
                {200: Tester}, {400: Error, 401: Error, 413: Error, 415: Error, 503: Error, **common}, defs
            ),
        },
    )
    paths[tester_path]["put"]["responses"]["200"]["links"] = {
        "ListTesters": {"operationId": "listTesters", "description": "the registered tester is listed"},
        "RemoveTester": {"operationId": "removeTester", "parameters": same_tester},
    }
    add(
        "delete",
        tester_path,
        {
            "operationId": "removeTester",
            "tags": ["testers"],
            "summary": "Remove a tester now",
            "security": [{"testersBearer": []}],
            "parameters": [
                *tester_parameters,
                {
                    "name": "reason",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "pattern": f"^\\s*(?:{REASON}\\s*)?$"},
                    "description": "why, for the audit trail (default: removed)",
                },
            ],
            "responses": _responses(
                {200: TesterRemoved}, {400: Error, 401: Error, 404: Error, 503: Error, **common}, defs
            ),
        },
    )
    add(
        "get",
        "/testers",
        {
            "operationId": "listTesters",
            "tags": ["testers"],
            "summary": "The active testers, a page at a time in user id order",
            "security": [{"testersBearer": []}],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": registry.MAX_PAGE_SIZE,
                        "default": registry.DEFAULT_PAGE_SIZE,
                    },
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "maxLength": registry.MAX_CURSOR_CHARS},
                    "description": "nextCursor of the previous page",
                },
            ],
            "responses": _responses({200: TestersPage}, {400: Error, 401: Error, 503: Error, **common}, defs),
        },
    )
    add(
        "post",
        "/runs",
        {
            "operationId": "startRun",
            "tags": ["runs"],
            "summary": "Start a test run in AWS: a traffic plan sent as testers by the workers",
            "description": "The plan and model are checked as the CLI checks them (parsed, hosts in "
            "traffic.allowlist, the plan's oracle test known): a run the schema allows may still be refused with a "
            "400 naming the problem. 200: the same request again; 409: another request under this run_id.",
            "security": [{"trafficBearer": []}],
            "requestBody": _body(RunRequest, defs, RUNS_MAX_BODY_BYTES, example=RUN_EXAMPLE),
            "responses": _responses(
                {200: RunStarted, 202: RunStarted},
                {400: Error, 401: Error, 409: Error, 413: Error, 503: Error, **common},
                defs,
            ),
        },
    )
    for status in ("200", "202"):
        paths["/runs"]["post"]["responses"][status]["links"] = {
            "GetRun": {"operationId": "getRun", "parameters": {"id": "$response.body#/run_id"}}
        }
    add(
        "get",
        "/runs/{id}",
        {
            "operationId": "getRun",
            "tags": ["runs"],
            "summary": "A run's status: sent, statuses, errors, rate achieved, shards, why it stopped, its verdict",
            "security": [{"trafficBearer": []}],
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": _pattern(runs.RUN_ID.pattern)},
                }
            ],
            "responses": _responses({200: RunStatus}, {400: Error, 401: Error, 404: Error, **common}, defs),
        },
    )
    return paths


GATEWAY_REFUSALS = {
    "404": "API Gateway: no route for this method and path",
    "413": "API Gateway: a body over 10 MB",
    "500": "API Gateway: the function failed or timed out",
}


def _gateway_refusals(operation: dict[str, Any]) -> None:
    """API Gateway's own answers, ``{"message"}``: beside the function's at the same status, or alone."""
    gateway = {"$ref": "#/components/schemas/GatewayError"}
    responses = operation["responses"]
    for status, description in GATEWAY_REFUSALS.items():
        if status == "413" and "requestBody" not in operation:
            continue
        own = responses.get(status)
        if own is None:
            responses[status] = {"description": description, "content": {JSON: {"schema": gateway}}}
        else:
            media = own["content"][JSON]
            media["schema"] = {"anyOf": [media["schema"], gateway]}
    operation["responses"] = dict(sorted(responses.items()))


def build() -> dict[str, Any]:
    """The OpenAPI 3.1 document (deterministic: the same code gives the same bytes)."""
    defs: dict[str, Any] = {}
    paths = _operations(defs)
    defs["GatewayError"] = GatewayError.model_json_schema()
    for methods in paths.values():
        for operation in methods.values():
            _gateway_refusals(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flagbridge",
            "version": "1",
            "description": "The bridge's HTTP API: Split's impressions webhook, mParticle's Events API and webhook, "
            "profiles, the oracle's verdicts, the tester registry and test runs. Generated by `make openapi` from "
            "local/openapi.py; see docs/api.md.",
        },
        "servers": [{"url": "http://127.0.0.1:3000", "description": "make run"}],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(defs.items())), "securitySchemes": SECURITY_SCHEMES},
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.openapi", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: docs/openapi.json")
    args = parser.parse_args(argv)
    args.output.write_text(render(), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
