"""The deployed layer ships no YAML parser (issue 13 prunes PyYAML): a YAML plan or model sent as text to a run
gets one clear refusal naming what the stack reads, not an import error dressed as "not valid YAML"."""

from __future__ import annotations

import sys

import pytest

from flagbridge.runs.spec import parse_plan_text
from flagbridge.traffic.errors import PlanError


def test_yaml_text_without_a_yaml_parser_is_refused_naming_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # as on Lambda: `import yaml` raises ImportError
    with pytest.raises(PlanError, match="reads plans and models as JSON"):
        parse_plan_text("name: p\nrequest: {max_attacks: 1}\n", "yaml", "plan")


def test_json_text_needs_no_yaml_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(PlanError) as refused:
        parse_plan_text("{not json", "json", "plan")
    assert "not valid JSON" in str(refused.value)
