"""``events/`` is exactly what ``local.make_events`` generates: regenerating into a temporary directory changes
nothing, and no committed sample is left over from an older generator.

A difference means a payload, the generator or a module it calls (the ingest or router output formats) changed
without ``make events`` being run, so the handler tests would exercise stale samples.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def test_regenerating_the_sample_events_changes_nothing(tmp_path: Path) -> None:
    output = tmp_path / "events"
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(("FLAGBRIDGE_", "AWS_", "POWERTOOLS_"))
    }
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "layers" / "shared")])
    completed = subprocess.run(
        [sys.executable, "-m", "local.make_events", "--output", str(output)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    generated = {path.name for path in output.iterdir()}
    committed = {path.name for path in EVENTS.iterdir() if path.is_file()}
    assert generated, "the generator wrote nothing"
    assert sorted(committed - generated) == [], "committed samples the generator no longer writes"
    assert sorted(generated - committed) == [], "generated samples missing from events/ (run `make events`)"
    for name in sorted(generated):
        expected = (EVENTS / name).read_text(encoding="utf-8")
        actual = (output / name).read_text(encoding="utf-8")
        if actual != expected:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    actual.splitlines(keepends=True),
                    f"events/{name}",
                    f"regenerated/{name}",
                    n=1,
                )
            )
            raise AssertionError(f"events/{name} differs from what `make events` writes:\n{diff[:4000]}")
