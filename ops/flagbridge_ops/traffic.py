"""The work behind ``flagbridge traffic``: set a run up safely, run it, replay and shrink a case.

Everything that can refuse a run does so in :func:`prepare_run`, before a single request is sent: the
plan and model are validated, every host the model and the target name is checked against
``traffic.allowlist``, every tester of the pool against ``test_users.rules``, and the run tag key and the
bridge's credentials must be available. :func:`run_locally` is a whole local run (prepare, send, report, read the
verdict); :mod:`flagbridge_ops.commands.traffic` parses and prints.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagbridge.config import BridgeConfig, load_config
from flagbridge.oracle.feeds import TrafficFeed, traffic_feed
from flagbridge.oracle.verdicts import HttpVerdicts, VerdictReadError
from flagbridge.outbound import TransportError, origin_of
from flagbridge.traffic.config import TrafficConfig
from flagbridge.traffic.generator import Target, TrafficGenerator
from flagbridge.traffic.manifest import Outcome
from flagbridge.traffic.model import RequestModel, Tester, load_model, model_hosts, pool_from_document
from flagbridge.traffic.plan import TrafficPlan, load_plan
from flagbridge.traffic.results import ResultReporter
from flagbridge.traffic.safety import RunTag, check_testers
from flagbridge.traffic.sender import HttpSender
from flagbridge.traffic.shrink import ShrinkResult, shrink
from flagbridge.traffic.stop import OracleStop
from flagbridge_ops.errors import CliError, UsageError


def config_path(args: Any, environ: Mapping[str, str]) -> Path:
    path = getattr(args, "config", None) or environ.get("FLAGBRIDGE_CONFIG")
    if not path:
        raise UsageError("pass --config (the flagbridge.yaml with test_users and traffic) or set FLAGBRIDGE_CONFIG")
    return Path(path)


def load_bridge(args: Any, environ: Mapping[str, str]) -> tuple[BridgeConfig, TrafficConfig, Path]:
    path = config_path(args, environ)
    config = load_config(path, environ)
    return config, TrafficConfig.from_document(config.traffic_document), path


@dataclass
class PreparedRun:
    """A run that passed every check: ready to send."""

    plan: TrafficPlan
    warnings: list[str]
    model: RequestModel
    generator: TrafficGenerator
    traffic: TrafficConfig
    testers: list[Tester]
    tester_rules: list[str]
    header: dict[str, Any] = field(default_factory=dict)
    feed: TrafficFeed | None = None
    """The oracle test (and metrics) the run's results feed, checked against the configuration."""


def run_tag_key(traffic: TrafficConfig, environ: Mapping[str, str], clients: Any) -> bytes:
    """The HMAC key of the run tag: the variable named by ``run_tag.key_env``, else the Secrets Manager secret."""
    value = environ.get(traffic.run_tag_key_env)
    if value:
        return value.encode()
    if traffic.run_tag_key_secret:
        secret = clients.get("secretsmanager").get_secret_value(SecretId=traffic.run_tag_key_secret)["SecretString"]
        return str(secret).encode()
    raise CliError(
        f"no run tag key: set {traffic.run_tag_key_env} or traffic.run_tag.key_secret (a Secrets Manager secret)"
    )


def bridge_credentials(traffic: TrafficConfig, environ: Mapping[str, str], clients: Any) -> tuple[str, str]:
    key_var, secret_var = traffic.credentials_env
    if environ.get(key_var) and environ.get(secret_var):
        return environ[key_var], environ[secret_var]
    if traffic.credentials_secret:
        document = json.loads(
            clients.get("secretsmanager").get_secret_value(SecretId=traffic.credentials_secret)["SecretString"]
        )
        return str(document["api_key"]), str(document["api_secret"])
    raise CliError(
        f"no credentials for the bridge's Events API: set {key_var} and {secret_var}, "
        "or traffic.results.credentials_secret"
    )


def pool(option: str | None, traffic: TrafficConfig) -> list[Tester]:
    if option:
        return [Tester(key.strip()) for key in option.split(",") if key.strip()]
    if traffic.testers:
        return list(traffic.testers)
    raise CliError("no tester pool: pass --testers KEY,KEY or set traffic.testers in the configuration")


