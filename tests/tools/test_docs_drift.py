"""The reference docs cannot drift from the code, as ``events/`` cannot (``make events``).

Each test reads files and fails with the fix to make:

- every ``Variables:`` key of ``template.yaml`` (Globals and each function) is a row of docs/configuration.md's
  variable table, whose functions column names exactly the functions that get it;
- the secrets table of docs/configuration.md is the template's Secrets Manager secrets and SSM parameters, each
  with exactly the functions that read it (the expected table is printed on failure);
- every command and subcommand of ``flagbridge --help`` (the argparse tree, built in process) is named in
  docs/cli.md, every top-level command in the README's layout, and every module of ``ops/flagbridge_ops`` in its
  package docstring;
- every path the README's "Layout" and "Where to change what" tables name exists, and the layout names every
  module and subpackage of the layer package;
- ``flagbridge/errors.py``'s docstring names every error class defined elsewhere in the package;
- README.md and docs/*.md put no count of secrets, variables, commands, handlers, routes... in prose: a count
  is true on the day it is written only ("the secrets", not "six secrets").
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from local.cfn_yaml import load_template

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "shared" / "flagbridge"
OPS = ROOT / "ops" / "flagbridge_ops"
CONFIGURATION = ROOT / "docs" / "configuration.md"
CLI = ROOT / "docs" / "cli.md"
README = ROOT / "README.md"
GLOBALS = "all (Globals)"
SECRET_TYPES = ("AWS::SecretsManager::Secret", "AWS::SSM::Parameter")


@cache
def _template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def _functions() -> dict[str, dict[str, Any]]:
    """Function short name (``ImpressionsWebhook`` for ``ImpressionsWebhookFunction``) -> its properties."""
    return {
        name.removesuffix("Function"): resource.get("Properties", {})
        for name, resource in _template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def _section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"^(#+) {re.escape(heading)}\n", text, flags=re.MULTILINE)
    assert match, f"{path.relative_to(ROOT)} has no section {heading!r}"
    end = re.compile(rf"^#{{1,{len(match.group(1))}}} ", flags=re.MULTILINE).search(text, match.end())
    return text[match.end() : end.start() if end else None]


def _table(text: str) -> list[list[str]]:
    """The body rows of the first markdown table in ``text``, cells stripped (header and rule skipped)."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def _ticked(text: str) -> list[str]:
    """The inline code spans of markdown ``text`` (one may wrap a line), fenced blocks left out."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return [re.sub(r"\s+", " ", span) for span in re.findall(r"`([^`]+)`", text)]


# --- template.yaml -> docs/configuration.md -------------------------------------------------------------------


def _template_variables() -> dict[str, set[str]]:
    """Variable -> the functions that get it (``{GLOBALS}`` for the Globals section)."""
    variables: dict[str, set[str]] = {}
    for key in _template()["Globals"]["Function"]["Environment"]["Variables"]:
        variables[key] = {GLOBALS}
    for function, props in _functions().items():
        for key in (props.get("Environment") or {}).get("Variables", {}):
            variables.setdefault(key, set()).add(function)
    return variables


def _documented_variables() -> dict[str, set[str]]:
    documented: dict[str, set[str]] = {}
    for row in _table(_section(CONFIGURATION, "Environment variables")):
        functions = {GLOBALS} if row[1] == GLOBALS else {f.strip() for f in row[1].split(",")}
        for name in _ticked(row[0]):
            documented[name] = functions
    return documented


def test_every_template_variable_is_in_configuration_md() -> None:
    documented = _documented_variables()
    missing = sorted(set(_template_variables()) - set(documented))
    assert not missing, f"docs/configuration.md, section 'Environment variables', lacks a row for {missing}"


def test_the_variable_table_names_the_functions_that_get_each_variable() -> None:
    documented = _documented_variables()
    wrong = {
        name: f"template: {', '.join(sorted(functions))}; docs: {', '.join(sorted(documented[name]))}"
        for name, functions in _template_variables().items()
        if name in documented and documented[name] != functions
    }
    assert not wrong, f"docs/configuration.md's functions column disagrees with template.yaml: {wrong}"


def test_a_documented_variable_not_in_the_template_is_read_by_the_code() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in LAYER.rglob("*.py"))
    extra = set(_documented_variables()) - set(_template_variables())
    unread = sorted(name for name in extra if not re.search(rf"[\"']{name}[\"']", sources))
    assert not unread, f"docs/configuration.md documents variables nothing sets or reads: {unread}"


def _secrets() -> dict[str, set[str]]:
    """Secret or parameter (logical id) -> the functions whose variables or policies name it."""
    resources = _template()["Resources"]
    secrets = {name for name, resource in resources.items() if resource["Type"] in SECRET_TYPES}
    for props in _functions().values():  # a secret only referenced (an ARN parameter) is one too
        for policy in props.get("Policies") or []:
            if isinstance(policy, dict) and "AWSSecretsManagerGetSecretValuePolicy" in policy:
                ref = policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]
                secrets.add(ref["Ref"] if isinstance(ref, dict) and "Ref" in ref else json.dumps(ref))
    return {
        secret: {
            function
            for function, props in _functions().items()
            if re.search(rf"\b{re.escape(secret)}\b", json.dumps([props.get("Environment"), props.get("Policies")]))
        }
        for secret in secrets
    }


def test_the_secrets_table_is_the_templates_secrets_and_who_reads_them() -> None:
    expected = _secrets()
    functions = set(_functions())
    documented = {}
    for row in _table(_section(CONFIGURATION, "Secrets")):
        (name,) = _ticked(row[0])
        documented[name] = set(re.findall(r"\w+", row[1])) & functions
    wanted = "\n".join(
        f"| `{name}` | {', '.join(sorted(users)) or '(no function)'} | ... |"
        for name, users in sorted(expected.items())
    )
    assert documented == expected, (
        "docs/configuration.md's Secrets table must list, with the functions that read each, exactly:\n" + wanted
    )


# --- flagbridge --help -> docs/cli.md, README, ops/flagbridge_ops ------------------------------------------------


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:  # argparse has no public walk of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*prefix, name)
                yield from _command_paths(child, (*prefix, name))


@cache
def _commands() -> list[tuple[str, ...]]:
    from flagbridge_ops.__main__ import build_parser

    return list(_command_paths(build_parser()))


def test_the_command_tree_is_walked() -> None:
    commands = _commands()
    assert ("dlq",) in commands and ("dlq", "redrive") in commands and ("traffic", "plan", "explain") in commands


def test_every_command_is_in_cli_md() -> None:
    spans = [re.sub(r"^flagbridge\s+", "", span) for span in _ticked(CLI.read_text(encoding="utf-8"))]
    missing = [
        " ".join(path)
        for path in _commands()
        if not any(re.match(rf"{re.escape(' '.join(path))}(\W|$)", span) for span in spans)
    ]
    assert not missing, f"docs/cli.md names no `{'`, `'.join(missing)}` (write it in backticks)"


def test_every_top_level_command_is_in_the_readme() -> None:
    (row,) = [row for row in _table(_section(README, "Layout")) if row[0] == "`ops/flagbridge_ops/`"]
    (reference,) = re.findall(r"^- \[docs/cli\.md\].*$", README.read_text(encoding="utf-8"), flags=re.MULTILINE)
    for where, text in [("layout row of ops/flagbridge_ops/", row[1]), ("reference line of docs/cli.md", reference)]:
        missing = [path[0] for path in _commands() if len(path) == 1 and path[0] not in _ticked(text)]
        assert not missing, f"README's {where} omits the commands {missing}"


def test_the_ops_package_docstring_names_every_module_and_command() -> None:
    doc = ast.get_docstring(ast.parse((OPS / "__init__.py").read_text(encoding="utf-8"))) or ""
    names = set(re.findall(r"``([\w/.-]+)``", doc))
    modules = {p.stem for p in OPS.glob("*.py") if p.stem != "__init__"} | {"commands/"}
    commands = {path[0] for path in _commands() if len(path) == 1}
    missing = sorted((modules | commands) - names)
    assert not missing, f"ops/flagbridge_ops/__init__.py's docstring omits {missing}"


# --- README's tables name paths that exist ----------------------------------------------------------------------

# Where a path in the README's tables may be relative to, besides its own row's directory.
BASES = [ROOT, ROOT / "layers" / "shared", LAYER, ROOT / "layers" / "shared" / "config"]


def _is_path(token: str) -> bool:
    return (
        " " not in token
        and bool(re.fullmatch(r"[\w<>.-]+(/[\w<>.-]*)*", token))
        and ("/" in token or bool(re.search(r"\.(py|ya?ml|md|json|toml)$", token)))
    )


def _exists(token: str, bases: list[Path]) -> bool:
    pattern = re.sub(r"<\w+>", "*", token.rstrip("/"))
    return any(next(base.glob(pattern), None) is not None for base in bases)


def _table_paths(heading: str) -> Iterator[tuple[str, list[Path]]]:
    """(path, where it may be) for each path a table names; a bare file name is in its row's directory."""
    for row in _table(_section(README, heading)):
        here = [ROOT / t for t in _ticked(row[0]) if _is_path(t) and t.endswith("/") and (ROOT / t).is_dir()]
        for token in _ticked(" | ".join(row)):
            if _is_path(token):
                yield token, here if here and "/" not in token else here + BASES


