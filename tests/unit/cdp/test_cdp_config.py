"""CdpConfig: the example file loads, defaults, and load-time errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from flagbridge.cdp.config import CdpConfig, parse_cdp_config
from flagbridge.errors import ConfigError
from tests.fixtures import CDP_EXAMPLE, load_cdp_config
from tests.unit.cdp.samples import PLAN_DOCUMENT

EXAMPLE = CDP_EXAMPLE


def minimal(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "destinations": [
            {
                "name": "split",
                "type": "split",
                "options": {
                    "sdk_key_secret": "s",
                    "identity_mapping": [{"identity_type": "customer_id", "traffic_type": "user"}],
                },
            },
            {"name": "hook", "type": "webhook", "options": {"url": "https://example.com/x"}},
        ]
    }
    doc.update(extra)
    return doc


def test_example_config_loads_and_compiles() -> None:
    config = load_cdp_config(EXAMPLE)
    assert [d.name for d in config.compiled_destinations] == [
        "split-prod",
        "analytics",
        "warehouse",
        "reporting",
        "audit",
    ]
    types = {d.name: d.type for d in config.compiled_destinations}
    assert types == {
        "split-prod": "split",
        "analytics": "webhook",
        "warehouse": "firehose",
        "reporting": "sqs",
        "audit": "eventbridge",
    }
    users = {d.name: d.filter.users for d in config.compiled_destinations}
    assert users == {
        "split-prod": "test_only",
        "analytics": "exclude_test",
        "warehouse": "exclude_test",
        "reporting": "exclude_test",
        "audit": "any",
    }
    assert config.plan_validator.enforcement.on_unplanned == "drop_attribute"
    split = config.compiled_destinations[0]
    assert split.split is not None
    assert split.split.options.events_url == "https://events.split.io/api"


def test_example_config_also_loads_under_a_cdp_key(tmp_path: Path) -> None:
    wrapped = tmp_path / "c.yaml"
    wrapped.write_text(yaml.safe_dump({"cdp": yaml.safe_load(EXAMPLE.read_text())}))
    assert len(load_cdp_config(wrapped).destinations) == 5


def test_default_users_per_destination_type() -> None:
    config = parse_cdp_config(minimal())
    assert {d.name: d.filter.users for d in config.compiled_destinations} == {
        "split": "test_only",
        "hook": "exclude_test",
    }


def test_defaults_and_empty_section() -> None:
    config = parse_cdp_config(None)
    assert config.destinations == []
    assert config.plan_enforcement.require_plan is False
    assert config.plan_enforcement.on_unplanned == "allow"


def test_frozen_and_extra_forbidden() -> None:
    config = parse_cdp_config(minimal())
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen assignment
        config.destinations = []  # type: ignore[misc]
    with pytest.raises(ConfigError, match="typo"):
        parse_cdp_config(minimal(typo=1))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["destinations"].append(copy.deepcopy(d["destinations"][1])), "unique"),
        (lambda d: d["destinations"][1].update(name="Bad Name"), "destinations.1"),
        (lambda d: d["destinations"][1].update(type="kafka"), "destinations.1"),
        (lambda d: d["destinations"][0]["options"].update(event_type_policy="ignore"), "event_type_policy"),
        (lambda d: d["destinations"][0]["options"].update(max_age_hours=48), "max_age_hours"),
        (lambda d: d["destinations"][0]["options"].pop("identity_mapping"), "identity_mapping"),
        (lambda d: d["destinations"][1]["options"].update(url="ftp://x"), "url"),
        (lambda d: d["destinations"][1].update(filter={"event_names": {"inclde": ["x"]}}), "inclde"),
        (lambda d: d.update(plan_enforcement={"on_missing_required": "drop_attribute"}), "on_missing_required"),
        (
            lambda d: d.update(
                data_plans=[
                    {
                        "plan_id": "p",
                        "version": 1,
                        "activated_environment": "production",
                        "document": {"data_points": [{"match": {"type": "bogus"}}]},
                    }
                ]
            ),
            "data_plans[0]",
        ),
        (
            lambda d: d.update(
                data_plans=[
                    {"plan_id": "p", "version": 1, "activated_environment": "production", "document": PLAN_DOCUMENT}
                ]
                * 2
            ),
            "unique",
        ),
    ],
)
def test_load_time_errors_name_the_problem(mutate: Any, message: str) -> None:
    doc = minimal()
    mutate(doc)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse_cdp_config(doc)


def test_aws_sink_options() -> None:
    doc = minimal()
    doc["destinations"] += [
        {"name": "q", "type": "sqs", "options": {"queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q"}},
        {"name": "t", "type": "sns", "options": {"topic_arn": "arn:aws:sns:us-east-1:123456789012:t"}},
        {"name": "b", "type": "eventbridge", "options": {"event_bus_name": "bus"}},
        {"name": "f", "type": "firehose", "options": {"stream_name": "s"}},
    ]
    config = CdpConfig.model_validate(doc)
    assert [d.type for d in config.compiled_destinations][2:] == ["sqs", "sns", "eventbridge", "firehose"]
    doc["destinations"][3]["options"]["topic_arn"] = "not-an-arn"
    with pytest.raises(ConfigError):
        parse_cdp_config(doc)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_cdp_config("/nonexistent/cdp.yaml")
