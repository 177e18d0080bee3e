"""Runtime settings: resource names from the environment plus the YAML configuration, loaded once.

Every handler reads its resource names and secrets through :func:`get_settings` (via :mod:`flagbridge.runtime`,
whose factories :meth:`Settings.require` what they use, so a missing variable fails naming it). The only other
readers of the environment are the configuration file's ``${NAME}`` references (:func:`flagbridge.config.load_config`)
and Powertools' own ``POWERTOOLS_*`` variables. In AWS the template sets the variables; locally the runner sets
them for the moto resources.
"""

from __future__ import annotations

import json
import os
from functools import cache, cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flagbridge.config import BridgeConfig, load_config
from flagbridge.errors import ConfigError

# Locally: layers/shared/config/flagbridge.yaml. In Lambda the template points FLAGBRIDGE_CONFIG at the layer's
# /opt/config/flagbridge.json (the same file, converted to JSON when the layer is built).
PACKAGED_CONFIG = Path(__file__).resolve().parent.parent / "config" / "flagbridge.yaml"


class Settings(BaseModel):
    """Names of the AWS resources, where secrets live, and the configuration file."""

    model_config = ConfigDict(frozen=True)

    config_path: str = Field(default=str(PACKAGED_CONFIG), alias="FLAGBRIDGE_CONFIG")
    profiles_table: str = Field(default="", alias="PROFILES_TABLE")
    impressions_queue_url: str = Field(default="", alias="IMPRESSIONS_QUEUE_URL")
    quarantine_bucket: str = Field(default="", alias="QUARANTINE_BUCKET")
    # Secrets: the name/ARN of a Secrets Manager secret (AWS) ...
    webhook_token_secret: str = Field(default="", alias="WEBHOOK_TOKEN_SECRET")
    profile_api_token_secret: str = Field(default="", alias="PROFILE_API_TOKEN_SECRET")
    testers_api_token_secret: str = Field(default="", alias="TESTERS_API_TOKEN_SECRET")
    # ... or, for local development only, the value itself.
    webhook_token: str = Field(default="", alias="FLAGBRIDGE_WEBHOOK_TOKEN", repr=False)
    profile_api_token: str = Field(default="", alias="FLAGBRIDGE_PROFILE_API_TOKEN", repr=False)
    testers_api_token: str = Field(default="", alias="FLAGBRIDGE_TESTERS_API_TOKEN", repr=False)
    secrets_max_age_seconds: int = Field(default=300, alias="FLAGBRIDGE_SECRETS_MAX_AGE")
    # The tester registry (both directions read it; empty: no registry, nobody is a registered tester).
    testers_table: str = Field(default="", alias="TESTERS_TABLE")
    # The CDP direction.
    batches_queue_url: str = Field(default="", alias="BATCHES_QUEUE_URL")
    delivery_ledger_table: str = Field(default="", alias="DELIVERY_LEDGER_TABLE")
    destination_queues: dict[str, str] = Field(default_factory=dict, alias="DESTINATION_QUEUES")
    destination_dlqs: dict[str, str] = Field(default_factory=dict, alias="DESTINATION_DLQS")
    mparticle_credentials_secret: str = Field(default="", alias="MPARTICLE_CREDENTIALS_SECRET")
    mparticle_webhook_auth_secret: str = Field(default="", alias="MPARTICLE_WEBHOOK_AUTH_SECRET")
    mparticle_credentials: str = Field(default="", alias="FLAGBRIDGE_MPARTICLE_CREDENTIALS", repr=False)
    mparticle_webhook_auth: str = Field(default="", alias="FLAGBRIDGE_MPARTICLE_WEBHOOK_AUTH", repr=False)
    # The test oracle.
    oracle_counters_table: str = Field(default="", alias="ORACLE_COUNTERS_TABLE")
    oracle_verdicts_table: str = Field(default="", alias="ORACLE_VERDICTS_TABLE")
    oracle_alarm_topic_arn: str = Field(default="", alias="ORACLE_ALARM_TOPIC_ARN")
    oracle_event_bus_name: str = Field(default="default", alias="ORACLE_EVENT_BUS_NAME")
    oracle_api_token_secret: str = Field(default="", alias="ORACLE_API_TOKEN_SECRET")
    oracle_api_token: str = Field(default="", alias="FLAGBRIDGE_ORACLE_API_TOKEN", repr=False)
    split_admin_api_url: str = Field(default="https://api.split.io/internal/api/v2", alias="SPLIT_ADMIN_API_URL")
    split_admin_api_key_secret: str = Field(default="", alias="SPLIT_ADMIN_API_KEY_SECRET")

    # Test runs in AWS (flagbridge.runs).
    runs_table: str = Field(default="", alias="RUNS_TABLE")
    shard_queue_url: str = Field(default="", alias="SHARD_QUEUE_URL")
    manifest_bucket: str = Field(default="", alias="MANIFEST_BUCKET")
    traffic_stop_parameter: str = Field(default="", alias="TRAFFIC_STOP_PARAMETER")
    traffic_parallelism: int = Field(default=10, ge=1, le=10_000, alias="TRAFFIC_PARALLELISM")
    traffic_shard_lease_seconds: int = Field(default=60, ge=1, le=900, alias="TRAFFIC_SHARD_LEASE_SECONDS")
    # runs until decided: a round's look waits this long for the oracle's evaluation, and gives up after the wait
    traffic_look_delay_seconds: int = Field(default=30, ge=0, le=900, alias="TRAFFIC_LOOK_DELAY_SECONDS")
    traffic_look_wait_seconds: int = Field(default=180, ge=1, le=3600, alias="TRAFFIC_LOOK_WAIT_SECONDS")
    traffic_results_url: str = Field(default="", alias="TRAFFIC_RESULTS_URL")
    traffic_api_token_secret: str = Field(default="", alias="TRAFFIC_API_TOKEN_SECRET")
    traffic_api_token: str = Field(default="", alias="FLAGBRIDGE_TRAFFIC_API_TOKEN", repr=False)
    traffic_run_tag_key_secret: str = Field(default="", alias="TRAFFIC_RUN_TAG_KEY_SECRET")

    def require(self, field: str) -> str:
        """The value of a setting a component cannot work without; ConfigError naming its variable if unset."""
        value = getattr(self, field)
        if not value:
            raise ConfigError(f"{type(self).model_fields[field].alias or field} is not set")
        return str(value)

    @cached_property
    def config(self) -> BridgeConfig:
        return load_config(self.config_path)

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Settings:
        source = dict(os.environ if environ is None else environ)
        known = {field.alias for field in cls.model_fields.values() if field.alias}
        values: dict[str, object] = {key: value for key, value in source.items() if key in known}
        for name in ("DESTINATION_QUEUES", "DESTINATION_DLQS"):  # JSON maps {destination: queue URL}
            if isinstance(values.get(name), str):
                try:
                    values[name] = json.loads(str(values[name]) or "{}")
                except ValueError as exc:
                    raise ConfigError(f"environment variable {name} must be a JSON object") from exc
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            names = ", ".join(str(error["loc"][0]) for error in exc.errors())
            raise ConfigError(f"invalid environment variables: {names}") from exc


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once (a warm Lambda container reuses them)."""
    settings = Settings.from_environ()
    _ = settings.config  # fail fast at cold start on a broken configuration file
    return settings
