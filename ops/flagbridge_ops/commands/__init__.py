"""The ``flagbridge`` commands, one module each; every module here is found and registered at start-up.

A command module defines ``register(commands)``, which adds its parser(s) to ``commands`` (the top-level
subparsers) with :func:`flagbridge_ops.cli.add_group` / :func:`flagbridge_ops.cli.add_command`, each with a
handler ``(Context) -> dict``. Handlers import what they need inside the function, so ``flagbridge --help``
does not pay for every command's imports. Modules whose name starts with ``_`` are skipped.
"""

from __future__ import annotations

import importlib
import pkgutil

from flagbridge_ops.cli import Subcommands


def command_modules() -> list[str]:
    """The modules of this package that are commands, in name order (the order ``--help`` lists them)."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def register_commands(commands: Subcommands) -> None:
    for name in command_modules():
        importlib.import_module(f"{__name__}.{name}").register(commands)
