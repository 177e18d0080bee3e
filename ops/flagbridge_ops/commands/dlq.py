"""``flagbridge dlq list|show|redrive``: the dead-letter queues' depth, a peek at their messages, redrive.

The work is in :mod:`flagbridge_ops.dlq`; this module parses the options and prints the results.
"""

from __future__ import annotations

import argparse
from typing import Any

from flagbridge_ops.cli import Context, Result, Subcommands, add_command, add_group
from flagbridge_ops.output import short, table


def register(commands: Subcommands) -> None:
    actions = add_group(
        commands,
        "dlq",
        summary="dead-letter queues: depth, peek, redrive",
        description=(
            "The dead-letter queues of the impressions queue, the batches queue and every destination lane.\n"
            "Redriving sends each message back to its source queue and deletes it from the DLQ only once that\n"
            "send succeeded; repeating it is safe (impressions and deliveries are deduplicated)."
        ),
        examples=[
            "flagbridge --stack flagbridge-dev dlq list",
            "flagbridge --stack flagbridge-dev dlq redrive batches --dry-run",
        ],
    )
    add_command(
        actions,
        "list",
        list_dlqs,
        summary="approximate depth of every DLQ",
        description="The approximate number of messages in every DLQ, and the queue each one redrives to.",
        examples=["flagbridge --stack flagbridge-dev dlq list", "flagbridge --stack flagbridge-dev --json dlq list"],
    )
    show = add_command(
        actions,
        "show",
        show_dlq,
        summary="peek at messages (not consumed)",
        description=(
            "Peek at a DLQ's messages: kind, reason and size, no personal data unless --show-bodies.\n"
            "The messages are made visible again at once; none is consumed."
        ),
        examples=[
            "flagbridge --stack flagbridge-dev dlq show batches --limit 5",
            "flagbridge --stack flagbridge-dev dlq show --queue-url https://sqs.../my-dlq --show-bodies",
        ],
    )
    _add_message_options(show, default_limit=10)
    show.add_argument("--show-bodies", action="store_true", help="print full bodies (personal data!)")

    move = add_command(
        actions,
        "redrive",
        redrive_dlq,
        summary="move messages back to the source",
        description=(
            "Send a DLQ's messages back to their source queue; each is deleted from the DLQ only once its send\n"
            "succeeded. Deliveries a destination refused for good stay in the DLQ unless --release-ledger."
        ),
        examples=[
            "flagbridge --stack flagbridge-dev dlq redrive batches --dry-run",
            "flagbridge --stack flagbridge-dev dlq redrive analytics --release-ledger",
        ],
    )
    _add_message_options(move, default_limit=None)
    move.add_argument("--dry-run", action="store_true", help="count what would move; move nothing")
    move.add_argument("--to", help="send to this queue URL instead of the DLQ's source queue")
    move.add_argument(
        "--release-ledger",
        action="store_true",
        help="also resend records a destination refused (releases their delivery-ledger claims)",
    )


def _add_message_options(command: argparse.ArgumentParser, *, default_limit: int | None) -> None:
    command.add_argument("name", nargs="?", help="impressions, batches or a destination lane (see `dlq list`)")
    command.add_argument("--queue-url", help="the DLQ's URL instead of a name")
    command.add_argument("--limit", type=int, default=default_limit, help="at most N messages")
    command.add_argument("--wait-seconds", type=int, default=1, help="SQS long-poll wait per receive (0-20)")
    command.add_argument(
        "--visibility-timeout", type=int, default=60, help="seconds a received message stays hidden meanwhile"
    )


