"""The run request and the run it becomes: validated with the traffic package's own code, as the CLI does.

A request (``POST /runs`` body, or the schedule's input) names the plan and the request model (their text,
or keys under ``plans/`` in the stack's manifest bucket), how many requests, at what rate, against which
target and with which tester pool. :func:`validate_run_request` refuses, with one :class:`RequestError`
naming the problem, anything the CLI would refuse (plan and model parsed by
:func:`flagbridge.traffic.plan.parse_plan` / :func:`flagbridge.traffic.model.parse_model`, every host
checked against ``traffic.allowlist``, destructive methods, an empty pool) plus what only a deployed run
can get wrong: a rate of 0 or beyond what the workers can send, shards longer than a worker may run.

The resulting :class:`RunSpec` is everything a worker needs to regenerate any case byte for byte: it is
written once to S3 (``runs/<id>/run.json``) and never changes. Secrets are not part of it (the run tag key
is a Secrets Manager secret the worker reads).
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from flagbridge.documents import load_json
from flagbridge.errors import ConfigError, RequestError
from flagbridge.traffic.config import TrafficConfig
from flagbridge.traffic.errors import ModelError, PlanError, SafetyError, TrafficError
from flagbridge.traffic.generator import Target, TrafficGenerator
from flagbridge.traffic.model import RequestModel, Tester, parse_model, pool_from_document
from flagbridge.traffic.plan import TrafficPlan, parse_plan
from flagbridge.traffic.run import MAX_UNANSWERED

if TYPE_CHECKING:
    from flagbridge.oracle.config import OracleConfig
    from flagbridge.oracle.feeds import TrafficFeed

MAX_REQUESTS = 10_000_000
MAX_RATE_PER_WORKER = 10_000.0  # a ceiling per worker, not a promise (docs/runs.md: what one worker sustains)
SHARD_SECONDS = 60.0  # a computed shard lasts about this long at the per-worker rate
MAX_SHARD_SECONDS = 600.0  # a shard must fit well inside the worker's 900 s timeout
MAX_SHARDS = 100_000
MAX_SOURCE_BYTES = 1_000_000
MAX_DURATION_S = 24 * 3600.0
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PLAN_KEY = re.compile(r"^plans/[A-Za-z0-9._/-]{1,200}$")
TRAFFIC_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_KEYS = frozenset(
    {
        "plan",
        "plan_format",
        "plan_key",
        "model",
        "model_format",
        "model_key",
        "requests",
        "rate",
        "target",
        "seed",
        "until_decided",
        "testers",
        "traffic_type",
        "run_id",
        "shard_size",
        "checkpoint_every",
        "max_duration_s",
        "max_unanswered",
        "clock_ms",
    }
)
FORMATS = ("yaml", "json", "xml")


def refuse(code: str, message: str, status: int = 400) -> RequestError:
    return RequestError(status, code, message)


@dataclass(frozen=True)
class RunSpec:
    """A validated run: what every worker regenerates its cases from (stored as ``runs/<id>/run.json``)."""

    run_id: str
    plan_text: str
    plan_format: str
    model_text: str
    model_format: str
    plan_hash: str
    plan_name: str
    oracle_test: str | None
    requests: int
    rate: float
    parallelism: int
    shard_size: int
    shards: int
    checkpoint_every: int
    seed: int
    clock_ms: int
    target: str | None
    testers: tuple[tuple[str, str | None], ...]
    traffic_type: str
    max_duration_s: float
    until_decided: bool = False  # requests is a budget: workers stop once the verdict is decided (docs/runs.md)
    run_tag_header: str = "X-Flagbridge-Run"
    oracle_metrics: tuple[str, ...] | None = None  # the metrics of oracle_test the run feeds (None: every one)
    max_unanswered: int = MAX_UNANSWERED  # requests in a row with no answer that stop a shard (0: never)
    # When the stack accepted the run (its own clock; clock_ms is the request's, for the generated timestamps):
    # a run until decided takes a decision only from an evaluation since. None: a run.json written before.
    accepted_ms: int | None = None

    @property
    def rate_per_worker(self) -> float:
        return self.rate / self.parallelism

    def shard_range(self, shard: int) -> tuple[int, int]:
        """``(first case index, number of cases)`` of shard ``shard`` (0-based)."""
        first = shard * self.shard_size
        return first, max(0, min(self.shard_size, self.requests - first))

    def decided_since_ms(self) -> int | None:
        """A run until decided stops on an evaluation that started at or after this (None: not until decided).
        When the stack accepted the run, never the request's ``clock_ms``: a clock far in the past would let an
        earlier run's decided verdict stop this one."""
        if not self.until_decided:
            return None
        return self.accepted_ms if self.accepted_ms is not None else self.clock_ms

    def pool(self) -> list[Tester]:
        return [Tester(key, email) for key, email in self.testers]

    def document(self) -> dict[str, Any]:
        document = asdict(self)
        document["testers"] = [{"key": key, "email": email} for key, email in self.testers]
        return document

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> RunSpec:
        values = dict(document)
        values["testers"] = tuple((str(t["key"]), t.get("email")) for t in values["testers"])
        if values.get("oracle_metrics") is not None:
            values["oracle_metrics"] = tuple(str(metric) for metric in values["oracle_metrics"])
        return cls(**values)

    def manifest_header(self) -> dict[str, Any]:
        """The first line of every shard's manifest: what regenerates any case (the traffic manifest's ``run``)."""
        return {
            "type": "run",
            "run_id": self.run_id,
            "plan_hash": self.plan_hash,
            "plan_name": self.plan_name,
            "seed": self.seed,
            "clock_ms": self.clock_ms,
            "target": self.target,
            "testers": [{"key": key, "email": email} for key, email in self.testers],
            "run_tag_header": self.run_tag_header,
            "oracle": self._oracle_header(),
            "spec": f"runs/{self.run_id}/run.json",
        }

    def _oracle_header(self) -> dict[str, Any]:
        if not self.oracle_test:
            return {}
        if self.oracle_metrics is None:  # a run.json written before the metrics were recorded
            return {"test": self.oracle_test}
        return {"test": self.oracle_test, "metrics": list(self.oracle_metrics)}


