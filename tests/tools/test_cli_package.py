"""What ``pip install .`` installs: both packages, every module of them, and a ``flagbridge`` that runs anywhere.

The wheel is built offline (no build isolation, no dependencies) from a copy of the project's packaging
inputs, so the checkout is left clean; it then runs from a directory outside the repository with nothing of
the checkout importable.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = {"flagbridge": ROOT / "layers" / "shared" / "flagbridge", "flagbridge_ops": ROOT / "ops" / "flagbridge_ops"}


def build_wheel(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for relative in ("layers/shared/flagbridge", "ops/flagbridge_ops"):
        shutil.copytree(ROOT / relative, project / relative, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            "dist",
            ".",
        ],
        cwd=project,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (project / "dist").glob("flagbridge-*.whl")
    return wheel


def test_the_wheel_holds_both_packages_and_the_command(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points_name = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(entry_points_name).decode())
    for package, source in PACKAGES.items():
        modules = {f"{package}/{path.relative_to(source).as_posix()}" for path in source.rglob("*.py")}
        assert modules and modules <= names, sorted(modules - names)
    assert not [name for name in names if name.startswith(("tests/", "local/", "functions/"))]
    assert entry_points["console_scripts"]["flagbridge"] == "flagbridge_ops.__main__:main"

    # Installed elsewhere and run from outside the repository: the wheel's code, not the checkout's.
    outside = tmp_path / "elsewhere"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", outside / "lib", wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from flagbridge_ops.__main__ import main; sys.exit(main())", "--help"],
        env={**env, "PYTHONPATH": str(outside / "lib")},
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: flagbridge" in result.stdout and "quarantine" in result.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import flagbridge, flagbridge_ops; print(flagbridge.__file__, flagbridge_ops.__file__)",
        ],
        env={**env, "PYTHONPATH": str(outside / "lib")},
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.split() == [
        str(outside / "lib" / "flagbridge" / "__init__.py"),
        str(outside / "lib" / "flagbridge_ops" / "__init__.py"),
    ]
