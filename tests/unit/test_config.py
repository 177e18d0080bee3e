"""Configuration loading: the example is valid and every mistake names its key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flagbridge.config import load_config, parse_config
from flagbridge.errors import ConfigError
from flagbridge.settings import PACKAGED_CONFIG, Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "layers" / "shared" / "config" / "flagbridge.yaml"


def test_example_configuration_loads() -> None:
    config = load_config(EXAMPLE)
    assert [rule.name for rule in config.test_users.rules][:2] == ["qa-allowlist", "qa-key-prefix"]
    mapping = config.identity_mapping.resolve("Production", "env-prod-0001", "anon-1")
    assert mapping is not None and mapping.traffic_type == "anonymous"
    mapping = config.identity_mapping.resolve("Production", "env-prod-0001", "u-1")
    assert mapping is not None and mapping.identity_type == "customer_id"
    assert config.identity_mapping.resolve("Sandbox", "env-x", "u-1") is None


def test_settings_default_to_the_example() -> None:
    assert Path(PACKAGED_CONFIG) == EXAMPLE
    assert Settings.from_environ({}).config_path == str(EXAMPLE)


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"test_users": {"rules": [{"name": "x", "type": "key_pattern", "pattern": "("}]}}, "test_users.rules.0"),
        (
            {"identity_mapping": {"split_environments": [{"traffic_type": "user", "identity_type": "nope"}]}},
            "identity_mapping.split_environments.0.identity_type",
        ),
        ({"limits": {"max_body_bytes": "big"}}, "limits.max_body_bytes"),
        ({"tset_users": {}}, "tset_users"),
        (
            {
                "test_users": {
                    "rules": [
                        {"name": "a", "type": "label", "labels": ["x"]},
                        {"name": "a", "type": "label", "labels": ["y"]},
                    ]
                }
            },
            "test_users.rules",
        ),
        ({"test_users": {"rules": [{"name": "a", "type": "unknown"}]}}, "test_users.rules.0"),
    ],
)
def test_invalid_configuration_names_the_key(document: dict, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(document)
    assert f"'{named}" in str(error.value)


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("identity_mapping: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_the_configuration_is_read_by_the_shared_document_loader(tmp_path: Path) -> None:
    """The size limit and wording of a plan's loader (flagbridge.documents) hold for the configuration file too."""
    from flagbridge.documents import MAX_DOCUMENT_BYTES, load_yaml

    # The operator's own file may share a block with an anchor (the layer's build resolves it the same way); a
    # caller's document (a plan, a model) may not: there an alias bomb would cost the bridge, not its author.
    anchored = tmp_path / "anchored.yaml"
    anchored.write_text("identity_mapping: &m {}\n")
    assert load_config(anchored) is not None
    assert load_yaml("a: &x [1]\nb: *x\n", "c.yaml", ConfigError, aliases=True) == {"a": [1], "b": [1]}
    with pytest.raises(ConfigError, match=r"c\.yaml: line 1: YAML anchors and aliases"):
        load_yaml("a: &x [1]\nb: *x\n", "c.yaml", ConfigError)
    huge = tmp_path / "huge.yaml"
    huge.write_text("#" * (MAX_DOCUMENT_BYTES + 1))
    with pytest.raises(ConfigError, match=rf"huge\.yaml: larger than {MAX_DOCUMENT_BYTES} bytes"):
        load_config(huge)
    broken = tmp_path / "broken.yaml"
    broken.write_text("identity_mapping: [unclosed")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML at line 1, column 28: expected"):
        load_config(broken)


def test_cdp_section_is_validated_on_first_use_and_names_the_key() -> None:
    config = parse_config({"cdp": {"destinations": [{"name": "d", "type": "nope"}]}}, source="f.yaml")
    with pytest.raises(ConfigError) as error:
        _ = config.cdp
    assert "f.yaml: invalid configuration at 'cdp.destinations.0'" in str(error.value)
    with pytest.raises(ConfigError, match="'cdp': "):
        parse_config({"cdp": "not a mapping"})
    assert parse_config({}).cdp is None
    valid = load_config(EXAMPLE)
    assert valid.cdp is not None and valid.cdp is valid.cdp  # validated once


def test_loading_the_configuration_does_not_import_the_cdp_models() -> None:
    probe = (
        "import sys; from flagbridge.config import load_config; "
        f"config = load_config({str(EXAMPLE)!r}); "
        "assert 'flagbridge.cdp.config' not in sys.modules; "
        "assert config.cdp is not None and 'flagbridge.cdp.config' in sys.modules"
    )
    shared = str(EXAMPLE.parents[1])
    subprocess.run([sys.executable, "-c", probe], check=True, env={**os.environ, "PYTHONPATH": shared})


def test_the_json_form_the_layer_ships_loads_the_same(tmp_path: Path) -> None:
    import json

    import yaml

    # Given the layer build's conversion (layers/shared/Makefile) of the YAML to JSON
    converted = tmp_path / "flagbridge.json"
    converted.write_text(json.dumps(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))), encoding="utf-8")
    # Then both load to the same configuration, and broken JSON names the file
    assert load_config(converted, environ={}).model_dump() == load_config(EXAMPLE, environ={}).model_dump()
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(broken)
