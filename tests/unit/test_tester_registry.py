"""The tester registry's domain: validation, expiry on read, audit, pages and pools (on the in-memory twin)."""

from __future__ import annotations

import pytest

from flagbridge.testers.registry import (
    MAX_REGISTRATION_SECONDS,
    InMemoryTesterStore,
    InvalidTesterError,
    RegistryUnavailableError,
    TesterRegistry,
    decode_cursor,
    encode_cursor,
    iso,
    parse_expiry,
    parse_page_size,
    user_hash,
)

NOW = 1_790_000_000.0  # 2026-09-21


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> InMemoryTesterStore:
    return InMemoryTesterStore()


@pytest.fixture
def registry(store: InMemoryTesterStore, clock: Clock) -> TesterRegistry:
    return TesterRegistry(store, clock)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (NOW + 60, NOW + 60),
        (int(NOW) + 3600, NOW + 3600),
        (str(int(NOW) + 3600), NOW + 3600),
        (NOW + 0.2, NOW + 1),  # rounded up: never shorter than asked
        (iso(NOW + 7200), NOW + 7200),
        (iso(NOW + 7200).replace("Z", "z"), NOW + 7200),
        ("2026-09-21T16:13:20+02:00", NOW),  # NOW + 0 in another zone is not the future...
    ],
)
def test_expiry_forms(value: object, expected: float) -> None:
    if expected == NOW:
        assert parse_expiry(value, NOW - 10) == int(NOW)  # ... but is ten seconds ahead of NOW - 10
        return
    assert parse_expiry(value, NOW) == int(expected)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (NOW, "expired"),
        (NOW - 1, "expired"),
        (0, "expired"),
        (-5, "expired"),
        (NOW + MAX_REGISTRATION_SECONDS + 1, "expiry_too_far"),
        (NOW * 1000 + 60_000, "expiry_too_far"),  # milliseconds
        (True, "invalid_expiry"),
        (None, "invalid_expiry"),
        ("", "invalid_expiry"),
        ("tomorrow", "invalid_expiry"),
        ("2026-09-22T10:00:00", "invalid_expiry"),  # no zone
        ("nan", "invalid_expiry"),
        (float("inf"), "invalid_expiry"),
        ("1" * 200, "invalid_expiry"),
        ([NOW + 60], "invalid_expiry"),
        ({"at": NOW + 60}, "invalid_expiry"),
    ],
)
def test_bad_expiries_are_refused_with_a_code(value: object, code: str) -> None:
    with pytest.raises(InvalidTesterError) as caught:
        parse_expiry(value, NOW)
    assert caught.value.code == code


def test_register_then_active_until_expiry(registry: TesterRegistry, clock: Clock) -> None:
    registration = registry.register("user", "qa-7", NOW + 100, "checkout test", "token:ci")
    assert registration.user_id == "user#qa-7"
    assert registry.active(["user#qa-7", "user#u-1"]) == {"user#qa-7": registration}
    clock.now = NOW + 100  # TTL deletes late: the expiry check on read makes it a customer again on time
    assert registry.active(["user#qa-7"]) == {}


def test_every_change_is_audited(registry: TesterRegistry, store: InMemoryTesterStore, clock: Clock) -> None:
    registry.register("user", "qa-7", NOW + 100, "  first run ", "token:ci")
    clock.now += 5
    registry.register("user", "qa-7", NOW + 500, "second run", "iam:arn:aws:iam::1:user/ops")
    clock.now += 5
    assert registry.remove("user", "qa-7", "token:ci", "done") is True
    assert registry.remove("user", "qa-7", "token:ci") is False  # nothing to remove: no audit entry
    history = registry.history("user", "qa-7")
    assert [(a.action, a.actor, a.reason, a.expires_at) for a in history] == [
        ("register", "token:ci", "first run", int(NOW) + 100),
        ("register", "iam:arn:aws:iam::1:user/ops", "second run", int(NOW) + 500),
        ("remove", "token:ci", "done", None),
    ]
    assert [a.at for a in history] == [int(NOW * 1000), int((NOW + 5) * 1000), int((NOW + 10) * 1000)]
    assert registry.active(["user#qa-7"]) == {}


@pytest.mark.parametrize(
    ("traffic_type", "key", "code"),
    [
        ("", "k", "invalid_traffic_type"),
        ("user type", "k", "invalid_traffic_type"),
        ("-user", "k", "invalid_traffic_type"),
        ("u" * 81, "k", "invalid_traffic_type"),
        ("user", "", "invalid_key"),
        ("user", "   ", "invalid_key"),
        ("user", " padded", "invalid_key"),
        ("user", "k" * 251, "invalid_key"),
        ("user", "a\nb", "invalid_key"),
        ("user", "a\x00b", "invalid_key"),
        ("user", "a\ud800b", "invalid_key"),
    ],
)
def test_bad_ids_are_refused(registry: TesterRegistry, traffic_type: str, key: str, code: str) -> None:
    with pytest.raises(InvalidTesterError) as caught:
        registry.register(traffic_type, key, NOW + 60, "why", "token:ci")
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"expiresAt": NOW + 60}, "missing_reason"),
        ({"reason": "why"}, "missing_expiry"),
        ({"expiresAt": NOW + 60, "reason": ""}, "invalid_reason"),
        ({"expiresAt": NOW + 60, "reason": 7}, "invalid_reason"),
        ({"expiresAt": NOW + 60, "reason": "x" * 201}, "invalid_reason"),
        ({"expiresAt": NOW + 60, "reason": "a\x07b"}, "invalid_reason"),
        ({"expiresAt": NOW + 60, "reason": "why", "admin": True}, "unknown_field"),
    ],
)
def test_bad_bodies_are_refused(registry: TesterRegistry, store: InMemoryTesterStore, body: dict, code: str) -> None:
    with pytest.raises(InvalidTesterError) as caught:
        registry.register_body("user", "qa-1", body, "token:ci")
    assert caught.value.code == code
    assert store.registrations == {} and store.audits == []