# ---- parsing the plan and the model (the traffic package's parsers) ----------------------------------------


def _document(text: str, fmt: str, source: str, error: type[TrafficError]) -> Any:
    if fmt != "json":
        # The layer ships no YAML parser (cold start, size: docs/runs.md). Refused whether or not one happens to be
        # importable, so that `make run` and the tests answer as the deployed stack does.
        raise error(
            f"{source}: this stack reads plans and models as JSON (text or an object) or XML, not YAML text; "
            "`flagbridge traffic run --stack` converts YAML files"
        )
    return load_json(text, source, error, MAX_SOURCE_BYTES)


def parse_plan_text(text: str, fmt: str, source: str = "<plan>") -> tuple[TrafficPlan, list[str]]:
    """A plan from its text, as :func:`flagbridge.traffic.plan.load_plan` reads a file (attack set files refused)."""
    warnings: list[str] = []
    locations: dict[str, str] = {}
    if fmt == "xml":
        from flagbridge.traffic.planxml import xml_plan_document

        document, warnings, locations = xml_plan_document(text, source)
    else:
        document = _document(text, fmt, source, PlanError)
    if isinstance(document, dict) and document.get("attack_set_files"):
        # A deployed run never reads files: the CLI inlines them into attack_sets before sending the plan.
        raise PlanError(f"{source}: 'attack_set_files' cannot be read in AWS; inline the sets under attack_sets")
    return parse_plan(document, source, None, (), locations), warnings


def parse_model_text(text: str, fmt: str, source: str = "<model>") -> RequestModel:
    if fmt == "xml":
        raise ModelError(f"{source}: a request model is YAML or JSON")
    return parse_model(_document(text, fmt, source, ModelError), source)


def build_generator(spec: RunSpec, run_tag: Any = None) -> TrafficGenerator:
    """The run's generator, from its spec alone (every worker builds the same one)."""
    plan, _ = parse_plan_text(spec.plan_text, spec.plan_format, "plan")
    model = parse_model_text(spec.model_text, spec.model_format, "model")
    if plan.plan_hash != spec.plan_hash:
        raise PlanError(f"the plan's hash is {plan.plan_hash}, the run recorded {spec.plan_hash}")
    return TrafficGenerator(
        plan,
        model,
        spec.pool(),
        seed=spec.seed,
        run_id=spec.run_id,
        clock_ms=spec.clock_ms,
        target=Target.parse(spec.target) if spec.target else None,
        run_tag=run_tag,
    )


