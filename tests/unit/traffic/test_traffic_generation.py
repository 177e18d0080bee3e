"""Generation: byte-identical cases, the model's templates, HAR import, shrinking, and the safety pieces."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from flagbridge.config import TesterRules
from flagbridge.traffic.errors import ModelError, PlanError, SafetyError
from flagbridge.traffic.generator import Target, TrafficGenerator
from flagbridge.traffic.har import REDACTED, import_har
from flagbridge.traffic.manifest import Outcome, case_record, explain
from flagbridge.traffic.model import RequestModel, Tester, parse_model
from flagbridge.traffic.plan import TrafficPlan, parse_plan
from flagbridge.traffic.safety import Allowlist, RunTag, TokenBucket, check_testers, parse_rate
from flagbridge.traffic.shrink import shrink
from tests.unit.traffic.conftest import CLOCK_MS, TESTERS, make_generator

ROOT = Path(__file__).resolve().parents[3]


def digest(generator: TrafficGenerator, indices: Sequence[int]) -> str:
    hasher = hashlib.sha256()
    for index in indices:
        hasher.update(generator.case(index).request.to_bytes())
    return hasher.hexdigest()


# --- determinism ------------------------------------------------------------------------------


def test_a_case_is_byte_identical_whenever_and_wherever_it_is_generated(
    body_plan: TrafficPlan, model: RequestModel
) -> None:
    first = make_generator(body_plan, model)
    forward = [first.case(index).request.to_bytes() for index in range(200)]
    second = make_generator(body_plan, model)  # a new generator, cases in another order
    backward = [second.case(index).request.to_bytes() for index in reversed(range(200))]
    assert forward == list(reversed(backward))
    assert first.case(57) == second.case(57)
    assert len(set(forward)) == 200


def test_seed_and_plan_change_the_cases(
    body_plan: TrafficPlan, published_plan: TrafficPlan, model: RequestModel
) -> None:
    base = digest(make_generator(body_plan, model, seed=7), range(50))
    assert digest(make_generator(body_plan, model, seed=8), range(50)) != base
    assert digest(make_generator(published_plan, model, seed=7), range(50)) != base


def test_keep_applies_a_subset_and_nothing_else(body_plan: TrafficPlan, model: RequestModel) -> None:
    generator = make_generator(body_plan, model)
    index = next(i for i in range(500) if len(generator.case(i).mutations) == 3)
    full = generator.case(index)
    assert generator.case(index, keep=(0, 1, 2)).request == full.request
    clean = generator.unmutated(index).request
    assert clean != full.request and generator.case(index, keep=()).request == clean
    one = generator.case(index, keep=(1,))
    assert one.mutations == full.mutations  # the case's mutation list is always the full one
    assert one.request not in (clean, full.request)


# --- the model --------------------------------------------------------------------------------


def tiny_model(**request: object) -> RequestModel:
    return parse_model({"requests": [{"url": "http://localhost/a/{id}", "path_params": {"id": "x"}, **request}]})


def test_templates_render_types_and_testers() -> None:
    model = tiny_model(
        method="POST",
        headers={"X-Who": "{{tester.key}}"},
        body={"n": "{{int:3..3}}", "t": "{{now}}", "c": "{{choice:only}}", "u": "{{uuid}}", "s": "id-{{case.id}}"},
    )
    generator = TrafficGenerator(parse_plan({}), model, [Tester("qa-1")], seed=1, run_id="r", clock_ms=1000)
    case = generator.case(5)
    body = json.loads(case.request.body)
    assert body["n"] == 3 and body["t"] == 1005 and body["c"] == "only" and body["s"] == "id-c5"
    assert len(body["u"]) == 36 and body["u"][14] == "4"
    assert case.request.header("X-Who") == b"qa-1"
    assert case.request.target == "/a/x"
    assert case.request.url == "http://localhost/a/x"


@pytest.mark.parametrize(
    ("request_doc", "fragment"),
    [
        ({"url": "ftp://x/"}, "absolute http(s) URL"),
        ({"url": "http://x/{id}"}, "path parameter {id} has no value"),
        ({"url": "http://x/", "headers": {"Host": "y"}}, "set by the generator"),
        ({"url": "http://x/", "body": {"a": "{{nope}}"}}, "unknown template {{nope}}"),
        ({"url": "http://x/", "weight": 0}, "'weight'"),
        ({"url": "http://x/", "bogus": 1}, "unknown key 'bogus'"),
    ],
)
def test_model_errors_name_the_request_and_field(request_doc: dict, fragment: str) -> None:
    with pytest.raises(ModelError) as error:
        parse_model({"requests": [{"name": "r1", **request_doc}]}, "model.yaml")
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_destructive_methods_are_off_unless_opted_in() -> None:
    model = tiny_model(method="DELETE")
    with pytest.raises(SafetyError, match="destructive"):
        TrafficGenerator(parse_plan({}), model, [Tester("qa-1")], seed=1, run_id="r", clock_ms=0)
    TrafficGenerator(
        parse_plan({"safety": {"allow_destructive": True}}), model, [Tester("qa-1")], seed=1, run_id="r", clock_ms=0
    )
    plan = parse_plan({"method": {"probability": 1, "attack_set": "http_methods"}})
    generator = TrafficGenerator(plan, tiny_model(), [Tester("qa-1")], seed=1, run_id="r", clock_ms=0)
    assert {generator.case(i).request.method for i in range(400)}.isdisjoint({"DELETE"})


def test_an_attack_set_that_cannot_travel_in_an_element_is_a_plan_error() -> None:
    plan = parse_plan({"headers": {"key_chance": "5%", "key_attacks": "Bad"}, "attack_sets": {"Bad": ["a b", "x\ny"]}})
    with pytest.raises(PlanError, match="no value that can be sent as header name"):
        TrafficGenerator(plan, tiny_model(headers={"A": "1"}), [Tester("qa-1")], seed=1, run_id="r", clock_ms=0)


def test_header_name_attacks_never_produce_framing_headers_or_the_run_tag() -> None:
    sets = {"Names": ["Content-Length", "transfer-encoding", "Host", "X-Flagbridge-Run", "X-Run-Tag", "X-Ok"]}
    plan = parse_plan({"headers": {"key_chance": 1, "key_attacks": "Names"}, "attack_sets": sets})
    generator = TrafficGenerator(
        plan, tiny_model(headers={"A": "1"}), [Tester("qa-1")], seed=1, run_id="r", clock_ms=0,
        run_tag=RunTag(b"k", "X-Run-Tag"),
    )  # fmt: skip
    assert {generator.case(i).mutations[0].value for i in range(200)} == {"X-Ok"}
    only_reserved = parse_plan({"headers": {"key_chance": 1, "key_attacks": "Bad"}, "attack_sets": {"Bad": ["Host"]}})
    with pytest.raises(PlanError, match="header name"):
        TrafficGenerator(
            only_reserved, tiny_model(headers={"A": "1"}), [Tester("qa-1")], seed=1, run_id="r", clock_ms=0
        )


def test_explain_gives_words_and_the_exact_figures(body_plan: TrafficPlan, model: RequestModel) -> None:
    text = explain(body_plan, make_generator(body_plan, model))
    assert "Method: mutated in 5% of requests" in text
    assert "Authorization: name never, value 10%" in text
    rate = make_generator(body_plan, model).expected_rates("upload_events")["method"].mutated
    assert f"{rate * 1000:8.1f}" in text
    assert "Give --model" in explain(body_plan)
    assert "frozen (tester identity, and what contains it): headers.X-Tester, body:/user_identities/customer_id" in text


def test_manifest_record_and_curl(body_plan: TrafficPlan, model: RequestModel) -> None:
    generator = make_generator(body_plan, model)
    case = next(
        generator.case(i) for i in range(100) if any(m.attack == "long_strings" for m in generator.case(i).mutations)
    )
    record = case_record(case, Outcome(500, 12.5, 20, "abcd"))
    assert record["id"] == case.case_id and record["response"]["status"] == 500
    assert any("chars)" in str(m["new"]) for m in record["mutations"])  # long values are cut in the manifest
    command = case.request.curl()
    assert command.startswith("curl -sS --path-as-is -X 'POST' 'http://127.0.0.1:8080/")
    assert "X-Flagbridge-Run: run-unit." in command


# --- HAR import -------------------------------------------------------------------------------


def har(*urls: str) -> dict:
    entries = []
    for url in urls:
        entries.append(
            {
                "request": {
                    "method": "POST",
                    "url": url,
                    "headers": [
                        {"name": ":authority", "value": "x"},
                        {"name": "Authorization", "value": "Bearer s3cret"},
                        {"name": "Content-Type", "value": "application/json"},
                    ],
                    "queryString": [{"name": "a", "value": "1"}],
                    "cookies": [{"name": "sid", "value": "abc"}],
                    "postData": {"mimeType": "application/json", "text": '{"k": [1, 2]}'},
                }
            }
        )
    return {"log": {"version": "1.2", "entries": entries}}


def test_har_import_keeps_allowed_hosts_and_redacts_credentials() -> None:
    document = har("http://localhost/v2/events?a=1", "http://localhost/v2/events?a=1", "https://evil.example/x")
    result = import_har(document, Allowlist.from_document(["localhost"]), source="x.har")
    assert result.kept == 1 and result.skipped_hosts == {"evil.example": 1}
    request = result.model["requests"][0]
    assert request["weight"] == 2 and request["body"] == {"k": [1, 2]} and request["query"] == [["a", "1"]]
    assert request["headers"]["Authorization"] == REDACTED and request["cookies"]["sid"] == REDACTED
    assert ":authority" not in request["headers"]
    parse_model(result.model)  # a valid model
    with pytest.raises(SafetyError, match="no request in the HAR is to an allowed host"):
        import_har(har("https://evil.example/x"), Allowlist.from_document(["localhost"]))


# --- safety -----------------------------------------------------------------------------------


def test_allowlist_hosts_and_path_prefixes() -> None:
    allow = Allowlist.from_document(["localhost", {"host": "*.shop.test", "path_prefixes": ["/v2/"]}])
    allow.check("LOCALHOST", "/anything")
    allow.check("api.shop.test", "/v2/events")
    with pytest.raises(SafetyError, match="not in the traffic allowlist"):
        allow.check("shop.test")
    with pytest.raises(SafetyError, match="outside the allowed prefixes"):
        allow.check("api.shop.test", "/v3/events")
    with pytest.raises(SafetyError):
        Allowlist().check("localhost")


def test_tester_pool_is_checked_against_the_bridge_rules() -> None:
    rules = TesterRules.model_validate(
        {
            "rules": [
                {"name": "qa", "type": "key_pattern", "pattern": "qa-.*"},
                {
                    "name": "mail",
                    "type": "key_pattern",
                    "pattern": ".*@qa\\.example\\.com",
                    "identity_types": ["email"],
                },
            ]
        }
    )
    assert check_testers(TESTERS, rules) == ["qa", "qa"]
    assert check_testers([Tester("anyone", "x@qa.example.com")], rules) == ["mail"]
    with pytest.raises(SafetyError, match="'customer-7' is not a tester"):
        check_testers([Tester("qa-1"), Tester("customer-7")], rules)


def test_run_tag_is_a_verifiable_label() -> None:
    tag = RunTag(b"k1")
    value = tag.value("run-1", "c9")
    assert tag.verify(value) == ("run-1", "c9")
    assert RunTag(b"other").verify(value) is None
    assert tag.verify(value.replace("c9", "c8")) is None


@pytest.mark.parametrize("forged", ["run-1.c9.\u00e9" * 2, "run-1.c9.\ud800", "r\ud800.c9.00", "run-1.\u00e9.00"])
def test_a_hostile_run_tag_is_refused_not_raised(forged: str) -> None:
    # a header's value is anyone's: a signature or id hmac.compare_digest cannot take as str must be "not signed"
    assert RunTag(b"k1").verify(forged) is None


def test_token_bucket_paces_requests() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(50.0, burst=1.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(101):
        bucket.acquire()
    assert now[0] == pytest.approx(2.0)
    bucket.pause(3.0)
    bucket.acquire()
    assert now[0] == pytest.approx(5.02)
    assert parse_rate("50/s") == 50 and parse_rate("600/m") == 10
    with pytest.raises(SafetyError):
        parse_rate("fast")


# --- shrink -----------------------------------------------------------------------------------


def test_shrink_keeps_only_the_mutations_the_failure_needs() -> None:
    sent: list[tuple[int, ...]] = []

    def send(keep: Sequence[int]) -> Outcome:
        sent.append(tuple(keep))
        fails = 1 in keep and 3 in keep  # the failure needs mutations 1 and 3 together
        return Outcome(500 if fails else 400, 1.0, 0, "")

    result = shrink(5, send)
    assert result.kept == (1, 3) and result.reproduced and result.confirmed
    assert sent[-1] == (1, 3) and result.attempts == len(sent)


def test_shrink_reports_a_failure_that_does_not_reproduce() -> None:
    result = shrink(2, lambda keep: Outcome(200, 1.0, 0, ""))
    assert not result.reproduced and result.kept == (0, 1)


def test_shrink_on_a_generated_case_finds_the_mutation(body_plan: TrafficPlan, model: RequestModel) -> None:
    generator = make_generator(body_plan, model)
    index = next(i for i in range(500) if len(generator.case(i).mutations) == 3)
    culprit = generator.case(index).mutations[2]

    def send(keep: Sequence[int]) -> Outcome:
        request = generator.case(index, keep=keep).request
        return Outcome(500 if 2 in keep else 200, 1.0, len(request.body), "")

    result = shrink(3, send)
    assert result.kept == (2,) and generator.case(index).mutations[result.kept[0]] == culprit


def test_target_parsing() -> None:
    target = Target.parse("http://127.0.0.1:8080/base/")
    assert (target.host, target.port, target.base_path, target.netloc) == ("127.0.0.1", 8080, "/base", "127.0.0.1:8080")
    with pytest.raises(SafetyError):
        Target.parse("file:///etc/passwd")
    assert CLOCK_MS > 0