def prepare_run(
    *,
    plan_path: str,
    model_path: str,
    target: str | None,
    seed: int,
    run_id: str | None,
    clock_ms: int | None,
    testers_option: str | None,
    attack_set_files: Sequence[str],
    testers: Sequence[Tester] | None = None,
    args: Any,
    environ: Mapping[str, str],
    clients: Any,
    needs_key: bool = True,
    feeds_oracle: bool = True,
) -> PreparedRun:
    """Validate everything a run needs; raise one clear error (and send nothing) otherwise."""
    config, traffic, path = load_bridge(args, environ)
    plan, warnings = load_plan(plan_path, tuple(Path(item) for item in attack_set_files))
    feed = traffic_feed(plan.oracle, config.oracle, plan_path) if feeds_oracle else None
    if feed is not None:
        warnings = [*warnings, *feed.warnings]
    model = load_model(model_path)
    parsed_target = Target.parse(target) if target else None
    for host in model_hosts(model):
        traffic.allowlist.check(host, None, "model host")
    if parsed_target is not None:
        for request in model.requests:
            traffic.allowlist.check(parsed_target.host, parsed_target.base_path + request.path_text, "target")
    else:
        for request in model.requests:
            traffic.allowlist.check(request.hostname, request.path_text, "model host")
    testers = list(testers) if testers else pool(testers_option, traffic)
    rules = check_testers(testers, config.test_users)
    key = run_tag_key(traffic, environ, clients) if needs_key else b""
    run = run_id or f"tr-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
    clock = clock_ms if clock_ms is not None else int(time.time() * 1000)
    generator = TrafficGenerator(
        plan,
        model,
        testers,
        seed=seed,
        run_id=run,
        clock_ms=clock,
        target=parsed_target,
        run_tag=RunTag(key, traffic.run_tag_header) if needs_key else None,
    )
    header = {
        "type": "run",
        "run_id": run,
        "plan": str(Path(plan_path).resolve()),
        "plan_hash": plan.plan_hash,
        "attack_set_files": [str(Path(item).resolve()) for item in attack_set_files],
        "model": str(Path(model_path).resolve()),
        "config": str(path.resolve()),
        "seed": seed,
        "clock_ms": clock,
        "target": target,
        "testers": [{"key": tester.key, "email": tester.email} for tester in testers],
        "run_tag_header": traffic.run_tag_header,
        "oracle": {"test": feed.test, "metrics": list(feed.metrics)} if feed is not None else {},
    }
    return PreparedRun(plan, warnings, model, generator, traffic, testers, rules, header, feed)


def reporter_for(prepared: PreparedRun, bridge: str | None, environ: Mapping[str, str], clients: Any) -> ResultReporter:
    """Where results go: ``--bridge URL`` (its ``/mparticle/v2``), else ``traffic.results.events_api``."""
    events_api = f"{bridge.rstrip('/')}/mparticle/v2" if bridge else prepared.traffic.events_api
    if not events_api:
        raise CliError("no bridge to report results to: pass --bridge URL or set traffic.results.events_api")
    try:
        origin_of(events_api)
    except TransportError:
        raise CliError(f"the bridge's Events API must be an http(s) URL, got {events_api!r}") from None
    key, secret = bridge_credentials(prepared.traffic, environ, clients)
    sender = HttpSender(timeout=30.0)
    oracle_test = prepared.plan.oracle.get("test")
    return ResultReporter(
        events_api,
        key,
        secret,
        post=sender.send,
        environment=prepared.traffic.environment,
        oracle_test=str(oracle_test) if oracle_test else None,
    )


def stop_check(traffic: TrafficConfig, stop_file: str | None, clients: Any, use_ssm: bool) -> Any:
    """The stop switch, checked between batches: the stop file, else (in AWS) the SSM parameter."""
    named = stop_file or traffic.stop_file
    path = Path(named) if named else None

    def check() -> str | None:
        if path is not None and path.exists():
            return f"stop switch: {path} exists"
        if use_ssm and traffic.stop_ssm_parameter:
            value = clients.get("ssm").get_parameter(Name=traffic.stop_ssm_parameter)["Parameter"]["Value"]
            if str(value).strip().lower() == "stop":
                return f"stop switch: SSM parameter {traffic.stop_ssm_parameter} says stop"
        return None

    return check


# --- the oracle ------------------------------------------------------------------------------------

ORACLE_TOKEN_ENV = "FLAGBRIDGE_ORACLE_API_TOKEN"
ORACLE_TOKEN_SECRET_ENV = "ORACLE_API_TOKEN_SECRET"


