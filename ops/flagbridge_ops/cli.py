"""What every command shares: its context (arguments, clients, streams), the global options and help layout.

A command module (see :mod:`flagbridge_ops.commands`) builds its parsers with :func:`add_group` and
:func:`add_command`, so every level has a description, an example and the same global options, and its
handlers receive a :class:`Context`.
"""

from __future__ import annotations

import argparse
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from flagbridge.oracle.verdicts import EXIT_FAIL, EXIT_PASS
from flagbridge.oracle.verdicts import EXIT_UNDECIDED as EXIT_UNDECIDED
from flagbridge_ops.output import Progress

if TYPE_CHECKING:
    from flagbridge_ops.resources import Clients, Resources

Subcommands = argparse._SubParsersAction  # what ``add_subparsers`` returns; typeshed names it so
Result = dict[str, Any]  # a command's result: printed with --json; a non-empty "errors" list means exit status 1
Handler = Callable[["Context"], Result]

# The exit codes of every command, defined here once. A command that exits by a verdict (`flagbridge verdict`,
# `traffic run`, `traffic status`, `traffic replay`) uses the verdict's: 0 passed, 1 failed, 2 undecided. An error
# exits like a FAIL (1), a usage error like an undecided verdict (2): both documented in docs/cli.md before the
# verdicts were, so the codes collide on purpose (a CI gate treats "not passed" alike; the one line on stderr tells).
EXIT_OK, EXIT_FAILED = EXIT_PASS, EXIT_FAIL
EXIT_USAGE, EXIT_INTERRUPTED = 2, 130  # argparse's usage error; 128 + SIGINT


@dataclass
class Context:
    """One run of a command: its parsed arguments, AWS clients, environment and output streams."""

    args: argparse.Namespace
    environ: Mapping[str, str]
    clients: Clients
    out: TextIO
    err: TextIO
    _resources: Resources | None = field(default=None, init=False, repr=False)

    @property
    def json(self) -> bool:
        """``--json``: the result goes to stdout as JSON and nothing is written for people."""
        return bool(getattr(self.args, "json", False))

    @property
    def resources(self) -> Resources:
        """The stack's resources (environment, then ``--stack``, then flags), resolved on first use."""
        if self._resources is None:
            from flagbridge_ops.resources import resolve_resources

            self._resources = resolve_resources(self.args, self.environ, self.clients)
        return self._resources

    def progress(self, label: str, total: int | None) -> Progress:
        """A progress bar on stderr when it is a terminal, unless ``--json`` or ``--no-progress``."""
        shown = not self.json and not getattr(self.args, "no_progress", False) and self.err.isatty()
        return Progress(label, total, self.err if shown else None)


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """The options every command accepts, before or after its name.

    On a command's own parser (``suppress=True``) an option left out keeps the value given before the command
    name (or the top-level default) instead of overwriting it with its own default.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("global options" + (" (also accepted before the command)" if suppress else ""))
    group.add_argument(
        "--stack",
        default=default(None),
        help="read queue URLs, bucket and tables from this CloudFormation stack's outputs",
    )
    group.add_argument(
        "--config",
        default=default(None),
        help="the flagbridge configuration file you deployed (default: FLAGBRIDGE_CONFIG, else the checkout's)",
    )
    group.add_argument(
        "--local",
        nargs="?",
        const="",
        default=default(None),
        metavar="URL",
        help="use the stack `make run` serves (its GET /_local/aws): URL, else FLAGBRIDGE_LOCAL, else "
        "http://127.0.0.1:$PORT (3000)",
    )
    group.add_argument("--bucket", default=default(None), help="quarantine bucket (default: QUARANTINE_BUCKET)")
    group.add_argument("--impressions-queue-url", default=default(None), help="default: IMPRESSIONS_QUEUE_URL")
    group.add_argument("--batches-queue-url", default=default(None), help="default: BATCHES_QUEUE_URL")
    group.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable result on stdout, no tables"
    )
    group.add_argument("--no-progress", action="store_true", default=default(False), help="no progress bar on stderr")
    group.add_argument(
        "--debug", action="store_true", default=default(False), help="print the traceback of an unexpected error"
    )


def _global_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_global_options(parent, suppress=True)
    return parent


def examples_text(examples: Sequence[str]) -> str:
    return "examples:\n" + "\n".join(f"  {example}" for example in examples)


_GROUPS: weakref.WeakKeyDictionary[argparse.ArgumentParser, Subcommands] = weakref.WeakKeyDictionary()
"""Each group's parser and where its actions go (argparse keeps that private)."""


def add_group(
    commands: Subcommands, name: str, *, summary: str, description: str, examples: Sequence[str]
) -> Subcommands:
    """A command with subcommands (``flagbridge dlq ...``); returns where to add them."""
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=examples_text(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION", title="actions")
    _GROUPS[parser] = actions
    return actions


def group_actions(commands: Subcommands, name: str) -> Subcommands:
    """The actions of the group ``name`` made by :func:`add_group`, to add one more to (a command module may extend
    another's group: ``add_command(group_actions(commands, "traffic"), "status", ...)``); LookupError when ``name``
    is no group, or not registered yet."""
    parser = commands.choices.get(name)
    if parser is None or parser not in _GROUPS:
        raise LookupError(f"no command group {name!r} to add an action to (is it registered before this one?)")
    return _GROUPS[parser]


def add_command(
    commands: Subcommands,
    name: str,
    handler: Handler,
    *,
    summary: str,
    description: str,
    examples: Sequence[str],
) -> argparse.ArgumentParser:
    """A command that runs ``handler`` (``flagbridge dlq list``); returns its parser for its own options."""
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=examples_text(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_global_options()],
    )
    parser.set_defaults(run=handler)
    return parser
