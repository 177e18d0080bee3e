"""docs/openapi.json: generated from the code (``make openapi``), every HTTP route of template.yaml and nothing else,
each with its security scheme, its refusals' JSON bodies and the stateful links; docs/api.md names what exists."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import schemathesis
from schemathesis.core.result import Err

from local import openapi
from local.cfn_yaml import load_template
from tests.conftest import ROOT

DOCUMENT = ROOT / "docs" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def template_routes() -> set[tuple[str, str]]:
    template = load_template(ROOT / "template.yaml")
    return {
        (str(event["Properties"]["Method"]).upper(), str(event["Properties"]["Path"]))
        for resource in template["Resources"].values()
        if resource.get("Type") == "AWS::Serverless::Function"
        for event in (resource.get("Properties", {}).get("Events") or {}).values()
        if event.get("Type") == "HttpApi"
    }


def test_regenerating_the_description_changes_nothing() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == openapi.render(), "docs/openapi.json is stale: run `make openapi`"


def test_every_route_of_the_template_is_described_and_nothing_else(spec: dict[str, Any]) -> None:
    routes = template_routes()
    assert len(routes) > 1
    assert {(method, path) for method, path, _ in operations(spec)} == routes


def test_schemathesis_loads_every_operation(spec: dict[str, Any]) -> None:
    loaded = schemathesis.openapi.from_dict(spec)
    results = list(loaded.get_all_operations())
    assert [result.err() for result in results if isinstance(result, Err)] == []
    assert len(results) == len(template_routes())


HTML_PAGES = {("GET", "/tests/{name}/report")}
"""Operations whose success is a page for people (the oracle's HTML report); their errors are JSON like all."""


def test_each_operation_has_a_security_scheme_and_json_bodies_for_every_status(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    for method, path, operation in operations(spec):
        assert operation["security"], f"{method} {path}"
        assert all(name in schemes for requirement in operation["security"] for name in requirement)
        statuses = set(operation["responses"])
        assert {"401", "404", "500"} <= statuses, f"{method} {path}: {statuses}"
        for status, response in operation["responses"].items():
            html = status == "200" and (method, path) in HTML_PAGES
            expected = ["text/html"] if html else ["application/json"]
            assert list(response["content"]) == expected, f"{method} {path} {status}"
        refusals = [operation["responses"][status] for status in statuses if status.startswith(("4", "5"))]
        for response in refusals:
            text = json.dumps(response["content"]["application/json"]["schema"])
            assert re.search(r"#/components/schemas/(\w*Error)", text), f"{method} {path}: {text}"


def test_error_schemas_require_a_code_and_a_message(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert set(schemas["Error"]["required"]) == {"error", "message"}
    assert set(schemas["MParticleError"]["required"]) == {"error", "message", "errors"}
    assert schemas["GatewayError"]["required"] == ["message"]


def test_limits_are_constraints_taken_from_the_code(spec: dict[str, Any]) -> None:
    from flagbridge.forwarding.ingest import MAX_BULK_BATCHES
    from flagbridge.runs.spec import MAX_REQUESTS
    from flagbridge.testers.registry import MAX_PAGE_SIZE

    schemas = spec["components"]["schemas"]
    assert schemas["RunRequest"]["properties"]["requests"]["maximum"] == MAX_REQUESTS
    assert schemas["SplitImpression"]["properties"]["key"]["maxLength"] == 1024
    bulk = spec["paths"]["/mparticle/v2/bulkevents"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert bulk["maxItems"] == MAX_BULK_BATCHES
    (limit,) = [p for p in spec["paths"]["/testers"]["get"]["parameters"] if p["name"] == "limit"]
    assert limit["schema"]["maximum"] == MAX_PAGE_SIZE
    for function, constant in (
        ("tester_registry", openapi.TESTERS_MAX_BODY_BYTES),
        ("traffic_runs", openapi.RUNS_MAX_BODY_BYTES),
    ):
        source = (ROOT / "functions" / function / f"{function}.py").read_text(encoding="utf-8")
        (value,) = re.findall(r"^MAX_BODY_BYTES = ([0-9_]+)", source, re.M)
        assert int(value) == constant, function


def test_links_describe_register_list_remove_and_run_status(spec: dict[str, Any]) -> None:
    ids = {operation["operationId"] for _, _, operation in operations(spec)}
    register = spec["paths"]["/testers/{trafficType}/{key}"]["put"]["responses"]["200"]["links"]
    assert {link["operationId"] for link in register.values()} == {"listTesters", "removeTester"}
    for status in ("200", "202"):
        (link,) = spec["paths"]["/runs"]["post"]["responses"][status]["links"].values()
        assert link == {"operationId": "getRun", "parameters": {"id": "$response.body#/run_id"}}
    assert {link["operationId"] for link in register.values()} <= ids


def test_the_layer_never_imports_the_generator() -> None:
    layer = ROOT / "layers" / "shared" / "flagbridge"
    offenders = [
        path for path in layer.rglob("*.py") if re.search(r"^\s*(from|import) local\b", path.read_text(), re.M)
    ]
    assert offenders == []


def test_docs_api_names_what_exists() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in re.findall(r"`make (\w+)", text):
        assert re.search(rf"^{target}:", makefile, re.M) or target in makefile.split("TIERS :=")[1].split("\n")[0]
    for path in re.findall(r"`((?:docs|local|tests)/[\w./]+)`", text):
        assert (ROOT / path).exists(), path
    for route in re.findall(r"`(/[\w./{}]+)`", text):
        assert route == "/openapi.json" or route in json.loads(DOCUMENT.read_text(encoding="utf-8"))["paths"], route