def list_dlqs(ctx: Context) -> Result:
    from flagbridge_ops.dlq import discover_dlqs, queue_depth, queue_name

    sqs = ctx.clients.get("sqs")
    rows: list[dict[str, Any]] = []
    for dlq in discover_dlqs(sqs, ctx.resources):
        rows.append({"name": dlq.name, "url": dlq.url, "source_url": dlq.source_url, **queue_depth(sqs, dlq.url)})
    if not ctx.json:
        if not rows:
            ctx.out.write("no DLQ found (set the queue variables, or pass --stack)\n")
        else:
            ctx.out.write(
                table(
                    [
                        (r["name"], r["messages"], r["in_flight"], r["delayed"], queue_name(r["source_url"]) or "?")
                        for r in rows
                    ],
                    ("dlq", "messages", "in flight", "delayed", "redrives to"),
                )
                + "\n"
            )
    return {"dlqs": rows}


def _checked(args: argparse.Namespace) -> argparse.Namespace:
    """The message options, refused before any receive: --limit 0 would show or move nothing and look empty."""
    from flagbridge_ops.errors import UsageError

    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    return args


def show_dlq(ctx: Context) -> Result:
    from flagbridge_ops.dlq import message_summary, peek, select_dlq

    args = _checked(ctx.args)
    sqs = ctx.clients.get("sqs")
    dlq = select_dlq(sqs, ctx.resources, name=args.name, queue_url=args.queue_url)
    messages = [
        message_summary(m, args.show_bodies)
        for m in peek(sqs, dlq, args.limit, args.visibility_timeout, args.wait_seconds)
    ]
    if not ctx.json:
        ctx.out.write(f"{dlq.name} ({dlq.url}): {len(messages)} message(s) shown, none consumed\n")
        skip = {"message_id", "sent_at", "receives", "bytes", "kind", "body"}
        rows = [
            (
                m["message_id"],
                m["sent_at"] or "",
                m["receives"],
                m["bytes"],
                m["kind"],
                " ".join(f"{k}={short(v, 60)}" for k, v in m.items() if k not in skip and v not in (None, "")),
            )
            for m in messages
        ]
        ctx.out.write(table(rows, ("message id", "sent", "receives", "bytes", "kind", "details")) + "\n")
        for m in messages:
            if "body" in m:
                ctx.out.write(f"\n{m['message_id']}:\n{m['body']}\n")
    return {"dlq": dlq.name, "url": dlq.url, "messages": messages}


def redrive_dlq(ctx: Context) -> Result:
    from flagbridge.forwarding.ledger import DynamoDBLedger
    from flagbridge_ops.dlq import queue_depth, redrive, select_dlq
    from flagbridge_ops.errors import CliError

    args, resources, sqs = _checked(ctx.args), ctx.resources, ctx.clients.get("sqs")
    dlq = select_dlq(sqs, resources, name=args.name, queue_url=args.queue_url, to=args.to)
    total = queue_depth(sqs, dlq.url)["messages"]
    if args.limit is not None:
        total = min(total, args.limit)
    ledger_table = resources.settings.delivery_ledger_table
    if args.release_ledger and not ledger_table:
        raise CliError("--release-ledger needs the delivery ledger table: set DELIVERY_LEDGER_TABLE or --stack")
    ledger = DynamoDBLedger(ctx.clients.get("dynamodb"), ledger_table) if args.release_ledger else None
    result = redrive(
        sqs,
        dlq,
        resources,
        dry_run=args.dry_run,
        limit=args.limit,
        visibility=args.visibility_timeout,
        wait=args.wait_seconds,
        release_ledger=args.release_ledger,
        ledger=ledger,
        progress=ctx.progress(f"redrive {dlq.name}", total),
    )
    if not ctx.json:
        verb, number = ("would move", result["would_move"]) if args.dry_run else ("moved", result["moved"])
        targets = ", ".join(f"{n} to {q}" for q, n in result["targets"].items()) or "nothing"
        ctx.out.write(f"{dlq.name}: {result['seen']} message(s) seen, {verb} {number} ({targets})\n")
        for reason, count in result["skipped"].items():
            ctx.out.write(f"  left in the DLQ: {count}: {reason}\n")
        for error in result["errors"]:
            ctx.out.write(f"  error: {error}\n")
    return result
