"""The demo's sample service under test (``local/demo/service.py``) and the plan shipped for it.

The flag assigns treatments deterministically; impressions reach the bridge as Split sends them (gzipped JSON
array, token in the URL) and ``api_response`` events as mParticle batches (Basic auth); the bug is in ``on`` only.
The shipped plan and model, run through the real generator and sender against the service, produce exactly the
5xx the bug predicts case by case, at the rate the plan's comment states (99.9% binomial bounds, fixed seed).
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flagbridge.traffic.attacks import MISSING
from flagbridge.traffic.generator import Case, Target, TrafficGenerator
from flagbridge.traffic.model import Tester, load_model
from flagbridge.traffic.plan import load_plan
from flagbridge.traffic.sender import HttpSender
from flagbridge.traffic.stats import binomial_bounds
from local.demo.service import (
    FLAG,
    BridgeReporter,
    CheckoutService,
    InventoryError,
    checkout,
    reserve_units,
    treatment_for,
)
from local.traffic_target import TrafficTarget
from tests.conftest import ROOT

DEMO = ROOT / "local" / "demo"
POOL = [f"qa-demo-{n:02d}" for n in range(1, 9)]
EXPECTED_ON_5XX = 0.8 * 0.18 * 22 / 27 * 0.98**3 * 0.97  # the plan's comment derives it


def test_treatments_are_deterministic_and_split_half_and_half() -> None:
    keys = [f"user-{n}" for n in range(10_000)]
    first = [treatment_for(key) for key in keys]
    assert first == [treatment_for(key) for key in keys]
    low, high = binomial_bounds(len(keys), 0.5)
    assert low <= first.count("on") <= high
    assert {treatment_for(key) for key in POOL[::3]} <= {"on", "off"}
    assert [treatment_for(key) for key in POOL].count("on") == 4  # the demo's pool: 4 testers in each treatment


@pytest.mark.parametrize(
    "quantity", [0, -1, 2.5, "2", None, True, [], {}, -0.0, 1e308, MISSING], ids=lambda value: repr(value)
)
def test_on_has_the_bug_off_answers_the_same_input_cleanly(quantity: Any) -> None:
    item: dict[str, Any] = {"sku": "A1"}
    if quantity is not MISSING:
        item["quantity"] = quantity
    document = {"currency": "EUR", "items": [item]}
    with pytest.raises(InventoryError):
        checkout(document, "on")
    from local.demo.service import Refused

    with pytest.raises(Refused) as refused:
        checkout(document, "off")
    assert refused.value.answer.status == 422


@pytest.mark.parametrize("quantity", [1, 5, 99])
def test_both_treatments_check_out_a_valid_quantity(quantity: int) -> None:
    document = {"currency": "USD", "items": [{"sku": "B2", "quantity": quantity}]}
    assert checkout(document, "on").body["total_cents"] == checkout(document, "off").body["total_cents"]
    assert reserve_units("B2", quantity) == quantity


class Posts:
    """Stands in for the bridge: records each POST, answers a scripted status."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.statuses = statuses or []

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.calls.append((url, body, headers))
        return self.statuses.pop(0) if self.statuses else 200


def test_every_evaluation_goes_out_as_split_sends_impressions() -> None:
    posts = Posts()
    reporter = BridgeReporter("http://bridge", "tok en", "key", "secret", flag_version=17, post=posts)
    assert reporter.impression("qa-demo-01", "on", 1000) is True  # the key's first: flushed before answering
    assert reporter.impression("qa-demo-01", "on", 1001) is False
    reporter.impression("qa-demo-02", "off", 1002)
    reporter.flush()
    [(url, body, headers)] = posts.calls
    assert url == "http://bridge/split/impressions?token=tok%20en"
    impressions = json.loads(gzip.decompress(body))
    assert [(i["key"], i["split"], i["treatment"], i["splitVersionNumber"], i["time"]) for i in impressions] == [
        ("qa-demo-01", FLAG, "on", 17, 1000),
        ("qa-demo-01", FLAG, "on", 17, 1001),
        ("qa-demo-02", FLAG, "off", 17, 1002),
    ]
    assert impressions[0]["environmentName"] == "Production"
    assert headers["Content-Type"] == "application/json"
    assert reporter.stats()["impressions_sent"] == 3