def bridge_base(prepared: PreparedRun, bridge: str | None) -> str:
    """The bridge's base URL: ``--bridge``, else ``traffic.results.events_api`` without its ``/mparticle/v2``."""
    base = bridge or (prepared.traffic.events_api or "").rstrip("/").removesuffix("/mparticle/v2")
    if not base:
        raise CliError(
            "no bridge to read the oracle's verdict from: pass --bridge URL or set traffic.results.events_api"
        )
    return base.rstrip("/")


def oracle_token(environ: Mapping[str, str], clients: Any, test: str) -> str:
    """The oracle API's bearer token: ``FLAGBRIDGE_ORACLE_API_TOKEN``, else the secret ``ORACLE_API_TOKEN_SECRET``."""
    if environ.get(ORACLE_TOKEN_ENV):
        return environ[ORACLE_TOKEN_ENV]
    if environ.get(ORACLE_TOKEN_SECRET_ENV):
        secret = clients.get("secretsmanager").get_secret_value(SecretId=environ[ORACLE_TOKEN_SECRET_ENV])
        return str(secret["SecretString"])
    raise CliError(
        f"the plan feeds oracle test {test!r}: set {ORACLE_TOKEN_ENV} (or {ORACLE_TOKEN_SECRET_ENV}, a Secrets Manager "
        "secret) so the run can stop on its FAIL and show its verdict, or pass --no-oracle"
    )


def oracle_stop_for(
    prepared: PreparedRun,
    bridge: str | None,
    environ: Mapping[str, str],
    clients: Any,
    warn: Any,
    refresh_seconds: float = 1.0,
) -> OracleStop | None:
    """The oracle-FAIL stop switch of a run that feeds a test, after one read of its verdict.

    That first read happens before anything is sent: an unknown test on the bridge, a refused token or an
    unreachable oracle API is one clear error and the run does not start. A FAIL already standing stops the run
    before its first batch.
    """
    feed = prepared.feed
    if feed is None:
        return None
    source = HttpVerdicts(bridge_base(prepared, bridge), oracle_token(environ, clients, feed.test))
    stop = OracleStop(
        feed.test,
        source,
        feed.metrics,
        refresh_seconds=refresh_seconds,
        on_error=lambda exc: warn(f"warning: {exc}; the run goes on and reads it again"),
    )
    try:
        stop.read()
    except VerdictReadError as exc:
        hint = ""
        if "refused the token" in str(exc):
            named = f"the secret {ORACLE_TOKEN_SECRET_ENV} names"
            origin = ORACLE_TOKEN_ENV if environ.get(ORACLE_TOKEN_ENV) else named
            hint = f": the token comes from {origin}; set it to the stack's OracleApiTokenSecret value"
        raise CliError(f"cannot read the verdict of oracle test {feed.test!r} before the run: {exc}{hint}") from exc
    return stop


# --- replay ---------------------------------------------------------------------------------------


