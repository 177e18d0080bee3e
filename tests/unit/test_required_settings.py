"""A missing required setting fails when the component is built, naming its variable (not as a botocore error)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flagbridge import runtime
from flagbridge.errors import ConfigError
from flagbridge.settings import Settings

VARIABLES = (
    "PROFILES_TABLE",
    "IMPRESSIONS_QUEUE_URL",
    "QUARANTINE_BUCKET",
    "BATCHES_QUEUE_URL",
    "DELIVERY_LEDGER_TABLE",
    "WEBHOOK_TOKEN_SECRET",
    "FLAGBRIDGE_WEBHOOK_TOKEN",
    "PROFILE_API_TOKEN_SECRET",
    "FLAGBRIDGE_PROFILE_API_TOKEN",
    "MPARTICLE_CREDENTIALS_SECRET",
    "FLAGBRIDGE_MPARTICLE_CREDENTIALS",
    "MPARTICLE_WEBHOOK_AUTH_SECRET",
    "FLAGBRIDGE_MPARTICLE_WEBHOOK_AUTH",
    "TESTERS_TABLE",
    "TESTERS_API_TOKEN_SECRET",
    "FLAGBRIDGE_TESTERS_API_TOKEN",
)


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    runtime.reset()
    yield
    runtime.reset()


FACTORIES: list[tuple[Callable[[], Any], str]] = [
    (runtime.profile_store, "PROFILES_TABLE is not set"),
    (runtime.impressions_sender, "IMPRESSIONS_QUEUE_URL is not set"),
    (runtime.quarantine, "QUARANTINE_BUCKET is not set"),
    (runtime.batches_sender, "BATCHES_QUEUE_URL is not set"),
    (runtime.delivery_ledger, "DELIVERY_LEDGER_TABLE is not set"),
    (runtime.webhook_token, "WEBHOOK_TOKEN_SECRET is not set"),
    (runtime.profile_api_token, "PROFILE_API_TOKEN_SECRET is not set"),
    (runtime.mparticle_credentials, "MPARTICLE_CREDENTIALS_SECRET is not set"),
    (runtime.mparticle_webhook_auth, "MPARTICLE_WEBHOOK_AUTH_SECRET is not set"),
    (runtime.tester_registry, "TESTERS_TABLE is not set"),
    (runtime.testers_api_tokens, "TESTERS_API_TOKEN_SECRET is not set"),
]


@pytest.mark.usefixtures("bare_environment")
@pytest.mark.parametrize(("factory", "message"), FACTORIES, ids=[message.split()[0] for _, message in FACTORIES])
def test_a_factory_without_its_setting_names_the_variable(factory: Callable[[], Any], message: str) -> None:
    # Given an environment without the variable; When the component is built; Then one clear ConfigError
    with pytest.raises(ConfigError) as raised:
        factory()
    assert str(raised.value).startswith(message)


def test_require_returns_a_set_value() -> None:
    assert Settings.from_environ({"PROFILES_TABLE": "profiles"}).require("profiles_table") == "profiles"
    with pytest.raises(ConfigError, match=r"^PROFILES_TABLE is not set$"):
        Settings.from_environ({}).require("profiles_table")


@pytest.mark.usefixtures("bare_environment")
def test_without_a_testers_table_the_consumers_skip_the_registry() -> None:
    # the router and the processor run without the registry (nobody is a registered tester), never fail
    assert runtime.registered_testers() is None
