"""Runtime settings: resource names from the environment, and the configuration file, each loaded once.

Every handler reads its resource names and secrets through :func:`get_settings` (via :mod:`flagbridge.runtime`,
whose factories :meth:`Settings.require` what they use, so a missing variable fails naming it). The only other
readers of the environment are the configuration file's ``${NAME}`` references (:func:`flagbridge.config.load_config`)
and Powertools' own ``POWERTOOLS_*`` variables. In AWS the template sets the variables; locally the runner sets
them for the moto resources.

The settings are plain values read from the environment, so this module imports no pydantic: a function that
never reads the configuration file (the profile API) starts without the configuration models, about a third of
``import boto3``. The file is loaded, and validated, the first time :attr:`Settings.config` is read; the handlers
whose requests read it import :mod:`flagbridge.config` at init, so their cold start still pays for its models
where it is measured (``tests/handlers/test_handler_init.py`` pins which do).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flagbridge.errors import ConfigError

if TYPE_CHECKING:
    from flagbridge.config import BridgeConfig

# Locally: layers/shared/config/flagbridge.yaml. In Lambda the template points FLAGBRIDGE_CONFIG at the layer's
# /opt/config/flagbridge.json (the same file, converted to JSON when the layer is built).
PACKAGED_CONFIG = Path(__file__).resolve().parent.parent / "config" / "flagbridge.yaml"


def _variable(
    default: str | int, *, alias: str, low: int | None = None, high: int | None = None, secret: bool = False
) -> Any:
    """A setting read from the environment variable ``alias``, as its default's type (str, or int within bounds).

    ``secret=True`` keeps the value out of the settings' repr."""
    kind = "int" if isinstance(default, int) else "str"
    return field(default=default, repr=not secret, metadata={"alias": alias, "kind": kind, "low": low, "high": high})


def _map_variable(*, alias: str) -> Any:
    """A setting read from the environment variable ``alias`` holding a JSON object of strings."""
    return field(default_factory=dict, metadata={"alias": alias, "kind": "map"})