def read_case(manifest: Path, case_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The manifest's run header and the record of ``case_id`` (``c12`` or ``12``)."""
    from flagbridge.traffic.manifest import read_manifest

    wanted = case_id if case_id.startswith("c") else f"c{case_id}"
    try:
        header, cases = read_manifest(manifest)
        _require(header, _HEADER_FIELDS, "its run header")
        for record in cases:
            if record.get("id") == wanted:
                _require(record, {"index": int}, f"case {wanted}")
                return header, record
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the manifest {manifest}: {exc}") from exc
    return header, None


# What a replay regenerates the run from; a manifest the run wrote always has them.
_HEADER_FIELDS: dict[str, type] = {"run_id": str, "plan": str, "model": str, "seed": int, "clock_ms": int}


def _require(record: Mapping[str, Any], fields: Mapping[str, type], where: str) -> None:
    for name, kind in fields.items():
        value = record.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{where} has no valid {name!r}")


def prepare_replay(header: Mapping[str, Any], args: Any, environ: Mapping[str, str], clients: Any) -> PreparedRun:
    """Rebuild the run's generator from its manifest header (same plan, model, pool, seed, run id, clock)."""
    if getattr(args, "config", None) is None and not environ.get("FLAGBRIDGE_CONFIG"):
        args.config = header.get("config")
    prepared = prepare_run(
        plan_path=str(header["plan"]),
        model_path=str(header["model"]),
        target=getattr(args, "target", None) or header.get("target"),
        seed=int(header["seed"]),
        run_id=str(header["run_id"]),
        clock_ms=int(header["clock_ms"]),
        testers_option=None,
        testers=pool_from_document(header.get("testers"), "the manifest's testers"),
        attack_set_files=list(header.get("attack_set_files") or []),
        args=args,
        environ=environ,
        clients=clients,
        feeds_oracle=False,  # a replay reports nothing to the bridge: the plan's oracle test is not checked
    )
    if prepared.plan.plan_hash != header.get("plan_hash"):
        raise CliError(
            f"the plan changed since the run (hash {prepared.plan.plan_hash}, the run used {header.get('plan_hash')}):"
            " the case cannot be regenerated byte for byte"
        )
    return prepared


def shrink_case(generator: TrafficGenerator, index: int, sender: HttpSender) -> ShrinkResult:
    mutations = len(generator.case(index).mutations)

    def send(keep: Sequence[int]) -> Outcome:
        return sender.send(generator.case(index, keep=keep).request)

    return shrink(mutations, send)


def new_report_path(run_id: str) -> Path:
    return Path(os.getcwd()) / f"traffic-{run_id}.ndjson"


# --- a local run ----------------------------------------------------------------------------------

FAILURES_SHOWN = 5


@dataclass
class RunHooks:
    """What a local run tells the terminal: ``warnings`` of the plan before sending, ``notice`` a line (both
    silent with ``--json``), ``warn`` a verdict that could not be read, ``bar`` the progress bar (``close()``)."""

    warnings: Callable[[list[str]], None]
    notice: Callable[[str], None]
    warn: Callable[[str], None]
    bar: Any


def run_locally(
    args: Any, rate: float, verdict_wait: float, environ: Mapping[str, str], clients: Any, hooks: RunHooks
) -> tuple[Any, Any]:
    """``flagbridge traffic run`` on this machine: prepare, send, report, then read the verdict (waiting up to
    ``verdict_wait`` seconds for a decided one). Returns (result, summary)."""
    from flagbridge.traffic.run import RunSettings
    from flagbridge.traffic.stop import first_reason
    from flagbridge_ops.until_decided import rounds_for

    sending = not (args.dry_run or args.count_only)
    prepared = prepare_run(
        plan_path=args.plan,
        model_path=args.model,
        target=args.target,
        seed=args.seed,
        run_id=args.run_id,
        clock_ms=None,
        testers_option=args.testers,
        attack_set_files=args.attack_sets,
        args=args,
        environ=environ,
        clients=clients,
    )
    hooks.warnings(prepared.warnings)
    sender = HttpSender(prepared.traffic.allowlist, timeout=args.timeout)
    if sending:
        preflight_or_refuse(prepared.generator, sender)
    reporter = reporter_for(prepared, args.bridge, environ, clients) if sending else None
    oracle = None
    if sending and not args.no_oracle:
        oracle = oracle_stop_for(prepared, args.bridge, environ, clients, hooks.warn)
    rounds = rounds_for(args, prepared, environ, clients, hooks.warn, RunSettings.batch_size)
    report = Path(args.report) if args.report else new_report_path(prepared.generator.run_id)
    stop = stop_check(prepared.traffic, args.stop_file, clients, use_ssm=bool(args.stack))
    if oracle is not None:
        stop = first_reason(stop, oracle)
    stop, progress = rounds.wire(stop, hooks.bar)
    try:
        summary = _send(args, rate, prepared, sender if sending else None, reporter, report, stop, progress, rounds)
    finally:
        hooks.bar.close()
        sender.close()
    results_end_ms = rounds.results_end(int(time.time() * 1000))
    undelivered = _keep_undelivered(reporter, report)
    verdict = None
    if oracle is not None:
        verdict = after_run_verdict(oracle, results_end_ms, rounds.verdict_wait(verdict_wait), hooks.notice)
    run = Sent(prepared, summary, reporter, report, undelivered, rounds)
    return _run_result(args, rate, run, verdict), summary


def preflight_or_refuse(generator: Any, sender: HttpSender) -> None:
    """Refuse, before anything is sent or reported, a run whose target does not answer (one line, exit 1)."""
    from flagbridge.traffic.preflight import preflight

    reason = preflight(generator, sender.send)
    if reason is not None:
        sender.close()
        raise CliError(reason)


def _send(
    args: Any,
    rate: float,
    prepared: PreparedRun,
    sender: HttpSender | None,
    reporter: ResultReporter | None,
    report: Path,
    stop: Any,
    progress: Any,
    rounds: Any,
) -> Any:
    from flagbridge.traffic.manifest import ManifestWriter
    from flagbridge.traffic.run import RunSettings, run_traffic

    settings = RunSettings(
        requests=args.requests,
        rate=rate,
        max_duration_s=args.max_duration,
        dry_run=args.dry_run,
        count_only=args.count_only,
        max_failures=args.max_failures,
        max_unanswered=args.max_unanswered,
    )
    if args.count_only:
        return run_traffic(prepared.generator, settings, None, stop=stop, progress=progress)
    with report.open("w", encoding="utf-8") as stream:
        writer = rounds.writer(stream) or ManifestWriter(stream)
        writer.write(prepared.header)
        summary = run_traffic(
            prepared.generator,
            settings,
            sender.send if sender is not None else None,
            reporter,
            writer,
            stop=stop,
            progress=progress,
        )
        rounds.finish(summary)  # --until-decided: the last round's verdict; the summary line says why it ended
    return summary


def after_run_verdict(oracle: OracleStop, results_end_ms: int, wait: float, notice: Callable[[str], None]) -> Any:
    """The oracle's verdict of the run's test after the run (:func:`flagbridge.oracle.verdicts.run_verdict`), its
    percentile rows given their units for printing."""
    from flagbridge.oracle.verdicts import run_verdict, verdict_after_run
    from flagbridge_ops.verdict import annotate_units

    if wait > 0 and not oracle.reason:
        notice(f"waiting up to {wait:g}s for the oracle's verdict of {oracle.test} ...")
    document, error = verdict_after_run(oracle, results_end_ms, wait)
    metrics = oracle.metrics or ()
    verdict = run_verdict(oracle.test, metrics, document, error, results_end_ms, oracle.reason, oracle.errors)
    annotate_units([{"config": (document or {}).get("config"), "report": {"verdicts": verdict["verdicts"]}}])
    return verdict


def _keep_undelivered(reporter: ResultReporter | None, report: Path) -> Path | None:
    """Results the bridge did not take, each beside its answer, in ``<report>.undelivered.json``."""
    if reporter is None or not reporter.undelivered:
        return None
    path = report.with_suffix(".undelivered.json")
    path.write_text(json.dumps(reporter.undelivered_with_answers()), encoding="utf-8")
    return path


@dataclass
class Sent:
    """A local run once sent: what its result is made of."""

    prepared: PreparedRun
    summary: Any
    reporter: ResultReporter | None
    report: Path
    undelivered_path: Path | None
    rounds: Any


def _run_result(args: Any, rate: float, run: Sent, verdict: Any) -> dict[str, Any]:
    from flagbridge.oracle.verdicts import run_exit_status

    prepared, summary, reporter, rounds = run.prepared, run.summary, run.reporter, run.rounds
    undelivered = run.undelivered_path is not None
    exit_status = run_exit_status(
        verdict,
        failures=summary.failure_count,
        incomplete=bool(summary.stopped or undelivered),
        finished=rounds.finished(summary) and not undelivered,
    )
    return {
        "run_id": prepared.generator.run_id,
        "plan_hash": prepared.plan.plan_hash,
        "seed": args.seed,
        "report": None if args.count_only else str(run.report),
        "testers": {tester.key: rule for tester, rule in zip(prepared.testers, prepared.tester_rules, strict=True)},
        "summary": summary.record(),
        "rate_asked_per_s": None if args.count_only else round(rate, 2),
        "results": dict(reporter.counts()) if reporter is not None else None,
        "refused": reporter.refusal() if reporter is not None else None,
        "undelivered_file": str(run.undelivered_path) if run.undelivered_path else None,
        "failures": [
            {"case": case_id, "curl": prepared.generator.case(int(case_id[1:])).request.curl()}
            for case_id in summary.failures[:FAILURES_SHOWN]
        ],
        "oracle_test": prepared.feed.test if prepared.feed is not None else None,
        "oracle": verdict,
        "until_decided": rounds.record(),
        "exit_status": exit_status,
    }