def test_events_go_out_as_mparticle_batches_per_user_and_undelivered_ones_are_counted() -> None:
    posts = Posts(statuses=[503, 200, 400])
    reporter = BridgeReporter("http://bridge", "t", "key", "secret", flag_version=5, post=posts, sleep=lambda _: None)
    for index in range(150):
        reporter.event("qa-demo-01", {"status": 201, "latency_ms": 1.5, "route": "checkout"}, 2000 + index)
    reporter.event("qa-demo-02", {"status": 500, "latency_ms": 2.0, "route": "checkout"}, 3000)
    reporter.flush()  # 503 then 200: delivered on the retry
    url, body, headers = posts.calls[1]
    assert url == "http://bridge/mparticle/v2/bulkevents"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"key:secret").decode()
    batches = json.loads(body)
    assert [(b["user_identities"], len(b["events"])) for b in batches] == [
        ({"customer_id": "qa-demo-01"}, 100),
        ({"customer_id": "qa-demo-01"}, 50),
        ({"customer_id": "qa-demo-02"}, 1),
    ]
    events = [e for b in batches for e in b["events"]]
    assert {e["data"]["event_name"] for e in events} == {"api_response"}
    assert len({e["data"]["source_message_id"] for e in events}) == 151
    assert len({b["source_request_id"] for b in batches}) == 3
    reporter.event("qa-demo-01", {"status": 201, "latency_ms": 1.0, "route": "product"}, 4000)
    reporter.flush()  # 400: refused, not retried, counted as undelivered
    assert reporter.stats() == {
        "impressions_sent": 0,
        "events_sent": 151,
        "undelivered_impressions": 0,
        "undelivered_events": 1,
        "pending": 0,
    }


@pytest.fixture
def fake_bridge() -> Iterator[TrafficTarget]:
    bridge = TrafficTarget(respond=lambda raw, target: 200 if "/split/" in target else 202).start()
    yield bridge
    bridge.stop()


def _predicted_status(case: Case, treatment: str) -> str:
    """What the service must answer, from the case's mutations alone: ``5xx`` only for ``on``'s bug."""
    by_element = {mutation.element: mutation for mutation in case.mutations}
    others = set(by_element) - {"body:/items/0/quantity"}
    quantity = by_element.get("body:/items/0/quantity")
    if case.route == "product":  # only the method and path are mutated there; GET is the model's own method
        return "ok" if all(m.element == "method" and m.value == "GET" for m in case.mutations) else "4xx"
    if others or quantity is None:
        return "ok" if not case.mutations else "4xx"
    value = quantity.value
    positive_int = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if positive_int:
        return "ok" if value <= 99 else "4xx"
    return "5xx" if treatment == "on" else "4xx"


def _status_class(status: int | None) -> str:
    assert status is not None
    return "5xx" if status >= 500 else "4xx" if status >= 400 else "ok"


