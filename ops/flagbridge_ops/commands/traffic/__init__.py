"""``flagbridge traffic run|replay|import-har`` and ``traffic plan explain``: traffic plans from the command line.

One package for the command: this module registers the ``traffic`` group and its actions, :mod:`.aws` adds
``status`` and ``stop``. The work is in :mod:`flagbridge_ops.traffic` (``run`` calls its :func:`run_locally`) and
:mod:`flagbridge.traffic`; the verdict and its exit status in :mod:`flagbridge.oracle.verdicts`. Commands parse and
print.
``traffic run`` exits like ``flagbridge verdict``. When the plan feeds an oracle test (``oracle.test``), the exit
status *is* the oracle's verdict of the metrics the run feeds, read from the bridge after the run: 0 every one
PASS (from an evaluation after the run's last result, and the run finished as asked), 1 any FAIL (also when that
FAIL stopped the run), 2 otherwise. Without a test: 0 when every request was answered without a server error, 1 when
any failed (5xx or no answer), 2 when the run could not finish as asked (stopped by the stop switch or a budget, or
results the bridge did not take). ``traffic replay``: 0 the case passes now, 1 it still fails, 2 it failed but the
shrunk case did not (flaky). Refusals (allowlist, testers, plan errors, an unknown oracle test, a target that does
not answer) print one line and exit 1 or 2, before anything is sent or reported.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, TextIO

from flagbridge_ops.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNDECIDED,
    Context,
    Result,
    Subcommands,
    add_command,
    add_group,
)

MAX_UNANSWERED = 20  # flagbridge.traffic.run.MAX_UNANSWERED (not imported: the command loads lazily)
# Without --verdict-wait, a run that feeds a test waits up to this long for a decided verdict (it returns as soon
# as the oracle has judged the run's last result: two or three scheduled evaluations after it, in AWS and locally).
DEFAULT_VERDICT_WAIT_S = 180.0
SLOW_RATE = 0.9  # below this share of the asked rate, the run says so


def register(commands: Subcommands) -> None:
    actions = add_group(
        commands,
        "traffic",
        summary="traffic plans: mutated tester traffic, reproducible",
        description=(
            "Send a request model, mutated by a traffic plan, to an allowlisted target as the bridge's testers;\n"
            "every response goes back through the bridge as a tester event (flagbridge_test_request).\n"
            "Same plan, model, seed and run: the same bytes, so any case can be replayed and shrunk."
        ),
        examples=[
            "flagbridge traffic plan explain plan.xml --model model.yaml",
            "flagbridge traffic run plan.yaml --model model.yaml --target http://127.0.0.1:8080 --seed 7 "
            "--requests 1000 --rate 50/s --bridge http://127.0.0.1:3000",
            "flagbridge traffic replay --manifest traffic-tr-1.ndjson --case c42 --shrink",
        ],
    )
    run = add_command(
        actions,
        "run",
        run_command,
        summary="generate, send and report a run",
        description=(
            "Generate --requests cases from PLAN and --model, send them to --target at --rate, write the NDJSON\n"
            "manifest (--report) and post each result to the bridge as a tester event. Nothing is sent when a host\n"
            "is outside traffic.allowlist or a tester is not a tester by test_users.rules, nor when the target does\n"
            "not answer before the run (one OPTIONS * per destination: any HTTP answer will do; exit 1). The run\n"
            "stops before its next batch when the stop file exists (--stop-file or traffic.stop.file), and at once\n"
            "when --max-unanswered requests in a row got no answer (target stopped answering).\n\n"
            "When the plan feeds an oracle test (oracle: {test: NAME}), the run reads the test's verdict from the\n"
            "bridge's oracle API (GET /tests/NAME, bearer token FLAGBRIDGE_ORACLE_API_TOKEN) before it starts and\n"
            "between batches, stops on its FAIL, prints the verdict at the end (waiting up to --verdict-wait seconds\n"
            "for a decided one) and exits like `flagbridge verdict`: 0 all PASS, 1 any FAIL, 2 otherwise."
        ),
        examples=[
            "flagbridge traffic run plan.yaml --model model.yaml --target http://127.0.0.1:8080 --seed 7 "
            "--requests 1000 --rate 50/s --bridge http://127.0.0.1:3000",
            "flagbridge traffic run plan.xml --model model.yaml --target http://127.0.0.1:8080 --requests 100000 "
            "--count-only",
        ],
    )
    run.add_argument("plan", help="the traffic plan (.yaml, .json or the published .xml form)")
    run.add_argument("--model", required=True, help="the request model (.yaml/.json)")
    run.add_argument("--target", help="send here instead of the model's hosts (scheme://host:port[/prefix])")
    run.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    run.add_argument("--requests", type=int, default=100, help="number of cases (default 100)")
    run.add_argument("--rate", default="50/s", help="requests per second, e.g. 50/s or 600/m (default 50/s)")
    run.add_argument("--report", help="the NDJSON manifest to write (default traffic-<run id>.ndjson)")
    run.add_argument("--dry-run", action="store_true", help="generate and write the manifest; send nothing")
    run.add_argument("--count-only", action="store_true", help="count cases and mutations; send and write nothing")
    run.add_argument("--bridge", help="the bridge's base URL for results (default traffic.results.events_api)")
    run.add_argument("--testers", help="tester keys, comma-separated (default traffic.testers)")
    run.add_argument("--attack-sets", action="append", default=[], help="a file of attack sets (repeatable)")
    run.add_argument("--max-duration", type=float, default=3600.0, help="seconds budget (default 3600)")
    run.add_argument("--max-failures", type=int, help="stop after this many failed requests")
    run.add_argument(
        "--max-unanswered",
        type=int,
        default=MAX_UNANSWERED,
        help=f"stop once this many requests in a row got no answer (default {MAX_UNANSWERED}; 0: never)",
    )
    run.add_argument("--stop-file", help="stop before the next batch once this file exists")
    run.add_argument("--run-id", help="the run's id (default: generated)")
    run.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds (default 10)")
    run.add_argument(
        "--verdict-wait",
        type=float,
        default=None,
        help="seconds to wait after the run for the oracle to decide its test's verdict (default "
        f"{DEFAULT_VERDICT_WAIT_S:g} when the plan feeds a test; it ends as soon as the verdict is decided; 0: read "
        "it once)",
    )
    run.add_argument(
        "--until-decided",
        action="store_true",
        help="--requests is a budget: send in rounds sized from the oracle's estimate until its verdict is decided",
    )
    run.add_argument(
        "--no-oracle",
        action="store_true",
        help="do not read the oracle's verdict (no FAIL stop, no verdict; the results still feed the test)",
    )

    plan = add_group(
        actions,
        "plan",
        summary="inspect a traffic plan",
        description="Inspect a traffic plan without sending anything.",
        examples=["flagbridge traffic plan explain plan.xml --model model.yaml"],
    )
    explain = add_command(
        plan,
        "explain",
        explain_command,
        summary="what a plan means, and its expected mutations per 1,000 requests",
        description=(
            "Print what the plan means in words, its repair warnings (XML) and, with --model, the exact\n"
            "expected mutations per 1,000 requests for each element under the caps."
        ),
        examples=["flagbridge traffic plan explain plan.xml --model model.yaml"],
    )
    explain.add_argument("file", help="the traffic plan")
    explain.add_argument("--model", help="a request model, for the exact figures")
    explain.add_argument("--attack-sets", action="append", default=[], help="a file of attack sets (repeatable)")

    replay = add_command(
        actions,
        "replay",
        replay_command,
        summary="re-send one case, optionally shrink it",
        description=(
            "Regenerate one case of a run from its manifest (byte-identical: its hash is checked), send it again\n"
            "and print a curl command that reproduces it. --shrink drops its mutations one at a time, keeping only\n"
            "those the failure needs, and re-checks the failure on the shrunk case."
        ),
        examples=["flagbridge traffic replay --manifest traffic-tr-1.ndjson --case c42 --shrink"],
    )
    replay.add_argument("--manifest", help="the run's NDJSON manifest (--report of the run)")
    replay.add_argument(
        "--run", dest="run_id", metavar="RUN", help="a run in AWS (--stack): the case is read from its S3 manifest"
    )
    replay.add_argument("--case", required=True, help="the case id (c42 or 42)")
    replay.add_argument("--shrink", action="store_true", help="minimise the failing case's mutations")
    replay.add_argument("--target", help="send to another target than the run's")

    har = add_command(
        actions,
        "import-har",
        import_har_command,
        summary="a request model from a HAR file",
        description=(
            "Write a request model from a HAR file (browser dev tools), keeping the requests to allowlisted hosts\n"
            "(traffic.allowlist). Authorization headers and cookie values are redacted unless --keep-secrets."
        ),
        examples=["flagbridge traffic import-har session.har --out model.yaml"],
    )
    har.add_argument("file", help="the HAR file")
    har.add_argument("--out", required=True, help="the model file to write (.yaml or .json)")
    har.add_argument("--keep-secrets", action="store_true", help="keep credentials in the model (not recommended)")

    from flagbridge_ops.commands.traffic import aws

    aws.register(actions)  # status and stop: runs in a deployed stack


class _Bar:
    """``traffic: 120/1000 [#####.....] 200=110 500=2 errors=0 49.8/s`` redrawn on stderr (a terminal only)."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream = stream
        self.total = total
        self.last = 0.0

    def __call__(self, summary: Any, case: Any) -> None:
        now = time.monotonic()
        if self.stream is None or (now - self.last < 0.1 and summary.generated < self.total):
            return
        self.last = now
        done = summary.generated
        filled = 24 * done // max(1, self.total)
        statuses = " ".join(f"{status}={count}" for status, count in sorted(summary.statuses.items()))
        line = (
            f"traffic: {done}/{self.total} [{'#' * filled}{'.' * (24 - filled)}] {statuses} "
            f"failures={summary.failure_count} {summary.rate:.1f}/s"
        )
        self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


def run_command(ctx: Context) -> Result:
    from flagbridge.traffic.errors import SafetyError
    from flagbridge.traffic.safety import parse_rate
    from flagbridge_ops.errors import UsageError
    from flagbridge_ops.traffic import RunHooks, run_locally
    from flagbridge_ops.until_decided import check_options

    args = ctx.args
    if args.requests < 1:
        raise UsageError("--requests must be at least 1")
    _check_budgets(args)
    try:
        rate = parse_rate(args.rate)
    except SafetyError as exc:  # a wrong argument: exit 2, not 1 (1 is a run whose requests failed)
        raise UsageError(str(exc)) from None
    check_options(args)
    if args.stack and not (args.dry_run or args.count_only):  # the run goes to the stack: its workers send it
        from flagbridge_ops.commands.traffic.aws import run_in_aws

        return run_in_aws(ctx, rate)
    shown = not ctx.json and not args.no_progress and ctx.err.isatty()
    hooks = RunHooks(
        warnings=lambda warnings: _say(ctx, [f"warning: {warning}" for warning in grouped(warnings)]),
        notice=lambda line: _say(ctx, [line]),
        warn=_warner(ctx),
        bar=_Bar(ctx.err if shown else None, args.requests),
    )
    wait = DEFAULT_VERDICT_WAIT_S if args.verdict_wait is None else args.verdict_wait
    result, summary = run_locally(args, rate, wait, ctx.environ, ctx.clients, hooks)
    if not ctx.json:
        _print_run(ctx.out, result, summary)
    return result


def _check_budgets(args: Any) -> None:
    """Numbers no run can mean (NaN included) are usage errors, before anything is read or sent: a negative
    budget would stop the run at once, a NaN one never, and the socket refuses a bad timeout only after the
    preflight."""
    from flagbridge_ops.errors import UsageError

    if not 0 < args.timeout < math.inf:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    if not args.max_duration > 0:
        raise UsageError(f"--max-duration must be a positive number of seconds, got {args.max_duration:g}")
    if args.max_failures is not None and args.max_failures < 1:
        raise UsageError(f"--max-failures must be at least 1, got {args.max_failures}")
    if args.max_unanswered < 0:
        raise UsageError(f"--max-unanswered must be 0 (never) or more, got {args.max_unanswered}")
    if args.verdict_wait is not None and not 0 <= args.verdict_wait < math.inf:
        raise UsageError(f"--verdict-wait must be 0 or more seconds, got {args.verdict_wait:g}")


def _say(ctx: Context, lines: list[str]) -> None:
    if not ctx.json:
        ctx.err.write("".join(f"{line}\n" for line in lines))


def _print_run(out: TextIO, result: Result, summary: Any) -> None:
    record = result["summary"]
    mode = "count only" if record["sent"] == 0 and result["report"] is None else None
    out.write(f"run {result['run_id']}  plan {result['plan_hash']}  seed {result['seed']}\n")
    out.write(
        f"  cases {record['generated']}/{record['planned']}  mutations {record['mutations']}  sent {record['sent']}"
        f"  in {record['elapsed_s']} s{'  (' + mode + ')' if mode else ''}\n"
    )
    asked = result.get("rate_asked_per_s")
    if record["sent"] and asked:
        out.write(f"  rate {record['rate_per_s']:g}/s of {asked:g}/s asked\n")
        if record["rate_per_s"] < SLOW_RATE * asked:
            out.write(
                f"  warning: the run reached {record['rate_per_s']:g}/s, under {100 * SLOW_RATE:g}% of the "
                f"{asked:g}/s asked: the target or this machine is the limit (the same cases were sent, more slowly)\n"
            )
    if record["statuses"]:
        statuses = "  ".join(f"{status}: {count}" for status, count in record["statuses"].items())
        out.write(f"  statuses  {statuses}\n")
        out.write(f"  latency p95 {record['latency_p95_ms']:.1f} ms  failures {record['failures']}\n")
    _print_results(out, result)
    ended = result.get("until_decided")
    if ended:
        rounds = f"{len(ended['rounds'])} round{'' if len(ended['rounds']) == 1 else 's'}"
        out.write(f"  ended: {ended['reason']} ({rounds}, budget {ended['budget']:,})\n")
    elif record["stopped"]:
        out.write(f"  stopped: {record['stopped']}\n")
    if result["report"]:
        out.write(f"  manifest {result['report']}\n")
    if result["oracle"]:
        _print_verdict(out, result["oracle"])
    elif result["oracle_test"]:
        out.write(f"  feeds oracle test {result['oracle_test']}: see `flagbridge verdict {result['oracle_test']}`\n")
    for failure in result["failures"]:
        out.write(f"  failed {failure['case']}: {failure['curl']}\n")
    if summary.failure_count > len(result["failures"]):
        out.write(f"  ... {summary.failure_count - len(result['failures'])} more failures in the manifest\n")


def _print_results(out: TextIO, result: Result) -> None:
    """The results posted to the bridge: how many it took, its refusal, where the rest are kept."""
    if result["results"]:
        out.write(
            f"  results to the bridge: {result['results']['delivered_events']} delivered, "
            f"{result['results']['undelivered_events']} undelivered\n"
        )
    if result["refused"]:
        hint = ""
        if result["refused"].startswith(("HTTP 401", "HTTP 403")):
            hint = " (check the Events API credentials: traffic.results.credentials_env or credentials_secret)"
        out.write(f"  the bridge did not take the results: {result['refused']}{hint}\n")
    if result["undelivered_file"]:
        out.write(f"  undelivered results kept in {result['undelivered_file']}, each beside the bridge's answer\n")


def grouped(warnings: list[str]) -> list[str]:
    """Identical warnings once each, with how many times they came (``... (21 times)``), in first-seen order."""
    counts: dict[str, int] = {}
    for warning in warnings:
        counts[warning] = counts.get(warning, 0) + 1
    return [f"{warning} ({count} times)" if count > 1 else warning for warning, count in counts.items()]


def _warner(ctx: Context) -> Any:
    def warn(line: str) -> None:
        ctx.err.write(f"\n{line}\n" if ctx.err.isatty() else f"{line}\n")

    return warn


def _print_verdict(out: TextIO, verdict: dict[str, Any]) -> None:
    from flagbridge_ops.output import table
    from flagbridge_ops.verdict import table_rows

    when = "not evaluated yet"
    if verdict["evaluated_at"]:
        stamp = time.strftime("%H:%M:%SZ", time.gmtime(verdict["evaluated_at"] / 1000))
        when = f"evaluated {stamp}, " + (
            "after the run's last result" if verdict["after_run"] else "before the run's last result was counted"
        )
    out.write(f"  oracle test {verdict['test']} ({', '.join(verdict['metrics'])}): {verdict['state']} ({when})\n")
    if verdict["error"]:
        out.write(f"  the verdict could not be read again: {verdict['error']}\n")
    rendered = table(table_rows(verdict["verdicts"]), ("test", "treatment", "metric", "verdict", "n", "rate", "bounds"))
    out.write("".join(f"    {line}\n" for line in rendered.splitlines()))
    for row in verdict["verdicts"]:
        out.write(f"    {row.get('explain') or row['state']}\n")


def explain_command(ctx: Context) -> Result:
    from flagbridge.traffic.generator import TrafficGenerator
    from flagbridge.traffic.manifest import explain
    from flagbridge.traffic.model import Tester, load_model
    from flagbridge.traffic.plan import load_plan

    args = ctx.args
    plan, warnings = load_plan(args.file, tuple(Path(item) for item in args.attack_sets))
    generator = None
    if args.model:
        model = load_model(args.model)
        generator = TrafficGenerator(
            plan, model, [Tester("explain", "explain@example.invalid")], seed=0, run_id="explain", clock_ms=0
        )
    text = explain(plan, generator, warnings)
    result: Result = {"plan_hash": plan.plan_hash, "explanation": text, "warnings": warnings}
    if generator is not None:
        result["expected_per_1000"] = {
            request.name: {
                element: round(rate.mutated * 1000, 3)
                for element, rate in generator.expected_rates(request.name).items()
            }
            for request in generator.model.requests
        }
    if not ctx.json:
        ctx.out.write(text + "\n")
    return result


def replay_command(ctx: Context) -> Result:
    import hashlib

    from flagbridge.traffic.manifest import mutation_record
    from flagbridge.traffic.sender import HttpSender
    from flagbridge_ops.errors import CliError
    from flagbridge_ops.traffic import prepare_replay, read_case, shrink_case

    args = ctx.args
    if args.run_id:
        from flagbridge_ops.commands.traffic.aws import replay_from_s3

        return replay_from_s3(ctx)
    if not args.manifest:
        raise CliError("give --manifest (a local run's manifest) or --run RUN --stack NAME (a run in AWS)")
    header, record = read_case(Path(args.manifest), args.case)
    if record is None:
        raise CliError(f"no case {args.case} in {args.manifest}")
    prepared = prepare_replay(header, args, ctx.environ, ctx.clients)
    generator = prepared.generator
    index = int(record["index"])
    case = generator.case(index)
    identical = hashlib.sha256(case.request.to_bytes()).hexdigest()[:16] == record["request"]
    if not identical and not args.target:
        raise CliError(
            f"case {case.case_id} does not regenerate byte for byte (request hash differs from the manifest)"
        )
    sender = HttpSender(prepared.traffic.allowlist)
    try:
        outcome = sender.send(case.request)
        result: Result = {
            "case": case.case_id,
            "byte_identical": identical,
            "recorded": record.get("response"),
            "response": outcome.record(),
            "mutations": [mutation_record(mutation) for mutation in case.mutations],
            "curl": case.request.curl(),
        }
        if args.shrink:
            shrunk = shrink_case(generator, index, sender)
            kept = generator.case(index, keep=shrunk.kept)
            result["shrink"] = {
                "reproduced": shrunk.reproduced,
                "confirmed": shrunk.confirmed,
                "attempts": shrunk.attempts,
                "kept": [mutation_record(case.mutations[position]) for position in shrunk.kept],
                "response": shrunk.outcome.record() if shrunk.outcome else None,
                "curl": kept.request.curl(),
            }
    finally:
        sender.close()
    if not ctx.json:
        _print_replay(ctx.out, result)
    if args.shrink and result["shrink"]["reproduced"] and not result["shrink"]["confirmed"]:
        result["exit_status"] = EXIT_UNDECIDED  # failed, then not on the shrunk case: flaky, nothing proven
    else:
        result["exit_status"] = EXIT_FAILED if outcome.failed else EXIT_OK
    return result


def answer_text(response: Any) -> str:
    """A recorded response for people: ``HTTP 500, 123 bytes in 2.3 ms`` or ``no answer (error)``."""
    if not isinstance(response, dict):
        return "not recorded"
    if response.get("error"):
        return f"no answer ({response['error']})"
    size = f", {response['size']} bytes" if response.get("size") is not None else ""
    latency = f" in {float(response['latency_ms']):.1f} ms" if response.get("latency_ms") is not None else ""
    return f"HTTP {response.get('status')}{size}{latency}"


def value_text(value: Any) -> str:
    """A mutated value as JSON writes it (``"abc"``, ``true``, ``null``), never as Python's repr."""
    import json

    return json.dumps(value, ensure_ascii=False)


def _mutation_line(mutation: dict[str, Any]) -> str:
    return (
        f"  {mutation['element']} [{mutation['attack']}]: {value_text(mutation['original'])} -> "
        f"{value_text(mutation['new'])}\n"
    )


def _print_replay(out: TextIO, result: Result) -> None:
    identical = "byte-identical to the run" if result["byte_identical"] else "sent to another target"
    out.write(
        f"case {result['case']} ({identical}): {answer_text(result['response'])}"
        f" (the run recorded: {answer_text(result['recorded'])})\n"
    )
    for mutation in result["mutations"]:
        out.write(_mutation_line(mutation))
    out.write(f"  {result['curl']}\n")
    shrunk = result.get("shrink")
    if shrunk:
        if not shrunk["reproduced"]:
            out.write("shrink: the failure did not reproduce; nothing to shrink\n")
            return
        state = "confirmed" if shrunk["confirmed"] else "NOT confirmed on re-send"
        out.write(f"shrunk to {len(shrunk['kept'])} mutation(s) in {shrunk['attempts']} sends ({state}):\n")
        for mutation in shrunk["kept"]:
            out.write(_mutation_line(mutation))
        out.write(f"  {shrunk['curl']}\n")


def import_har_command(ctx: Context) -> Result:
    import json

    from flagbridge.traffic.har import import_har
    from flagbridge.traffic.model import parse_model
    from flagbridge_ops.errors import CliError
    from flagbridge_ops.traffic import load_bridge

    args = ctx.args
    _, traffic, _ = load_bridge(args, ctx.environ)
    from flagbridge.documents import MAX_HAR_BYTES, load_json, read_file
    from flagbridge.traffic.errors import ModelError

    try:
        document = load_json(
            read_file(Path(args.file), "the HAR file", ModelError, MAX_HAR_BYTES), args.file, ModelError, MAX_HAR_BYTES
        )
    except ModelError as exc:  # its message names the file already: say it once
        detail = str(exc).removeprefix(f"{args.file}: ").removeprefix("cannot read the HAR file: ")
        raise CliError(f"cannot read the HAR file {args.file}: {detail}") from None
    imported = import_har(document, traffic.allowlist, keep_secrets=args.keep_secrets, source=args.file)
    parse_model(imported.model, args.out)  # what we write must load
    out = Path(args.out)
    if out.suffix == ".json":
        out.write_text(json.dumps(imported.model, indent=2) + "\n", encoding="utf-8")
    else:
        import yaml

        out.write_text(yaml.safe_dump(imported.model, sort_keys=False, allow_unicode=True), encoding="utf-8")
    result: Result = {
        "model": str(out),
        "requests": imported.kept,
        "skipped_hosts": imported.skipped_hosts,
        "warnings": list(imported.warnings),
    }
    if not ctx.json:
        for warning in imported.warnings:
            ctx.err.write(f"warning: {warning}\n")
        ctx.out.write(f"wrote {out}: {imported.kept} request(s)\n")
    return result
