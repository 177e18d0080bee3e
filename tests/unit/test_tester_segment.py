"""The tester registry driving a Split segment: the Admin API segment client (batches, retries, both credential
headers, refusals before any call) and the sync (hooks, pending state, reconcile, dry run, audit)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from flagbridge.config import ConfigError, TesterSegment, parse_config
from flagbridge.oracle.split_admin import (
    MAX_SEGMENT_KEYS_PER_CALL,
    SEGMENT_KEYS_PAGE,
    SegmentRequestError,
    SplitAdminClient,
)
from flagbridge.outbound import Response as HttpAnswer
from flagbridge.outbound import TransportError as AdminTransportError
from flagbridge.testers.registry import InMemoryTesterStore, TesterRegistry
from flagbridge.testers.segment import SegmentSync

NOW = 1_767_225_700.0
ADMIN = "http://admin/internal/api/v2"
TARGET = TesterSegment(environment="Production", segment="flagbridge_testers", traffic_type="user")


class FakeSplit:
    """Split's segment endpoints in memory, with scripted failures and every request recorded."""

    def __init__(self, auth: str = "bearer") -> None:
        self.auth = auth
        self.keys: dict[tuple[str, str], list[str]] = {}
        self.failures: list[HttpAnswer | Exception] = []
        self.requests: list[tuple[str, str, Any]] = []

    def _check(self, headers: Mapping[str, str]) -> None:
        if self.auth == "bearer":
            assert headers["Authorization"] == "Bearer the-credential" and "x-api-key" not in headers
        else:
            assert headers["x-api-key"] == "the-credential" and "Authorization" not in headers

    def _failure(self) -> HttpAnswer | None:
        if not self.failures:
            return None
        failure = self.failures.pop(0)
        if isinstance(failure, Exception):
            raise failure
        return failure

    def put(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        self._check(headers)
        document = json.loads(body)
        self.requests.append(("PUT", url, document))
        failed = self._failure()
        if failed is not None:
            return failed
        parts = urlsplit(url).path.split("/")
        segment = self.keys.setdefault((parts[-3], parts[-2]), [])
        assert len(document["keys"]) <= MAX_SEGMENT_KEYS_PER_CALL
        if parts[-1] == "uploadKeys":
            assert parse_qs(urlsplit(url).query) == {"replace": ["false"]}
            segment.extend(k for k in document["keys"] if k not in segment)
        else:
            assert parts[-1] == "removeKeys"
            segment[:] = [k for k in segment if k not in set(document["keys"])]
        return HttpAnswer(200, {}, "{}")

    def get(self, url: str, headers: Mapping[str, str]) -> HttpAnswer:
        self._check(headers)
        self.requests.append(("GET", url, None))
        failed = self._failure()
        if failed is not None:
            return failed
        parts = urlsplit(url).path.split("/")
        query = parse_qs(urlsplit(url).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        keys = self.keys.get((parts[-3], parts[-2]), [])
        page = [{"key": key} for key in keys[offset : offset + limit]]
        return HttpAnswer(200, {}, json.dumps({"keys": page, "offset": offset, "limit": limit, "count": len(keys)}))

    def calls(self, kind: str) -> int:
        return sum(1 for method, url, _ in self.requests if urlsplit(url).path.endswith(kind))


def client(split: FakeSplit, sleeps: list[float] | None = None) -> SplitAdminClient:
    return SplitAdminClient(
        split, ADMIN, lambda: "the-credential", auth=split.auth,  # type: ignore[arg-type]
        sleep=(sleeps if sleeps is not None else []).append,
    )  # fmt: skip


class World:
    def __init__(self, auth: str = "bearer", targets: list[TesterSegment] | None = None) -> None:
        self.now = NOW
        self.split = FakeSplit(auth)
        self.store = InMemoryTesterStore()
        self.problems: list[tuple[str, dict[str, Any]]] = []
        self.sync = SegmentSync(
            targets if targets is not None else [TARGET], client(self.split), self.store, lambda: self.now,
            lambda message, extra: self.problems.append((message, extra)),
        )  # fmt: skip
        self.registry = TesterRegistry(self.store, clock=lambda: self.now, segment=self.sync)

    def segment(self) -> list[str]:
        return self.split.keys.get(("Production", "flagbridge_testers"), [])

    def state(self, key: str) -> str | None:
        return self.store.registrations[f"user#{key}"].segment


@pytest.mark.parametrize("auth", ["bearer", "x-api-key"])
def test_register_remove_and_the_audit_trail_with_either_credential(auth: str) -> None:
    world = World(auth)
    registration = world.registry.register("user", "qa-7", NOW + 3600, "checkout QA-142", "token:ci")
    assert registration.segment == "pending"  # stored pending before the call...
    assert world.segment() == ["qa-7"] and world.state("qa-7") == "synced"  # ...then added and marked
    assert world.registry.page().registrations[0].document()["segment"] == "synced"
    (_, url, body) = world.split.requests[0]
    assert url == f"{ADMIN}/segments/Production/flagbridge_testers/uploadKeys?replace=false"
    assert body["keys"] == ["qa-7"] and "token:ci" in body["comment"] and "checkout QA-142" in body["comment"]
    assert world.registry.remove("user", "qa-7", "token:ci", "done")
    assert world.segment() == []
    actions = [(a.action, a.actor, a.detail) for a in world.registry.history("user", "qa-7")]
    assert actions == [
        ("register", "token:ci", None),
        ("segment_add", "token:ci", "Production/flagbridge_testers"),
        ("remove", "token:ci", None),
        ("segment_remove", "token:ci", "Production/flagbridge_testers"),
    ]
    assert world.problems == []


def test_other_traffic_types_and_no_segment_change_nothing() -> None:
    world = World()
    registration = world.registry.register("account", "acme", NOW + 3600, "b2b", "token:ci")
    assert registration.segment is None and "segment" not in registration.document()
    assert world.split.requests == []
    off = World(targets=[])
    assert off.registry.register("user", "qa-1", NOW + 3600, "x", "token:ci").segment is None
    assert off.split.requests == [] and off.store.audits[0].action == "register" and len(off.store.audits) == 1


def test_an_outage_keeps_the_registration_pending_and_the_reconcile_repairs_it() -> None:
    world = World()
    world.split.failures = [HttpAnswer(503, {}, "down")] * 5 + [AdminTransportError("timeout")] * 5
    world.registry.register("user", "qa-1", NOW + 3600, "run 1", "run:1")  # 503 five times: budget spent
    world.registry.register("user", "qa-2", NOW + 3600, "run 1", "run:1")  # timeouts
    assert world.segment() == [] and world.state("qa-1") == world.state("qa-2") == "pending"
    assert [p[1]["action"] for p in world.problems] == ["add", "add"]
    assert [r.document()["segment"] for r in world.registry.page().registrations] == ["pending", "pending"]
    report = world.sync.reconcile("schedule:reconcile")
    assert report.ok and world.segment() == ["qa-1", "qa-2"]
    assert world.state("qa-1") == world.state("qa-2") == "synced" and report.marked_synced == 2
    audit = [a for a in world.store.audits if a.action == "segment_add"]
    assert {(a.key, a.actor) for a in audit} == {("qa-1", "schedule:reconcile"), ("qa-2", "schedule:reconcile")}
    assert all(a.reason.startswith("reconcile: registered until") for a in audit)


def test_reconcile_removes_expired_and_unregistered_keys_and_says_why() -> None:
    world = World()
    world.registry.register("user", "qa-1", NOW + 60, "short", "token:ci")
    world.registry.register("user", "qa-2", NOW + 3600, "long", "token:ci")
    world.split.keys[("Production", "flagbridge_testers")].append("added-by-hand")
    world.now = NOW + 120  # qa-1 expired
    report = world.sync.reconcile("schedule:reconcile")
    assert world.segment() == ["qa-2"]
    (target,) = report.targets
    assert (target.listed, target.to_add, target.to_remove, target.removed) == (3, 0, 2, 2)
    why = {a.key: a.reason for a in world.store.audits if a.action == "segment_remove"}
    assert why == {"qa-1": "reconcile: registration expired", "added-by-hand": "reconcile: not registered"}
    assert world.sync.reconcile("schedule:reconcile").write_calls == 0  # equal now: nothing to change


def test_dry_run_lists_and_reports_but_changes_nothing() -> None:
    world = World()
    world.split.failures = [HttpAnswer(500, {}, "")] * 5
    world.registry.register("user", "qa-1", NOW + 3600, "x", "token:ci")
    world.split.keys[("Production", "flagbridge_testers")] = ["stale"]
    before = len(world.store.audits)
    report = world.sync.reconcile("iam:arn:aws:iam::1:user/ops", dry_run=True)
    (target,) = report.targets
    assert (target.outcome, target.to_add, target.to_remove, target.calls) == (
        "dry_run", 1, 1, {"list": 1, "add": 0, "remove": 0},
    )  # fmt: skip
    assert world.segment() == ["stale"] and world.state("qa-1") == "pending" and len(world.store.audits) == before
    configured = World(targets=[TARGET.model_copy(update={"dry_run": True})])
    configured.registry.register("user", "qa-1", NOW + 3600, "x", "token:ci")
    assert configured.split.requests == [] and configured.state("qa-1") == "pending"


def test_a_failed_listing_changes_nothing_and_a_refusal_is_not_retried() -> None:
    world = World()
    world.registry.register("user", "qa-1", NOW + 3600, "x", "token:ci")
    world.split.failures = [HttpAnswer(404, {}, '{"message": "segment not found"}')]
    report = world.sync.reconcile("schedule:reconcile")
    assert not report.ok and report.targets[0].outcome == "list refused" and world.split.calls("keys") == 1
    world.split.failures = [HttpAnswer(429, {"x-ratelimit-reset-seconds-org": "2"}, "")]
    sleeps: list[float] = []
    update = client(world.split, sleeps).add_segment_keys("Production", "flagbridge_testers", ["qa-9"], "c")
    assert update.outcome == "ok" and sleeps == [2.0] and len(update.calls[0].attempts) == 2


def test_batches_are_bounded_by_splits_limit_and_the_listing_pages() -> None:
    world = World()
    keys = [f"qa-{n:05d}" for n in range(2 * MAX_SEGMENT_KEYS_PER_CALL + 1)]
    update = client(world.split).add_segment_keys("Production", "flagbridge_testers", keys, "bulk")
    assert update.outcome == "ok" and len(update.calls) == 3 and update.applied == keys
    listing = client(world.split).segment_keys("Production", "flagbridge_testers")
    assert listing.keys == keys and listing.calls == math.ceil(len(keys) / SEGMENT_KEYS_PAGE)
    world.split.failures = [HttpAnswer(200, {}, "{}"), HttpAnswer(400, {}, "bad")]
    partial = client(world.split).remove_segment_keys("Production", "flagbridge_testers", keys, "bulk")
    assert partial.outcome == "refused" and len(partial.applied) == MAX_SEGMENT_KEYS_PER_CALL
    assert len(partial.calls) == 2  # the third batch is not sent after a refusal


@pytest.mark.parametrize(
    ("segment", "keys"),
    [
        ("1starts_with_a_digit", ["qa-1"]),
        ("has space", ["qa-1"]),
        ("semi;colon", ["qa-1"]),
        ("x" * 129, ["qa-1"]),
        ("flagbridge_testers", [""]),
        ("flagbridge_testers", ["k" * 251]),
        ("flagbridge_testers", [" padded"]),
        ("flagbridge_testers", ["line\nbreak"]),
        ("flagbridge_testers", ["bidi\u2028"]),
    ],
)
def test_names_and_keys_split_would_refuse_are_refused_before_any_call(segment: str, keys: list[str]) -> None:
    split = FakeSplit()
    with pytest.raises(SegmentRequestError, match="Split accepts"):
        client(split).add_segment_keys("Production", segment, keys, "c")
    assert split.requests == []


def test_the_configuration_refuses_bad_segments_and_unmarked_labels() -> None:
    rules = {"test_users": {"rules": [{"name": "seg", "type": "label", "labels": ["in segment flagbridge_testers"]}]}}
    config = parse_config({**rules, "testers": {"segments": [{"environment": "Production",
                                                               "segment": "flagbridge_testers"}]}})  # fmt: skip
    assert config.testers.segments[0].label == "in segment flagbridge_testers"
    assert config.split_admin.auth == "bearer"
    with pytest.raises(ConfigError, match=r"testers\.segments\.0\.segment"):
        parse_config({**rules, "testers": {"segments": [{"environment": "Production", "segment": "bad name"}]}})
    with pytest.raises(ConfigError, match="no test_users label rule lists 'in segment other'"):
        parse_config({**rules, "testers": {"segments": [{"environment": "Production", "segment": "other"}]}})
    with pytest.raises(ConfigError, match=r"split_admin\.auth"):
        parse_config({"split_admin": {"auth": "basic"}})
    with pytest.raises(ConfigError, match="a second segment"):
        twice = [{"environment": "Production", "segment": "flagbridge_testers"}] * 2
        parse_config({**rules, "testers": {"segments": twice}})


@pytest.mark.parametrize("auth", ["bearer", "x-api-key"])
def test_kill_and_segment_clients_with_either_credential_against_the_local_receiver(auth: str) -> None:
    from flagbridge.oracle.split_admin import admin_http as Urllib3AdminHttp
    from local.receivers import Receiver

    receiver = Receiver().start()
    try:
        receiver.split_admin_key, receiver.admin_auth = "the-credential", auth
        url = f"{receiver.url}/internal/api/v2"
        right = SplitAdminClient(Urllib3AdminHttp(), url, lambda: "the-credential", auth=auth)  # type: ignore[arg-type]
        assert right.kill("ws-1", "new_checkout", "Production", "FAIL", dry_run=False).outcome == "killed"
        assert right.add_segment_keys("Production", "flagbridge_testers", ["qa-1", "qa-2"], "c").outcome == "ok"
        assert right.remove_segment_keys("Production", "flagbridge_testers", ["qa-1"], "c").outcome == "ok"
        assert right.segment_keys("Production", "flagbridge_testers").keys == ["qa-2"]
        other = "x-api-key" if auth == "bearer" else "bearer"
        wrong = SplitAdminClient(Urllib3AdminHttp(), url, lambda: "the-credential", auth=other)  # type: ignore[arg-type]
        assert wrong.kill("ws-1", "new_checkout", "Production", "FAIL", dry_run=False).outcome == "refused"
        assert wrong.segment_keys("Production", "flagbridge_testers").outcome == "refused"
        assert [kill["flag"] for kill in receiver.kills] == ["new_checkout"]
    finally:
        receiver.stop()
    with pytest.raises(ValueError, match="auth must be one of bearer, x-api-key"):
        SplitAdminClient(FakeSplit(), ADMIN, lambda: "k", auth="basic")  # type: ignore[arg-type]


def test_a_registered_key_split_would_refuse_is_left_out_and_reported_not_fatal() -> None:
    world = World()
    odd = "ok-key"
    world.registry.register("user", odd, NOW + 3600, "x", "token:ci")
    # a key the registry took but Split would refuse (the registry's rules may differ from Split's one day)
    bad = replace(world.store.registrations[f"user#{odd}"], key="tab\tkey", segment="pending")
    world.store.registrations["user#tab\tkey"] = bad
    world.sync.registered([bad])
    report = world.sync.reconcile("schedule:reconcile")
    (target,) = report.targets
    assert report.ok and target.refused_keys == 1 and world.segment() == [odd]
    assert world.state("tab\tkey") == "pending" and world.state(odd) == "synced"
    assert [p[0] for p in world.problems].count("registered keys Split would refuse are left out of the segment") == 2
    pool = World()
    pool.registry.register_pool("user", ["qa-1", "qa-2"], 3600, "run 1", "run:1")
    padded = replace(pool.store.registrations["user#qa-2"], key=" padded")
    pool.sync.registered([padded, pool.store.registrations["user#qa-1"]])
    assert pool.segment() == ["qa-1", "qa-2"]  # the refused key was not sent, the others were