@dataclass(frozen=True)
class Settings:
    """Names of the AWS resources, where secrets live, and the configuration file."""

    config_path: str = _variable(str(PACKAGED_CONFIG), alias="FLAGBRIDGE_CONFIG")
    profiles_table: str = _variable("", alias="PROFILES_TABLE")
    impressions_queue_url: str = _variable("", alias="IMPRESSIONS_QUEUE_URL")
    quarantine_bucket: str = _variable("", alias="QUARANTINE_BUCKET")
    # Secrets: the name/ARN of a Secrets Manager secret (AWS) ...
    webhook_token_secret: str = _variable("", alias="WEBHOOK_TOKEN_SECRET")
    profile_api_token_secret: str = _variable("", alias="PROFILE_API_TOKEN_SECRET")
    testers_api_token_secret: str = _variable("", alias="TESTERS_API_TOKEN_SECRET")
    # ... or, for local development only, the value itself.
    webhook_token: str = _variable("", alias="FLAGBRIDGE_WEBHOOK_TOKEN", secret=True)
    profile_api_token: str = _variable("", alias="FLAGBRIDGE_PROFILE_API_TOKEN", secret=True)
    testers_api_token: str = _variable("", alias="FLAGBRIDGE_TESTERS_API_TOKEN", secret=True)
    secrets_max_age_seconds: int = _variable(300, alias="FLAGBRIDGE_SECRETS_MAX_AGE")
    # The tester registry (both directions read it; empty: no registry, nobody is a registered tester).
    testers_table: str = _variable("", alias="TESTERS_TABLE")
    # The CDP direction.
    batches_queue_url: str = _variable("", alias="BATCHES_QUEUE_URL")
    delivery_ledger_table: str = _variable("", alias="DELIVERY_LEDGER_TABLE")
    destination_queues: Mapping[str, str] = _map_variable(alias="DESTINATION_QUEUES")
    destination_dlqs: Mapping[str, str] = _map_variable(alias="DESTINATION_DLQS")
    mparticle_credentials_secret: str = _variable("", alias="MPARTICLE_CREDENTIALS_SECRET")
    mparticle_webhook_auth_secret: str = _variable("", alias="MPARTICLE_WEBHOOK_AUTH_SECRET")
    mparticle_credentials: str = _variable("", alias="FLAGBRIDGE_MPARTICLE_CREDENTIALS", secret=True)
    mparticle_webhook_auth: str = _variable("", alias="FLAGBRIDGE_MPARTICLE_WEBHOOK_AUTH", secret=True)
    # The test oracle.
    oracle_counters_table: str = _variable("", alias="ORACLE_COUNTERS_TABLE")
    oracle_verdicts_table: str = _variable("", alias="ORACLE_VERDICTS_TABLE")
    oracle_alarm_topic_arn: str = _variable("", alias="ORACLE_ALARM_TOPIC_ARN")
    oracle_event_bus_name: str = _variable("default", alias="ORACLE_EVENT_BUS_NAME")
    oracle_api_token_secret: str = _variable("", alias="ORACLE_API_TOKEN_SECRET")
    oracle_api_token: str = _variable("", alias="FLAGBRIDGE_ORACLE_API_TOKEN", secret=True)
    split_admin_api_url: str = _variable("https://api.split.io/internal/api/v2", alias="SPLIT_ADMIN_API_URL")
    split_admin_api_key_secret: str = _variable("", alias="SPLIT_ADMIN_API_KEY_SECRET")

    # Test runs in AWS (flagbridge.runs).
    runs_table: str = _variable("", alias="RUNS_TABLE")
    shard_queue_url: str = _variable("", alias="SHARD_QUEUE_URL")
    manifest_bucket: str = _variable("", alias="MANIFEST_BUCKET")
    traffic_stop_parameter: str = _variable("", alias="TRAFFIC_STOP_PARAMETER")
    traffic_parallelism: int = _variable(10, low=1, high=10_000, alias="TRAFFIC_PARALLELISM")
    traffic_shard_lease_seconds: int = _variable(60, low=1, high=900, alias="TRAFFIC_SHARD_LEASE_SECONDS")
    # runs until decided: a round's look waits this long for the oracle's evaluation, and gives up after the wait
    traffic_look_delay_seconds: int = _variable(30, low=0, high=900, alias="TRAFFIC_LOOK_DELAY_SECONDS")
    traffic_look_wait_seconds: int = _variable(180, low=1, high=3600, alias="TRAFFIC_LOOK_WAIT_SECONDS")
    traffic_results_url: str = _variable("", alias="TRAFFIC_RESULTS_URL")
    traffic_api_token_secret: str = _variable("", alias="TRAFFIC_API_TOKEN_SECRET")
    traffic_api_token: str = _variable("", alias="FLAGBRIDGE_TRAFFIC_API_TOKEN", secret=True)
    traffic_run_tag_key_secret: str = _variable("", alias="TRAFFIC_RUN_TAG_KEY_SECRET")

    @classmethod
    def variables(cls) -> dict[str, tuple[str, Any]]:
        """Each setting's field name -> (its environment variable, its default)."""
        return {
            item.name: (item.metadata["alias"], {} if item.default_factory is dict else item.default)
            for item in fields(cls)
        }

    def require(self, name: str) -> str:
        """The value of a setting a component cannot work without; ConfigError naming its variable if unset."""
        value = getattr(self, name)
        if not value:
            raise ConfigError(f"{self.variables()[name][0]} is not set")
        return str(value)

    @cached_property
    def config(self) -> BridgeConfig:
        """The configuration file, loaded and validated on first use (ConfigError naming the key if invalid)."""
        from flagbridge.config import load_config

        return load_config(self.config_path)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from ``environ`` (the process's by default); ConfigError naming every invalid variable."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        invalid: list[str] = []
        for item in fields(cls):
            alias = item.metadata["alias"]
            if alias not in source:
                continue
            kind = item.metadata["kind"]
            if kind == "map":
                values[item.name] = _json_map(alias, source[alias])
            elif kind == "int":
                values[item.name] = _integer(source[alias], item.metadata["low"], item.metadata["high"])
            else:
                values[item.name] = source[alias]
            if values[item.name] is None:
                invalid.append(alias)
        if invalid:
            raise ConfigError(f"invalid environment variables: {', '.join(invalid)}")
        return cls(**values)


def _json_map(name: str, text: str) -> dict[str, str] | None:
    """A ``{destination: queue URL}`` variable; None when it is JSON of another shape."""
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        raise ConfigError(f"environment variable {name} must be a JSON object") from exc
    if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
        return value
    return None


def _integer(text: str, low: int | None, high: int | None) -> int | None:
    """A whole number within its bounds; None otherwise."""
    try:
        value = int(text.strip())
    except ValueError:
        return None
    if (low is not None and value < low) or (high is not None and value > high):
        return None
    return value


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once (a warm Lambda container reuses them)."""
    return Settings.from_environ()
