"""``flagbridge``: the operator's command line for a deployed flagbridge stack (or the local runner).

``main`` builds the parser from the command modules (:mod:`flagbridge_ops.commands`), runs the chosen command
and turns every failure into one line on stderr. Exit status: 0 ok, 1 something failed (an error, or a result
listing errors), 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from flagbridge_ops.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Context, add_global_options
from flagbridge_ops.commands import register_commands

if TYPE_CHECKING:
    from flagbridge_ops.resources import Clients

DESCRIPTION = """\
Operate a deployed flagbridge stack: inspect and redrive its dead-letter queues, replay its quarantine.

Resources come from --stack NAME (the stack's outputs), from the variables the functions read
(IMPRESSIONS_QUEUE_URL, BATCHES_QUEUE_URL, DESTINATION_QUEUES, DESTINATION_DLQS, QUARANTINE_BUCKET,
PROFILES_TABLE, DELIVERY_LEDGER_TABLE, FLAGBRIDGE_CONFIG) or from flags: flags win over the stack, the stack
over the environment. AWS credentials, region and AWS_ENDPOINT_URL are read as the AWS CLI reads them; --local
takes all of them from the local runner (`make run`). Inside a checkout, the configuration defaults to its
layers/shared/config/flagbridge.yaml."""

EPILOG = """\
examples:
  flagbridge --stack flagbridge-dev dlq list
  flagbridge --stack flagbridge-dev quarantine replay --source cdp-router --dry-run
  flagbridge verdict --local                   (the stack `make run` serves, found on 127.0.0.1:$PORT)
  flagbridge --stack flagbridge-dev verdict --junit verdict.xml

Every command has --help, with its own examples.

exit status:
  0  ok
  1  something failed (one line on stderr), or the result lists errors
  2  usage error (wrong or missing arguments); `verdict`: some verdict is neither PASS nor FAIL"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flagbridge",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    register_commands(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flagbridge")
    except PackageNotFoundError:
        return "(not installed)"


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    clients: Clients | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed or with errors, 2 usage)."""
    try:
        args = build_parser().parse_args(_bare_local(sys.argv[1:] if argv is None else list(argv)))
    except SystemExit as exit_:  # --help and --version (0), usage errors (2): argparse printed them
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    from flagbridge_ops.errors import UsageError, describe_error
    from flagbridge_ops.local import with_defaults
    from flagbridge_ops.resources import Clients

    err = err or sys.stderr
    environ = os.environ if environ is None else environ
    try:
        completed = with_defaults(environ, local=args.local, config_given=bool(args.config))
    except Exception as exc:
        err.write(f"error: {describe_error(exc)}\n")
        return EXIT_FAILED
    if clients is None:  # against the local runner: its endpoint and keys, whatever this shell's AWS_* say
        clients = Clients(completed if args.local is not None or environ.get("FLAGBRIDGE_LOCAL") else None)
    ctx = Context(args, completed, clients, out or sys.stdout, err)
    try:
        result = args.run(ctx)
    except UsageError as exc:
        err.write(f"flagbridge: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            traceback.print_exc(file=err)
        err.write(f"error: {describe_error(exc)}\n")
        return EXIT_FAILED
    if ctx.json:
        ctx.out.write(json.dumps(result, indent=2, default=str, ensure_ascii=False) + "\n")
    if isinstance(result.get("exit_status"), int):  # commands that exit like `flagbridge verdict` (0/1/2)
        return int(result["exit_status"])
    return EXIT_FAILED if result.get("errors") else EXIT_OK


def _bare_local(argv: list[str]) -> list[str]:
    """``--local`` followed by a command name, not a URL, takes no value (argparse would take the name as one)."""
    words = list(argv)
    for index, word in enumerate(words):
        if word == "--":
            break
        if word == "--local" and not (index + 1 < len(words) and "://" in words[index + 1]):
            words[index] = "--local="
    return words


if __name__ == "__main__":
    sys.exit(main())
