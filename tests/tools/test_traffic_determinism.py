"""Byte-identical cases in another process and under CPython 3.13, and against a digest pinned in the repository.

A case is a function of (plan hash, seed, case index) and the run context only: this runs the generator in a
fresh interpreter (new hash seed) and, when pyenv has one, under CPython 3.13 (the Lambda runtime's version),
reading the example plan and model as JSON so that only the standard library is needed there.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flagbridge.traffic.generator import TrafficGenerator
from flagbridge.traffic.model import load_model
from flagbridge.traffic.plan import load_plan
from tests.unit.traffic.conftest import EXAMPLES, make_generator

ROOT = Path(__file__).resolve().parents[2]


def digest(generator: TrafficGenerator, indices: range) -> str:
    hasher = hashlib.sha256()
    for index in indices:
        hasher.update(generator.case(index).request.to_bytes())
    return hasher.hexdigest()


_DIGEST_SCRIPT = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from flagbridge.traffic.generator import Target, TrafficGenerator
from flagbridge.traffic.model import Tester, parse_model
from flagbridge.traffic.plan import parse_plan
from flagbridge.traffic.safety import RunTag
plan_doc, model_doc = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
generator = TrafficGenerator(
    parse_plan(plan_doc), parse_model(model_doc),
    [Tester("qa-bot-01", "qa-bot-01@qa.example.com"), Tester("qa-bot-02", "qa-bot-02@qa.example.com")],
    seed=7, run_id="run-unit", clock_ms=1767225600000, target=Target.parse("http://127.0.0.1:8080"),
    run_tag=RunTag(b"unit-test-run-tag-key"))
hasher = hashlib.sha256()
for index in range(300):
    hasher.update(generator.case(index).request.to_bytes())
print(hasher.hexdigest())
"""

GOLDEN_DIGEST = "749bca37ef7563f74c5f2909ea0e468d164821c9b6e464efbe67359bec053370"
"""The first 300 cases of the example plan and model: a change here breaks every recorded replay."""


def _documents(tmp_path: Path) -> tuple[Path, Path]:
    """The example plan (attack set files inlined) and model as JSON, readable with the standard library."""
    import yaml

    plan = yaml.safe_load((EXAMPLES / "mparticle-plan.yaml").read_text())
    sets: dict = {}
    for name in plan.pop("attack_set_files", []):
        sets.update(yaml.safe_load((EXAMPLES / name).read_text()))
    plan["attack_sets"] = {**sets, **plan.get("attack_sets", {})}
    plan_path, model_path = tmp_path / "plan.json", tmp_path / "model.json"
    plan_path.write_text(json.dumps(plan))
    model_path.write_text(json.dumps(yaml.safe_load((EXAMPLES / "mparticle-model.yaml").read_text())))
    return plan_path, model_path


def _digest_with(python: str, tmp_path: Path) -> str:
    plan_path, model_path = _documents(tmp_path)
    result = subprocess.run(
        [python, "-c", _DIGEST_SCRIPT, str(ROOT / "layers" / "shared"), str(plan_path), str(model_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def _pyenv_313() -> str | None:
    roots = [Path.home() / ".pyenv"]
    pyenv = shutil.which("pyenv")
    if pyenv:
        roots.append(Path(subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()))
    for root in roots:
        for python in sorted((root / "versions").glob("3.13*/bin/python3")):
            return str(python)
    return None


def test_cases_are_byte_identical_in_another_process_and_python(tmp_path: Path) -> None:
    """The same bytes here, in a fresh process (new hash seed), under CPython 3.13, and as pinned in the repo."""
    body_plan = load_plan(EXAMPLES / "mparticle-plan.yaml")[0]
    here = digest(make_generator(body_plan, load_model(EXAMPLES / "mparticle-model.yaml")), range(300))
    assert _digest_with(sys.executable, tmp_path) == here
    assert here == GOLDEN_DIGEST
    other = _pyenv_313()
    if other is None:
        pytest.skip("no CPython 3.13 under pyenv on this machine")
    assert _digest_with(other, tmp_path) == here
