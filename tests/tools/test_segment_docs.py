"""The tester segment's documentation names things that exist: the files, variables, template resources and
configuration keys of ``docs/testers.md`` (section "The Split segment") and ``examples/release-gate/README.md``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "template.yaml").read_text(encoding="utf-8")
SCRIPT = (ROOT / "examples" / "release-gate" / "release-gate.sh").read_text(encoding="utf-8")
# Where a variable the pages name may be read: the layer, the operator CLI, the gate script, the template.
SOURCES = "\n".join(
    [TEMPLATE, SCRIPT]
    + [
        p.read_text(encoding="utf-8")
        for d in ("layers/shared/flagbridge", "ops/flagbridge_ops")
        for p in (ROOT / d).rglob("*.py")
    ]
)


def _section(path: Path, heading: str | None) -> str:
    text = path.read_text(encoding="utf-8")
    if heading is None:
        return text
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


PAGES = [
    (ROOT / "docs" / "testers.md", "The Split segment"),
    (ROOT / "examples" / "release-gate" / "README.md", None),
]


def _names(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


@pytest.mark.parametrize(("page", "heading"), PAGES, ids=[str(p.relative_to(ROOT)) for p, _ in PAGES])
def test_what_the_page_names_exists(page: Path, heading: str | None) -> None:
    checked = 0
    for name in _names(_section(page, heading)):
        if re.fullmatch(r"(events|examples|docs|tests|local)/[\w./-]+\.\w+", name):
            assert (ROOT / name).exists(), name
        elif name.startswith("API_"):  # a Split Admin API key role (API_SEGMENT_EDITOR), Split's own name
            continue
        elif re.fullmatch(r"[A-Z][A-Z0-9_]{3,}", name):  # a variable: the functions' or the gate script's
            assert re.search(rf"[\"'$]{{?{name}\b", SOURCES), name
        elif re.fullmatch(r"[A-Z][A-Za-z]+(Function|Secret|Arn|Url)", name):  # a template resource or output
            assert re.search(rf"^  {name}:", TEMPLATE, flags=re.MULTILINE), name
        else:
            continue
        checked += 1
    assert checked >= 3


def test_the_configuration_keys_and_defaults_it_names() -> None:
    from flagbridge.config import BridgeConfig, SplitAdminConfig, TestersConfig, TesterSegment

    text = _section(ROOT / "docs" / "testers.md", "The Split segment")
    assert "testers" in BridgeConfig.model_fields and "split_admin" in BridgeConfig.model_fields
    assert {"environment", "segment", "traffic_type", "dry_run"} <= set(TesterSegment.model_fields)
    assert TestersConfig().reconcile_actor in text
    assert SplitAdminConfig().auth == "bearer" and "x-api-key" in text
    assert "rate(15 minutes)" in TEMPLATE and "every 15 minutes" in text
    assert "/_local/receivers/segment-outage" in (ROOT / "local" / "runner" / "http_api.py").read_text(encoding="utf-8")