def test_pages_skip_expired_and_follow_the_cursor(registry: TesterRegistry, clock: Clock) -> None:
    for index in range(7):
        registry.register("user", f"qa-{index}", NOW + 10 + index, "pool", "token:ci")
    clock.now = NOW + 12  # qa-0, qa-1 and qa-2 expired
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = registry.page(limit=2, cursor=cursor)
        pages += 1
        seen.extend(r.key for r in page.registrations)
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == ["qa-3", "qa-4", "qa-5", "qa-6"]
    assert pages == 4


@pytest.mark.parametrize("cursor", ["x", "!!!", encode_cursor("no-hash"), "eyJhZnRlciI6IDF9", "a" * 3000])
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidTesterError) as caught:
        decode_cursor(cursor)
    assert caught.value.code == "invalid_cursor"


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor("user#qa-ü")) == "user#qa-ü"


@pytest.mark.parametrize(("value", "expected"), [(None, 50), ("", 50), ("1", 1), ("100", 100)])
def test_page_size(value: object, expected: int) -> None:
    assert parse_page_size(value) == expected


@pytest.mark.parametrize("value", ["0", "101", "-1", "ten", "1.5", "9" * 40])
def test_bad_page_sizes(value: str) -> None:
    with pytest.raises(InvalidTesterError):
        parse_page_size(value)


def test_register_pool_for_a_run(registry: TesterRegistry, store: InMemoryTesterStore) -> None:
    keys = [f"load-{i}" for i in range(120)] + ["load-0"]
    expires = registry.register_pool("user", keys, duration_seconds=3600, reason="run r-1", actor="run:r-1")
    assert expires == int(NOW) + 3600 + 600
    assert len(registry.active(f"user#load-{i}" for i in range(120))) == 120
    assert store.write_requests == 3  # 50 registrations (100 items) per transaction
    assert len(store.audits) == 120


@pytest.mark.parametrize(
    ("keys", "duration", "code"),
    [([], 60, "empty_pool"), (["ok", " bad"], 60, "invalid_key"), (["ok"], 40 * 86400, "expiry_too_far")],
)
def test_register_pool_refuses(registry: TesterRegistry, store: InMemoryTesterStore, keys, duration, code) -> None:
    with pytest.raises(InvalidTesterError) as caught:
        registry.register_pool("user", keys, duration_seconds=duration, reason="run", actor="run:r-1")
    assert caught.value.code == code
    assert store.registrations == {}


def test_register_pool_reports_a_failing_store(clock: Clock) -> None:
    class Broken(InMemoryTesterStore):
        def put(self, registrations, audits) -> None:  # type: ignore[no-untyped-def]
            raise OSError("connection reset")

    with pytest.raises(RegistryUnavailableError):
        TesterRegistry(Broken(), clock).register_pool("user", ["a"], 60, "run", "run:1")


def test_lookup_is_one_read_per_hundred_users(registry: TesterRegistry, store: InMemoryTesterStore) -> None:
    registry.active([f"user#u-{i}" for i in range(250)] * 3)
    assert store.read_requests == 3
    registry.active([])
    assert store.read_requests == 3


def test_user_hash_hides_the_key() -> None:
    assert len(user_hash("user#alice@example.com")) == 16
    assert "alice" not in user_hash("user#alice@example.com")


def test_the_cdp_resolver_checks_registered_identities_after_the_rules() -> None:
    from flagbridge.cdp.batch import normalize_batch
    from flagbridge.cdp.testers import TesterResolver
    from flagbridge.config import TesterRules

    resolver = TesterResolver(
        TesterRules.model_validate({"rules": [{"name": "qa", "type": "key_pattern", "pattern": "qa-.*"}]})
    )
    customer = normalize_batch({"user_identities": {"customer_id": "u-7", "email": "u7@example.com"}, "events": []})
    qa = normalize_batch({"user_identities": {"customer_id": "qa-1"}, "events": []})
    registered = {("customer_id", "u-7"), ("customer_id", "qa-1")}

    decision = resolver.resolve(customer, (), registered)
    assert (decision.is_tester, decision.rule) == (True, "tester-registry")
    assert "u-7" not in decision.reason and "customer_id" in decision.reason  # reasons reach the logs
    assert resolver.resolve(qa, (), registered).rule == "qa"  # a configured rule first
    assert resolver.resolve(customer).is_tester is False
