"""``flagbridge verdict [NAME] [--watch] [--junit FILE] [--html FILE]``: the oracle's verdicts, a CI gate.

The work is in :mod:`flagbridge_ops.verdict`; this module parses the options and prints the results.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from flagbridge_ops.cli import Context, Result, Subcommands, add_command
from flagbridge_ops.output import table


def register(commands: Subcommands) -> None:
    command = add_command(
        commands,
        "verdict",
        show_verdicts,
        summary="the oracle's verdicts per flag treatment (exit 0 all PASS, 1 any FAIL, 2 otherwise)",
        description=(
            "The test oracle's current verdict per test, treatment and metric, with counts, rates, bounds and the\n"
            "line that explains each. Read from the verdicts table (ORACLE_VERDICTS_TABLE, or the stack output\n"
            "OracleVerdictsTableName) for the tests of the configuration's oracle section.\n\n"
            "exit status: 0 every verdict PASS, 1 any FAIL, 2 otherwise (INCONCLUSIVE, NO_DATA, ERROR, INVALID, or\n"
            "not evaluated yet), so a pipeline can gate a release on it."
        ),
        examples=[
            "flagbridge --stack flagbridge-dev verdict",
            "flagbridge --stack flagbridge-dev verdict new-checkout-health --junit verdict.xml --html verdict.html",
            "flagbridge --stack flagbridge-dev verdict --watch --timeout 3600   (until every verdict is decided)",
        ],
    )
    command.add_argument("name", nargs="?", help="one test (default: every test of the configuration)")
    command.add_argument("--watch", action="store_true", help="refresh until every verdict is PASS or FAIL")
    command.add_argument("--interval", type=float, default=30.0, help="seconds between refreshes (--watch)")
    command.add_argument("--timeout", type=float, default=None, help="stop watching after this many seconds")
    command.add_argument("--junit", type=Path, help="write JUnit XML here (one testcase per treatment and metric)")
    command.add_argument("--html", type=Path, help="write a self-contained HTML report here (SVG, no CDN)")
    command.add_argument(
        "--verdicts-table", help="the oracle's verdicts table (default: ORACLE_VERDICTS_TABLE or the stack output)"
    )


def _documents(ctx: Context) -> list[dict[str, Any]]:
    from flagbridge.oracle.store import DynamoDBVerdictStore
    from flagbridge_ops.errors import CliError, UsageError
    from flagbridge_ops.verdict import annotate_units, load_documents

    resources = ctx.resources
    oracle = resources.config.oracle
    if oracle is None or not oracle.tests:
        raise CliError(f"no oracle tests in {resources.settings.config_path} (pass --config: the file you deployed)")
    if ctx.args.name and oracle.test(ctx.args.name) is None:
        raise UsageError(f"no test named {ctx.args.name!r}; known: {', '.join(t.name for t in oracle.tests)}")
    table_name = ctx.args.verdicts_table or resources.settings.oracle_verdicts_table
    if not table_name:
        raise CliError("no verdicts table: pass --stack or --verdicts-table, or set ORACLE_VERDICTS_TABLE")
    from botocore.exceptions import ClientError

    store = DynamoDBVerdictStore(ctx.clients.get("dynamodb"), table_name)
    try:
        documents = load_documents(oracle, store, ctx.args.name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        source = "--verdicts-table" if ctx.args.verdicts_table else "ORACLE_VERDICTS_TABLE (or --stack's output)"
        raise CliError(
            f"no verdicts table named {table_name!r} here (from {source}): check the name in the stack's "
            "OracleVerdictsTableName output, AWS_DEFAULT_REGION, or pass --stack NAME"
        ) from exc
    annotate_units(documents, oracle)
    return documents


def _print(ctx: Context, rows: list[dict[str, Any]], documents: list[dict[str, Any]]) -> None:
    from flagbridge_ops.output import coloured, use_colour
    from flagbridge_ops.verdict import kill_lines, table_rows

    colour = use_colour(ctx.out, ctx.environ)  # PASS green and FAIL red at a terminal only; never with NO_COLOR
    text = table(table_rows(rows), ("test", "treatment", "metric", "verdict", "n", "rate", "bounds")) + "\n"
    text += "".join(f"  {row.get('explain') or row['state']}\n" for row in rows)
    text += "".join(f"{line}\n" for line in kill_lines(documents))
    ctx.out.write(coloured(text, colour))


def show_verdicts(ctx: Context) -> Result:
    from flagbridge.oracle.report_html import html_report
    from flagbridge.oracle.verdicts import exit_status, verdict_rows
    from flagbridge_ops.verdict import junit_xml

    args = ctx.args
    if args.watch and not 0 <= args.interval < math.inf:  # refused before the first look, not at the first sleep
        from flagbridge_ops.errors import UsageError

        raise UsageError(f"--interval must be 0 or more seconds, got {args.interval:g}")
    started = time.monotonic()
    while True:
        documents = _documents(ctx)
        rows = verdict_rows(documents)
        decided = all(row["state"] in ("PASS", "FAIL") for row in rows)
        if not ctx.json:
            _print(ctx, rows, documents)
        if not args.watch or decided or (args.timeout is not None and time.monotonic() - started >= args.timeout):
            break
        if not ctx.json:
            ctx.out.write(f"(refreshing in {args.interval:g}s; Ctrl-C to stop)\n\n")
        time.sleep(args.interval)
    if args.junit:
        args.junit.write_text(junit_xml(rows), encoding="utf-8")
    if args.html:
        args.html.write_text(html_report(documents), encoding="utf-8")
    status = exit_status(row["state"] for row in rows)
    kills = {d["name"]: (d.get("report") or {}).get("kill") for d in documents if (d.get("report") or {}).get("kill")}
    return {"exit_status": status, "verdicts": rows, "tests": [d["name"] for d in documents], "kills": kills}
