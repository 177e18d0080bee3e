"""The bridge's configuration file: one YAML document validated by pydantic at load.

It drives identity mapping and tester rules (and, in the CDP direction, data plans, destinations
and filters). Secrets never live here: they come from Secrets Manager/SSM in AWS and from
environment variables locally. See ``layers/shared/config/flagbridge.yaml`` (the packaged configuration) for a
commented example. The leaf types it shares with the CDP modules (identity types, the strict base model,
tester rules, error formatting) live in :mod:`flagbridge.rules`, so the dependency runs one way: this module
imports :mod:`flagbridge.cdp.config` lazily, and nothing in ``cdp`` imports this module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from flagbridge.documents import load_document, read_text
from flagbridge.errors import ConfigError
from flagbridge.rules import (
    IdentityType,
    LabelRule,
    StrictModel,
    TesterRule,
    TesterRules,
    compile_pattern,
    describe_config_errors,
)

__all__ = [  # the rule models are re-exported for the callers that read the whole configuration from here
    "BridgeConfig",
    "ConfigError",
    "IdentityMappingConfig",
    "IdentityType",
    "LimitsConfig",
    "ProfilesConfig",
    "SplitAdminConfig",
    "SplitEnvironmentMapping",
    "StrictModel",
    "TesterRule",
    "TesterRules",
    "TesterSegment",
    "TestersConfig",
    "describe_config_errors",
    "expand_environment",
    "load_config",
    "parse_config",
]

if TYPE_CHECKING:
    from flagbridge.cdp.config import CdpConfig
    from flagbridge.oracle.config import OracleConfig

# --------------------------------------------------------------------------------------------------
# Identity mapping
# --------------------------------------------------------------------------------------------------


class SplitEnvironmentMapping(StrictModel):
    """Maps impressions of one Split environment (and optionally a key pattern) to a traffic type.

    Split's impressions webhook carries no traffic type, so, like Split's own mParticle feed, the
    bridge is told which traffic type and CDP identity type a key of that environment is.
    """

    environment: str | None = Field(
        default=None, description="Split environmentName or environmentId; omitted means any environment"
    )
    key_pattern: str | None = Field(default=None, description="regex the whole key must match")
    traffic_type: str = Field(min_length=1)
    identity_type: IdentityType

    @field_validator("key_pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            compile_pattern(value)
        return value

    @cached_property
    def key_regex(self) -> re.Pattern[str] | None:
        return compile_pattern(self.key_pattern) if self.key_pattern is not None else None

    def matches(self, environment_name: str, environment_id: str, key: str) -> bool:
        if self.environment is not None and self.environment not in (environment_name, environment_id):
            return False
        return self.key_regex is None or self.key_regex.fullmatch(key) is not None


class IdentityMappingConfig(StrictModel):
    """How Split keys and CDP identities correspond, in both directions."""

    split_environments: list[SplitEnvironmentMapping] = Field(
        default_factory=list, description="ordered; the first matching entry wins"
    )

    def resolve(self, environment_name: str, environment_id: str, key: str) -> SplitEnvironmentMapping | None:
        for mapping in self.split_environments:
            if mapping.matches(environment_name, environment_id, key):
                return mapping
        return None


# --------------------------------------------------------------------------------------------------
# Profiles and limits
# --------------------------------------------------------------------------------------------------


class ProfilesConfig(StrictModel):
    """Bounds of what a profile keeps per (user, flag)."""

    assignment_history_size: int = Field(default=20, ge=1, le=200)
    dedup_window_days: int = Field(
        default=14, ge=1, le=365, description="redeliveries within this window of the newest exposure are detected"
    )
    dedup_max_entries: int = Field(default=2000, ge=10, le=10000)


class LimitsConfig(StrictModel):
    """Request size guards (API Gateway HTTP APIs cap payloads at 10 MB)."""

    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_decompressed_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_impressions_per_request: int = Field(default=100_000, ge=1)
    max_cdp_request_bytes: int = Field(
        default=262_144, ge=1024, description="mParticle's own Events API limit: 256 KB per request"
    )


# --------------------------------------------------------------------------------------------------
# Split's Admin API and the testers' segment
# --------------------------------------------------------------------------------------------------


class SplitAdminConfig(StrictModel):
    """How the bridge presents its Split Admin API credential (the secret ``SPLIT_ADMIN_API_KEY_SECRET``)."""

    auth: Literal["bearer", "x-api-key"] = Field(
        default="bearer",
        description="bearer: an Admin API key (Authorization: Bearer); x-api-key: a Harness service account or "
        "personal access token",
    )


class TesterSegment(StrictModel):
    """A Split segment kept equal to the tester registry's registrations of one traffic type, in one environment."""

    __test__ = False  # not a pytest test class despite the name

    environment: str = Field(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$", description="Split environment id (or name)"
    )
    segment: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z][A-Za-z0-9_-]*$",
        description="the segment's name (Split's rule: a letter first, then letters, digits, '_' or '-')",
    )
    traffic_type: str = Field(default="user", min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    dry_run: bool = Field(default=False, description="record what would change, change nothing")

    @property
    def label(self) -> str:
        """The impression label of a user a flag serves through ``in segment <name>``."""
        return f"in segment {self.segment}"


class TestersConfig(StrictModel):
    """The tester registry's outward effects: the Split segments it drives (none: the registry stays inside)."""

    __test__ = False

    segments: list[TesterSegment] = Field(default_factory=list)
    reconcile_actor: str = Field(
        default="schedule:tester-segment-reconcile", min_length=1, max_length=128, description="the audit's 'who'"
    )

    @model_validator(mode="after")
    def _one_segment_per_environment_and_traffic_type(self) -> TestersConfig:
        seen: set[tuple[str, str]] = set()
        for index, target in enumerate(self.segments):
            if (target.environment, target.traffic_type) in seen:
                raise ValueError(
                    f"segments.{index}: a second segment for environment {target.environment!r} and traffic type "
                    f"{target.traffic_type!r}"
                )
            seen.add((target.environment, target.traffic_type))
        return self


class BridgeConfig(StrictModel):
    """The whole configuration file.

    The ``cdp`` section is kept as its parsed mapping and validated (as :class:`flagbridge.cdp.config.CdpConfig`)
    the first time :attr:`cdp` is read: the CDP models (data plans, filters, Split mapping, JSON Schema
    compilation) cost a fair share of a cold start, and the impression functions never use them. The
    functions that do (``cdp_router``, ``destination_delivery``) read :attr:`cdp` when they build their
    service, so a mistake there still fails fast, naming the key (``'cdp.destinations.0.type'``).
    """

    identity_mapping: IdentityMappingConfig = Field(default_factory=IdentityMappingConfig)
    test_users: TesterRules = Field(default_factory=TesterRules)
    profiles: ProfilesConfig = Field(default_factory=ProfilesConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    split_admin: SplitAdminConfig = Field(default_factory=SplitAdminConfig)
    testers: TestersConfig = Field(default_factory=TestersConfig)
    cdp_document: dict[str, Any] | None = Field(
        default=None, alias="cdp", description="the CDP direction: data plans, destinations, filters"
    )
    traffic_document: dict[str, Any] | None = Field(
        default=None, alias="traffic", description="traffic plans: allowlist, tester pool (flagbridge.traffic.config)"
    )
    oracle_document: dict[str, Any] | None = Field(
        default=None, alias="oracle", description="the test oracle: tests judged per flag treatment"
    )
    _source: str = PrivateAttr(default="<config>")

    @model_validator(mode="after")
    def _segment_labels_mark_testers(self) -> BridgeConfig:
        """A flag serving testers through the segment must mark them on their profiles: a label rule must list
        ``in segment <name>``, or the segment's users would be served the treatment as customers."""
        labels = {label for rule in self.test_users.rules if isinstance(rule, LabelRule) for label in rule.labels}
        for index, target in enumerate(self.testers.segments):
            if target.label not in labels:
                raise ValueError(
                    f"testers.segments.{index}.segment: no test_users label rule lists {target.label!r}, so users "
                    "served through the segment would not be marked as testers; add it to a rule's labels"
                )
        return self

    @cached_property
    def cdp(self) -> CdpConfig | None:
        """The validated ``cdp`` section (None without one); ConfigError naming the key if it is invalid."""
        if self.cdp_document is None:
            return None
        from flagbridge.cdp.config import CdpConfig  # only the CDP functions need the models

        try:
            return CdpConfig.model_validate(self.cdp_document)
        except ValidationError as exc:
            raise ConfigError(
                f"{self._source}: invalid configuration at {describe_config_errors(exc, ('cdp',))}"
            ) from exc

    @cached_property
    def oracle(self) -> OracleConfig | None:
        """The validated ``oracle`` section (None without one); ConfigError naming the key if it is invalid."""
        if self.oracle_document is None:
            return None
        from flagbridge.oracle.config import parse_oracle_config  # only the oracle functions need the models

        return parse_oracle_config(self.oracle_document, self._source)


def parse_config(document: Any, source: str = "<config>") -> BridgeConfig:
    """Validate a parsed YAML/JSON document, raising ConfigError that names the offending key."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping at the top level")
    try:
        config = BridgeConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid configuration at {describe_config_errors(exc)}") from exc
    config._source = source
    return config


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_environment(document: Any, environ: Mapping[str, str], where: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in string values with environment variables.

    This is how deployment-specific values (a queue URL the template created, a local receiver's URL)
    reach the file without editing it. Secrets must not be passed this way: they have their own secrets.
    """
    if isinstance(document, dict):
        return {
            key: expand_environment(value, environ, f"{where}.{key}" if where else str(key))
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [expand_environment(value, environ, f"{where}.{index}") for index, value in enumerate(document)]
    if isinstance(document, str) and "${" in document:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(f"invalid configuration at '{where}': environment variable {name} is not set")

        return _ENV_REFERENCE.sub(substitute, document)
    return document


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> BridgeConfig:
    """Read and validate the configuration file at ``path``: YAML, or JSON when it ends in ``.json``.

    The layer ships the YAML converted to JSON at build time, so functions never import PyYAML
    (tens of milliseconds of every cold start); people and the local runner edit and read the YAML.
    """
    config_path = Path(path)
    text = read_text(config_path, "the configuration file", ConfigError)
    # Anchors are allowed here: the file is the operator's own (not a caller's document), YAML configurations use them
    # to share a block, and the layer's build (layers/shared/Makefile) resolves them the same way into its JSON.
    fmt = "json" if config_path.suffix == ".json" else "yaml"
    document = load_document(text, fmt, str(config_path), ConfigError, aliases=True)
    document = expand_environment(document, os.environ if environ is None else environ)
    return parse_config(document, source=str(config_path))
