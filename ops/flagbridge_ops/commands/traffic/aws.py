"""``flagbridge traffic status|stop`` and the AWS side of ``traffic run --stack`` and ``traffic replay --run``.

Part of the ``traffic`` command's package: :mod:`flagbridge_ops.commands.traffic` registers these actions in its
group and hands ``run --stack`` and ``replay --run`` over to :func:`run_in_aws` and :func:`replay_from_s3`. The
work is in :mod:`flagbridge_ops.traffic_aws`. ``status`` exits 0 when the run completed, 1 when it failed requests
(5xx or no answer), 2 while it runs or when it stopped or could not enqueue every shard; a run until decided that
ended decided exits as its verdict: 0 PASS, 1 FAIL.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from flagbridge_ops.cli import EXIT_FAILED, EXIT_OK, EXIT_UNDECIDED, Context, Result, Subcommands, add_command


def register(actions: Subcommands) -> None:
    """Add ``status`` and ``stop`` to the ``traffic`` group's ``actions``."""
    status = add_command(
        actions,
        "status",
        status_command,
        summary="a test run's status in a deployed stack",
        description=(
            "Planned, sent, the status histogram, errors, the rate achieved, shards by state, why it stopped, the\n"
            "manifest's S3 location and the oracle's verdict for the run's test (GET /runs/{id}).\n"
            "--watch redraws every few seconds until the run completes or stops."
        ),
        examples=["flagbridge traffic status run-1764547200-1a2b3c4d --stack flagbridge-prod --watch"],
    )
    status.add_argument("run_id", metavar="RUN", help="the run id")
    status.add_argument("--watch", action="store_true", help="repeat until the run completes, stops or fails")
    status.add_argument("--interval", type=float, default=3.0, help="seconds between two looks (default 3)")
    stop = add_command(
        actions,
        "stop",
        stop_command,
        summary="stop a test run in a deployed stack",
        description=(
            "Add the run to the stack's stop parameter (TrafficStopParameterName): every worker stops it within one\n"
            "shard; its shards end 'stopped' and its status says why."
        ),
        examples=["flagbridge traffic stop run-1764547200-1a2b3c4d --stack flagbridge-prod"],
    )
    stop.add_argument("run_id", metavar="RUN", help="the run id")


def run_in_aws(ctx: Context, rate: float) -> Result:
    """``traffic run ... --stack NAME``: POST /runs; prints the run id, its shards and where to look."""
    from flagbridge_ops.traffic_aws import start

    body = start(ctx.args, ctx.environ, ctx.clients, rate)
    if not ctx.json:
        ctx.out.write(
            f"run {body['run_id']} started in AWS  plan {body['plan_hash']}  seed {body['seed']}\n"
            f"  {body['requests']} requests at {body['rate']:g}/s: {body['shards']} shards of {body['shard_size']},"
            f" {body['parallelism']} workers at {body['rate_per_worker']:g}/s each"
            f" ({body['sqs_requests']} SQS requests)\n"
            f"  manifest {body['manifest']}\n"
            f"  flagbridge traffic status {body['run_id']} --stack {ctx.args.stack} --watch\n"
        )
        for warning in body.get("warnings") or []:
            ctx.err.write(f"warning: {warning}\n")
    return body


def _exit_status(document: dict[str, Any]) -> int:
    from flagbridge.oracle.verdicts import exit_status
    from flagbridge.traffic.decided import ended_verdict

    decided = ended_verdict(document.get("ended"))
    if decided is not None:
        return exit_status([decided])
    if document["state"] != "completed":
        return EXIT_UNDECIDED
    return EXIT_FAILED if document.get("failures") else EXIT_OK


def _print_status(out: TextIO, document: dict[str, Any]) -> None:
    shards = document["shards"]
    out.write(
        f"run {document['run_id']}  {document['state']}  sent {document['sent']}/{document['planned']}"
        f"  rate {document['rate_achieved'] or 0:g}/s (asked {document['rate']:g}/s)"
        f"  shards {shards.get('done', 0)} done, {shards.get('sending', 0)} sending,"
        f" {shards.get('pending', 0)} pending, {shards.get('stopped', 0)} stopped"
        + (f", {shards['not_sent']} not sent" if shards.get("not_sent") else "")
        + f" of {shards['total']}\n"
    )
    if document.get("ended"):
        out.write(f"  ended: {document['ended']}\n")
    if document["statuses"]:
        out.write("  statuses  " + "  ".join(f"{k}: {v}" for k, v in document["statuses"].items()) + "\n")
    out.write(f"  errors {document['errors']}  failures {document['failures']}\n")
    for reason in document["stopped"]:
        out.write(f"  stopped: {reason}\n")
    verdict = document["verdict"]
    if isinstance(verdict, dict):
        out.write(f"  verdict of test {verdict['test']}: {verdict['state']}\n")
        for item in verdict.get("verdicts", []):
            out.write(
                f"    {item.get('treatment')} {item.get('metric')}: {item.get('state')} {item.get('explain', '')}\n"
            )
    else:
        out.write(f"  verdict: {verdict}\n")
    out.write(f"  manifest {document['manifest']['location']}\n")


def status_command(ctx: Context) -> Result:
    from flagbridge_ops.traffic_aws import FINAL_STATES, status

    args = ctx.args
    while True:
        document = status(args, ctx.environ, ctx.clients, args.run_id)
        if not ctx.json:
            _print_status(ctx.out, document)
        if not args.watch or document["state"] in FINAL_STATES:
            break
        time.sleep(max(0.2, args.interval))
    return {**document, "exit_status": _exit_status(document)}


def stop_command(ctx: Context) -> Result:
    from flagbridge_ops.traffic_aws import stop

    result = stop(ctx.args, ctx.environ, ctx.clients, ctx.args.run_id)
    if not ctx.json:
        ctx.out.write(f"run {result['run_id']} stopped: {result['parameter']} = {result['value']}\n")
    return result


def replay_from_s3(ctx: Context) -> Result:
    """``traffic replay --run RUN --case ID``: the case's manifest line from S3 and its request, regenerated."""
    from flagbridge_ops.traffic_aws import replay

    result = replay(ctx.args, ctx.environ, ctx.clients, ctx.args.run_id, ctx.args.case)
    if not ctx.json:
        case = result["case"]
        response = case.get("response", {})
        answer = response.get("status", response.get("error"))
        ctx.out.write(f"case {case['id']} of run {result['run_id']} ({case['route']}): {answer}\n")
        for mutation in case.get("mutations", []):
            ctx.out.write(f"  {mutation['element']}: {mutation['attack']} ({mutation['attack_set']})\n")
        ctx.out.write(f"  manifest {result['manifest']}\n  {result['curl']}\n")
    return result
