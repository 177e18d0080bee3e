"""What every handler module leaves behind at import: the garbage collector on, init's objects frozen, and the
configuration's models (pydantic) loaded exactly where the function's requests read the configuration file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(path.name for path in (ROOT / "functions").iterdir() if (path / f"{path.name}.py").is_file())

_PROBE = """
import gc, sys
gc_was_on = gc.isenabled()
import {module}
print(gc_was_on, gc.isenabled(), gc.get_freeze_count(), "flagbridge.config" in sys.modules, "pydantic" in sys.modules)
"""
# The functions whose requests never read the configuration file: they start without pydantic
# (tests/handlers/test_profile_api.py serves the profile API with no configuration file at all).
CONFIGURATION_FREE = {"profile_api"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_import_leaves_the_collector_on_with_init_frozen(function: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=function)],
        cwd=ROOT / "functions" / function,
        env={
            "PYTHONPATH": f"{ROOT / 'functions' / function}:{ROOT / 'layers' / 'shared'}",
            "AWS_REGION": "us-east-1",
            "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ left in the checkout
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    was_on, is_on, frozen, configuration, pydantic = completed.stdout.split()
    assert (was_on, is_on) == ("True", "True")
    assert int(frozen) > 10_000  # the modules' objects, moved out of the collector's generations
    reads_configuration = function not in CONFIGURATION_FREE
    assert configuration == str(reads_configuration)  # its cold start pays for the models at init, not on a request
    if not reads_configuration:
        assert pydantic == "False"
