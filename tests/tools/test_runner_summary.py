"""The summary ``make run`` prints: routes, what the replay did, the local receiver, secrets and commands to try."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from local.resources import HttpRoute, Provisioned, Template
from local.runner.bridge import LocalBridge
from local.runner.routes import Router

URL = "http://127.0.0.1:3000"
HEAD = ["", f"flagbridge is running locally at {URL} (AWS endpoint http://127.0.0.1:5000)", "", "Routes:"]
LIVE = ["", f"The oracle's verdicts, live (reloads every 5 s): {URL}/"]


def _bridge() -> LocalBridge:
    return LocalBridge(port=3000, endpoint_url="http://127.0.0.1:5000")  # not started: nothing runs


def test_a_bridge_without_routes_or_secrets_offers_only_the_idle_check() -> None:
    expected = [*HEAD, "", "Try it:", f"  curl -sS {URL}/_local/idle", *LIVE]
    assert _bridge().summary(closing=False) == "\n".join(expected)
    assert (
        _bridge()
        .summary(demo="The demo ran.")
        .endswith("\n".join([*LIVE, "", "The demo ran.", "", "Ctrl-C to stop.", ""]))
    )


def test_everything_the_bridge_did_and_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = _bridge()
    bridge.router = Router(
        [
            HttpRoute("Ingest", "POST", "/split/impressions"),
            HttpRoute("Profiles", "GET", "/profiles/{trafficType}/{key}"),
            HttpRoute("Testers", "PUT", "/testers/{trafficType}/{key}"),
            HttpRoute("Ui", "ANY", "$default"),
        ]
    )
    bridge.pollers = [SimpleNamespace(queue_url="http://q/impressions", source=SimpleNamespace(function="Processor"))]  # type: ignore[list-item]
    secrets = {"WebhookTokenSecret": "w t", "ProfileApiTokenSecret": "p", "TestersApiTokenSecret": "t"}
    bridge.provisioned = Provisioned(Template({}), secret_values=secrets)
    bridge.receiver = SimpleNamespace(url="http://127.0.0.1:4000")  # type: ignore[assignment]
    bridge.receiver_urls = {"SPLIT_EVENTS_URL": "http://127.0.0.1:4000/api"}
    monkeypatch.setattr(bridge, "destinations_report", lambda: ["  split: 2 event(s)"])
    replay = {
        "webhook": (200, {"ok": 1}),
        "idle": False,
        "profiles": {"user/u-1": (200, {"flags": {}})},
        "mparticle": {"batch": (202, {"a": 1})},
    }
    expected = [
        *HEAD,
        f"  POST   {URL}/split/impressions  -> Ingest",
        f"  GET    {URL}/profiles/{{trafficType}}/{{key}}  -> Profiles",
        f"  PUT    {URL}/testers/{{trafficType}}/{{key}}  -> Testers",
        "  $default  -> Ui",
        "  SQS    http://q/impressions  -> Processor",
        "",
        'Replayed events/payloads/split_impressions.json: HTTP 200 {"ok": 1}',
        "  (the queue consumers did not finish within 60 s)",
        "",
        "Profile user/u-1 (GET /profiles/user/u-1): HTTP 200",
        "  identity type None, not a tester",
        "",
        "Replayed the sample mParticle batches (events/payloads/mparticle_*.json):",
        '  batch: HTTP 202 {"a": 1}',
        "",
        "What each destination received:",
        "  split: 2 event(s)",
        "",
        f"Outside services -> local receiver http://127.0.0.1:4000 (GET {URL}/_local/receivers):",
        "  SPLIT_EVENTS_URL = http://127.0.0.1:4000/api",
        "",
        "Local secret values (FLAGBRIDGE_LOCAL_SECRET_<LogicalId> to change):",
        "  WebhookTokenSecret: w t",
        "  ProfileApiTokenSecret: p",
        "  TestersApiTokenSecret: t",
        "",
        "Try it:",
        "  gzip -c events/payloads/split_impressions.json | curl -sS -X POST -H 'Content-Type: application/json'"
        f" --data-binary @- '{URL}/split/impressions?token=w%20t'",
        f"  curl -sS -H 'Authorization: Bearer p' {URL}/profiles/user/u-1001",
        "  curl -sS -X PUT -H 'Authorization: Bearer t' -H 'Content-Type: application/json'"
        """ -d '{"expiresAt": '$(($(date +%s) + 3600))', "reason": "trying the registry"}'"""
        f" {URL}/testers/user/u-1001",
        f"  curl -sS {URL}/_local/idle",
        *LIVE,
    ]
    assert bridge.summary(replay, closing=False) == "\n".join(expected)
    assert "did not finish" not in bridge.summary({**replay, "idle": True}, closing=False)