# ---- the request ---------------------------------------------------------------------------------------------


def _source(body: Mapping[str, Any], name: str, sources: Mapping[str, str]) -> tuple[str, str]:
    fmt = body.get(f"{name}_format", "yaml")
    if fmt not in FORMATS:
        raise refuse(f"invalid_{name}", f"'{name}_format' must be one of {', '.join(FORMATS)}")
    value = body.get(name)
    if value is None and name in sources:
        value = sources[name]
        key = body.get(f"{name}_key")
        if f"{name}_format" not in body and isinstance(key, str):  # plans/x.json, plans/x.xml: the key says
            fmt = next((f for f in ("json", "xml") if key.lower().endswith("." + f)), fmt)
    if value is None:
        raise refuse(f"missing_{name}", f"give '{name}' (its text or a JSON object) or '{name}_key'")
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":")), "json"
    if not isinstance(value, str) or not value.strip():
        raise refuse(f"invalid_{name}", f"'{name}' must be the {name}'s text or a JSON object")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise refuse(f"invalid_{name}", f"'{name}' is larger than {MAX_SOURCE_BYTES} bytes")
    return value, fmt


def _whole(body: Mapping[str, Any], name: str, low: int, high: int, default: int | None = None) -> int:
    value = body.get(name, default)
    if value is None:
        raise refuse(f"missing_{name}", f"'{name}' is required (a whole number from {low} to {high})")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise refuse(f"invalid_{name}", f"'{name}' must be a whole number from {low} to {high}, got {_shown(value)}")
    return value


def _number(body: Mapping[str, Any], name: str, high: float, default: float | None = None, low: float = 0.0) -> float:
    """A number in ``(0, high]``, at least ``low`` when given; compared as given before any float arithmetic.

    JSON integers have no bound (``1`` and 400 zeros): comparing first, as Python compares an int with a
    float exactly, keeps ``float()`` and ``math.isfinite`` from overflowing on them.
    """
    value = body.get(name, default)
    if value is None:
        raise refuse(f"missing_{name}", f"'{name}' is required (a number above 0, at most {high:g})")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value <= 0:
        raise refuse(f"invalid_{name}", f"'{name}' must be a number above 0, got {_shown(value)}")
    if value > high:
        raise refuse(f"{name}_too_high", f"'{name}' {_shown(value)} is above the maximum {high:g}")
    if value < low:
        raise refuse(f"{name}_too_low", f"'{name}' {_shown(value)} is below the minimum {low:g}")
    return float(value)


def _shown(value: Any) -> str:
    """``value`` for an error message: short, whatever its size (an int's repr is quadratic in its digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {'negative ' if value < 0 else ''}whole number of about {int(value.bit_length() * 0.30103)} digits"
    return repr(value)[:80]


def _run_id(body: Mapping[str, Any], now_ms: int) -> str:
    run_id = body.get("run_id")
    if run_id is None:  # absent or null: the run gets an id; any other value ({}, [], 0, false, "") must be one
        run_id = f"run-{now_ms // 1000}-{secrets.token_hex(4)}"
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise refuse("invalid_run_id", "'run_id' must be 1-64 letters, digits, '.', '_' or '-'")
    return run_id


def _pool(body: Mapping[str, Any], traffic: TrafficConfig) -> list[Tester]:
    if body.get("testers") is not None:
        try:
            pool = pool_from_document(body["testers"], "testers")
        except ModelError as exc:
            raise refuse("invalid_testers", str(exc)) from None
        if len(pool) > 1000 or any(len(t.key) > 256 for t in pool):
            raise refuse("invalid_testers", "at most 1000 testers, keys of at most 256 characters")
        from flagbridge.testers.registry import InvalidTesterError, check_key

        for index, tester in enumerate(pool):
            try:
                check_key(tester.key)  # the registry's key rule (docs/testers.md), whether or not it registers them
            except InvalidTesterError as exc:
                raise refuse("invalid_testers", f"testers[{index}]: {exc.message}") from None
        return pool
    if traffic.testers:
        return list(traffic.testers)
    raise refuse("missing_testers", "no tester pool: give 'testers' or set traffic.testers in the configuration")


def _check_hosts(model: RequestModel, target: Target | None, traffic: TrafficConfig) -> None:
    """The CLI's allowlist checks: every model host, and the target with every request path under it."""
    for request in model.requests:
        traffic.allowlist.check(request.hostname, None, "model host")
        if target is not None:
            traffic.allowlist.check(target.host, target.base_path + request.path_text, "target")
        else:
            traffic.allowlist.check(request.hostname, request.path_text, "model host")


