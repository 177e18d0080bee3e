"""``make lint``'s complexity gate (local/complexity.py): radon's count, booleans included, at most 20 per function.

Given a toy tree (a function whose conditions are joined by ``and``/``or``, which ruff's McCabe count does not see),
the gate names it; an exception holds it to its ceiling; an exception no longer needed must go. And the checkout
passes the gate.
"""

from __future__ import annotations

from pathlib import Path

from local.complexity import EXCEPTIONS, LIMIT, PATHS, blocks, problems, python_files

BOOLEANS = "def gate(a, b, c):\n    return " + " and ".join(f"(a == {n} or b == {n})" for n in range(12)) + "\n"
SMALL = "class Box:\n    def small(self, a):\n        def inner(b):\n            return a and b\n        return inner\n"


def _tree(tmp_path: Path) -> list[Path]:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "toy.py").write_text(BOOLEANS + "\n\n" + SMALL, encoding="utf-8")
    return [tmp_path / "pkg" / "toy.py"]


def test_booleans_count_and_a_function_over_the_gate_is_named(tmp_path: Path) -> None:
    # Given a function of one return whose 24 conditions are joined by and/or
    files = _tree(tmp_path)

    # When the gate reads it
    found = {block.key: block.complexity for block in blocks(files[0], tmp_path)}

    # Then each boolean operator counts, methods and closures are named on their own, and only the big one fails
    assert found == {"pkg/toy.py:gate": 24, "pkg/toy.py:Box.small": 1, "pkg/toy.py:Box.small.inner": 2}
    assert problems(files, {}, tmp_path) == [f"pkg/toy.py:1: gate has complexity 24 (at most {LIMIT})"]


def test_an_exception_holds_its_ceiling_and_must_go_once_not_needed(tmp_path: Path) -> None:
    files = _tree(tmp_path)
    assert problems(files, {"pkg/toy.py:gate": (24, "why")}, tmp_path) == []
    assert problems(files, {"pkg/toy.py:gate": (23, "why")}, tmp_path) == [
        "pkg/toy.py:1: gate has complexity 24 (at most 23)"
    ]
    assert problems(files, {"pkg/toy.py:gate": (24, "why"), "pkg/toy.py:Box.small": (30, "why")}, tmp_path) == [
        f"pkg/toy.py:Box.small is back under {LIMIT} (1): remove it from EXCEPTIONS"
    ]
    assert problems(files, {"pkg/toy.py:gate": (24, "why"), "pkg/toy.py:gone": (30, "why")}, tmp_path) == [
        "pkg/toy.py:gone names no function: remove it from EXCEPTIONS"
    ]


def test_the_checkout_passes_the_gate_and_the_traffic_command_is_not_an_exception() -> None:
    assert problems(python_files(PATHS)) == []
    assert not [key for key in EXCEPTIONS if key.startswith("ops/flagbridge_ops/commands/")]
