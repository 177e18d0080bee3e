"""The example release gate, without a stack: the script is valid sh, refuses a missing setting with one clear
line before doing anything, its ``flagbridge`` command lines parse with the real CLI parser, and the GitHub
Actions job sets what the script needs and uploads what it writes. (``tests/e2e/test_release_gate.py`` runs it
end to end against the local runner.)"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GATE = ROOT / "examples" / "release-gate"
SCRIPT = GATE / "release-gate.sh"
WORKFLOW = GATE / "github-actions.yml"


def _script() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def _needed() -> list[str]:
    return re.findall(r"^need ([A-Z_]+) ", _script(), flags=re.MULTILINE)


def _flagbridge_commands() -> list[list[str]]:
    """The script's ``"$FLAGBRIDGE" ...`` command lines as argument lists, with its variables given values."""
    joined = re.sub(r"\\\n\s*", " ", _script())
    lines = [line.strip() for line in joined.splitlines() if line.strip().startswith('"$FLAGBRIDGE"')]
    commands = []
    for line in lines:
        line = line.split(" >", 1)[0]  # the redirection is the shell's
        line = re.sub(r"\$\{(\w+):\+([^}]*)\}", r"\2", line)  # the optional options, as when their variable is set
        words = shlex.split(line.replace("$(date +%s)", "1"))
        commands.append([re.sub(r"\$\{?(\w+)\}?", lambda m: _value(m.group(1)), word) for word in words[1:]])
    return commands


def _value(name: str) -> str:
    """A variable as the script sees it: its default (``NAME=${NAME:-default}``), else its name."""
    defaults = dict(re.findall(r"^(\w+)=\$\{\w+:-([^}]*)\}$", _script(), flags=re.MULTILINE))
    return defaults.get(name, name)


def test_the_script_is_valid_sh_and_refuses_a_missing_setting_before_anything(tmp_path: Path) -> None:
    assert subprocess.run(["sh", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    done = subprocess.run(
        ["sh", str(SCRIPT)], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert done.returncode == 64
    assert done.stderr.strip() == (
        "release-gate: set DEPLOY_COMMAND (the command that deploys the treatment, "
        "e.g. 'sam deploy --no-confirm-changeset')"
    )
    assert list(tmp_path.iterdir()) == []  # nothing deployed, nothing written


def test_its_flagbridge_commands_parse_with_the_cli() -> None:
    from flagbridge_ops.__main__ import build_parser

    commands = _flagbridge_commands()
    assert [c[c.index("traffic") + 1] if "traffic" in c else c[c.index("verdict")] for c in commands] == [
        "run",
        "verdict",
    ]
    parser = build_parser()
    run = parser.parse_args(commands[0])
    assert (run.requests, run.rate, run.seed, run.verdict_wait) == (1000, "50/s", 0, 120.0)
    assert run.json and run.stack == "FLAGBRIDGE_STACK" and run.bridge == "BRIDGE" and run.report.endswith(".ndjson")
    verdict = parser.parse_args(commands[1])
    assert (str(verdict.junit), str(verdict.html)) == ("release-gate/verdict.xml", "release-gate/verdict.html")
    assert "--until-decided" in _script()  # where it goes once it lands: documented at the run


def test_the_github_actions_job_sets_what_the_script_needs_and_uploads_what_it_writes() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    (job,) = workflow["jobs"].values()
    assert set(_needed()) <= set(job["env"]), sorted(set(_needed()) - set(job["env"]))
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert "sh examples/release-gate/release-gate.sh" in runs
    (upload,) = [step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload["if"] == "always()"  # a FAIL fails the job: the verdict is uploaded anyway
    out = job["env"]["OUT"]
    paths = upload["with"]["path"].split()
    assert {f"{out}/verdict.xml", f"{out}/verdict.html", f"{out}/run.json"} <= set(paths)
    assert re.search(r'"\$OUT/verdict\.xml"', _script()) and re.search(r'"\$OUT/verdict\.html"', _script())