def shard_size_for(requests: int, rate_per_worker: float, parallelism: int) -> int:
    """About :data:`SHARD_SECONDS` of one worker's sending, and at least one shard per worker when possible."""
    size = max(1, math.ceil(rate_per_worker * SHARD_SECONDS))
    return max(1, min(size, math.ceil(requests / parallelism)))


def validate_run_request(
    body: Any,
    traffic: TrafficConfig,
    *,
    parallelism: int,
    now_ms: int,
    sources: Mapping[str, str] | None = None,
    oracle: OracleConfig | None = None,
) -> tuple[RunSpec, list[str]]:
    """Validate a run request; return the run and the plan's warnings, or raise RequestError (400).

    A plan naming an oracle test is checked against ``oracle`` (the stack's oracle configuration) as the CLI
    checks it (:func:`flagbridge.oracle.feeds.traffic_feed`): an unknown test, or a metric that does not count
    the run's results, is refused.
    """
    _check_fields(body)
    requests = _whole(body, "requests", 1, MAX_REQUESTS)
    # A rate so low that no shard of one case fits in a shard's time is refused here, before the per-worker
    # rate is divided into anything (5e-324 / parallelism is 0.0).
    rate = _number(body, "rate", parallelism * MAX_RATE_PER_WORKER, low=parallelism / MAX_SHARD_SECONDS)
    run_id = _run_id(body, now_ms)
    traffic_type = _traffic_type(body)
    seed = _whole(body, "seed", 0, 2**63 - 1, secrets.randbits(32))
    clock_ms = _whole(body, "clock_ms", 0, 2**53, now_ms)
    shard_size, shards = _shards(body, requests, rate, parallelism)
    checkpoint_every = _whole(body, "checkpoint_every", 1, 1000, 1)
    max_duration_s = _number(body, "max_duration_s", MAX_DURATION_S, MAX_DURATION_S)
    max_unanswered = _whole(body, "max_unanswered", 0, MAX_REQUESTS, MAX_UNANSWERED)
    target_url = _target_url(body)
    sources = sources or {}
    plan_text, plan_format = _source(body, "plan", sources)
    model_text, model_format = _source(body, "model", sources)
    try:
        plan, warnings = parse_plan_text(plan_text, plan_format, "plan")
    except TrafficError as exc:
        raise refuse("invalid_plan", str(exc)[:1000]) from None
    model, target = _model_and_target(model_text, model_format, target_url)
    pool = _pool(body, traffic)
    try:
        _check_hosts(model, target, traffic)
    except SafetyError as exc:
        raise refuse("outside_allowlist", str(exc)[:1000]) from None
    feed = _oracle_feed(plan, oracle)
    if feed is not None:
        warnings = [*warnings, *feed.warnings]
    until_decided = _until_decided(body, feed)
    spec = RunSpec(
        run_id=run_id,
        plan_text=plan_text,
        plan_format=plan_format,
        model_text=model_text,
        model_format=model_format,
        plan_hash=plan.plan_hash,
        plan_name=plan.name,
        oracle_test=feed.test if feed is not None else None,
        requests=requests,
        rate=rate,
        parallelism=parallelism,
        shard_size=shard_size,
        shards=shards,
        checkpoint_every=checkpoint_every,
        seed=seed,
        clock_ms=clock_ms,
        target=target_url,
        testers=tuple((t.key, t.email) for t in pool),
        traffic_type=traffic_type,
        until_decided=until_decided,
        max_duration_s=max_duration_s,
        run_tag_header=traffic.run_tag_header,
        oracle_metrics=feed.metrics if feed is not None else None,
        max_unanswered=max_unanswered,
        accepted_ms=now_ms,
    )
    try:
        build_generator(spec)  # destructive methods, attack sets that fit no element: refused before anything runs
    except SafetyError as exc:
        raise refuse("unsafe_plan", str(exc)[:1000]) from None
    except TrafficError as exc:
        raise refuse("invalid_plan", str(exc)[:1000]) from None
    return spec, warnings


