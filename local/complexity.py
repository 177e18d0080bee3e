"""The complexity gate of ``make lint``: no function over radon's rank C (cyclomatic complexity 20), booleans counted.

ruff's C901 (McCabe, at 15) does not count ``and``/``or``: a function of 30 conditions joined by them passes it.
radon counts every boolean operator, so this gate catches what ruff's lets through. The exceptions are explicit,
each with its ceiling (one that grows past it fails; one back under the gate must leave its list): the reasoned
:data:`HOT_PATHS`, flattened for ``make bench`` and guarded by equivalence or corpus tests, and the functions
:data:`NOT_YET_SPLIT` when the gate came, a ratchet that only shrinks.

Run ``python -m local.complexity [PATH ...]`` (default: the layer, the handlers, ``ops`` and ``local``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radon.complexity import cc_visit
from radon.visitors import Function

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("layers/shared/flagbridge", "functions", "ops/flagbridge_ops", "local")
LIMIT = 20
"""Radon's rank C ends here: 21 and above is D."""

HOT_PATHS: dict[str, tuple[int, str]] = {
    # "path:qualified name": (the most it may reach, why it stays one function)
    "layers/shared/flagbridge/cdp/batch.py:_check_event": (
        23,
        "hot path: one pass per event, checks inline (make bench)",
    ),
    "layers/shared/flagbridge/cdp/batch.py:normalize_batch": (
        25,
        "hot path: one pass over the batch, formats inline (make bench)",
    ),
    "layers/shared/flagbridge/cdp/dataplan/schema.py:walk_schema": (
        23,
        "one branch per JSON-Schema keyword; runs only on violations",
    ),
    "layers/shared/flagbridge/cdp/dataplan/validator.py:PlanValidator.validate": (
        44,
        "hot path: every batch, flattened (make bench)",
    ),
    "layers/shared/flagbridge/cdp/split_events.py:SplitMapper._base_properties": (
        21,
        "hot path: every Split event, fields inline (make bench)",
    ),
    "layers/shared/flagbridge/oracle/counting.py:_count_planned": (
        22,
        "hot path: one pass per event, the plan lookup inline (make bench); equivalence-tested",
    ),
    "layers/shared/flagbridge/impressions/records.py:decode_message": (
        30,
        "hot path: fast decoder, equivalence-tested against the models",
    ),
    "layers/shared/flagbridge/profiles/model.py:merge_into": (
        27,
        "hot path: the merge, flattened (make bench); hypothesis-tested",
    ),
    "layers/shared/flagbridge/profiles/model.py:_new_state": (
        25,
        "hot path: the merge of a new (user, flag), flattened (make bench); equivalence-tested against merge_into",
    ),
}
"""The hot paths flattened for ``make bench`` (each says so in a comment: ruff's ``noqa: C901`` with its reason where
ruff's own count, which leaves out boolean operators, is over its limit too)."""

NOT_YET_SPLIT: dict[str, int] = {}
"""Functions over the gate when it came (radon's count, booleans included): each may not grow, and leaves
this list once split. No hot path among them; new code has no such entry."""

EXCEPTIONS: dict[str, tuple[int, str]] = {
    **HOT_PATHS,
    **{key: (ceiling, "not yet split") for key, ceiling in NOT_YET_SPLIT.items()},
}


@dataclass(frozen=True)
class Block:
    key: str
    complexity: int
    line: int


def blocks(path: Path, root: Path = ROOT) -> Iterator[Block]:
    """Every function and method of ``path`` (closures on their own) with radon's complexity."""
    name = path.relative_to(root).as_posix()

    def walk(items: Iterable[Any], prefix: str) -> Iterator[Block]:
        for item in items:
            if not isinstance(item, Function):
                continue  # a class: radon lists its methods on their own
            qualified = f"{prefix}{item.fullname}"
            yield Block(f"{name}:{qualified}", item.complexity, item.lineno)
            yield from walk(item.closures, f"{qualified}.")

    yield from walk(cc_visit(path.read_text(encoding="utf-8")), "")


def problems(
    paths: Iterable[Path], exceptions: dict[str, tuple[int, str]] = EXCEPTIONS, root: Path = ROOT
) -> list[str]:
    """One line per function over the gate (or over its exception's ceiling), and per exception no longer needed."""
    found: list[str] = []
    seen: dict[str, int] = {}
    scanned: set[str] = set()
    for path in sorted(paths):
        scanned.add(path.relative_to(root).as_posix())
        for block in blocks(path, root):
            seen[block.key] = max(block.complexity, seen.get(block.key, 0))
            ceiling = exceptions[block.key][0] if block.key in exceptions else LIMIT
            if block.complexity > ceiling:
                where = f"{block.key.split(':')[0]}:{block.line}"
                found.append(
                    f"{where}: {block.key.split(':', 1)[1]} has complexity {block.complexity} (at most {ceiling})"
                )
    for key in sorted(exceptions):
        if key in seen and seen[key] <= LIMIT:
            found.append(f"{key} is back under {LIMIT} ({seen[key]}): remove it from EXCEPTIONS")
        elif key not in seen and key.split(":")[0] in scanned:
            found.append(f"{key} names no function: remove it from EXCEPTIONS")
    return found


def python_files(names: Iterable[str], root: Path = ROOT) -> list[Path]:
    files: list[Path] = []
    for name in names:
        path = root / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def main(argv: list[str]) -> int:
    found = problems(python_files(argv or PATHS))
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(
            f"complexity gate: radon's rank C (at most {LIMIT}) or a listed exception (local/complexity.py)",
            file=sys.stderr,
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
