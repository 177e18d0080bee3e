"""``flagbridge quarantine list|replay``: what the quarantine bucket holds, and replaying it with today's config.

The work is in :mod:`flagbridge_ops.quarantine` (listing) and :mod:`flagbridge_ops.replay`; this module
parses the options and prints the results.
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import date
from typing import Any

from flagbridge_ops.cli import Context, Result, Subcommands, add_command, add_group
from flagbridge_ops.output import as_list, histogram_text, table


def register(commands: Subcommands) -> None:
    actions = add_group(
        commands,
        "quarantine",
        summary="the quarantine bucket: list, replay",
        description=(
            "Items a function refused for good, kept in the quarantine bucket with a reason each. Replaying runs\n"
            "them again with the current configuration (--config: the one you deployed); a replay never delivers\n"
            "twice, and --dry-run routes in process and reports per destination without sending anything."
        ),
        examples=[
            "flagbridge --stack flagbridge-dev quarantine list --since 2026-01-01",
            "flagbridge --stack flagbridge-dev --config config/flagbridge.yaml quarantine replay --dry-run",
        ],
    )
    listing = add_command(
        actions,
        "list",
        list_quarantine,
        summary="objects, item counts and reasons",
        description="The quarantine's objects with their item counts, and a histogram of the reasons.",
        examples=[
            "flagbridge --stack flagbridge-dev quarantine list",
            "flagbridge --stack flagbridge-dev quarantine list --source cdp-router --since 2026-01-01",
        ],
    )
    replay = add_command(
        actions,
        "replay",
        replay_quarantine,
        summary="re-run items with today's config",
        description=(
            "Re-run quarantined items with the current configuration: impressions through the webhook's ingest,\n"
            "mParticle batches onto the batches queue (blocked batches: only the blocked events, under a stable\n"
            "replay key), processor messages onto the impressions queue, undeliverable lane messages onto their\n"
            "lane. Replayed items move to replayed/<key>; items that still fail stay where they are."
        ),
        examples=[
            "flagbridge --stack flagbridge-dev quarantine replay --source cdp-router --dry-run",
            "flagbridge --stack flagbridge-dev quarantine replay --source cdp-router",
        ],
    )
    for command in (listing, replay):
        command.add_argument("--source", action="append", help="only this source prefix (repeatable)")
        command.add_argument("--since", type=_since, help="only objects from this day on (YYYY-MM-DD)")
        command.add_argument("--key", action="append", help="only this object key (repeatable)")
    replay.add_argument("--dry-run", action="store_true", help="route in process and report; send nothing")
    replay.add_argument("--keep", action="store_true", help="leave replayed objects in place")
    replay.add_argument(
        "--whole-batch",
        action="store_true",
        help="replay every event of a blocked batch, not only the blocked ones (may duplicate)",
    )


def _since(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from exc


def list_quarantine(ctx: Context) -> Result:
    from flagbridge_ops import quarantine

    args, s3 = ctx.args, ctx.clients.get("s3")
    bucket = ctx.resources.require_bucket()
    objects = quarantine.list_quarantine(s3, bucket, args.source, args.since, args.key)
    rows: list[dict[str, Any]] = []
    overall: Counter[str] = Counter()
    for entry, document in quarantine.load_documents(s3, bucket, objects, ctx.progress("quarantine", len(objects))):
        items = as_list(document.get("items"))
        reasons = Counter(quarantine.item_reason(item, document) for item in items)
        overall.update(reasons)
        rows.append(
            {"key": entry.key, "source": entry.source, "bytes": entry.size, "items": len(items), "reasons": reasons}
        )
    if not ctx.json:
        if rows:
            ctx.out.write(
                table(
                    [(r["key"], r["items"], r["bytes"], histogram_text(r["reasons"])) for r in rows],
                    ("key", "items", "bytes", "reasons"),
                )
                + "\n\n"
            )
        ctx.out.write(f"{len(rows)} object(s), {sum(r['items'] for r in rows)} item(s)\n")
        if overall:
            ctx.out.write(table(sorted(overall.items(), key=lambda kv: (-kv[1], kv[0])), ("reason", "items")) + "\n")
    return {
        "bucket": bucket,
        "objects": [{**r, "reasons": dict(r["reasons"])} for r in rows],
        "reasons": dict(overall),
    }


def replay_quarantine(ctx: Context) -> Result:
    from flagbridge_ops import quarantine, replay

    args = ctx.args
    bucket = ctx.resources.require_bucket()
    sources = args.source or list(quarantine.REPLAYABLE_SOURCES)
    objects = quarantine.list_quarantine(ctx.clients.get("s3"), bucket, sources, args.since, args.key)
    result = replay.replay_quarantine(
        ctx.clients,
        ctx.resources,
        objects,
        dry_run=args.dry_run,
        keep=args.keep,
        whole_batch=args.whole_batch,
        progress=ctx.progress("replay", len(objects)),
    )
    if not ctx.json:
        ctx.out.write(_replay_text(result))
    return result


def _replay_text(result: dict[str, Any]) -> str:
    dry = result["dry_run"]
    verb = "would replay" if dry else "replayed"
    lines = [
        ("Quarantine replay (dry run: nothing sent, nothing moved)" if dry else "Quarantine replay"),
        f"{result['objects']} object(s), {result['items']} item(s): {verb} {result['replayed']}, "
        f"still failing {result['still_failing']}, not replayable {result['not_replayable']}",
    ]
    if result["by_source"]:
        lines += [
            "",
            table(
                [
                    (s, c.get("replayed", 0), c.get("still_failing", 0), c.get("not_replayable", 0))
                    for s, c in result["by_source"].items()
                ],
                ("source", verb, "still failing", "not replayable"),
            ),
        ]
    if result["destinations"]:
        lines += [
            "",
            "Per destination, routed in process with the current configuration"
            + (" (what the router would send)" if dry else " (what the router will send)"),
            table(
                [
                    (n, d["messages"], d["events"], histogram_text(d["reasons"]))
                    for n, d in result["destinations"].items()
                ],
                ("destination", "messages", "events", "decisions"),
            ),
        ]
    if result["queued"]:
        queued = ", ".join(f"{n} to {q}" for q, n in sorted(result["queued"].items()))
        lines += ["", f"Queue messages {'that would be sent' if dry else 'sent'}: {queued}"]
        if result["impressions"]:
            lines.append(f"Impressions {'to re-enqueue' if dry else 're-enqueued'}: {result['impressions']}")
    if result["objects_moved"]:
        lines.append(
            "Objects recorded under replayed/: " + ", ".join(f"{n} {how}" for how, n in result["objects_moved"].items())
        )
    if result["kept"]:
        lines += [
            "",
            "Left in the quarantine",
            table(
                [(k["key"], k["index"], k["reason"], k["status"], k["detail"]) for k in result["kept"]],
                ("key", "index", "reason", "status", "why"),
            ),
        ]
    lines += [f"error: {error}" for error in result["errors"]]
    return "\n".join(lines) + "\n"
