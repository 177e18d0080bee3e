"""Hostile corpus for ``POST /runs`` (start a test run, bearer-protected).

Grown from issue 17's classes (and issue 22's findings on this route): every decoding step of the body is one 4xx
naming it; numbers are bounded before any arithmetic (integers of hundreds of digits, rates whose per-worker
share underflows); falsy non-string run ids are refused, not replaced; target and model URLs are parsed where
the run is accepted (ports out of range, broken IPv6, credentials), so that nothing accepted fails later in a
worker; YAML text is refused as the deployed stack refuses it; tester keys follow the registry's rule. A refusal
records no run and enqueues no shard; an acceptance enqueues its shards.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.hostile.support import RUNS_TOKEN, Case, Route

ROUTE = Route(handler="traffic_runs", method="POST", path="/runs")
ID_PREFIX = "runs_start"
PATH = "/runs"
BEARER = f"Bearer {RUNS_TOKEN}"
HEADERS = {"Host": "bridge.example.com", "Content-Type": "application/json", "Authorization": BEARER}

PLAN: dict[str, Any] = {
    "name": "hostile-plan",
    "max_attacks": 1,
    "query": {"attack_set": "Values", "probability": "20%"},
    "attack_sets": {"Values": ["", "0", "<script>"]},
}
MODEL: dict[str, Any] = {
    "name": "hostile-model",
    "requests": [{"name": "cart", "method": "GET", "url": "http://localhost/cart", "query": {"page": "1"}}],
}


class _Answers(BaseHTTPRequestHandler):
    """Any request gets a 204: the run's preflight (``OPTIONS *``) needs a target that answers."""

    def _answer(self) -> None:
        self.send_response(204)
        self.end_headers()

    do_OPTIONS = do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None


# An accepted run's target must answer before anything is recorded (docs/runs.md): one that does, on a free port of
# this process, for as long as the tests run (a daemon thread).
_TARGET = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
threading.Thread(target=_TARGET.serve_forever, daemon=True).start()
TARGET = f"http://127.0.0.1:{_TARGET.server_address[1]}/"
GOOD: dict[str, Any] = {"plan": PLAN, "model": MODEL, "requests": 20, "rate": 100, "target": TARGET}
HUGE = int("1" + "0" * 400)  # 1 followed by 400 zeros: float() overflows on it


def _model_url(url: str) -> dict[str, Any]:
    return {**MODEL, "requests": [{**MODEL["requests"][0], "url": url}]}


def raw(name: str, status: int, error: str | None, body: bytes, **kwargs: Any) -> Case:
    headers = {**HEADERS, **kwargs.pop("headers", {})}
    return Case(name=name, status=status, error=error, path=PATH, headers=headers, body=body, **kwargs)


def request(name: str, status: int, error: str | None = None, **fields: Any) -> Case:
    """``GOOD`` with ``fields`` replaced (a field set to ``...`` is removed)."""
    document = {key: value for key, value in {**GOOD, **fields}.items() if value is not ...}
    return raw(name, status, error, json.dumps(document).encode())


def started(name: str, **fields: Any) -> Case:
    return request(name, 202, **{"run_id": f"hostile-{name.replace('_', '-')}", **fields})


def _base64_hook(event: dict[str, Any]) -> None:
    event["isBase64Encoded"] = True
    event["body"] = "%%% not base64 %%%"


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