def test_the_shipped_plan_finds_the_bug_in_on_only_at_the_stated_rate(fake_bridge: TrafficTarget) -> None:
    plan, warnings = load_plan(DEMO / "checkout_plan.yaml")
    assert warnings == []
    reporter = BridgeReporter(fake_bridge.url, "local-webhook-token", "k", "s", flag_version=1)
    service = CheckoutService(reporter).start()
    sender = HttpSender(timeout=10)
    try:
        generator = TrafficGenerator(
            plan,
            load_model(DEMO / "checkout_model.yaml"),
            [Tester(key) for key in POOL],
            seed=11,
            run_id="demo-test",
            clock_ms=0,
            target=Target.parse(service.url),
        )
        cases = 2000
        on_5xx = 0
        for index in range(cases):
            case = generator.case(index)
            treatment = treatment_for(case.tester.key)
            outcome = sender.send(case.request)
            observed = _status_class(outcome.status)
            assert observed == _predicted_status(case, treatment), (case.case_id, case.mutations, outcome)
            on_5xx += _predicted_status(case, "on") == "5xx"  # per request, had its tester been served `on`
    finally:
        sender.close()
        service.stop()
    low, high = binomial_bounds(cases, EXPECTED_ON_5XX)
    assert low <= on_5xx <= high, (on_5xx, low, high)
    assert 0.07 < EXPECTED_ON_5XX < 0.12  # several %: well above the oracle's 5% fail line
    # Every answered request of a tester became an api_response event and an impression of its treatment
    stats = reporter.stats()
    assert stats["events_sent"] == cases and stats["undelivered_events"] == 0 and stats["pending"] == 0
    assert stats["impressions_sent"] == cases
    impressions = [
        impression
        for received in fake_bridge.received
        if received.target.startswith("/split/impressions")
        for impression in json.loads(gzip.decompress(received.raw.split(b"\r\n\r\n", 1)[1]))
    ]
    assert len(impressions) == cases
    assert {(i["key"], i["treatment"]) for i in impressions} == {(k, treatment_for(k)) for k in POOL}


def test_the_service_runs_alone_and_reports_its_url(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/shared", "ops", ""))}
    process = subprocess.Popen(
        [sys.executable, "-m", "local.demo.service", "--bridge", "http://127.0.0.1:9", "--flag-version", "3"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["flag"] == FLAG and first["flag_version"] == 3 and first["url"].startswith("http://127.0.0.1:")
        from urllib.request import urlopen

        with urlopen(first["url"] + "/_demo/stats", timeout=10) as reply:
            assert json.loads(reply.read())["answered"] == 0
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0


def test_after_split_kill_every_key_gets_the_default_treatment_labelled_killed() -> None:
    """``POST /_demo/split-kill`` (Split's SPLIT_KILL notification): from then on `off`, label killed, in the new
    change number, each key's first such impression posted before its request is answered; bad bodies refused."""
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    posts = Posts()
    reporter = BridgeReporter("http://bridge", "tok", "key", "secret", flag_version=17, post=posts)
    service = CheckoutService(reporter).start()

    def call(path: str, body: Any = None, key: str | None = None) -> tuple[int, dict[str, Any]]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = {"Content-Type": "application/json", **({"X-User-Key": key} if key else {})}
        try:
            with urlopen(Request(service.url + path, data=data, headers=headers), timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def impressions() -> list[dict[str, Any]]:
        return [
            i for url, body, _ in posts.calls if "/split/impressions" in url for i in json.loads(gzip.decompress(body))
        ]

    try:
        on_key = next(key for key in POOL if treatment_for(key) == "on")
        assert call("/products/A1", key=on_key)[0] == 200
        kill = {"splitName": FLAG, "defaultTreatment": "off", "changeNumber": 18}
        for wrong, error in [
            (b"{", "invalid_json"),
            ({**kill, "splitName": "other"}, "unknown_split"),
            ({**kill, "defaultTreatment": ""}, "invalid_default_treatment"),
            ({**kill, "changeNumber": 17}, "invalid_change_number"),
            ({**kill, "changeNumber": True}, "invalid_change_number"),
        ]:
            status, body = call("/_demo/split-kill", wrong)
            assert (status, body["error"]) == (422 if error != "invalid_json" else 400, error)
        assert call("/_demo/stats")[1]["killed"] is None
        status, stats = call("/_demo/split-kill", kill)
        assert status == 200 and stats["killed"] == 18
        sent = len(impressions())
        assert call("/products/A1", key=on_key)[0] == 200
        # the first impression of the killed flag left before the answer: no flush needed to see it
        [killed] = impressions()[sent:]
        assert (killed["key"], killed["treatment"], killed["label"], killed["splitVersionNumber"]) == (
            on_key, "off", "killed", 18
        )  # fmt: skip
        assert call("/_demo/stats")[1]["statuses"]["off"] == {"200": 1}
    finally:
        service.stop()
