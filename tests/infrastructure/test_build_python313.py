"""`sam build` without a CPython 3.13 fails, and says why on the terminal (issue 19, item 1).

SAM's makefile builder shows a successful build's stdout and only a failed build's stderr, so a warning on stderr
used to vanish behind `Build Succeeded` and a layer without bytecode (about 3x the cold start) was deployed. Here
`sam build SharedLayer` runs as `make build` runs it, with ``PYTHON313`` naming an interpreter that is not a 3.13
(an explicit ``PYTHON313`` is the only candidate find-python3.13 tries, so the host's own 3.13 cannot hide the
case), and the person at the terminal must read one line with the reason and the next step. The explicit opt-out
is tested where the layer is built (tests/infrastructure/test_layer_artifact.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from local.resources import ROOT


def sam_build_layer(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    venv_bin = str(Path(sys.executable).parent)
    environment = {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "SAM_CLI_TELEMETRY": "0",
        **env,
    }
    environment.pop("FLAGBRIDGE_LAYER_WITHOUT_BYTECODE", None)
    command = [
        str(Path(venv_bin) / "sam"),
        "build",
        "SharedLayer",
        "--template-file",
        str(ROOT / "template.yaml"),
        "--build-dir",
        str(tmp_path / "build"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    return subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, check=False, timeout=300
    )


def test_sam_build_without_313_fails_with_one_line_naming_the_fix(tmp_path: Path) -> None:
    completed = sam_build_layer(tmp_path, PYTHON313="/bin/false")
    terminal = completed.stdout + completed.stderr
    assert completed.returncode != 0, terminal
    assert "Build Succeeded" not in terminal
    assert "Build Failed" in terminal
    [line] = [line for line in terminal.splitlines() if "no CPython 3.13" in line]
    assert "PYTHON313=/bin/false is not one" in line
    assert "pyenv install 3.13" in line
    assert "FLAGBRIDGE_LAYER_WITHOUT_BYTECODE=1" in line
    assert "about 3x slower" in line
    assert not list((tmp_path / "build").rglob("*.pyc"))