CASES: list[Case] = [
    # ---- accepted -------------------------------------------------------------------------------------------
    started("plan_and_model_objects"),
    started("plan_as_json_text", plan=json.dumps(PLAN), plan_format="json"),
    started("null_run_id_gets_one", run_id=None),
    started("rate_at_the_minimum", rate=4 / 600),
    # ---- credentials ----------------------------------------------------------------------------------------
    raw("no_token", 401, "unauthorized", _json(GOOD), headers={"Authorization": ""}),
    raw("wrong_token", 401, "unauthorized", _json(GOOD), headers={"Authorization": "Bearer nope"}),
    raw("basic_scheme", 401, "unauthorized", _json(GOOD), headers={"Authorization": f"Basic {RUNS_TOKEN}"}),
    # ---- decoding the body: one layer, each failure named -------------------------------------------------
    raw("empty_body", 400, "invalid_body", b""),
    raw("blank_body", 400, "invalid_body", b"  \n "),
    raw("not_json", 400, "invalid_json", b"{plan: yes}"),
    raw("truncated_json", 400, "invalid_json", _json(GOOD)[:-5]),
    raw("json_array", 400, "invalid_body", b"[]"),
    raw("json_string", 400, "invalid_body", b'"run"'),
    raw("json_null", 400, "invalid_body", b"null"),
    raw("deep_nesting", 400, "invalid_json", b"[" * 100_000 + b"]" * 100_000),
    raw("nan_constant", 400, "invalid_json", b'{"rate": NaN}'),
    raw("infinite_float", 400, "invalid_json", b'{"rate": 1e400}'),
    raw("invalid_utf8", 400, "invalid_utf8", b'{"run_id": "\xff\xfe"}'),
    raw("bad_base64", 400, "invalid_base64", b"", event_hook=_base64_hook),
    raw("corrupt_gzip", 400, "invalid_gzip", gzip.compress(_json(GOOD))[:-8]),
    raw("gzip_of_array", 400, "invalid_body", gzip.compress(b"[1]"), headers={"Content-Encoding": "gzip"}),
    raw("html_content_type", 415, "unsupported_media_type", _json(GOOD), headers={"Content-Type": "text/html"}),
    raw("brotli_encoding", 415, "unsupported_content_encoding", _json(GOOD), headers={"Content-Encoding": "br"}),
    raw("too_large", 413, "payload_too_large", b'{"plan": "' + b"x" * 2_600_000 + b'"}'),
    raw("gzip_bomb", 413, "payload_too_large", gzip.compress(b" " * 3_000_000)),
    request("unknown_field", 400, "unknown_field", shards=5),
    # ---- numbers: bounded before arithmetic ----------------------------------------------------------------
    request("rate_huge_integer", 400, "rate_too_high", rate=HUGE),
    request("max_duration_huge_integer", 400, "max_duration_s_too_high", max_duration_s=HUGE),
    request("rate_negative_huge_integer", 400, "invalid_rate", rate=-HUGE),
    request("rate_underflows_per_worker", 400, "rate_too_low", rate=5e-324),
    request("rate_tiny", 400, "rate_too_low", rate=1e-300),
    request("rate_below_one_case_per_shard", 400, "rate_too_low", rate=0.006),
    request("rate_zero", 400, "invalid_rate", rate=0),
    request("rate_negative", 400, "invalid_rate", rate=-1),
    request("rate_text", 400, "invalid_rate", rate="100"),
    request("rate_boolean", 400, "invalid_rate", rate=True),
    request("rate_list", 400, "invalid_rate", rate=[100]),
    request("rate_missing", 400, "missing_rate", rate=...),
    request("requests_huge_integer", 400, "invalid_requests", requests=HUGE),
    request("requests_fraction", 400, "invalid_requests", requests=1.5),
    request("requests_zero", 400, "invalid_requests", requests=0),
    request("seed_huge_integer", 400, "invalid_seed", seed=HUGE),
    request("seed_negative", 400, "invalid_seed", seed=-1),
    request("clock_beyond_2_53", 400, "invalid_clock_ms", clock_ms=2**53 + 1),
    request("shard_size_huge_integer", 400, "invalid_shard_size", shard_size=HUGE),
    request("checkpoint_every_1001", 400, "invalid_checkpoint_every", checkpoint_every=1001),
    request("max_duration_zero", 400, "invalid_max_duration_s", max_duration_s=0),
    # ---- run ids: a falsy non-string is not "no run id" ----------------------------------------------------
    request("run_id_empty_object", 400, "invalid_run_id", run_id={}),
    request("run_id_empty_list", 400, "invalid_run_id", run_id=[]),
    request("run_id_zero", 400, "invalid_run_id", run_id=0),
    request("run_id_false", 400, "invalid_run_id", run_id=False),
    request("run_id_empty_string", 400, "invalid_run_id", run_id=""),
    request("run_id_trailing_newline", 400, "invalid_run_id", run_id="run-1\n"),
    request("run_id_traversal", 400, "invalid_run_id", run_id="../runs/x"),
    request("run_id_too_long", 400, "invalid_run_id", run_id="r" * 65),
    # ---- target URLs: parsed once, here -----------------------------------------------------------------------
    request("target_port_99999", 400, "invalid_target", target="http://127.0.0.1:99999/"),
    request("target_port_negative", 400, "invalid_target", target="http://127.0.0.1:-1/"),
    request("target_two_ports", 400, "invalid_target", target="http://host:1:2/"),
    request("target_broken_ipv6", 400, "invalid_target", target="http://[::1/"),
    request("target_port_zero", 400, "invalid_target", target="http://127.0.0.1:0/"),
    request("target_port_words", 400, "invalid_target", target="http://127.0.0.1:http/"),
    request("target_credentials", 400, "invalid_target", target="http://user:secret@127.0.0.1:9/"),
    request("target_ftp", 400, "invalid_target", target="ftp://127.0.0.1/"),
    request("target_javascript", 400, "invalid_target", target="javascript:alert(1)"),
    request("target_no_host", 400, "invalid_target", target="http:///path"),
    request("target_with_query", 400, "invalid_target", target="http://127.0.0.1:9/?a=1"),
    request("target_number", 400, "invalid_target", target=80),
    request("target_too_long", 400, "invalid_target", target="http://127.0.0.1/" + "a" * 2100),
    request("target_off_allowlist", 400, "outside_allowlist", target="http://evil.example.com/"),
    request("target_ipv6_off_allowlist", 400, "outside_allowlist", target="http://[::1]:9/"),
    # ---- model URLs: everything a worker needs, validated at the API ----------------------------------------
    request(
        "model_port_99999_no_target", 400, "invalid_model", target=..., model=_model_url("http://localhost:99999/")
    ),
    request("model_port_99999", 400, "invalid_model", model=_model_url("http://localhost:99999/cart")),
    request("model_two_ports", 400, "invalid_model", model=_model_url("http://localhost:1:2/cart")),
    request("model_broken_ipv6", 400, "invalid_model", model=_model_url("http://[::1/cart")),
    request("model_credentials", 400, "invalid_model", model=_model_url("http://user:secret@localhost/cart")),
    request("model_port_zero", 400, "invalid_model", model=_model_url("http://localhost:0/cart")),
    # ---- plans and models as text -----------------------------------------------------------------------------
    request("yaml_plan_text", 400, "invalid_plan", plan="name: p\nmax_attacks: 1\n"),
    request("yaml_model_text", 400, "invalid_model", model="requests:\n  - {name: a, url: http://localhost/}\n"),
    request("yaml_alias_bomb", 400, "invalid_plan", plan='a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n'),
    request("json_plan_text_deep", 400, "invalid_plan", plan="[" * 50_000, plan_format="json"),
    request("json_plan_text_nan", 400, "invalid_plan", plan='{"max_attacks": NaN}', plan_format="json"),
    request(
        "json_plan_text_huge_int", 400, "invalid_plan", plan='{"max_attacks": ' + "9" * 5000 + "}", plan_format="json"
    ),
    request("plan_format_toml", 400, "invalid_plan", plan_format="toml"),
    request(
        "xml_plan_attribute_of_spaces",
        400,
        "invalid_plan",
        plan='<Request MaxAttacks="' + " " * 50_000 + '"/>',
        plan_format="xml",
    ),
    request(
        "xml_plan_doctype", 400, "invalid_plan", plan='<!DOCTYPE r [<!ENTITY a "b">]><Request/>', plan_format="xml"
    ),
    request("xml_model", 400, "invalid_model", model="<Request/>", model_format="xml"),
    request("plan_key_traversal", 400, "invalid_plan_key", plan=..., plan_key="plans/../runs/x/run.json"),
    request("plan_key_unknown", 400, "unknown_plan", plan=..., plan_key="plans/nothing.json"),
    # ---- tester pools: the registry's key rule ------------------------------------------------------------
    request("tester_right_to_left_override", 400, "invalid_testers", testers=["qa-\u202ebot"]),
    request("tester_zero_width_space", 400, "invalid_testers", testers=["qa\u200b-bot-01"]),
    request("tester_byte_order_mark", 400, "invalid_testers", testers=["\ufeffqa-bot-01"]),
    request("tester_isolate", 400, "invalid_testers", testers=["qa-\u2066bot"]),
    request("tester_zero_width_joiner", 400, "invalid_testers", testers=["qa\u200d-bot"]),
    request("tester_not_nfc", 400, "invalid_testers", testers=["qa-be\u0301"]),
    request("tester_empty_pool", 400, "invalid_testers", testers=[]),
    request("tester_pool_object", 400, "invalid_testers", testers={"key": "qa"}),
]


def _shards(aws: dict[str, Any]) -> list[dict[str, Any]]:
    from tests.conftest import drain_queue

    return [json.loads(message["Body"]) for message in drain_queue(aws["sqs"], aws["shards_url"])]


def verify_accepted(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    """Started: the run's shards are on the queue, each naming the run."""
    assert body["state"] == "started" and body["shards"] >= 1, body
    shards = _shards(aws)
    assert len(shards) == body["shards"] and {s["run_id"] for s in shards} == {body["run_id"]}, shards


def verify_refused(case: Case, body: dict[str, Any], aws: dict[str, Any]) -> None:
    """Refused: no shard enqueued, and no run recorded under the case's run id."""
    from flagbridge import runtime

    assert _shards(aws) == []
    try:
        document = json.loads(case.body_bytes())
    except (ValueError, RecursionError):
        return
    run_id = document.get("run_id") if isinstance(document, dict) else None
    if isinstance(run_id, str) and run_id:
        assert runtime.run_store().get_run(run_id) is None, f"a refused request recorded run {run_id!r}"
