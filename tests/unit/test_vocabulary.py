"""One word for a tester: "tester". The retired words (test user, test-user, TestUser, is_test, internal user...)
do not come back in the layer package's names and prose, nor in the README and docs/*.md.

The wire formats, stored values and configuration keys that spell it otherwise stay for compatibility; they are
:data:`EXTERNAL_NAMES`, listed in docs/testers.md's "Vocabulary" section, and only they may appear.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "layers" / "shared" / "flagbridge"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

RETIRED = re.compile(r"test[ _-]?users?|\bis_?test(?:_?user)?\b|internal[ _-]?users?|qa[ _-]users?", re.IGNORECASE)
"""A retired word: spaced, hyphenated, snake or camel case."""

PROSE = re.compile(r"\btest[ -]users?\b|\binternal[ -]users?\b", re.IGNORECASE)
"""The retired words as prose spells them (never a wire name)."""

EXTERNAL_NAMES = {
    "test_users": "the configuration's key of the tester rules (test_users.rules)",
    "test_user": "the profile item's attribute, the lane messages' and the decision log's field",
    "is_test_user": "the decision log's field; also a user attribute the example rules test",
    "testUser": "the profile API's object",
    "isTestUser": "the profile API's field",
}
"""The external names that mean "tester" (docs/testers.md, "Vocabulary")."""

_EXTERNAL = re.compile(r"\b(?:" + "|".join(sorted(EXTERNAL_NAMES, key=len, reverse=True)) + r")\b")


def retired_in_text(text: str) -> list[str]:
    """The retired words of a doc page, its external names left out."""
    return RETIRED.findall(_EXTERNAL.sub("", text))


def identifiers(source: str) -> set[str]:
    """The names a module defines or uses: classes, functions, parameters, variables, attributes, imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.update(part for part in (node.asname or node.name).split("."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(node.module.split("."))
    return names


def retired_in_module(source: str) -> list[str]:
    """A module's retired identifiers (the configuration key excepted) and retired words in its prose."""
    named = sorted(name for name in identifiers(source) if RETIRED.search(name) and name != "test_users")
    return named + PROSE.findall(source)


def test_the_layer_names_a_tester_tester() -> None:
    found = {
        str(path.relative_to(PACKAGE)): retired
        for path in sorted(PACKAGE.rglob("*.py"))
        if (retired := retired_in_module(path.read_text(encoding="utf-8")))
    }
    modules = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if RETIRED.search(path.stem)]
    assert found == {}
    assert modules == []


def _vocabulary_section(text: str) -> str:
    return text.split("\n## Vocabulary\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_the_docs_say_tester(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    if page.name == "testers.md":  # the section that names the retired spellings
        text = text.replace(_vocabulary_section(text), "")
    assert retired_in_text(text) == []


def test_docs_testers_md_lists_every_external_name() -> None:
    section = _vocabulary_section((ROOT / "docs" / "testers.md").read_text(encoding="utf-8"))
    assert [name for name in EXTERNAL_NAMES if f"`{name}`" not in section] == []


def test_the_checks_see_retired_words() -> None:
    assert retired_in_module("class TestUserResolver:\n    pass\n") == ["TestUserResolver"]
    assert retired_in_module("def f(is_test: bool) -> None:\n    pass\n") == ["is_test"]
    assert retired_in_module("x = decision.is_test_user\n") == ["is_test_user"]
    assert retired_in_module('"""The test-user rules."""\n') == ["test-user"]
    assert retired_in_module("config.test_users\nrow = {'test_user': True}\n") == []
    assert retired_in_text("Internal users and test users") == ["Internal users", "test users"]
    assert retired_in_text("the `test_users.rules` key and `testUser.isTestUser`") == []
