"""Conventions of the layer package: one exception family, one list of quarantine sources."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from flagbridge.errors import FlagbridgeError
from flagbridge.quarantine import QuarantineSource
from tests.conftest import ROOT

PACKAGE = ROOT / "layers" / "shared" / "flagbridge"


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_exception_of_the_layer_is_a_flagbridge_error_ending_in_error() -> None:
    exceptions = {
        f"{module}.{name}": cls
        for module in _modules()
        for name, cls in vars(importlib.import_module(module)).items()
        if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == module
    }
    assert len(exceptions) >= 10, sorted(exceptions)
    assert [name for name, cls in exceptions.items() if not issubclass(cls, FlagbridgeError)] == []
    assert [name for name in exceptions if not name.endswith("Error")] == []


def test_the_quarantine_sources_keep_their_stored_values() -> None:
    # stored objects' keys and the operator CLI depend on these strings
    assert {source.value for source in QuarantineSource} == {
        "split-impressions",
        "impressions-processor",
        "mparticle-batches",
        "cdp-router",
        "destination-delivery",
        "oracle-counter",
        "traffic-shards",
    }
    assert f"{QuarantineSource.CDP_ROUTER}/2026" == "cdp-router/2026"


def test_every_quarantine_writer_and_the_cli_name_sources_from_the_enum() -> None:
    literal_sources = [
        str(path.relative_to(ROOT))
        for path in [*PACKAGE.rglob("*.py"), *(ROOT / "ops").rglob("*.py")]
        for value in QuarantineSource
        if path.name != "quarantine.py" and f'"{value.value}"' in Path(path).read_text(encoding="utf-8")
    ]
    assert literal_sources == []