def _check_fields(body: Any) -> None:
    if not isinstance(body, dict):
        raise refuse("invalid_body", "the body must be a JSON object")
    unknown = sorted(str(key) for key in body if key not in _KEYS)
    if unknown:
        raise refuse("unknown_field", f"unknown field {unknown[0][:80]!r}")


def _traffic_type(body: Mapping[str, Any]) -> str:
    traffic_type = body.get("traffic_type", "user")
    if not isinstance(traffic_type, str) or not TRAFFIC_TYPE.match(traffic_type):
        raise refuse("invalid_traffic_type", "'traffic_type' must be a Split traffic type name")
    return traffic_type


def _shards(body: Mapping[str, Any], requests: int, rate: float, parallelism: int) -> tuple[int, int]:
    """The shard size (given or derived) and the number of shards, each shard short enough to run."""
    rate_per_worker = rate / parallelism
    shard_size = _whole(body, "shard_size", 1, MAX_REQUESTS, shard_size_for(requests, rate_per_worker, parallelism))
    if shard_size > rate_per_worker * MAX_SHARD_SECONDS:  # multiplied: a rate such as 5e-324 underflows to 0
        raise refuse(
            "shard_too_long",
            f"a shard of {shard_size} cases at {rate_per_worker:g}/s per worker lasts over {MAX_SHARD_SECONDS:g}s; "
            "give a smaller shard_size or a higher rate",
        )
    shards = math.ceil(requests / shard_size)
    if shards > MAX_SHARDS:
        raise refuse("too_many_shards", f"{shards} shards; at most {MAX_SHARDS} (give a larger shard_size)")
    return shard_size, shards


def _target_url(body: Mapping[str, Any]) -> str | None:
    target_url = body.get("target")
    if target_url is not None and (not isinstance(target_url, str) or len(target_url) > 2048):
        raise refuse("invalid_target", "'target' must be an http(s) URL")
    return target_url


def _model_and_target(model_text: str, model_format: str, target_url: str | None) -> tuple[RequestModel, Target | None]:
    try:
        model = parse_model_text(model_text, model_format, "model")
        target = Target.parse(target_url) if target_url else None
    except SafetyError as exc:
        raise refuse("invalid_target", str(exc)[:1000]) from None
    except TrafficError as exc:
        raise refuse("invalid_model", str(exc)[:1000]) from None
    return model, target


def _oracle_feed(plan: TrafficPlan, oracle: OracleConfig | None) -> TrafficFeed | None:
    if not plan.oracle.get("test"):
        return None
    from flagbridge.oracle.feeds import traffic_feed  # only a plan that feeds a test needs the oracle's selectors

    try:
        return traffic_feed(plan.oracle, oracle, "plan")
    except ConfigError as exc:
        raise refuse("invalid_oracle", str(exc)[:1000]) from None


def _until_decided(body: Mapping[str, Any], feed: TrafficFeed | None) -> bool:
    value = body.get("until_decided", False)
    if not isinstance(value, bool):
        raise refuse("invalid_until_decided", f"'until_decided' must be true or false, got {value!r}"[:300])
    if value and feed is None:
        raise refuse(
            "until_decided_without_test",
            "'until_decided' runs until the oracle decides: the plan must feed an oracle test (oracle: {test: NAME})",
        )
    return value


def spec_fingerprint(spec: RunSpec) -> str:
    """What makes two requests for the same run id the same run (an idempotent retry of ``POST /runs``)."""
    import hashlib

    document = spec.document()
    document.pop("clock_ms", None)
    document.pop("accepted_ms", None)
    document.pop("oracle_metrics", None)  # follows from the plan and the stack's configuration, not the request
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