@pytest.mark.parametrize("heading", ["Layout", "Where to change what"])
def test_the_readme_tables_name_paths_that_exist(heading: str) -> None:
    paths = list(_table_paths(heading))
    assert len(paths) > 10
    missing = sorted({token for token, bases in paths if not _exists(token, bases)})
    assert not missing, f"README's {heading!r} table names paths that do not exist: {missing}"


def test_the_readme_layout_names_every_module_of_the_layer_package() -> None:
    named = set(_ticked(_section(README, "Layout")))
    package = [p.name for p in LAYER.glob("*.py") if p.stem != "__init__"]
    package += [f"{p.name}/" for p in LAYER.iterdir() if (p / "__init__.py").exists()]
    missing = sorted(name for name in package if name not in named and f"layers/shared/flagbridge/{name}" not in named)
    assert not missing, f"README's Layout table omits these modules of layers/shared/flagbridge/: {missing}"


# --- errors.py's docstring -----------------------------------------------------------------------------------------


def test_errors_docstring_names_every_error_of_the_package() -> None:
    doc = ast.get_docstring(ast.parse((LAYER / "errors.py").read_text(encoding="utf-8"))) or ""
    missing = []
    for path in sorted(LAYER.rglob("*.py")):
        if path == LAYER / "errors.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and f"``{node.name}``" not in doc:
                missing.append(f"{node.name} ({path.relative_to(LAYER)})")
    assert not missing, f"flagbridge/errors.py's docstring omits {missing}"


# --- no counts in prose --------------------------------------------------------------------------------------------

NUMBER = (
    r"two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    r"seventeen|eighteen|nineteen|twenty|\d+"
)
COUNTED = r"secrets|variables|(?:sub)?commands|handlers|routes|functions|parameters|tables|queues"
# A number, up to two words ("Secrets Manager"), then a counted noun: "six secrets", "12 Lambda handlers".
COUNT = re.compile(rf"\b(?:{NUMBER})\s+(?:[\w-]+\s+){{0,2}}?(?:{COUNTED})\b", flags=re.IGNORECASE)


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_no_counts_in_prose(page: Path) -> None:
    found = [m.group(0) for m in COUNT.finditer(_prose(page.read_text(encoding="utf-8")))]
    assert not found, f"{page.relative_to(ROOT)} counts in prose (say 'the secrets', not 'six'): {found}"


def test_the_count_rule_sees_counts() -> None:
    prose = _prose("the six secrets, 12 Lambda handlers and ten routes; `3 routes` in code; one command\n")
    assert [m.group(0) for m in COUNT.finditer(prose)] == ["six secrets", "12 Lambda handlers", "ten routes"]
