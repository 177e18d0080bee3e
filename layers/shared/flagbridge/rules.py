"""The configuration's leaf types, shared by :mod:`flagbridge.config` and the CDP modules.

Identity types, the strict base model, the tester rule models and the formatting of validation errors. This
module imports nothing of flagbridge, so both directions (impressions and CDP) and the configuration file's model
depend on it without depending on each other.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

IdentityType = Literal[
    "mpid",
    "customer_id",
    "email",
    "facebook",
    "twitter",
    "google",
    "microsoft",
    "yahoo",
    "other",
    "other_id_2",
    "other_id_3",
    "other_id_4",
    "other_id_5",
    "other_id_6",
    "other_id_7",
    "other_id_8",
    "other_id_9",
    "other_id_10",
    "mobile_number",
    "phone_number_2",
    "phone_number_3",
    "alias",
    "facebook_custom_audience_id",
]


class StrictModel(BaseModel):
    """Base for configuration models: unknown keys are typos, so they are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# Tester rules
# --------------------------------------------------------------------------------------------------


class _Rule(StrictModel):
    name: str = Field(min_length=1, description="recorded on the profile/decision as the rule that matched")


class KeyAllowlistRule(_Rule):
    """The Split key (or a CDP identity value) is one of the listed values."""

    type: Literal["key_allowlist"]
    keys: list[str] = Field(min_length=1)

    @cached_property
    def key_set(self) -> frozenset[str]:
        return frozenset(self.keys)


class KeyPatternRule(_Rule):
    """The Split key (or a CDP identity value) fully matches a regex, e.g. ``^qa-`` or ``.*@example\\.com``."""

    type: Literal["key_pattern"]
    pattern: str
    identity_types: list[IdentityType] | None = Field(
        default=None, description="CDP side: only these identity types are checked (default all)"
    )

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        compile_pattern(value)
        return value

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return compile_pattern(self.pattern)


class LabelRule(_Rule):
    """The impression's targeting rule label is one of the listed labels (e.g. ``whitelisted``)."""

    type: Literal["label"]
    labels: list[str] = Field(min_length=1, description="e.g. 'whitelisted', 'in segment qa_testers'")


class FlagTreatmentRule(_Rule):
    """A designated flag served one of the given treatments to the key."""

    type: Literal["flag_treatment"]
    flag: str = Field(min_length=1)
    treatments: list[str] = Field(min_length=1)


class UserAttributeRule(_Rule):
    """CDP side: a user attribute is present with one of the given values (default: truthy)."""

    type: Literal["user_attribute"]
    attribute: str = Field(min_length=1)
    values: list[str | int | float | bool] | None = Field(
        default=None, description="omitted: the attribute is true, 'true', 1 or 'yes'"
    )


class EnvironmentRule(_Rule):
    """CDP side: the batch environment is one of the listed (e.g. ``development``)."""

    type: Literal["environment"]
    environments: list[Literal["development", "production"]] = Field(min_length=1)


class ProfileMarkRule(_Rule):
    """CDP side: the profile store marked the user as a tester (written by the impression feed)."""

    type: Literal["profile_mark"]


TesterRule = Annotated[
    KeyAllowlistRule
    | KeyPatternRule
    | LabelRule
    | FlagTreatmentRule
    | UserAttributeRule
    | EnvironmentRule
    | ProfileMarkRule,
    Field(discriminator="type"),
]


class TesterRules(StrictModel):
    """Rules that say who is a tester; any matching rule makes the user a tester."""

    __test__ = False  # not a pytest test class despite the name

    rules: list[TesterRule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Any]) -> list[Any]:
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return rules


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def _format_location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def describe_config_errors(exc: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    """``'<dotted key>': <message>`` for every problem, so a configuration error names its key."""
    return "; ".join(
        f"'{_format_location((*prefix, *error['loc']))}': {error['msg']}" for error in exc.errors(include_url=False)
    )
